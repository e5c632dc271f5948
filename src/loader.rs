//! The built-in [`Loader`]s, which a group's `loader:` config names.
//!
//! - `demo` ([`DemoLoader`]): sleeps, then answers `Value of <key>` (the
//!   original groupcache example's slow computation).
//! - `http`: GETs the key from an HTTP origin. The key is percent-encoded as
//!   one path segment, so no key can change the origin's host, the path above
//!   it, the query or the headers.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{
    DynLoader, Fresh, LoadError, Loader, NotModified, Reloaded, StaleDirectives, Validators, Value,
};
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
        match self.get(key, &Validators::default()).await? {
            Reloaded::Modified(fresh) => Ok(fresh),
            // Only a conditional request may be answered 304.
            Reloaded::NotModified(_) => Err(LoadError::Failure(
                "the origin answered 304 Not Modified to a request that was not conditional".into(),
            )),
        }
    }

    async fn reload(&self, key: &str, validators: &Validators) -> Result<Reloaded, LoadError> {
        self.get(key, validators).await
    }
}

impl HttpLoader {
    /// GETs the key, conditionally when there are validators: `If-None-Match`
    /// with the `ETag`, `If-Modified-Since` with the `Last-Modified`.
    async fn get(&self, key: &str, validators: &Validators) -> Result<Reloaded, LoadError> {
        let url = origin_url(&self.url, key)?;
        let mut headers = self.headers.clone();
        if let Some(etag) = &validators.etag {
            headers.insert(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = &validators.last_modified {
            headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
        }
        let response = self
            .client
            .get(url)
            .headers(headers)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let freshness = ResponseFreshness::of(response.headers());
        if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
            return Ok(Reloaded::NotModified(NotModified {
                ttl: freshness.max_age,
                validators: freshness.validators,
                stale_directives: freshness.stale_directives,
                age: freshness.age,
            }));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(LoadError::NotFound);
        }
        if !status.is_success() {
            return Err(LoadError::Failure(format!("the origin answered {status}")));
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(Reloaded::Modified(
            Fresh {
                ttl: freshness.max_age,
                no_store: freshness.no_store,
                age: freshness.age,
                ..Fresh::new(Value::new(bytes, content_type))
            }
            .with_validators(freshness.validators)
            .with_stale_directives(freshness.stale_directives),
        ))
    }

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

/// What an origin's response says about keeping its value (RFC 9111,
/// RFC 5861): `Cache-Control`, `Age`, `ETag` and `Last-Modified`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ResponseFreshness {
    /// `s-maxage` or `max-age`, less the `Age`.
    max_age: Option<Duration>,
    /// `no-store`, `no-cache` or `private`.
    no_store: bool,
    age: Duration,
    stale_directives: StaleDirectives,
    validators: Validators,
}

impl ResponseFreshness {
    fn of(headers: &HeaderMap) -> Self {
        let age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        let validators = Validators {
            etag: headers.get(header::ETAG).cloned(),
            last_modified: headers.get(header::LAST_MODIFIED).cloned(),
        };
        let stale_directives = StaleDirectives {
            while_revalidate: directive_seconds(headers, "stale-while-revalidate"),
            if_error: directive_seconds(headers, "stale-if-error"),
        };
        let (max_age, no_store) = match headers.typed_get::<CacheControl>() {
            None => (None, false),
            Some(control) => (
                control
                    .s_max_age()
                    .or(control.max_age())
                    .map(|max_age| max_age.saturating_sub(age)),
                control.no_store() || control.no_cache() || control.private(),
            ),
        };
        Self {
            max_age,
            no_store,
            age,
            stale_directives,
            validators,
        }
    }
}

/// A `Cache-Control` directive's delta-seconds (`name=N`), which the
/// `headers` crate does not parse for RFC 5861's two. Directive names are
/// case-insensitive; a malformed value counts as absent.
fn directive_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|directive| {
            let (directive, seconds) = directive.split_once('=')?;
            if !directive.trim().eq_ignore_ascii_case(name) {
                return None;
            }
            let seconds = seconds.trim().trim_matches('"');
            seconds.parse::<u64>().ok().map(Duration::from_secs)
        })
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
        let of = |headers: &HeaderMap| {
            let freshness = ResponseFreshness::of(headers);
            (freshness.max_age, freshness.no_store)
        };
        let mut headers = HeaderMap::new();
        assert_eq!(of(&headers), (None, false));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        assert_eq!(of(&headers), (Some(Duration::from_secs(60)), false));
        headers.insert(header::AGE, HeaderValue::from_static("20"));
        assert_eq!(of(&headers), (Some(Duration::from_secs(40)), false));
        assert_eq!(ResponseFreshness::of(&headers).age, Duration::from_secs(20));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert!(of(&headers).1);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, s-maxage=5"),
        );
        assert_eq!(of(&headers).0, Some(Duration::ZERO));
    }

    #[test]
    fn stale_directives_and_validators() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, Stale-While-Revalidate=30"),
        );
        headers.append(
            header::CACHE_CONTROL,
            HeaderValue::from_static("stale-if-error=\"600\", stale-x=1"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Wed, 02 Dec 2026 12:00:00 GMT"),
        );
        let freshness = ResponseFreshness::of(&headers);
        assert_eq!(
            freshness.stale_directives,
            StaleDirectives {
                while_revalidate: Some(Duration::from_secs(30)),
                if_error: Some(Duration::from_secs(600)),
            }
        );
        assert_eq!(
            freshness.validators.etag.as_ref().map(|v| v.as_bytes()),
            Some(&b"\"v1\""[..])
        );
        assert!(freshness.validators.last_modified.is_some());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("stale-while-revalidate=soon, stale-if-error"),
        );
        headers.remove(header::ETAG);
        let freshness = ResponseFreshness::of(&headers);
        assert_eq!(
            freshness.stale_directives,
            StaleDirectives::default(),
            "malformed is absent"
        );
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
