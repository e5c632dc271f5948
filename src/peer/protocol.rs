//! The peer API's wire format, versioned under `/_shoal/v1/`.
//!
//! - `GET /_shoal/v1/{group}/{key}`: the value, answered by the receiver from
//!   its own caches or loader, never forwarded. Headers: `content-type`,
//!   `x-shoal-ttl-ms` (time left to live; absent: no expiry),
//!   `x-shoal-no-store: 1` (the origin forbade keeping copies).
//! - `PUT /_shoal/v1/{group}/{key}`: store the body as owner. 204.
//! - `DELETE /_shoal/v1/{group}/{key}`: drop every copy the receiver holds. 204.
//! - Errors: JSON with `x-shoal-error` naming the kind; an origin timeout also
//!   carries `x-shoal-timeout-ms`.
//!
//! Keys travel as unpadded base64url: no URL normalisation (dot segments,
//! percent-decoding, slash merging) can change them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const PREFIX: &str = "/_shoal/v1";
pub const TTL_HEADER: &str = "x-shoal-ttl-ms";
pub const NO_STORE_HEADER: &str = "x-shoal-no-store";
pub const TIMEOUT_HEADER: &str = "x-shoal-timeout-ms";
/// The kind of an error, on the service and peer APIs alike.
pub const ERROR_HEADER: &str = "x-shoal-error";
/// Where a value came from, on the service API.
pub const SOURCE_HEADER: &str = "x-shoal-source";

/// The path of a key on the peer API.
pub fn path(group: &str, key: &str) -> String {
    format!("{PREFIX}/{group}/{}", URL_SAFE_NO_PAD.encode(key))
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
    fn bad_segments_are_errors() {
        assert!(decode_key("%%%").is_err());
        assert!(decode_key("_w").is_err(), "not UTF-8");
    }
}
