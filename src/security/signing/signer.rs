//! The sending side: signs a request with the keyring's first key and a
//! fresh nonce.

#[cfg(test)]
use super::wire::MAX_SENDER_LEN;
use super::wire::{self, Covered, Receiver, ReceiverText, RequestParts, Signed};
use crate::security::Keyring;
use hmac::Mac;
use http::{HeaderMap, HeaderValue};

/// A sender id that cannot go into a header.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sender id is 1 to {MAX_SENDER_LEN} visible ASCII characters (no spaces), not {0:?}")]
pub struct InvalidSender(pub(crate) String);

/// Signs requests as one sender.
#[derive(Debug, Clone)]
pub struct Signer {
    sender: String,
    sender_header: HeaderValue,
}

impl Signer {
    /// A signer for `sender`, this node's id as peers know it (its
    /// advertised peer address, such as `10.0.0.7:8000`).
    #[cfg(test)]
    pub fn new(sender: &str) -> Result<Self, InvalidSender> {
        if !wire::valid_sender(sender) {
            return Err(InvalidSender(sender.to_owned()));
        }
        let sender_header =
            HeaderValue::from_str(sender).map_err(|_| InvalidSender(sender.to_owned()))?;
        Ok(Self {
            sender: sender.to_owned(),
            sender_header,
        })
    }

    #[cfg(test)]
    pub(crate) fn sender(&self) -> &str {
        &self.sender
    }

    /// Signs `request`, for `receiver`, at `now` with a fresh random
    /// nonce, and adds the six signature headers to `headers`, replacing
    /// any already there.
    pub fn sign(
        &self,
        keyring: &Keyring,
        request: &RequestParts<'_>,
        receiver: Receiver,
        now: u64,
        headers: &mut HeaderMap,
    ) {
        self.sign_with_nonce(keyring, request, receiver, now, rand::random(), headers);
    }

    /// [`Signer::sign`] with a given nonce.
    pub(super) fn sign_with_nonce(
        &self,
        keyring: &Keyring,
        request: &RequestParts<'_>,
        receiver: Receiver,
        now: u64,
        nonce: u128,
        headers: &mut HeaderMap,
    ) {
        // Every field is formatted once, on the stack, and fed to the MAC
        // as it is: this runs for every peer request.
        let receiver = ReceiverText::of(&receiver);
        let body_digest = wire::body_digest(request.body);
        let body_digest_hex = wire::hex32(&body_digest);
        let nonce_hex = wire::nonce_hex(nonce);
        let covered = Covered {
            timestamp: now,
            nonce: &nonce_hex,
            sender: &self.sender,
            receiver: receiver.as_bytes(),
            body_digest: &body_digest_hex,
        };
        let mut mac = keyring.primary().mac.clone();
        wire::feed(&mut mac, &request.head(), &covered);
        let signature: [u8; 32] = mac.finalize().into_bytes().into();
        wire::insert_headers(
            headers,
            Signed {
                timestamp: now,
                nonce: &nonce_hex,
                sender: self.sender_header.clone(),
                receiver: receiver.as_bytes(),
                body_digest: &body_digest,
                signature: &signature,
            },
        );
    }
}

impl From<std::net::SocketAddr> for Signer {
    fn from(addr: std::net::SocketAddr) -> Self {
        let sender = addr.to_string();
        let sender_header =
            HeaderValue::try_from(sender.as_str()).expect("a socket address is a valid header");
        Self {
            sender,
            sender_header,
        }
    }
}
