//! The peer API's wire format, versioned under `/_shoal/v1/`.
//!
//! - `GET /_shoal/v1/{group}/{key}`: the value, answered by the receiver from
//!   its own caches or loader, never forwarded. Headers: `content-type`,
//!   `x-shoal-ttl-ms` (time left to live; absent: no expiry),
//!   `x-shoal-no-store: 1` (the origin forbade keeping copies),
//!   `x-shoal-version` (the write the value came from).
//!   - `?as=successor`: the sender cannot reach the key's owner and found the
//!     receiver next on the ring; the receiver loads as owner-in-waiting.
//!   - `?as=peek`: answered from the receiver's caches only, never loaded;
//!     a miss is 404 with `x-shoal-error: not-cached`.
//! - `PUT /_shoal/v1/{group}/{key}`: store the body as owner. 204 with the
//!   write's `x-shoal-version`.
//! - `DELETE /_shoal/v1/{group}/{key}`: drop every copy the receiver holds and
//!   refuse copies up to the request's `x-shoal-version` (absent: up to the
//!   receiver's clock, as at the owner). 204 with the version recorded.
//! - `POST /_shoal/v1/_handoff/{group}`: entries a leaving node hands to their
//!   next owner (body: [`encode_handoff`]). 200 with JSON
//!   `{"accepted": N, "refused": N}`.
//! - Errors: JSON with `x-shoal-error` naming the kind; an origin timeout also
//!   carries `x-shoal-timeout-ms` (both faces answer errors alike: see
//!   [`crate::wire`], where those two header names are defined).
//!
//! Keys travel as unpadded base64url: no URL normalisation (dot segments,
//! percent-decoding, slash merging) can change them. A node that predates
//! versions sends none: its copies count as older than any write.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::cache::{HandedOff, Value, Version};

pub const PREFIX: &str = "/_shoal/v1";
/// The path segment after [`PREFIX`] that handoffs use; groups cannot be
/// named so (names starting with `_` are reserved).
pub const HANDOFF_SEGMENT: &str = "_handoff";
// The headers only the peer API uses; those both faces use are in
// `crate::wire::headers`.
pub const TTL_HEADER: &str = "x-shoal-ttl-ms";
pub const NO_STORE_HEADER: &str = "x-shoal-no-store";
pub const VERSION_HEADER: &str = "x-shoal-version";
/// On a 401 for a request signed for an earlier run of the receiver: the
/// generation the receiver started with, for the sender to sign for once
/// more (its membership may not have caught up with a restart yet).
pub const GENERATION_HEADER: &str = "x-shoal-generation";

/// The path of a key on the peer API.
pub fn path(group: &str, key: &str) -> String {
    format!("{PREFIX}/{group}/{}", URL_SAFE_NO_PAD.encode(key))
}

/// The path a group's handoffs are posted to.
pub fn handoff_path(group: &str) -> String {
    format!("{PREFIX}/{HANDOFF_SEGMENT}/{group}")
}

/// The query of a fetch that asks for more than the owner's answer.
pub const PEEK_QUERY: &str = "as=peek";
pub const SUCCESSOR_QUERY: &str = "as=successor";

/// A version as a header value.
pub fn version_header(version: Version) -> HeaderValue {
    HeaderValue::from(version.0)
}

/// A version from a header value; `None` if absent or malformed.
pub fn parse_version(value: Option<&HeaderValue>) -> Option<Version> {
    value?.to_str().ok()?.parse().ok().map(Version)
}

/// One handed-off entry on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct WireEntry {
    key: String,
    value: Vec<u8>,
    content_type: Option<String>,
    ttl_ms: Option<u64>,
    version: u64,
}

/// The body of a handoff request (postcard: compact, and already how gossip
/// travels).
pub fn encode_handoff(entries: &[HandedOff]) -> Vec<u8> {
    let wire: Vec<WireEntry> = entries
        .iter()
        .map(|entry| WireEntry {
            key: entry.key.clone(),
            value: entry.value.bytes.to_vec(),
            // Any UTF-8 content type, not only visible ASCII (`to_str`):
            // one that a handoff brought in goes on with the next handoff
            // (found by the peer_request fuzz target).
            content_type: entry
                .value
                .content_type
                .as_ref()
                .and_then(|ct| String::from_utf8(ct.as_bytes().to_vec()).ok()),
            ttl_ms: entry
                .ttl
                .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            version: entry.version.0,
        })
        .collect();
    postcard::to_stdvec(&wire).unwrap_or_default()
}

/// Decodes a handoff request's body.
pub fn decode_handoff(body: &[u8]) -> Result<Vec<HandedOff>, String> {
    let wire: Vec<WireEntry> =
        postcard::from_bytes(body).map_err(|e| format!("malformed handoff body: {e}"))?;
    wire.into_iter()
        .map(|entry| {
            let content_type =
                match entry.content_type {
                    Some(ct) => Some(HeaderValue::from_str(&ct).map_err(|_| {
                        "a handed-off content type is not a header value".to_owned()
                    })?),
                    None => None,
                };
            Ok(HandedOff {
                key: entry.key,
                value: Value::new(entry.value, content_type),
                ttl: entry.ttl_ms.map(Duration::from_millis),
                version: Version(entry.version),
            })
        })
        .collect()
}

/// Decodes a key from its path segment.
pub fn decode_key(segment: &str) -> Result<String, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| format!("the key segment is not base64url: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the key is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_round_trip() {
        for key in ["plain", "../..", ".", "a/b%2Fc", "x\r\ny", "ünï", "?#&"] {
            let path = path("g", key);
            let segment = path.rsplit('/').next().expect("segment");
            assert!(
                segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(decode_key(segment).as_deref(), Ok(key));
        }
    }

    #[test]
    fn handoffs_survive_the_round_trip() {
        let entries = vec![
            HandedOff {
                key: "a/b".into(),
                value: Value::new(vec![1, 2, 3], Some(HeaderValue::from_static("text/plain"))),
                ttl: Some(Duration::from_millis(1500)),
                version: Version(42),
            },
            HandedOff {
                key: "ü".into(),
                value: Value::new(Vec::new(), None),
                ttl: None,
                version: Version(u64::MAX),
            },
        ];
        assert_eq!(decode_handoff(&encode_handoff(&entries)), Ok(entries));
        assert!(decode_handoff(&[0xff, 0xff, 0xff]).is_err());
        assert_eq!(decode_handoff(&encode_handoff(&[])), Ok(Vec::new()));
    }

    /// Found by the peer_request fuzz target: a handed-off entry whose
    /// content type is UTF-8 but not visible ASCII lost it when handed off
    /// again.
    #[test]
    fn a_utf8_content_type_survives_a_second_handoff() {
        let entries = vec![HandedOff {
            key: "k".into(),
            value: Value::new(
                b"v".to_vec(),
                Some(
                    HeaderValue::from_bytes("text/plain; name=\"é\"".as_bytes())
                        .expect("a header value"),
                ),
            ),
            ttl: None,
            version: Version(1),
        }];
        let once = decode_handoff(&encode_handoff(&entries)).expect("decodes");
        assert_eq!(once, entries);
        assert_eq!(decode_handoff(&encode_handoff(&once)), Ok(entries));
    }

    #[test]
    fn bad_segments_are_errors() {
        assert!(decode_key("%%%").is_err());
        assert!(decode_key("_w").is_err(), "not UTF-8");
    }
}
