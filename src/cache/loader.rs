//! What the cache needs from an origin: the [`Loader`] trait. The built-in
//! demo and HTTP loaders (`crate::loader`) implement it, and so does any
//! loader a program that embeds shoal writes in Rust.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use thiserror::Error;

use super::value::Fresh;

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
}

impl<L: Loader> DynLoader for L {
    fn load_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Fresh, LoadError>> {
        self.load(key).boxed()
    }
}
