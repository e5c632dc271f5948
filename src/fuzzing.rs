//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`; not
//! an API). Each takes the bytes libFuzzer gives, runs them through the
//! node's own parsers exactly as a request or datagram reaches them, and
//! panics when an invariant fails, so that a broken invariant is a crash
//! libFuzzer keeps. [`seeds`] makes the corpora's seeds with the real code.
//!
//! - [`gossip_packet`]: a datagram on the gossip port, on a node without a
//!   keyring and on one with the fixed test keyring; the same bytes sealed,
//!   so the decoder behind the seal is reached; the invalidation broadcast
//!   codec.
//! - [`peer_request`]: an HTTP/1.1 request on the peer port: the signature
//!   headers, the verifier (at the fixed clock [`NOW`]), the key segment and
//!   a handoff body.
//! - [`service_route`]: a service-API path and a `node.max_key`.
//! - [`config`]: a config file, and the same YAML as an embedded config.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::config::{self, Cli, ConfigError, FileConfigText, HostFacts};
use crate::http::route::{self, Route};
use crate::membership::Invalidation;
use crate::membership::fuzzing::{self as gossip, GOSSIP_LABEL};
use crate::peer::protocol;
use crate::security::keyring::KEY_LEN;
use crate::security::{
    self, Keyring, Presented, Receiver, Refusal, RequestParts, Signer, ThisNode, Verifier,
};

/// The clock every verification runs at (unix seconds); the seeds are
/// signed a few seconds before it.
pub const NOW: u64 = 1_750_000_000;
/// The largest datagram gossip takes.
const MAX_DATAGRAM: usize = 1400;
/// The path the config target's files are read from.
const CONFIG_PATH: &str = "fuzz.yaml";

/// The one keyring every target seals and signs with.
static KEYRING: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::new([[0x5a; KEY_LEN]]).expect("one key is a keyring"));

/// The node every peer request is for: the receiver the seeds are signed
/// for, started before them.
const THIS: ThisNode = ThisNode {
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8000),
    generation: 7,
    started: NOW - 100,
};
const TO_THIS: Receiver = Receiver {
    addr: THIS.addr,
    generation: THIS.generation,
};

/// A verifier for [`THIS`] node, with an empty nonce table.
fn verifier() -> Verifier {
    Verifier::for_node(THIS)
}

/// What the peer server does with a request: the signature from its
/// headers, then its body against the signed digest.
fn verify(
    verifier: &Verifier,
    keyring: &Keyring,
    presented: &Presented,
    parts: &RequestParts<'_>,
) -> Result<(), Refusal> {
    verifier.verify(keyring, presented, &parts.head(), NOW)?;
    presented.verify_body(parts.body)
}

/// Who the resigned requests come from.
fn sender() -> Signer {
    Signer::from(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        8000,
    ))
}

/// A datagram on the gossip port.
///
/// Invariants: an oversized datagram is dropped as `oversized`; on a node
/// with a keyring, bytes that do not open are dropped with the seal's
/// reason and bytes that do open do exactly what their plaintext does on a
/// node without one; sealing is transparent (what is sealed opens to the
/// same bytes and is decoded as they are); a decoded invalidation
/// broadcast encodes back to itself.
pub fn gossip_packet(data: &[u8]) {
    let keyring = &*KEYRING;
    let unsealed = gossip::receive(None, data);
    if data.len() > MAX_DATAGRAM {
        assert_eq!(unsealed, Err("oversized"));
    }

    // The same bytes on a node that seals its gossip.
    let on_sealed_node = gossip::receive(Some(keyring), data);
    match security::open(keyring, GOSSIP_LABEL, data) {
        _ if data.len() > MAX_DATAGRAM => assert_eq!(on_sealed_node, Err("oversized")),
        Ok(plain) => assert_eq!(on_sealed_node, gossip::receive(None, &plain)),
        Err(error) => assert_eq!(on_sealed_node, Err(error.reason())),
    }

    // The bytes as the plaintext of a real seal: the decoder behind it.
    let packet = security::seal(keyring, GOSSIP_LABEL, data);
    assert_eq!(
        security::open(keyring, GOSSIP_LABEL, &packet).as_deref(),
        Ok(data)
    );
    let through_seal = gossip::receive(Some(keyring), &packet);
    if packet.len() > MAX_DATAGRAM {
        assert_eq!(through_seal, Err("oversized"));
    } else {
        assert_eq!(through_seal, unsealed);
    }

    if let Ok(invalidation) = Invalidation::decode(data) {
        assert_eq!(
            Invalidation::decode(&invalidation.encode()).ok(),
            Some(invalidation)
        );
    }
}

/// A request as hyper hands it to the peer router: method, URI, headers,
/// and the bytes after the head as its body.
struct PeerRequest<'a> {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: &'a [u8],
}

impl<'a> PeerRequest<'a> {
    /// Parses an HTTP/1.1 request head with httparse (hyper's parser) into
    /// the types hyper builds; `None` for what hyper would refuse.
    fn parse(data: &'a [u8]) -> Option<Self> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Request::new(&mut slots);
        let httparse::Status::Complete(head_len) = head.parse(data).ok()? else {
            return None;
        };
        let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
        let uri: Uri = head.path?.parse().ok()?;
        let mut headers = HeaderMap::new();
        for header in head.headers.iter() {
            headers.append(
                HeaderName::from_bytes(header.name.as_bytes()).ok()?,
                HeaderValue::from_bytes(header.value).ok()?,
            );
        }
        Some(Self {
            method,
            uri,
            headers,
            body: &data[head_len..],
        })
    }

    /// What the signature covers, as the peer server reads it.
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: self.method.as_str(),
            path_and_query: self
                .uri
                .path_and_query()
                .map_or_else(|| self.uri.path(), |pq| pq.as_str()),
            content_type: self.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
            body: self.body,
        }
    }
}

/// An HTTP/1.1 request on the peer port, its body the bytes after the head.
///
/// Invariants: a missing header is refused as missing only when it is
/// absent; a verified request is within the skew window, is refused when
/// replayed, and is refused by a fresh verifier once any signed part
/// (method, path, content type, body) is changed; the same request signed
/// by the test keyring verifies; a key segment that decodes is the encoding
/// of its key; a handoff body that decodes encodes back to itself.
pub fn peer_request(data: &[u8]) {
    let Some(request) = PeerRequest::parse(data) else {
        return;
    };
    let parts = request.parts();
    let keyring = &*KEYRING;

    match Presented::from_headers(&request.headers) {
        Err(Refusal::Missing { header }) => assert!(!request.headers.contains_key(header)),
        Err(_) => {}
        Ok(presented) => {
            if verify(&verifier(), keyring, &presented, &parts).is_ok() {
                assert_accepted_only_as_signed(keyring, &presented, &parts);
            }
        }
    }

    // The same request signed with the keyring: the verifier's accepting
    // path on fuzzed methods, paths, content types and bodies.
    let mut headers = HeaderMap::new();
    sender().sign(keyring, &parts, TO_THIS, NOW, &mut headers);
    let presented = Presented::from_headers(&headers).expect("a signer's headers parse");
    assert_eq!(verify(&verifier(), keyring, &presented, &parts), Ok(()));
    assert_accepted_only_as_signed(keyring, &presented, &parts);

    check_peer_path(request.uri.path());
    if let Ok(entries) = protocol::decode_handoff(request.body) {
        assert_eq!(
            protocol::decode_handoff(&protocol::encode_handoff(&entries)),
            Ok(entries)
        );
    }
}

/// For a request a fresh verifier accepted: the skew window, the receiver,
/// the replay refusal, and refusal of every change to a signed part.
fn assert_accepted_only_as_signed(
    keyring: &Keyring,
    presented: &Presented,
    parts: &RequestParts<'_>,
) {
    assert!(NOW.abs_diff(presented.timestamp) <= 60, "{presented:?}");
    assert_eq!(presented.receiver.addr, THIS.addr, "{presented:?}");
    let verifier = verifier();
    assert_eq!(verify(&verifier, keyring, presented, parts), Ok(()));
    assert_eq!(
        verify(&verifier, keyring, presented, parts),
        Err(Refusal::ReplayedNonce)
    );

    let longer_body = [parts.body, b"x"].concat();
    let other_method = if parts.method == "GET" { "PUT" } else { "GET" };
    let longer_path = format!("{}x", parts.path_and_query);
    let other_content_type: Option<&[u8]> = match parts.content_type {
        None => Some(b""),
        Some(b"") => None,
        Some(_) => Some(b"application/x-other"),
    };
    // The body is covered by its digest, checked after the signature.
    let other_body = RequestParts {
        body: &longer_body,
        ..*parts
    };
    assert_eq!(
        verify(&self::verifier(), keyring, presented, &other_body),
        Err(Refusal::BodyMismatch),
        "accepted {other_body:?}, signed as {parts:?}"
    );
    let changed = [
        RequestParts {
            method: other_method,
            ..*parts
        },
        RequestParts {
            path_and_query: &longer_path,
            ..*parts
        },
        RequestParts {
            content_type: other_content_type,
            ..*parts
        },
    ];
    for changed in &changed {
        assert_eq!(
            verify(&self::verifier(), keyring, presented, changed),
            Err(Refusal::BadSignature),
            "accepted {changed:?}, signed as {parts:?}"
        );
    }
}

/// A key path on the peer API: the key segment, percent-decoded as the
/// router does, decodes only from its own encoding.
fn check_peer_path(path: &str) {
    let Some(rest) = path
        .strip_prefix(protocol::PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return;
    };
    let Some((group, segment)) = rest.split_once('/') else {
        return;
    };
    if group == protocol::HANDOFF_SEGMENT || segment.contains('/') {
        return;
    }
    let Ok(segment) = percent_decode_str(segment).decode_utf8() else {
        return;
    };
    if let Ok(key) = protocol::decode_key(&segment) {
        assert_eq!(URL_SAFE_NO_PAD.encode(&key), segment);
        assert!(protocol::path(group, &key).ends_with(&format!("/{segment}")));
    }
}

/// The `node.max_key` a selector byte stands for: small limits (1 to 64
/// bytes) for most, and powers of two up to `usize::MAX`, the whole range
/// the config accepts, for the rest.
fn max_key(selector: u8) -> usize {
    match selector.checked_sub(192) {
        None => usize::from(selector % 64) + 1,
        Some(shift) => usize::MAX >> shift,
    }
}

/// A service-API request target: the first byte picks `node.max_key`
/// ([`max_key`]), the rest is the request target as the service sees its
/// path.
///
/// Invariants: `/_stats` and only it is the stats route, and no other
/// `/_…` path is a key; an accepted key is non-empty, not `.` or `..`,
/// and within `max_key`; a parsed route, its group and key percent-encoded
/// again, parses to the same route; errors are 400, 404 or 414.
pub fn service_route(data: &[u8]) {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let max_key = max_key(selector);
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let path = uri.path();
    let unrooted = path.strip_prefix('/').unwrap_or(path);
    match route::parse(path, max_key) {
        Ok(Route::Stats) => assert_eq!(unrooted, "_stats"),
        Ok(Route::Key { group, key }) => {
            assert!(!unrooted.starts_with('_'), "{path} is reserved");
            assert!(!key.is_empty() && key != "." && key != "..", "{key:?}");
            assert!(key.len() <= max_key, "{} > {max_key}", key.len());
            let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
            let again = match &group {
                Some(group) => format!("/{}/{}", encode(group), encode(&key)),
                None => format!("/{}", encode(&key)),
            };
            let reparsed = route::parse(&again, max_key).map_err(|e| e.message);
            assert_eq!(reparsed, Ok(Route::Key { group, key }), "{again}");
        }
        Err(error) => assert!(
            [
                StatusCode::BAD_REQUEST,
                StatusCode::NOT_FOUND,
                StatusCode::URI_TOO_LONG
            ]
            .contains(&error.status()),
            "{path}: {} {}",
            error.status(),
            error.message
        ),
    }
}

/// Host facts that do not depend on the machine the fuzzer runs on.
fn fuzz_host() -> HostFacts {
    HostFacts {
        hostname: "fuzz-host".into(),
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))],
        ipv6: false,
        ..HostFacts::default()
    }
}

/// A config file's text (UTF-8; other bytes cannot be read as one), as
/// `shoal -c` and `check-config` resolve it and as an embedded config.
///
/// Invariants: every error says what is wrong, names a field or a line,
/// gives a line within the text, and names the file when it came from
/// one; a config that resolves has groups (from a file), a default group
/// among them, values within what the cache can weigh, and a peer timeout
/// beyond every loader's.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = fuzz_host();
    let file = FileConfigText {
        path: CONFIG_PATH.into(),
        text: text.to_owned(),
    };
    match config::resolve(&Cli::default(), Some(&file), &host) {
        Ok(config) => {
            assert!(!config.groups.is_empty(), "a file with no groups resolved");
            assert_resolved(&config);
        }
        Err(error) => assert_names_its_place(&error, text, Some(CONFIG_PATH)),
    }
    match config::resolve_embedded(text, &host) {
        Ok(config) => assert_resolved(&config),
        Err(error) => assert_names_its_place(&error, text, None),
    }
}

fn assert_resolved(config: &config::Config) {
    if let Some(default) = &config.default_group {
        assert!(config.groups.contains_key(default), "{default}");
    }
    assert!(config.node.max_key >= 1);
    for (name, group) in &config.groups {
        assert!(group.max_value <= 1 << 30, "{name}: {}", group.max_value);
        assert!(
            (0.0..=1.0).contains(&group.hot_fraction),
            "{name}: {}",
            group.hot_fraction
        );
        assert!(
            config.peer.timeout > group.loader.max_duration(),
            "{name}: peer timeout {:?}, loader {:?}",
            config.peer.timeout,
            group.loader.max_duration()
        );
        let freshness = &group.freshness;
        for fraction in [freshness.refresh_ahead, freshness.ttl_jitter] {
            assert!((0.0..1.0).contains(&fraction), "{name}: {freshness:?}");
        }
        let origin = &group.origin;
        assert!(
            origin.max_concurrent_loads.is_some() || origin.max_queued_loads == 0,
            "{name}: a queue without a bound: {origin:?}"
        );
        assert!(
            origin.queue_wait + group.loader.max_duration() <= config.peer.timeout,
            "{name}: a queued load could outlast the peer timeout: {origin:?}"
        );
        assert!(
            origin
                .circuit_breaker
                .is_none_or(|b| b.failures > 0 && !b.cool_down.is_zero()),
            "{name}: {origin:?}"
        );
    }
}

fn assert_names_its_place(error: &ConfigError, text: &str, file: Option<&str>) {
    let rendered = error.to_string();
    assert!(!error.message.trim().is_empty(), "no message: {rendered}");
    assert!(
        error.field.is_some() || error.line.is_some(),
        "names neither a field nor a line: {rendered}"
    );
    if let Some(field) = &error.field {
        assert!(rendered.contains(field.as_str()), "{rendered}");
    }
    if let Some(line) = error.line {
        // YAML breaks lines at LF, CRLF and a lone CR.
        let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() as u64;
        assert!(
            (1..=lines + 1).contains(&line),
            "line {line} of {lines}: {rendered}"
        );
    }
    if let Some(file) = file {
        assert!(rendered.contains(file), "does not name {file}: {rendered}");
    }
}

/// One seed of a target's corpus.
pub struct Seed {
    /// The fuzz target it is for.
    pub target: &'static str,
    /// Its file name in `fuzz/corpus/<target>/`.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Seeds made by the real code: gossip packets from a real exchange,
/// plain and sealed; requests signed by the real signer; routes; the
/// documented config and the demo's. `configs` are more config files to
/// seed with (the deploy/ and README examples), by name.
pub fn seeds(configs: &[(String, String)]) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target, name: String, bytes: Vec<u8>| {
        seeds.push(Seed {
            target,
            name,
            bytes,
        })
    };
    let keyring = &*KEYRING;
    for (index, packet) in gossip::sample_datagrams().into_iter().enumerate() {
        let sealed = security::seal(keyring, GOSSIP_LABEL, &packet);
        add("gossip_packet", format!("plain-{index}"), packet);
        add("gossip_packet", format!("sealed-{index}"), sealed);
    }
    let invalidation = Invalidation {
        id: 1,
        group: "heavy".into(),
        digest: 42,
        owner: None,
        superseded: 0,
    };
    add(
        "gossip_packet",
        "invalidation".into(),
        invalidation.encode(),
    );

    for (name, method, path, content_type, body) in peer_seed_requests() {
        add(
            "peer_request",
            name.into(),
            signed_request(method, &path, content_type, &body),
        );
    }

    for (name, target) in [
        ("default-group", "/foo"),
        ("group-key", "/heavy/foo"),
        ("slash-key", "/heavy/a/b%2Fc"),
        ("utf8-key", "/heavy/%E2%9C%93"),
        ("dot-key", "/heavy/%2E%2E"),
        ("stats", "/_stats"),
        ("reserved", "/_members"),
        ("query", "/heavy/foo?x=1"),
    ] {
        let mut bytes = vec![63];
        bytes.extend_from_slice(target.as_bytes());
        add("service_route", name.into(), bytes);
    }

    for (name, text) in configs {
        add("config", name.clone(), text.clone().into_bytes());
    }
    seeds
}

/// A seed request: name, method, path, content type, body.
type SeedRequest = (
    &'static str,
    &'static str,
    String,
    Option<&'static str>,
    Vec<u8>,
);

/// Requests as the peer client sends them.
fn peer_seed_requests() -> Vec<SeedRequest> {
    let handoff = protocol::encode_handoff(&[crate::cache::HandedOff {
        key: "a/b".into(),
        value: crate::cache::Value::new(
            b"Value of a/b".to_vec(),
            Some(HeaderValue::from_static("text/plain")),
        ),
        ttl: Some(std::time::Duration::from_millis(1500)),
        version: crate::cache::Version(42 << 16),
    }]);
    vec![
        (
            "get",
            "GET",
            protocol::path("heavy", "foo"),
            None,
            Vec::new(),
        ),
        (
            "peek",
            "GET",
            format!(
                "{}?{}",
                protocol::path("heavy", "a/b"),
                protocol::PEEK_QUERY
            ),
            None,
            Vec::new(),
        ),
        (
            "put",
            "PUT",
            protocol::path("heavy", "foo"),
            Some("text/plain"),
            b"the value".to_vec(),
        ),
        (
            "delete",
            "DELETE",
            protocol::path("heavy", "foo"),
            None,
            Vec::new(),
        ),
        (
            "handoff",
            "POST",
            protocol::handoff_path("heavy"),
            Some("application/octet-stream"),
            handoff,
        ),
    ]
}

/// The bytes of a request signed by the real signer at [`NOW`] - 1.
fn signed_request(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let parts = RequestParts {
        method,
        path_and_query: path,
        content_type: content_type.map(str::as_bytes),
        body,
    };
    let mut headers = HeaderMap::new();
    sender().sign(&KEYRING, &parts, TO_THIS, NOW - 1, &mut headers);
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n");
    if let Some(content_type) = content_type {
        text.push_str(&format!("content-type: {content_type}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn key_route(group: Option<&str>, key: &str) -> Route<'static> {
        Route::Key {
            group: group.map(|g| Cow::Owned(g.to_owned())),
            key: Cow::Owned(key.to_owned()),
        }
    }

    #[test]
    fn every_seed_passes_its_target() {
        let seeds = seeds(&[(
            "demo".into(),
            "groups: { heavy: { loader: { demo: {} } } }\n".into(),
        )]);
        for target in ["gossip_packet", "peer_request", "service_route", "config"] {
            assert!(seeds.iter().any(|s| s.target == target), "{target}");
        }
        for seed in &seeds {
            match seed.target {
                "gossip_packet" => gossip_packet(&seed.bytes),
                "peer_request" => peer_request(&seed.bytes),
                "service_route" => service_route(&seed.bytes),
                _ => config(&seed.bytes),
            }
        }
    }

    #[test]
    fn sealed_seeds_reach_the_decoder() {
        let packets = gossip::sample_datagrams();
        assert!(packets.len() >= 2, "{}", packets.len());
        for packet in &packets {
            let sealed = security::seal(&KEYRING, GOSSIP_LABEL, packet);
            let received = gossip::receive(Some(&KEYRING), &sealed).expect("a real packet");
            assert!(received.members >= 1, "{received:?}");
        }
    }

    #[test]
    fn signed_seeds_verify() {
        for (_, method, path, content_type, body) in peer_seed_requests() {
            let bytes = signed_request(method, &path, content_type, &body);
            let request = PeerRequest::parse(&bytes).expect("a request");
            let presented = Presented::from_headers(&request.headers).expect("signed");
            assert_eq!(
                verify(&verifier(), &KEYRING, &presented, &request.parts()),
                Ok(())
            );
        }
    }

    #[test]
    fn routes_parse_as_the_service_parses_them() {
        assert_eq!(
            route::parse("/heavy/a%2Fb", max_key(63)).ok(),
            Some(key_route(Some("heavy"), "a/b"))
        );
        assert_eq!(max_key(0), 1);
        assert_eq!(max_key(192), usize::MAX);
        assert_eq!(max_key(255), 1);
    }
}
