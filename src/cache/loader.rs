//! What the cache needs from an origin: the [`Loader`] trait. The built-in
//! demo and HTTP loaders (`crate::loader`) implement it, and so does any
//! loader a program that embeds shoal writes in Rust.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use thiserror::Error;

use super::freshness::StaleDirectives;
use super::value::{Fresh, Validators};

/// Where a group's values come from when no node holds them: called once
/// per key for the whole cluster, by the key's owner, however many ask.
///
/// ```
/// use std::time::Duration;
/// use shoal::{Fresh, LoadError, Loader, Value};
///
/// struct Users;
///
/// impl Loader for Users {
///     async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
///         match key.strip_prefix("user-") {
///             Some(id) => Ok(Fresh::new(Value::new(format!("{{\"id\":{id:?}}}"), None))
///                 .with_ttl(Duration::from_secs(60))),
///             None => Err(LoadError::NotFound),
///         }
///     }
/// }
/// ```
pub trait Loader: Send + Sync + 'static {
    /// The value for `key`, with how long it may be kept
    /// ([`Fresh::with_ttl`], capped by the group's `ttl`) or whether it may
    /// be kept at all ([`Fresh::not_stored`]).
    ///
    /// [`LoadError::NotFound`] is remembered for the group's `negative_ttl`
    /// and answered as 404; other errors are answered as 502 or 504 and not
    /// remembered. A load that takes longer than the peer timeout fails the
    /// requests of other nodes waiting on it, so bound it.
    fn load(&self, key: &str) -> impl Future<Output = Result<Fresh, LoadError>> + Send;

    /// Loads `key` again for a value the cache holds, whose origin gave
    /// `validators` ([`Fresh::with_validators`]): [`Reloaded::NotModified`]
    /// when the origin says it is unchanged (an HTTP `304`), so no body
    /// travels. The owner calls it when an entry it holds expires or is
    /// refreshed ahead. The default loads the value anew.
    fn reload(
        &self,
        key: &str,
        validators: &Validators,
    ) -> impl Future<Output = Result<Reloaded, LoadError>> + Send {
        let _ = validators;
        async move { self.load(key).await.map(Reloaded::Modified) }
    }
}

/// What a reload of a held value brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A value, new or the same, with its freshness.
    Modified(Fresh),
    /// The held value is still current: only its freshness is new.
    NotModified(NotModified),
}

/// What a `304` says: the held value's new freshness. What it leaves out
/// stays as the value had it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotModified {
    /// Time to live from now (the origin's `max-age`); `None`: as before.
    pub ttl: Option<Duration>,
    /// Validators the origin sent again (an `ETag` may change); empty: as
    /// before.
    pub validators: Validators,
    /// Stale windows the origin sent again; `None` in either: as before.
    pub stale_directives: StaleDirectives,
    /// How old the origin says the value is.
    pub age: Duration,
}

/// Why a loader has no value to give.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LoadError {
    /// The origin has no value for this key (answered as 404).
    #[error("the origin has no value for this key")]
    NotFound,
    /// The origin failed; the text says how, as a whole sentence.
    #[error("{0}")]
    Failure(String),
    /// The origin did not answer within this long.
    #[error("the origin did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// [`Loader`] as an object: groups hold `Arc<dyn DynLoader>`, so each
/// group's loader may be of a different type.
pub(crate) trait DynLoader: Send + Sync + 'static {
    fn load_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Fresh, LoadError>>;

    fn reload_boxed<'a>(
        &'a self,
        key: &'a str,
        validators: &'a Validators,
    ) -> BoxFuture<'a, Result<Reloaded, LoadError>>;
}

impl<L: Loader> DynLoader for L {
    fn load_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Fresh, LoadError>> {
        self.load(key).boxed()
    }

    fn reload_boxed<'a>(
        &'a self,
        key: &'a str,
        validators: &'a Validators,
    ) -> BoxFuture<'a, Result<Reloaded, LoadError>> {
        self.reload(key, validators).boxed()
    }
}
