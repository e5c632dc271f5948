//! The sending side: signs a request with the keyring's first key and a
//! fresh nonce.

#[cfg(test)]
use super::wire::MAX_SENDER_LEN;
use super::wire::{self, RequestParts};
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

    /// Signs `request` at `now` with a fresh random nonce and adds the four
    /// signature headers to `headers`, replacing any already there.
    pub fn sign(
        &self,
        keyring: &Keyring,
        request: &RequestParts<'_>,
        now: u64,
        headers: &mut HeaderMap,
    ) {
        self.sign_with_nonce(keyring, request, now, rand::random(), headers);
    }

    /// [`Signer::sign`] with a given nonce.
    pub(super) fn sign_with_nonce(
        &self,
        keyring: &Keyring,
        request: &RequestParts<'_>,
        now: u64,
        nonce: u128,
        headers: &mut HeaderMap,
    ) {
        let text = wire::canonical(request, now, nonce, &self.sender);
        let signature = keyring
            .primary()
            .mac
            .clone()
            .chain_update(&text)
            .finalize()
            .into_bytes();
        wire::insert_headers(headers, now, nonce, self.sender_header.clone(), &signature);
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
