//! The built-in [`Loader`]s, which a group's `loader:` config names.
//!
//! - `demo` ([`DemoLoader`]): sleeps, then answers `Value of <key>` (the
//!   original groupcache example's slow computation).
//! - `http`: GETs the key from an HTTP origin. The key is percent-encoded as
//!   one path segment, so no key can change the origin's host, the path above
//!   it, the query or the headers.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{DynLoader, Fresh, LoadError, Loader, Value};
use crate::config::{LoaderConfig, UrlTemplate};
use crate::error_chain;
use headers::{CacheControl, HeaderMapExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters is escaped: `/`, `?`, `#`,
/// `%`, CR and LF included.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Sleeps, then answers `Value of <key>` (the original groupcache
/// example's slow computation).
#[derive(Debug, Clone)]
pub struct DemoLoader {
    delay: Duration,
}

impl DemoLoader {
    /// A loader that takes `delay` for every key.
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl Loader for DemoLoader {
    async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
        tokio::time::sleep(self.delay).await;
        Ok(Fresh::new(Value::new(
            format!("Value of {key}"),
            Some(HeaderValue::from_static("text/plain; charset=utf-8")),
        )))
    }
}

/// GETs the key from an HTTP origin, as the config's `loader.http` says.
pub(crate) struct HttpLoader {
    client: reqwest::Client,
    url: UrlTemplate,
    timeout: Duration,
    headers: HeaderMap,
}

/// The loader a group's config names (`None`: one the embedding program
/// must give); HTTP loaders share `client`'s connection pool.
pub(crate) fn from_config(
    config: &LoaderConfig,
    client: &reqwest::Client,
) -> Option<Arc<dyn DynLoader>> {
    match config {
        LoaderConfig::Demo { delay } => Some(Arc::new(DemoLoader::new(*delay))),
        LoaderConfig::Http {
            url,
            timeout,
            headers,
        } => Some(Arc::new(HttpLoader {
            client: client.clone(),
            url: url.clone(),
            timeout: *timeout,
            headers: headers.clone(),
        })),
        LoaderConfig::Embedded => None,
    }
}

/// The origin URL for `key`: the key as one percent-encoded path segment.
fn origin_url(template: &UrlTemplate, key: &str) -> Result<reqwest::Url, LoadError> {
    if key == "." || key == ".." {
        // URL parsers fold these segments away, whatever their encoding.
        return Err(LoadError::Failure(format!(
            "the key `{key}` cannot be sent to an origin as a path segment"
        )));
    }
    let url = format!(
        "{}{}{}",
        template.before,
        utf8_percent_encode(key, PATH_SEGMENT),
        template.after
    );
    reqwest::Url::parse(&url).map_err(|e| LoadError::Failure(format!("bad origin URL: {e}")))
}

impl Loader for HttpLoader {
    async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
        let url = origin_url(&self.url, key)?;
        let response = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(LoadError::NotFound);
        }
        if !status.is_success() {
            return Err(LoadError::Failure(format!("the origin answered {status}")));
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let (max_age, no_store) = freshness(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(Fresh {
            ttl: max_age,
            no_store,
            ..Fresh::new(Value::new(bytes, content_type))
        })
    }
}

impl HttpLoader {
    fn transport_error(&self, error: reqwest::Error) -> LoadError {
        if error.is_timeout() {
            return LoadError::Timeout(self.timeout);
        }
        // Without the URL: it holds the key and may hold credentials.
        // reqwest's own message omits the cause ("connection refused").
        let detail = error_chain::with_causes(&error.without_url());
        LoadError::Failure(format!("cannot reach the origin: {detail}"))
    }
}

/// Reads `Cache-Control` (and `Age`) into a max-age and a no-store flag.
fn freshness(headers: &HeaderMap) -> (Option<Duration>, bool) {
    let Some(control) = headers.typed_get::<CacheControl>() else {
        return (None, false);
    };
    let no_store = control.no_store() || control.no_cache() || control.private();
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let max_age = control
        .s_max_age()
        .or(control.max_age())
        .map(|max_age| max_age.saturating_sub(age));
    (max_age, no_store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> UrlTemplate {
        UrlTemplate {
            before: "http://origin:8080/users/".into(),
            after: "?v=1".into(),
        }
    }

    #[test]
    fn keys_stay_inside_one_segment() {
        let cases = [
            ("plain", "/users/plain"),
            ("../admin", "/users/..%2Fadmin"),
            ("a/b", "/users/a%2Fb"),
            ("a?x=1", "/users/a%3Fx%3D1"),
            ("a#b", "/users/a%23b"),
            ("%2e%2e", "/users/%252e%252e"),
            ("x\r\nHost: evil", "/users/x%0D%0AHost%3A%20evil"),
            ("ünï", "/users/%C3%BCn%C3%AF"),
        ];
        for (key, path) in cases {
            let url = origin_url(&template(), key).expect("encodable");
            assert_eq!(url.path(), path, "key {key:?}");
            assert_eq!(url.query(), Some("v=1"), "key {key:?}");
            assert_eq!(url.host_str(), Some("origin"), "key {key:?}");
        }
    }

    #[test]
    fn dot_keys_are_refused() {
        assert!(origin_url(&template(), "..").is_err());
        assert!(origin_url(&template(), ".").is_err());
        assert!(origin_url(&template(), "...").is_ok());
    }

    #[test]
    fn cache_control() {
        let mut headers = HeaderMap::new();
        assert_eq!(freshness(&headers), (None, false));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        assert_eq!(freshness(&headers), (Some(Duration::from_secs(60)), false));
        headers.insert(header::AGE, HeaderValue::from_static("20"));
        assert_eq!(freshness(&headers), (Some(Duration::from_secs(40)), false));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert!(freshness(&headers).1);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, s-maxage=5"),
        );
        assert_eq!(freshness(&headers).0, Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn demo_loader_answers_after_its_delay() {
        let loader = DemoLoader::new(Duration::from_millis(400));
        let started = tokio::time::Instant::now();
        let loaded = loader.load("foo").await.expect("demo never fails");
        assert_eq!(loaded.value.bytes, bytes::Bytes::from("Value of foo"));
        assert_eq!(started.elapsed(), Duration::from_millis(400));
    }
}
