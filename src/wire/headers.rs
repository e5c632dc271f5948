//! Header names outside any one face's protocol: the error response's, which
//! both faces send, the service API's `x-shoal-source`, and how both mark a
//! stale answer. Every `x-shoal-*`
//! name is defined once: these here, the peer API's own in `peer::protocol`,
//! the signature's in `security::signing`.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// The kind of an error ([`super::ErrorKind`]), on the service, admin and
/// peer APIs alike.
pub const ERROR_HEADER: &str = "x-shoal-error";
/// For origin timeouts: how long the origin had, in milliseconds, for peers
/// to pass on.
pub const TIMEOUT_HEADER: &str = "x-shoal-timeout-ms";
/// Where a value came from, on the service API.
pub const SOURCE_HEADER: &str = "x-shoal-source";
/// On a value served past its TTL (stale-while-revalidate or
/// stale-if-error), on the service and peer APIs alike: `1`, with the
/// standard `Age` header saying how old the value is.
pub const STALE_HEADER: &str = "x-shoal-stale";

/// Marks an answer as stale, `age` old (whole seconds, as `Age` counts).
pub fn mark_stale(headers: &mut HeaderMap, age: Duration) {
    headers.insert(STALE_HEADER, HeaderValue::from_static("1"));
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
}

/// The age of an answer marked stale; `None` for a fresh one.
pub fn stale_age(headers: &HeaderMap) -> Option<Duration> {
    headers.get(STALE_HEADER)?;
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(Duration::from_secs(age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_mark_round_trips_and_its_absence_is_fresh() {
        let mut headers = HeaderMap::new();
        assert_eq!(stale_age(&headers), None);
        mark_stale(&mut headers, Duration::from_millis(12_900));
        assert_eq!(headers[STALE_HEADER], "1");
        assert_eq!(headers[header::AGE], "12");
        assert_eq!(stale_age(&headers), Some(Duration::from_secs(12)));
        headers.insert(header::AGE, HeaderValue::from_static("junk"));
        assert_eq!(stale_age(&headers), Some(Duration::ZERO));
    }
}
