//! What can go wrong getting a value, in words a user can act on. Each
//! variant's [`GroupError::kind`] is the `x-shoal-error` header and a metric
//! label.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

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
    pub fn kind(&self) -> &'static str {
        match self {
            GroupError::OriginNotFound => "origin-404",
            GroupError::OriginFailure(_) => "origin-failure",
            GroupError::OriginTimeout(_) => "origin-timeout",
            GroupError::PeerTimeout { .. } => "peer-timeout",
            GroupError::PeerFailure { .. } => "peer-failure",
            GroupError::OwnerUnreachable { .. } => "owner-unreachable",
            GroupError::Internal => "internal",
        }
    }
}
