//! What the cache needs from other nodes. The peer client implements it over
//! HTTP; the cache itself knows nothing of the wire.

use std::time::Duration;

use futures::future::BoxFuture;

use super::value::Value;
use crate::loader::LoadError;
use crate::ring::Member;

/// A value as its owner sent it.
#[derive(Debug, Clone)]
pub struct PeerValue {
    pub value: Value,
    /// Time left to live at the owner; `None`: no expiry.
    pub remaining_ttl: Option<Duration>,
    /// The origin forbade storing it.
    pub no_store: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// No connection could be made (refused, unreachable, connect timeout):
    /// the caller may load the value itself.
    Unreachable { refused: bool, detail: String },
    /// Connected, but no answer within the peer timeout.
    Timeout(Duration),
    /// The owner's origin failed; passed on as it is, never retried elsewhere.
    Origin(LoadError),
    /// Anything else: a broken connection, an error the owner reported, a
    /// reply that does not parse.
    Failed(String),
}

pub trait Peers: Send + Sync + 'static {
    /// Asks the owner for a value; the owner answers from its caches or loader.
    fn fetch<'a>(
        &'a self,
        owner: &'a Member,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<PeerValue, PeerError>>;

    /// Stores a value at its owner.
    fn store<'a>(
        &'a self,
        owner: &'a Member,
        group: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<(), PeerError>>;

    /// Drops a node's copies of a key (main and hot).
    fn remove<'a>(
        &'a self,
        member: &'a Member,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), PeerError>>;
}
