//! Signed peer requests: HMAC-SHA256 with the keyring's first key, verified
//! with any key of the keyring.
//!
//! The signature covers the canonical text
//!
//! ```text
//! shoal-peer-request-v1
//! {method}
//! {path and query, as sent}
//! {content-type header, empty if none}
//! {timestamp: unix seconds, decimal}
//! {nonce: 128 random bits, 32 lowercase hex digits}
//! {sender}
//! {SHA-256 of the body, lowercase hex}
//! ```
//!
//! (lines joined by `\n`; no field can hold a newline). The timestamp, nonce,
//! sender and signature travel in the `x-shoal-timestamp`, `x-shoal-nonce`,
//! `x-shoal-sender` and `x-shoal-signature` (hex) headers.
//!
//! A verifier refuses a signature that no key makes, a timestamp more than
//! [`MAX_SKEW`] away from its clock either way, and a nonce it accepted
//! before. Nonces are remembered only as long as their timestamp could pass
//! the skew check, and at most [`NONCE_CAPACITY`] of them: when that many
//! signed requests arrived within the window, more are refused rather than
//! the table grown. Every request carries its own random nonce, so identical
//! concurrent requests (the same GET from several nodes) all pass.
//!
//! Time is an input everywhere (`now`, unix seconds) so that tests need no
//! clock.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::Mac;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::Keyring;
use super::keyring::hex;

pub const TIMESTAMP_HEADER: &str = "x-shoal-timestamp";
pub const NONCE_HEADER: &str = "x-shoal-nonce";
pub const SENDER_HEADER: &str = "x-shoal-sender";
pub const SIGNATURE_HEADER: &str = "x-shoal-signature";
/// The most a request's timestamp may differ from the verifier's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// The most nonces a verifier remembers (about 20 MB).
pub const NONCE_CAPACITY: usize = 1_000_000;
/// The longest sender id accepted.
pub const MAX_SENDER_LEN: usize = 255;

const CONTEXT: &[u8] = b"shoal-peer-request-v1";
const SIGNATURE_LEN: usize = 32;

/// Why a request was refused. [`Refusal::reason`] is its metric label.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error(
        "the request is not signed: it carries no {header} header, and this node \
         accepts only signed peer requests"
    )]
    Missing { header: &'static str },
    #[error("the request's {header} header is malformed: {problem}")]
    Malformed {
        header: &'static str,
        problem: &'static str,
    },
    #[error("the request's signature matches no key in this node's keyring")]
    BadSignature,
    #[error(
        "the request's timestamp is {skew} s {} this node's clock; at most {max} s of \
         clock skew is accepted",
        if *ahead { "ahead of" } else { "behind" }
    )]
    ClockSkew { skew: u64, ahead: bool, max: u64 },
    #[error("the request's nonce was seen before: the request is a replay")]
    ReplayedNonce,
    #[error(
        "this node accepted {capacity} signed requests within the last {window} s and \
         remembers no more nonces; retry shortly"
    )]
    NonceTableFull { capacity: usize, window: u64 },
}

impl Refusal {
    /// A metric label: `missing-signature`, `bad-signature`, `clock-skew`,
    /// `replayed-nonce` or `nonce-table-full`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing { .. } => "missing-signature",
            Refusal::Malformed { .. } | Refusal::BadSignature => "bad-signature",
            Refusal::ClockSkew { .. } => "clock-skew",
            Refusal::ReplayedNonce => "replayed-nonce",
            Refusal::NonceTableFull { .. } => "nonce-table-full",
        }
    }
}

/// A sender id that cannot go into a header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a sender id is 1 to {MAX_SENDER_LEN} visible ASCII characters (no spaces), not {0:?}")]
pub struct InvalidSender(pub String);

/// What a signature covers besides its own timestamp, nonce and sender.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path and query exactly as on the request line.
    pub path_and_query: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// The seconds since the Unix epoch on this node's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Signs requests as one sender.
#[derive(Debug, Clone)]
pub struct Signer {
    sender: String,
    sender_header: HeaderValue,
}

impl Signer {
    /// A signer for `sender`, this node's id as peers know it (its
    /// advertised peer address, such as `10.0.0.7:8000`).
    pub fn new(sender: &str) -> Result<Self, InvalidSender> {
        if !valid_sender(sender) {
            return Err(InvalidSender(sender.to_owned()));
        }
        let sender_header =
            HeaderValue::from_str(sender).map_err(|_| InvalidSender(sender.to_owned()))?;
        Ok(Self {
            sender: sender.to_owned(),
            sender_header,
        })
    }

    pub fn sender(&self) -> &str {
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

    fn sign_with_nonce(
        &self,
        keyring: &Keyring,
        request: &RequestParts<'_>,
        now: u64,
        nonce: u128,
        headers: &mut HeaderMap,
    ) {
        let text = canonical(request, now, nonce, &self.sender);
        let signature = keyring
            .primary()
            .mac
            .clone()
            .chain_update(&text)
            .finalize()
            .into_bytes();
        let hex_value = |text: String| {
            HeaderValue::try_from(text).expect("hex digits are a valid header value")
        };
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(now));
        headers.insert(NONCE_HEADER, hex_value(format!("{nonce:032x}")));
        headers.insert(SENDER_HEADER, self.sender_header.clone());
        headers.insert(SIGNATURE_HEADER, hex_value(hex(&signature)));
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

/// The signature headers of a request, parsed but not yet checked. Parse
/// them before reading the body: an unsigned request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub timestamp: u64,
    pub nonce: u128,
    pub sender: String,
    signature: [u8; SIGNATURE_LEN],
}

impl Presented {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Refusal> {
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

/// Checks signed requests and remembers their nonces. One per node, shared
/// by every request it serves.
#[derive(Debug)]
pub struct Verifier {
    max_skew: u64,
    capacity: usize,
    nonces: Mutex<NonceTable>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(MAX_SKEW, NONCE_CAPACITY)
    }
}

impl Verifier {
    /// A verifier with other limits than the defaults ([`MAX_SKEW`],
    /// [`NONCE_CAPACITY`]).
    pub fn new(max_skew: Duration, capacity: usize) -> Self {
        Self {
            max_skew: max_skew.as_secs(),
            capacity,
            nonces: Mutex::new(NonceTable::default()),
        }
    }

    /// Verifies a request whose signature headers were `presented`, at
    /// `now` (unix seconds). Checks, in order: that a key of `keyring` made
    /// the signature, the clock skew, and that the nonce is new; the nonce
    /// is remembered only when all else passed.
    pub fn verify(
        &self,
        keyring: &Keyring,
        presented: &Presented,
        request: &RequestParts<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let text = canonical(
            request,
            presented.timestamp,
            presented.nonce,
            &presented.sender,
        );
        let signed_by_a_key = keyring.keys().iter().any(|key| {
            key.mac
                .clone()
                .chain_update(&text)
                .verify_slice(&presented.signature)
                .is_ok()
        });
        if !signed_by_a_key {
            return Err(Refusal::BadSignature);
        }
        let skew = now.abs_diff(presented.timestamp);
        if skew > self.max_skew {
            return Err(Refusal::ClockSkew {
                skew,
                ahead: presented.timestamp > now,
                max: self.max_skew,
            });
        }
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                presented.timestamp,
                presented.nonce,
                now.saturating_sub(self.max_skew),
                self.capacity,
            )
            .map_err(|refused| match refused {
                Insert::Seen => Refusal::ReplayedNonce,
                Insert::Full => Refusal::NonceTableFull {
                    capacity: self.capacity,
                    window: self.max_skew,
                },
            })
    }

    /// How many nonces are remembered now.
    pub fn remembered(&self) -> usize {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }
}

/// Accepted nonces by the second their request was signed: a nonce need be
/// looked for only under its own timestamp (the signature binds the two),
/// and a whole second is forgotten at once when it leaves the window.
#[derive(Debug, Default)]
struct NonceTable {
    by_second: BTreeMap<u64, HashSet<u128>>,
    len: usize,
}

/// Why a nonce was not taken.
enum Insert {
    Seen,
    Full,
}

impl NonceTable {
    /// Remembers `nonce` under `timestamp`, forgetting every second before
    /// `oldest` first (no timestamp that old passes the skew check).
    fn insert(
        &mut self,
        timestamp: u64,
        nonce: u128,
        oldest: u64,
        capacity: usize,
    ) -> Result<(), Insert> {
        while let Some(entry) = self.by_second.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            self.len -= entry.remove().len();
        }
        if self
            .by_second
            .get(&timestamp)
            .is_some_and(|nonces| nonces.contains(&nonce))
        {
            return Err(Insert::Seen);
        }
        if self.len >= capacity {
            return Err(Insert::Full);
        }
        self.by_second.entry(timestamp).or_default().insert(nonce);
        self.len += 1;
        Ok(())
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Refusal> {
    let value = headers.get(name).ok_or(Refusal::Missing { header: name })?;
    value.to_str().map_err(|_| Refusal::Malformed {
        header: name,
        problem: "not visible ASCII",
    })
}

fn valid_sender(sender: &str) -> bool {
    !sender.is_empty()
        && sender.len() <= MAX_SENDER_LEN
        && sender.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(out)
}

fn canonical(request: &RequestParts<'_>, timestamp: u64, nonce: u128, sender: &str) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let nonce = format!("{nonce:032x}");
    let body_digest = hex(&Sha256::digest(request.body));
    let fields: [&[u8]; 8] = [
        CONTEXT,
        request.method.as_bytes(),
        request.path_and_query.as_bytes(),
        request.content_type.unwrap_or_default(),
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
    use proptest::prelude::*;

    use super::*;
    use crate::security::keyring::KEY_LEN;

    const NOW: u64 = 1_700_000_000;
    const PATH: &str = "/_shoal/v1/heavy/Zm9v";

    fn keyring(bytes: &[u8]) -> Keyring {
        Keyring::new(bytes.iter().map(|&b| [b; KEY_LEN])).expect("keys")
    }

    fn get() -> RequestParts<'static> {
        RequestParts {
            method: "GET",
            path_and_query: PATH,
            content_type: None,
            body: b"",
        }
    }

    fn put() -> RequestParts<'static> {
        RequestParts {
            method: "PUT",
            path_and_query: PATH,
            content_type: Some(b"text/plain"),
            body: b"the value",
        }
    }

    fn signed(keys: &Keyring, sender: &str, request: &RequestParts<'_>, now: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        Signer::new(sender)
            .expect("sender")
            .sign(keys, request, now, &mut headers);
        headers
    }

    fn check(
        verifier: &Verifier,
        keys: &Keyring,
        headers: &HeaderMap,
        request: &RequestParts<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let presented = Presented::from_headers(headers)?;
        verifier.verify(keys, &presented, request, now)
    }

    fn reason(result: Result<(), Refusal>) -> &'static str {
        result.expect_err("refused").reason()
    }

    #[test]
    fn round_trip() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        for request in [get(), put()] {
            let headers = signed(&keys, "10.0.0.7:8000", &request, NOW);
            let presented = Presented::from_headers(&headers).expect("parsed");
            assert_eq!(presented.sender, "10.0.0.7:8000");
            assert_eq!(presented.timestamp, NOW);
            assert_eq!(headers[SIGNATURE_HEADER].len(), 64);
            assert_eq!(headers[NONCE_HEADER].len(), 32);
            assert_eq!(verifier.verify(&keys, &presented, &request, NOW), Ok(()));
        }
        assert_eq!(verifier.remembered(), 2);
    }

    #[test]
    fn any_key_verifies_and_the_first_signs() {
        let old = keyring(&[0xa]);
        let rotating = keyring(&[0xb, 0xa]);
        let verifier = Verifier::default();
        let from_old = signed(&old, "a:1", &get(), NOW);
        assert_eq!(check(&verifier, &rotating, &from_old, &get(), NOW), Ok(()));
        let from_rotating = signed(&rotating, "b:1", &get(), NOW);
        assert_eq!(
            check(&verifier, &old, &from_rotating, &get(), NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(
                &verifier,
                &keyring(&[0xa, 0xb]),
                &from_rotating,
                &get(),
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn unsigned_requests_are_missing_a_signature() {
        let verifier = Verifier::default();
        let keys = keyring(&[1]);
        let result = check(&verifier, &keys, &HeaderMap::new(), &get(), NOW);
        assert_eq!(
            result,
            Err(Refusal::Missing {
                header: SIGNATURE_HEADER
            })
        );
        assert_eq!(reason(result), "missing-signature");
        for header in [
            TIMESTAMP_HEADER,
            NONCE_HEADER,
            SENDER_HEADER,
            SIGNATURE_HEADER,
        ] {
            let mut headers = signed(&keys, "a:1", &get(), NOW);
            headers.remove(header);
            assert_eq!(
                check(&verifier, &keys, &headers, &get(), NOW),
                Err(Refusal::Missing { header })
            );
        }
    }

    #[test]
    fn a_wrong_key_or_any_change_is_a_bad_signature() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        let headers = signed(&keys, "a:1", &put(), NOW);
        let result = check(&verifier, &keyring(&[2, 3]), &headers, &put(), NOW);
        assert_eq!(result, Err(Refusal::BadSignature));
        assert_eq!(
            result.expect_err("refused").to_string(),
            "the request's signature matches no key in this node's keyring"
        );

        let changed = [
            RequestParts {
                method: "DELETE",
                ..put()
            },
            RequestParts {
                path_and_query: "/_shoal/v1/heavy/YmFy",
                ..put()
            },
            RequestParts {
                path_and_query: "/_shoal/v1/heavy/Zm9v?x=1",
                ..put()
            },
            RequestParts {
                content_type: Some(b"text/html"),
                ..put()
            },
            RequestParts {
                content_type: None,
                ..put()
            },
            RequestParts {
                body: b"another value",
                ..put()
            },
        ];
        for request in changed {
            assert_eq!(
                check(&verifier, &keys, &headers, &request, NOW),
                Err(Refusal::BadSignature),
                "{request:?}"
            );
        }
        for (header, value) in [
            (SENDER_HEADER, "b:1"),
            (TIMESTAMP_HEADER, "1700000001"),
            (NONCE_HEADER, "00000000000000000000000000000001"),
        ] {
            let mut forged = headers.clone();
            forged.insert(header, HeaderValue::from_static(value));
            assert_eq!(
                check(&verifier, &keys, &forged, &put(), NOW),
                Err(Refusal::BadSignature),
                "{header}"
            );
        }
        // Nothing refused was remembered; the genuine request still passes.
        assert_eq!(verifier.remembered(), 0);
        assert_eq!(check(&verifier, &keys, &headers, &put(), NOW), Ok(()));
    }

    #[test]
    fn malformed_headers_are_bad_signatures() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        for (header, value) in [
            (TIMESTAMP_HEADER, "-5"),
            (TIMESTAMP_HEADER, "+1700000000"),
            (TIMESTAMP_HEADER, "99999999999999999999999"),
            (TIMESTAMP_HEADER, ""),
            (NONCE_HEADER, "xyz"),
            (NONCE_HEADER, "0123456789abcdef0123456789abcdeg"),
            (NONCE_HEADER, "+123456789abcdef0123456789abcdef"),
            (SENDER_HEADER, "a b"),
            (SENDER_HEADER, ""),
            (SIGNATURE_HEADER, "00"),
        ] {
            let mut headers = signed(&keys, "a:1", &get(), NOW);
            headers.insert(header, HeaderValue::from_static(value));
            let result = check(&verifier, &keys, &headers, &get(), NOW);
            assert!(
                matches!(result, Err(Refusal::Malformed { header: h, .. }) if h == header),
                "{header}: {value}: {result:?}"
            );
            assert_eq!(reason(result), "bad-signature");
        }
        let mut headers = signed(&keys, "a:1", &get(), NOW);
        headers.insert(
            SENDER_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("opaque bytes"),
        );
        assert!(matches!(
            check(&verifier, &keys, &headers, &get(), NOW),
            Err(Refusal::Malformed { .. })
        ));
        assert!(Signer::new("a b").is_err());
        assert!(Signer::new("").is_err());
        assert!(Signer::new(&"x".repeat(MAX_SENDER_LEN + 1)).is_err());
        assert_eq!(
            Signer::from("[::1]:8000".parse::<std::net::SocketAddr>().expect("addr")).sender(),
            "[::1]:8000"
        );
    }

    #[test]
    fn more_than_a_minute_of_skew_is_refused_either_way() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        let limit = MAX_SKEW.as_secs();
        for (signed_at, ok) in [
            (NOW - limit, true),
            (NOW + limit, true),
            (NOW - limit - 1, false),
            (NOW + limit + 1, false),
            (0, false),
            (u64::MAX, false),
        ] {
            let headers = signed(&keys, "a:1", &get(), signed_at);
            let result = check(&verifier, &keys, &headers, &get(), NOW);
            if ok {
                assert_eq!(result, Ok(()), "signed at {signed_at}");
            } else {
                assert!(
                    matches!(result, Err(Refusal::ClockSkew { ahead, .. }) if ahead == (signed_at > NOW)),
                    "signed at {signed_at}: {result:?}"
                );
                assert_eq!(reason(result), "clock-skew");
            }
        }
        let headers = signed(&keys, "a:1", &get(), NOW + 75);
        let message = check(&verifier, &keys, &headers, &get(), NOW)
            .expect_err("skewed")
            .to_string();
        assert_eq!(
            message,
            "the request's timestamp is 75 s ahead of this node's clock; at most 60 s of clock skew is accepted"
        );
    }

    #[test]
    fn a_replayed_request_is_refused() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        let headers = signed(&keys, "a:1", &put(), NOW);
        assert_eq!(check(&verifier, &keys, &headers, &put(), NOW), Ok(()));
        for later in [NOW, NOW + 1, NOW + MAX_SKEW.as_secs()] {
            let result = check(&verifier, &keys, &headers, &put(), later);
            assert_eq!(result, Err(Refusal::ReplayedNonce));
            assert_eq!(reason(result), "replayed-nonce");
        }
        // The same nonce spelled in capitals is the same nonce.
        let mut shouted = headers.clone();
        let upper = headers[NONCE_HEADER]
            .to_str()
            .expect("ascii")
            .to_ascii_uppercase();
        shouted.insert(NONCE_HEADER, HeaderValue::try_from(upper).expect("header"));
        assert_eq!(
            check(&verifier, &keys, &shouted, &put(), NOW),
            Err(Refusal::ReplayedNonce)
        );
        // Past the window the replay fails on skew, and the nonce is forgotten.
        assert_eq!(
            reason(check(&verifier, &keys, &headers, &put(), NOW + 61)),
            "clock-skew"
        );
        let fresh = signed(&keys, "a:1", &put(), NOW + 61);
        assert_eq!(check(&verifier, &keys, &fresh, &put(), NOW + 61), Ok(()));
        assert_eq!(verifier.remembered(), 1);
    }

    #[test]
    fn identical_concurrent_requests_from_different_nodes_all_pass() {
        let keys = keyring(&[1]);
        let verifier = Verifier::default();
        // The same GET, at the same second, from two nodes (cross-node
        // singleflight), and twice from one of them.
        let a = signed(&keys, "10.0.0.7:8000", &get(), NOW);
        let b = signed(&keys, "10.0.0.8:8000", &get(), NOW);
        let a_again = signed(&keys, "10.0.0.7:8000", &get(), NOW);
        for headers in [&a, &b, &a_again] {
            assert_eq!(check(&verifier, &keys, headers, &get(), NOW), Ok(()));
        }

        // And many at once, from many threads.
        let verifier = Verifier::default();
        std::thread::scope(|scope| {
            for node in 0..8 {
                let (verifier, keys) = (&verifier, &keys);
                scope.spawn(move || {
                    let sender = format!("10.0.0.{node}:8000");
                    for _ in 0..200 {
                        let headers = signed(keys, &sender, &get(), NOW);
                        assert_eq!(check(verifier, keys, &headers, &get(), NOW), Ok(()));
                    }
                });
            }
        });
        assert_eq!(verifier.remembered(), 8 * 200);
    }

    #[test]
    fn a_full_nonce_table_refuses_instead_of_growing() {
        let keys = keyring(&[1]);
        let verifier = Verifier::new(MAX_SKEW, 3);
        for _ in 0..3 {
            let headers = signed(&keys, "a:1", &get(), NOW);
            assert_eq!(check(&verifier, &keys, &headers, &get(), NOW), Ok(()));
        }
        let headers = signed(&keys, "a:1", &get(), NOW);
        let result = check(&verifier, &keys, &headers, &get(), NOW + 10);
        assert_eq!(
            result,
            Err(Refusal::NonceTableFull {
                capacity: 3,
                window: 60
            })
        );
        assert_eq!(reason(result), "nonce-table-full");
        assert_eq!(verifier.remembered(), 3);
        // Once the window has passed, the old nonces are forgotten.
        let later = NOW + 61;
        let headers = signed(&keys, "a:1", &get(), later);
        assert_eq!(check(&verifier, &keys, &headers, &get(), later), Ok(()));
        assert_eq!(verifier.remembered(), 1);
    }

    fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..80).prop_map(Some),
            "[0-9a-fA-F]{0,70}".prop_map(|s| Some(s.into_bytes())),
            "[0-9]{0,25}".prop_map(|s| Some(s.into_bytes())),
        ]
    }

    proptest! {
        #[test]
        fn random_headers_never_panic_nor_pass(
            timestamp in header_value(),
            nonce in header_value(),
            sender in header_value(),
            signature in header_value(),
            now in any::<u64>(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                (TIMESTAMP_HEADER, timestamp),
                (NONCE_HEADER, nonce),
                (SENDER_HEADER, sender),
                (SIGNATURE_HEADER, signature),
            ] {
                if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(name, value);
                }
            }
            let verifier = Verifier::default();
            let result = check(&verifier, &keyring(&[1]), &headers, &get(), now);
            prop_assert!(result.is_err());
        }

        #[test]
        fn a_changed_header_never_passes(
            which in 0usize..4,
            replacement in "[ -~]{0,70}",
        ) {
            let keys = keyring(&[1]);
            let headers = signed(&keys, "a:1", &put(), NOW);
            let name = [TIMESTAMP_HEADER, NONCE_HEADER, SENDER_HEADER, SIGNATURE_HEADER][which];
            prop_assume!(headers[name].as_bytes() != replacement.as_bytes());
            let mut forged = headers.clone();
            forged.insert(name, HeaderValue::from_str(&replacement).expect("printable"));
            let verifier = Verifier::default();
            let result = check(&verifier, &keys, &forged, &put(), NOW);
            // Only another spelling of the same values passes (capitals in
            // hex, leading zeros in the timestamp).
            let same = Presented::from_headers(&forged).ok()
                == Some(Presented::from_headers(&headers).expect("parsed"));
            prop_assert_eq!(result.is_ok(), same);
        }
    }
}
