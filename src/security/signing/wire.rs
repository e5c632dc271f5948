//! The wire format: the canonical text a signature covers, and the six
//! headers that carry the timestamp, nonce, sender, receiver, body digest
//! and signature, written by the signer and parsed by the verifier.

use std::fmt;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::Refusal;

pub const TIMESTAMP_HEADER: &str = "x-shoal-timestamp";
pub const NONCE_HEADER: &str = "x-shoal-nonce";
pub const SENDER_HEADER: &str = "x-shoal-sender";
pub const RECEIVER_HEADER: &str = "x-shoal-receiver";
pub const DIGEST_HEADER: &str = "x-shoal-content-sha256";
pub const SIGNATURE_HEADER: &str = "x-shoal-signature";
/// Every signature header, as tests forge or drop them.
#[cfg(test)]
pub(crate) const HEADERS: [&str; 6] = [
    TIMESTAMP_HEADER,
    NONCE_HEADER,
    SENDER_HEADER,
    RECEIVER_HEADER,
    DIGEST_HEADER,
    SIGNATURE_HEADER,
];
/// The longest sender id accepted.
pub(crate) const MAX_SENDER_LEN: usize = 255;

const CONTEXT: &[u8] = b"shoal-peer-request-v2";
const DIGEST_LEN: usize = 32;
const SIGNATURE_LEN: usize = 32;
/// What a present but empty Content-Type signs as (see [`canonical`]).
const EMPTY_CONTENT_TYPE: &[u8] = b"\0";

/// What a signature covers besides its own timestamp, nonce, sender and
/// receiver: the request as the signer sends it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path and query exactly as on the request line.
    pub path_and_query: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// The request without its body, as the verifier sees it before it
    /// reads the body.
    pub fn head(&self) -> RequestHead<'a> {
        RequestHead {
            method: self.method,
            path_and_query: self.path_and_query,
            content_type: self.content_type,
        }
    }
}

/// A request's method, path and content type: what the verifier checks
/// the signature against before it reads a byte of the body (the body is
/// covered by its digest, a header of its own).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub content_type: Option<&'a [u8]>,
}

/// The member a request is for: its ring id (advertised IP and peer port)
/// and the generation it started with, so that a request is good at one
/// node only, and at one run of it. Generation 0: the sender does not know
/// it (fixed peers carry no generation), and the receiver takes the request
/// only if it was signed after the receiver started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub generation: u64,
}

impl fmt::Display for Receiver {
    /// `10.0.0.7:8000#1733140000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.addr, self.generation)
    }
}

impl Receiver {
    fn parse(text: &str) -> Option<Self> {
        let (addr, generation) = text.rsplit_once('#')?;
        if !generation.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            addr: addr.parse().ok()?,
            generation: generation.parse().ok()?,
        })
    }
}

/// The signature headers of a request, parsed but not yet checked. Parse
/// them before reading the body: an unsigned request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    pub(crate) timestamp: u64,
    pub(crate) nonce: u128,
    pub(crate) sender: String,
    pub(crate) receiver: Receiver,
    pub(super) body_digest: [u8; DIGEST_LEN],
    pub(super) signature: [u8; SIGNATURE_LEN],
}

impl Presented {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, Refusal> {
        let signature = header(headers, SIGNATURE_HEADER)?;
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        let nonce = header(headers, NONCE_HEADER)?;
        let sender = header(headers, SENDER_HEADER)?;
        let receiver_text = header(headers, RECEIVER_HEADER)?;
        let body_digest = header(headers, DIGEST_HEADER)?;
        let malformed = |header, problem| Refusal::Malformed { header, problem };
        // Digits only: `u64::from_str` would also take a leading `+`.
        let timestamp = timestamp
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| timestamp.parse::<u64>().ok())
            .flatten()
            .ok_or(malformed(
                TIMESTAMP_HEADER,
                "not a count of seconds since 1970",
            ))?;
        let nonce = parse_hex::<16>(nonce)
            .map(u128::from_be_bytes)
            .ok_or(malformed(NONCE_HEADER, "not 32 hex digits"))?;
        if !valid_sender(sender) {
            return Err(malformed(
                SENDER_HEADER,
                "not 1 to 255 visible ASCII characters",
            ));
        }
        let receiver = Receiver::parse(receiver_text).ok_or(malformed(
            RECEIVER_HEADER,
            "not a member's IP:PORT#GENERATION",
        ))?;
        let body_digest = parse_hex::<DIGEST_LEN>(body_digest)
            .ok_or(malformed(DIGEST_HEADER, "not 64 hex digits"))?;
        let signature = parse_hex::<SIGNATURE_LEN>(signature)
            .ok_or(malformed(SIGNATURE_HEADER, "not 64 hex digits"))?;
        Ok(Self {
            timestamp,
            nonce,
            sender: sender.to_owned(),
            receiver,
            body_digest,
            signature,
        })
    }

    /// Whether `body` is the body the signature covers (by its digest):
    /// checked once the body is read, after the signature itself.
    pub(crate) fn verify_body(&self, body: &[u8]) -> Result<(), Refusal> {
        if Sha256::digest(body).as_slice() == self.body_digest {
            Ok(())
        } else {
            Err(Refusal::BodyMismatch)
        }
    }
}

/// The six signature headers' values, as the signer made them.
pub(super) struct Signed<'a> {
    pub timestamp: u64,
    pub nonce: u128,
    pub sender: HeaderValue,
    pub receiver: &'a str,
    pub body_digest: &'a str,
    pub signature: &'a [u8],
}

/// Adds the six signature headers to `headers`, replacing any already
/// there.
pub(super) fn insert_headers(headers: &mut HeaderMap, signed: Signed<'_>) {
    // Digits, hex, and an address with `#`: always valid header values.
    let value = |text: &str| {
        HeaderValue::try_from(text).expect("digits and addresses are valid header values")
    };
    headers.insert(TIMESTAMP_HEADER, HeaderValue::from(signed.timestamp));
    headers.insert(NONCE_HEADER, value(&nonce_hex(signed.nonce)));
    headers.insert(SENDER_HEADER, signed.sender);
    headers.insert(RECEIVER_HEADER, value(signed.receiver));
    headers.insert(DIGEST_HEADER, value(signed.body_digest));
    headers.insert(SIGNATURE_HEADER, value(&hex::encode(signed.signature)));
}

/// The body's SHA-256 as it is signed and sent: 64 lowercase hex digits.
pub(super) fn body_digest_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Refusal> {
    let value = headers.get(name).ok_or(Refusal::Missing { header: name })?;
    value.to_str().map_err(|_| Refusal::Malformed {
        header: name,
        problem: "not visible ASCII",
    })
}

pub(super) fn valid_sender(sender: &str) -> bool {
    !sender.is_empty()
        && sender.len() <= MAX_SENDER_LEN
        && sender.bytes().all(|b| b.is_ascii_graphic())
}

/// Exactly `2 * N` hex digits, either case.
fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A nonce as it is signed and sent: 32 lowercase hex digits.
fn nonce_hex(nonce: u128) -> String {
    hex::encode(nonce.to_be_bytes())
}

/// What the canonical text holds besides the request's head.
pub(super) struct Covered<'a> {
    pub timestamp: u64,
    pub nonce: u128,
    pub sender: &'a str,
    pub receiver: &'a str,
    /// Lowercase hex.
    pub body_digest: &'a str,
}

/// The text a signature covers, as laid out in the `signing` module's
/// documentation.
pub(super) fn canonical(request: &RequestHead<'_>, covered: &Covered<'_>) -> Vec<u8> {
    let timestamp = covered.timestamp.to_string();
    let nonce = nonce_hex(covered.nonce);
    // An empty Content-Type is stored and served as one, so it must not
    // sign as an absent one: it signs as a NUL byte, which no header value
    // can hold (found by the peer_request fuzz target).
    let content_type = match request.content_type {
        None => &b""[..],
        Some(b"") => EMPTY_CONTENT_TYPE,
        Some(content_type) => content_type,
    };
    let fields: [&[u8]; 9] = [
        CONTEXT,
        request.method.as_bytes(),
        request.path_and_query.as_bytes(),
        content_type,
        timestamp.as_bytes(),
        nonce.as_bytes(),
        covered.sender.as_bytes(),
        covered.receiver.as_bytes(),
        covered.body_digest.as_bytes(),
    ];
    let mut text = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            text.push(b'\n');
        }
        text.extend_from_slice(field);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(content_type: Option<&[u8]>) -> RequestHead<'_> {
        RequestHead {
            method: "PUT",
            path_and_query: "/_shoal/v1/heavy/Zm9v",
            content_type,
        }
    }

    fn text(content_type: Option<&[u8]>) -> Vec<u8> {
        let covered = Covered {
            timestamp: 1,
            nonce: 2,
            sender: "a",
            receiver: "10.0.0.9:8000#1",
            body_digest: "00",
        };
        canonical(&head(content_type), &covered)
    }

    /// Found by the peer_request fuzz target: a request signed without a
    /// Content-Type verified with an empty one added (and the value was then
    /// served with an empty type), and the other way round.
    #[test]
    fn an_empty_content_type_is_not_an_absent_one() {
        let absent = text(None);
        let empty = text(Some(b""));
        let text = text(Some(b"text/plain"));
        assert_ne!(absent, empty);
        assert_ne!(absent, text);
        assert_ne!(empty, text);
        assert!(HeaderValue::from_bytes(EMPTY_CONTENT_TYPE).is_err());
    }
}
