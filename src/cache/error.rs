//! What can go wrong getting a value, in words a user can act on. Each
//! variant's [`GroupError::kind`] is the `x-shoal-error` header and a metric
//! label: an [`ErrorKind`], whose home is below the cache (`error_kind.rs`,
//! re-exported as `crate::wire::ErrorKind`) so that the cache can name kinds
//! without importing the HTTP layers above it.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::error_kind::ErrorKind;

/// Why a get, put or delete failed. Each variant has a kind that the HTTP
/// APIs answer in `x-shoal-error` (`origin-404`, `peer-timeout`, …).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The loader said the key has no value (404).
    #[error("the origin has no value for this key")]
    OriginNotFound,
    /// The origin failed; the text says how (it is a whole sentence).
    #[error("{0}")]
    OriginFailure(Arc<str>),
    /// The loader did not answer within this long.
    #[error("the origin did not answer within {}", humantime::format_duration(*.0))]
    OriginTimeout(Duration),
    /// The key's owner did not answer within the peer timeout.
    #[error("the owner {owner} did not answer within {}", humantime::format_duration(*.after))]
    PeerTimeout {
        /// The owner's name.
        owner: Arc<str>,
        /// How long it had.
        after: Duration,
    },
    /// The request to the key's owner failed after it connected.
    #[error("the request to the owner {owner} failed: {detail}")]
    PeerFailure {
        /// The owner's name.
        owner: Arc<str>,
        /// How it failed.
        detail: Arc<str>,
    },
    /// The key's owner (for a PUT or DELETE) could not be connected to.
    #[error("the owner {owner} cannot be reached: {detail}")]
    OwnerUnreachable {
        /// The owner's name.
        owner: Arc<str>,
        /// Why not.
        detail: Arc<str>,
    },
    /// A PUT whose value this group cannot store: over `max_value`, or an
    /// entry heavier than the main cache. The text names the sizes and the
    /// limit (it is a whole sentence).
    #[error("{0}")]
    ValueTooLarge(Arc<str>),
    /// The origin was not asked: this node's loads for the group are at
    /// `max_concurrent_loads` and its queue is full (or the wait ran out).
    /// The text says so with the bound (it is a whole sentence).
    #[error("{0}")]
    OriginOverloaded(Arc<str>),
    /// The origin was not asked: the group's circuit breaker is open after
    /// a run of failed loads. The text says when it retries.
    #[error("{0}")]
    OriginCircuitOpen(Arc<str>),
    /// A load panicked or was dropped (a bug).
    #[error("the load failed unexpectedly (a bug: see the node's log)")]
    Internal,
}

impl GroupError {
    /// The error's kind, as the HTTP APIs name it.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            GroupError::OriginNotFound => ErrorKind::OriginNotFound,
            GroupError::OriginFailure(_) => ErrorKind::OriginFailure,
            GroupError::OriginTimeout(_) => ErrorKind::OriginTimeout,
            GroupError::PeerTimeout { .. } => ErrorKind::PeerTimeout,
            GroupError::PeerFailure { .. } => ErrorKind::PeerFailure,
            GroupError::OwnerUnreachable { .. } => ErrorKind::OwnerUnreachable,
            GroupError::ValueTooLarge(_) => ErrorKind::ValueTooLarge,
            GroupError::OriginOverloaded(_) => ErrorKind::OriginOverloaded,
            GroupError::OriginCircuitOpen(_) => ErrorKind::OriginCircuitOpen,
            GroupError::Internal => ErrorKind::Internal,
        }
    }

    /// Whether a held value may stand in for this error (`stale_if_error`):
    /// the origin failed, timed out or was not asked, as opposed to it
    /// saying the key has no value.
    pub(crate) fn allows_stale(&self) -> bool {
        matches!(
            self,
            GroupError::OriginFailure(_)
                | GroupError::OriginTimeout(_)
                | GroupError::OriginOverloaded(_)
                | GroupError::OriginCircuitOpen(_)
        )
    }
}
