//! The wire format: the canonical text a signature covers, and the four
//! headers that carry the timestamp, nonce, sender and signature, written
//! by the signer and parsed by the verifier.

use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::Refusal;

pub const TIMESTAMP_HEADER: &str = "x-shoal-timestamp";
pub const NONCE_HEADER: &str = "x-shoal-nonce";
pub const SENDER_HEADER: &str = "x-shoal-sender";
pub const SIGNATURE_HEADER: &str = "x-shoal-signature";
/// The longest sender id accepted.
pub(crate) const MAX_SENDER_LEN: usize = 255;

const CONTEXT: &[u8] = b"shoal-peer-request-v1";
const SIGNATURE_LEN: usize = 32;
/// What a present but empty Content-Type signs as (see [`canonical`]).
const EMPTY_CONTENT_TYPE: &[u8] = b"\0";

/// What a signature covers besides its own timestamp, nonce and sender.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path and query exactly as on the request line.
    pub path_and_query: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// The signature headers of a request, parsed but not yet checked. Parse
/// them before reading the body: an unsigned request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    pub(crate) timestamp: u64,
    pub(crate) nonce: u128,
    pub(crate) sender: String,
    pub(super) signature: [u8; SIGNATURE_LEN],
}

impl Presented {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, Refusal> {
        let signature = header(headers, SIGNATURE_HEADER)?;
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        let nonce = header(headers, NONCE_HEADER)?;
        let sender = header(headers, SENDER_HEADER)?;
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
        let signature = parse_hex::<SIGNATURE_LEN>(signature)
            .ok_or(malformed(SIGNATURE_HEADER, "not 64 hex digits"))?;
        Ok(Self {
            timestamp,
            nonce,
            sender: sender.to_owned(),
            signature,
        })
    }
}

/// Adds the four signature headers to `headers`, replacing any already
/// there.
pub(super) fn insert_headers(
    headers: &mut HeaderMap,
    timestamp: u64,
    nonce: u128,
    sender: HeaderValue,
    signature: &[u8],
) {
    let hex_value =
        |text: String| HeaderValue::try_from(text).expect("hex digits are a valid header value");
    headers.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
    headers.insert(NONCE_HEADER, hex_value(nonce_hex(nonce)));
    headers.insert(SENDER_HEADER, sender);
    headers.insert(SIGNATURE_HEADER, hex_value(hex::encode(signature)));
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

/// The text a signature covers, as laid out in the `signing` module's
/// documentation.
pub(super) fn canonical(
    request: &RequestParts<'_>,
    timestamp: u64,
    nonce: u128,
    sender: &str,
) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let nonce = nonce_hex(nonce);
    let body_digest = hex::encode(Sha256::digest(request.body));
    // An empty Content-Type is stored and served as one, so it must not
    // sign as an absent one: it signs as a NUL byte, which no header value
    // can hold (found by the peer_request fuzz target).
    let content_type = match request.content_type {
        None => &b""[..],
        Some(b"") => EMPTY_CONTENT_TYPE,
        Some(content_type) => content_type,
    };
    let fields: [&[u8]; 8] = [
        CONTEXT,
        request.method.as_bytes(),
        request.path_and_query.as_bytes(),
        content_type,
        timestamp.as_bytes(),
        nonce.as_bytes(),
        sender.as_bytes(),
        body_digest.as_bytes(),
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

    fn parts(content_type: Option<&[u8]>) -> RequestParts<'_> {
        RequestParts {
            method: "PUT",
            path_and_query: "/_shoal/v1/heavy/Zm9v",
            content_type,
            body: b"the value",
        }
    }

    /// Found by the peer_request fuzz target: a request signed without a
    /// Content-Type verified with an empty one added (and the value was then
    /// served with an empty type), and the other way round.
    #[test]
    fn an_empty_content_type_is_not_an_absent_one() {
        let absent = canonical(&parts(None), 1, 2, "a");
        let empty = canonical(&parts(Some(b"")), 1, 2, "a");
        let text = canonical(&parts(Some(b"text/plain")), 1, 2, "a");
        assert_ne!(absent, empty);
        assert_ne!(absent, text);
        assert_ne!(empty, text);
        assert!(HeaderValue::from_bytes(EMPTY_CONTENT_TYPE).is_err());
    }
}
