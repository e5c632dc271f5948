//! How a service-API path names a group and a key. Pure.
//!
//! Two or more segments: the first names the group, the rest (percent-decoded,
//! so a key may hold `/`, written `%2F` or literally) is the key. One segment:
//! a key of the default group. `/_…` paths are reserved.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::wire::{ApiError, ErrorKind};

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/_stats`
    Stats,
    /// A key; `group` is `None` for the default group.
    Key {
        group: Option<Cow<'a, str>>,
        key: Cow<'a, str>,
    },
}

pub fn parse(path: &str, max_key: usize) -> Result<Route<'_>, ApiError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if let Some(reserved) = path.strip_prefix('_') {
        return match reserved {
            "stats" => Ok(Route::Stats),
            _ => Err(ApiError::new(
                ErrorKind::NotFound,
                format!("/{path} is not a service path; paths starting with /_ are reserved"),
            )),
        };
    }
    let (group, key) = match path.split_once('/') {
        Some((group, key)) => (Some(decode(group, "group")?), key),
        None => (None, path),
    };
    let key = parse_key(key, max_key)?;
    Ok(Route::Key { group, key })
}

/// Decodes and checks a key as the service and admin APIs accept it.
pub fn parse_key(raw: &str, max_key: usize) -> Result<Cow<'_, str>, ApiError> {
    // An encoded key is never shorter than the key, so this check also
    // spares decoding giant paths. Saturating: `node.max_key` may be any
    // size up to u64::MAX (found by the service_route fuzz target).
    if raw.len() > max_key.saturating_mul(3) {
        return Err(key_too_long(max_key));
    }
    let key = decode(raw, "key")?;
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "the key is empty: ask for /{group}/{key} or /{key}",
        ));
    }
    if key == "." || key == ".." {
        return Err(ApiError::bad_request(format!(
            "`{key}` cannot be a key: URLs fold it away, so no node could pass it on"
        )));
    }
    if key.len() > max_key {
        return Err(key_too_long(max_key));
    }
    Ok(key)
}

fn key_too_long(max_key: usize) -> ApiError {
    ApiError::new(
        ErrorKind::KeyTooLong,
        format!("the key is longer than {max_key} bytes (node.max_key)"),
    )
}

fn decode<'a>(raw: &'a str, what: &str) -> Result<Cow<'a, str>, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("the {what} is not UTF-8 once percent-decoded")))
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn key(group: Option<&str>, key: &str) -> Route<'static> {
        Route::Key {
            group: group.map(|g| Cow::Owned(g.to_owned())),
            key: Cow::Owned(key.to_owned()),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(parse("/foo", 4096).ok(), Some(key(None, "foo")));
        assert_eq!(
            parse("/heavy/foo", 4096).ok(),
            Some(key(Some("heavy"), "foo"))
        );
        assert_eq!(
            parse("/heavy/a/b", 4096).ok(),
            Some(key(Some("heavy"), "a/b"))
        );
        assert_eq!(
            parse("/heavy/a%2Fb", 4096).ok(),
            Some(key(Some("heavy"), "a/b"))
        );
        assert_eq!(
            parse("/heavy/%E2%9C%93", 4096).ok(),
            Some(key(Some("heavy"), "✓"))
        );
        assert_eq!(parse("/_stats", 4096).ok(), Some(Route::Stats));
    }

    #[test]
    fn bad_paths() {
        let status = |path: &str| parse(path, 16).err().map(|e| e.status());
        assert_eq!(status("/"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/heavy/"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/heavy/."), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/heavy/.."), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/heavy/%2E%2E"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/heavy/%FF"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/_nope"), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            status(&format!("/heavy/{}", "k".repeat(17))),
            Some(StatusCode::URI_TOO_LONG)
        );
        assert_eq!(
            status(&format!("/heavy/{}", "%41".repeat(17))),
            Some(StatusCode::URI_TOO_LONG)
        );
        assert!(parse(&format!("/heavy/{}", "k".repeat(16)), 16).is_ok());
    }

    /// Found by the service_route fuzz target: a `node.max_key` above a
    /// third of `usize::MAX` overflowed the encoded-length check.
    #[test]
    fn the_largest_key_limits_do_not_overflow() {
        for max_key in [usize::MAX, usize::MAX / 3 + 1] {
            assert_eq!(
                parse("/heavy/foo", max_key).ok(),
                Some(key(Some("heavy"), "foo"))
            );
        }
    }
}
