//! The wire format: the canonical text a signature covers, and the six
//! headers that carry the timestamp, nonce, sender, receiver, body digest
//! and signature, written by the signer and parsed by the verifier.

use std::fmt;
use std::net::SocketAddr;

use hmac::Mac;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::Refusal;

pub const TIMESTAMP_HEADER: &str = "x-shoal-timestamp";
pub const NONCE_HEADER: &str = "x-shoal-nonce";
pub const SENDER_HEADER: &str = "x-shoal-sender";
pub const RECEIVER_HEADER: &str = "x-shoal-receiver";
pub const DIGEST_HEADER: &str = "x-shoal-content-sha256";
pub const SIGNATURE_HEADER: &str = "x-shoal-signature";
// The same names as `HeaderName`s, built once: inserting or looking up a
// header by `&str` parses and validates the name on every call, which was
// a visible share of the signed peer path's profile (BENCHMARKS.md).
static TIMESTAMP_NAME: HeaderName = HeaderName::from_static(TIMESTAMP_HEADER);
static NONCE_NAME: HeaderName = HeaderName::from_static(NONCE_HEADER);
static SENDER_NAME: HeaderName = HeaderName::from_static(SENDER_HEADER);
static RECEIVER_NAME: HeaderName = HeaderName::from_static(RECEIVER_HEADER);
static DIGEST_NAME: HeaderName = HeaderName::from_static(DIGEST_HEADER);
static SIGNATURE_NAME: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);
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
/// The SHA-256 of an empty body (every GET's), so that it is not hashed
/// for every request; `the_empty_digest_is_sha256_of_nothing` checks it.
const EMPTY_DIGEST: [u8; DIGEST_LEN] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];
/// [`EMPTY_DIGEST`] as it is signed and sent.
const EMPTY_DIGEST_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest receiver text: a bracketed IPv6 address with a scope id, a
/// port, `#` and a 20-digit generation.
const MAX_RECEIVER_LEN: usize = 96;
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

/// A short text built on the stack: the fields of the canonical text are
/// formatted for every request, and a heap allocation for each of them
/// was a visible share of the signed peer path's profile.
pub(super) struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let Some(room) = self.buf.get_mut(self.len..end) else {
            return Err(fmt::Error);
        };
        room.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A number in decimal, as `to_string` writes it.
fn decimal(mut n: u64) -> StackText<20> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is below 10: the cast keeps every bit.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut text = StackText::new();
    let len = digits.len() - start;
    text.buf[..len].copy_from_slice(&digits[start..]);
    text.len = len;
    text
}

/// A receiver as it is signed and sent: its `Display` form.
pub(super) enum ReceiverText {
    Short(StackText<MAX_RECEIVER_LEN>),
    /// Longer than any socket address prints; kept for safety's sake.
    Long(String),
}

impl ReceiverText {
    pub(super) fn of(receiver: &Receiver) -> Self {
        use fmt::Write;
        let mut text = StackText::new();
        match write!(text, "{receiver}") {
            Ok(()) => Self::Short(text),
            Err(_) => Self::Long(receiver.to_string()),
        }
    }

    /// The text of a receiver whose address prints as `addr` (formatted
    /// once by the verifier, for its own address): the same bytes as
    /// [`ReceiverText::of`], without formatting the address again.
    pub(super) fn with_addr(addr: &str, generation: u64) -> Self {
        use fmt::Write;
        let generation = decimal(generation);
        let mut text = StackText::new();
        let written = text.write_str(addr).and_then(|()| text.write_char('#'));
        let digits = std::str::from_utf8(generation.as_bytes()).unwrap_or_default();
        match written.and_then(|()| text.write_str(digits)) {
            Ok(()) => Self::Short(text),
            Err(_) => Self::Long(format!("{addr}#{digits}")),
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Short(text) => text.as_bytes(),
            Self::Long(text) => text.as_bytes(),
        }
    }
}

/// The signature headers of a request, parsed but not yet checked. Parse
/// them before reading the body: an unsigned request is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented<'h> {
    pub(crate) timestamp: u64,
    pub(crate) nonce: u128,
    /// Borrowed from the request's headers: no copy for every request.
    pub(crate) sender: &'h str,
    pub(crate) receiver: Receiver,
    pub(super) body_digest: [u8; DIGEST_LEN],
    pub(super) signature: [u8; SIGNATURE_LEN],
}

impl<'h> Presented<'h> {
    pub(crate) fn from_headers(headers: &'h HeaderMap) -> Result<Self, Refusal> {
        let signature = header(headers, &SIGNATURE_NAME)?;
        let timestamp = header(headers, &TIMESTAMP_NAME)?;
        let nonce = header(headers, &NONCE_NAME)?;
        let sender = header(headers, &SENDER_NAME)?;
        let receiver_text = header(headers, &RECEIVER_NAME)?;
        let body_digest = header(headers, &DIGEST_NAME)?;
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
            sender,
            receiver,
            body_digest,
            signature,
        })
    }

    /// Whether `body` is the body the signature covers (by its digest):
    /// checked once the body is read, after the signature itself.
    pub(crate) fn verify_body(&self, body: &[u8]) -> Result<(), Refusal> {
        if body_digest(body) == self.body_digest {
            Ok(())
        } else {
            Err(Refusal::BodyMismatch)
        }
    }
}

/// The six signature headers' values, as the signer made them.
pub(super) struct Signed<'a> {
    pub timestamp: u64,
    /// Lowercase hex.
    pub nonce: &'a [u8],
    pub sender: HeaderValue,
    pub receiver: &'a [u8],
    pub body_digest: &'a [u8; DIGEST_LEN],
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Adds the six signature headers to `headers`, replacing any already
/// there.
pub(super) fn insert_headers(headers: &mut HeaderMap, signed: Signed<'_>) {
    // Digits, hex, and an address with `#`: always valid header values.
    let value = |text: &[u8]| {
        HeaderValue::from_bytes(text).expect("digits and addresses are valid header values")
    };
    // The nonce and signature are new in every request: marked sensitive,
    // HTTP/2 sends them as never-indexed literals instead of adding two
    // entries to the HPACK table for every request, which pushed the
    // headers that repeat (sender, receiver, digest) out of it.
    let unique = |text: &[u8]| {
        let mut value = value(text);
        value.set_sensitive(true);
        value
    };
    let body_digest = if *signed.body_digest == EMPTY_DIGEST {
        HeaderValue::from_static(EMPTY_DIGEST_HEX)
    } else {
        value(&hex32(signed.body_digest))
    };
    headers.insert(&TIMESTAMP_NAME, HeaderValue::from(signed.timestamp));
    headers.insert(&NONCE_NAME, unique(signed.nonce));
    headers.insert(&SENDER_NAME, signed.sender);
    headers.insert(&RECEIVER_NAME, value(signed.receiver));
    headers.insert(&DIGEST_NAME, body_digest);
    headers.insert(&SIGNATURE_NAME, unique(&hex32(signed.signature)));
}

/// The body's SHA-256, as it is signed (in hex) and checked.
pub(super) fn body_digest(body: &[u8]) -> [u8; DIGEST_LEN] {
    if body.is_empty() {
        EMPTY_DIGEST
    } else {
        Sha256::digest(body).into()
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static HeaderName) -> Result<&'h str, Refusal> {
    let value = headers.get(name).ok_or(Refusal::Missing {
        header: name.as_str(),
    })?;
    value.to_str().map_err(|_| Refusal::Malformed {
        header: name.as_str(),
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
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    // Every digit is looked up, and the bad ones seen once at the end:
    // 112 digits are parsed for every signed request, and a branch per
    // digit was a visible share of the verifier's profile.
    let mut bad = 0;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        bad |= high | low;
        *byte = (high << 4) | (low & 0xf);
    }
    (bad & NOT_HEX == 0).then_some(out)
}

/// What [`HEX_VALUE`] holds for a byte that is no hex digit.
const NOT_HEX: u8 = 0x80;

/// The value of each hex digit, either case; [`NOT_HEX`] for other bytes.
static HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        // `digit` is below 16: the casts keep every bit.
        let value = digit as u8;
        table[b"0123456789abcdef"[digit] as usize] = value;
        table[b"0123456789ABCDEF"[digit] as usize] = value;
        digit += 1;
    }
    table
};

/// Lowercase hex of `bytes` into `out`, twice as long.
fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(out.len(), 2 * bytes.len());
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A digest or signature in lowercase hex.
pub(super) fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    encode_hex(bytes, &mut out);
    out
}

/// A nonce as it is signed and sent: 32 lowercase hex digits.
pub(super) fn nonce_hex(nonce: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    encode_hex(&nonce.to_be_bytes(), &mut out);
    out
}

/// What the canonical text holds besides the request's head, each field
/// as it is signed.
pub(super) struct Covered<'a> {
    pub timestamp: u64,
    /// Lowercase hex ([`nonce_hex`]).
    pub nonce: &'a [u8],
    pub sender: &'a str,
    /// [`ReceiverText`].
    pub receiver: &'a [u8],
    /// Lowercase hex ([`hex32`]).
    pub body_digest: &'a [u8],
}

/// The nine fields of the canonical text, in order; `timestamp` holds the
/// decimal timestamp they borrow.
fn fields<'a>(
    request: &RequestHead<'a>,
    covered: &Covered<'a>,
    timestamp: &'a StackText<20>,
) -> [&'a [u8]; 9] {
    // An empty Content-Type is stored and served as one, so it must not
    // sign as an absent one: it signs as a NUL byte, which no header value
    // can hold (found by the peer_request fuzz target).
    let content_type = match request.content_type {
        None => &b""[..],
        Some(b"") => EMPTY_CONTENT_TYPE,
        Some(content_type) => content_type,
    };
    [
        CONTEXT,
        request.method.as_bytes(),
        request.path_and_query.as_bytes(),
        content_type,
        timestamp.as_bytes(),
        covered.nonce,
        covered.sender.as_bytes(),
        covered.receiver,
        covered.body_digest,
    ]
}

/// Feeds the text a signature covers, as laid out in the `signing`
/// module's documentation, to `mac`: field by field, the same bytes as
/// [`canonical`] without building them in memory.
pub(super) fn feed(mac: &mut impl Mac, request: &RequestHead<'_>, covered: &Covered<'_>) {
    let timestamp = decimal(covered.timestamp);
    for (index, field) in fields(request, covered, &timestamp).iter().enumerate() {
        if index > 0 {
            mac.update(b"\n");
        }
        mac.update(field);
    }
}

/// The text a signature covers, in one piece (what [`feed`] feeds).
#[cfg(test)]
pub(super) fn canonical(request: &RequestHead<'_>, covered: &Covered<'_>) -> Vec<u8> {
    let timestamp = decimal(covered.timestamp);
    fields(request, covered, &timestamp).join(&b'\n')
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
            nonce: &nonce_hex(2),
            sender: "a",
            receiver: b"10.0.0.9:8000#1",
            body_digest: b"00",
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

    #[test]
    fn the_empty_digest_is_sha256_of_nothing() {
        assert_eq!(EMPTY_DIGEST, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(EMPTY_DIGEST_HEX, hex::encode(EMPTY_DIGEST));
        assert_eq!(body_digest(b""), EMPTY_DIGEST);
        assert_eq!(body_digest(b"x"), <[u8; 32]>::from(Sha256::digest(b"x")));
    }

    /// The texts built on the stack are the ones `to_string` and the `hex`
    /// crate make, which the signature has always covered.
    #[test]
    fn stack_texts_are_the_formatted_ones() {
        for n in [0, 1, 9, 10, 99, 1_700_000_000, u64::MAX] {
            assert_eq!(decimal(n).as_bytes(), n.to_string().as_bytes());
        }
        let addrs = [
            "10.0.0.9:8000",
            "255.255.255.255:65535",
            "[::1]:8000",
            "[2001:db8::7]:8000",
            "[::ffff:255.255.255.255]:65535",
        ];
        // The longest a socket address prints: every group, a scope id.
        let longest =
            std::net::SocketAddrV6::new(std::net::Ipv6Addr::from([0xffff; 8]), 65535, 0, u32::MAX);
        let addrs = addrs
            .iter()
            .map(|addr| addr.parse::<SocketAddr>().expect("addr"))
            .chain([SocketAddr::V6(longest)]);
        for addr in addrs {
            for generation in [0, 42, u64::MAX] {
                let receiver = Receiver { addr, generation };
                let want = receiver.to_string();
                assert!(matches!(
                    ReceiverText::of(&receiver),
                    ReceiverText::Short(_)
                ));
                assert_eq!(ReceiverText::of(&receiver).as_bytes(), want.as_bytes());
                let with_addr = ReceiverText::with_addr(&addr.to_string(), generation);
                assert_eq!(with_addr.as_bytes(), want.as_bytes());
            }
        }
        let long = "x".repeat(MAX_RECEIVER_LEN);
        assert_eq!(
            ReceiverText::with_addr(&long, 7).as_bytes(),
            format!("{long}#7").as_bytes()
        );
        let bytes: Vec<u8> = (0..=255).collect();
        for chunk in bytes.chunks(32) {
            let chunk: [u8; 32] = chunk.try_into().expect("32 bytes");
            let text = hex32(&chunk);
            assert_eq!(&text[..], hex::encode(chunk).as_bytes());
            let text = std::str::from_utf8(&text).expect("hex");
            assert_eq!(parse_hex::<32>(text), Some(chunk));
            assert_eq!(parse_hex::<32>(&text.to_uppercase()), Some(chunk));
        }
        assert_eq!(
            &nonce_hex(0x0123_4567_89ab_cdef),
            b"00000000000000000123456789abcdef"
        );
        for bad in ["", "0", "0g", "000", " 0", "+0", "é", "0é"] {
            assert_eq!(parse_hex::<1>(bad), None, "{bad:?}");
        }
        // Every byte but the 22 hex digits is refused, either side of a pair.
        for byte in 0..=127u8 {
            let digit = char::from(byte);
            let text = [format!("{digit}0"), format!("0{digit}")];
            let want = digit
                .to_digit(16)
                .and_then(|value| u8::try_from(value).ok());
            assert_eq!(
                parse_hex::<1>(&text[0]),
                want.map(|v| [v << 4]),
                "{digit:?}"
            );
            assert_eq!(parse_hex::<1>(&text[1]), want.map(|v| [v]), "{digit:?}");
        }
    }

    /// Feeding the fields one by one is signing the canonical text.
    #[test]
    fn feeding_is_signing_the_canonical_text() {
        let key = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).expect("key");
        for content_type in [None, Some(&b""[..]), Some(&b"text/plain"[..])] {
            let covered = Covered {
                timestamp: 1_700_000_000,
                nonce: &nonce_hex(u128::MAX),
                sender: "10.0.0.7:8000",
                receiver: b"10.0.0.9:8000#42",
                body_digest: EMPTY_DIGEST_HEX.as_bytes(),
            };
            let mut fed = key.clone();
            feed(&mut fed, &head(content_type), &covered);
            let whole = key
                .clone()
                .chain_update(canonical(&head(content_type), &covered));
            assert_eq!(fed.finalize().into_bytes(), whole.finalize().into_bytes());
        }
    }
}
