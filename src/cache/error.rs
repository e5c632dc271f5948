//! What can go wrong getting a value, in words a user can act on. Each
//! variant's [`GroupError::kind`] is the `x-shoal-error` header and a metric
//! label: an [`ErrorKind`], whose home is below the cache (`error_kind.rs`,
//! re-exported as `crate::wire::ErrorKind`) so that the cache can name kinds
//! without importing the HTTP layers above it.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::error_kind::ErrorKind;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GroupError {
    #[error("the origin has no value for this key")]
    OriginNotFound,
    /// The origin failed; the text says how (it is a whole sentence).
    #[error("{0}")]
    OriginFailure(Arc<str>),
    #[error("the origin did not answer within {}", humantime::format_duration(*.0))]
    OriginTimeout(Duration),
    #[error("the owner {owner} did not answer within {}", humantime::format_duration(*.after))]
    PeerTimeout { owner: Arc<str>, after: Duration },
    #[error("the request to the owner {owner} failed: {detail}")]
    PeerFailure { owner: Arc<str>, detail: Arc<str> },
    #[error("the owner {owner} cannot be reached: {detail}")]
    OwnerUnreachable { owner: Arc<str>, detail: Arc<str> },
    #[error("the load failed unexpectedly (a bug: see the node's log)")]
    Internal,
}

impl GroupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GroupError::OriginNotFound => ErrorKind::OriginNotFound,
            GroupError::OriginFailure(_) => ErrorKind::OriginFailure,
            GroupError::OriginTimeout(_) => ErrorKind::OriginTimeout,
            GroupError::PeerTimeout { .. } => ErrorKind::PeerTimeout,
            GroupError::PeerFailure { .. } => ErrorKind::PeerFailure,
            GroupError::OwnerUnreachable { .. } => ErrorKind::OwnerUnreachable,
            GroupError::Internal => ErrorKind::Internal,
        }
    }
}
