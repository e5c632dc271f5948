//! What the cache needs from other nodes. The peer client implements it over
//! HTTP; the cache itself knows nothing of the wire.

use std::time::Duration;

use futures::future::BoxFuture;

use super::handoff::{HandedOff, HandoffReceipt};
use super::loader::LoadError;
use super::value::{Fresh, Value};
use super::version::Version;
use crate::ring::Member;

/// In what capacity a fetch asks the receiving node to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The receiver owns the key (as the sender's ring says).
    Owner,
    /// The owner cannot be reached and the receiver is next on the ring: it
    /// loads the key as owner-in-waiting and keeps it.
    Successor,
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
    /// The owner did not ask its origin (`origin-overloaded` or
    /// `origin-circuit-open`, with its message): passed on as it is.
    OriginRefused { circuit_open: bool, detail: String },
    /// The owner refused a PUT's value as too large to store (its
    /// `value-too-large`, with its message): the client's error, not a
    /// failure of the owner.
    ValueTooLarge(String),
    /// Anything else: a broken connection, an error the owner reported, a
    /// reply that does not parse.
    Failed(String),
}

pub trait Peers: Send + Sync + 'static {
    /// Asks a node for a value; it answers from its caches or loader and
    /// never forwards the request. The value's `ttl` is its time left at
    /// the sender, its version the write it came from.
    fn fetch<'a>(
        &'a self,
        node: &'a Member,
        ask: Ask,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Fresh, PeerError>>;

    /// Asks a node for the copy it holds, if any: answered from its caches
    /// only, never loaded, never forwarded; `Ok(None)` is a miss. Bounded
    /// by the connect timeout and the peek timeout.
    fn peek<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Fresh>, PeerError>>;

    /// Stores a value at its owner; the version the owner gave the write
    /// ([`Version::ZERO`] from a node that sends none).
    fn store<'a>(
        &'a self,
        owner: &'a Member,
        group: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<Version, PeerError>>;

    /// Drops a node's copies of a key (main and hot) and makes it refuse
    /// copies up to `superseded` (`None`: up to the receiver's own clock,
    /// as for the DELETE at the owner). The version the receiver recorded.
    fn remove<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        key: &'a str,
        superseded: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, PeerError>>;

    /// Hands entries to the node that owns them now (a leaving node's
    /// main cache); it keeps those it has no newer write of.
    fn hand_off<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        entries: &'a [HandedOff],
    ) -> BoxFuture<'a, Result<HandoffReceipt, PeerError>>;
}
