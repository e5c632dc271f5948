//! What a program holds while its node runs: [`NodeHandle`] and, per group,
//! [`GroupHandle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Background;
use super::membership::Membership;
use super::shutdown;
use crate::cache::{Fetched, Group, GroupError, GroupStats, Groups, Requester, Value};
use crate::config::Config;
use crate::http::admin::Readiness;
use crate::membership::MemberInfo;
use crate::ring::Rings;

/// A running node. [`NodeHandle::shutdown`] stops it in order; dropping
/// the handle instead stops it at once, as a crash would: no leave, no
/// handoff, no drain; its listeners close and gossip and its background
/// loops stop (a connection already open may still finish its request).
pub struct NodeHandle {
    pub(super) config: Config,
    pub(super) groups: Arc<Groups>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) membership: Membership,
    pub(super) rings: watch::Receiver<Arc<Rings>>,
    /// The three HTTP servers; cancelled by `stop_serving`.
    pub(super) servers: JoinSet<()>,
    pub(super) stop_serving: CancellationToken,
    pub(super) background: Background,
    /// Service, peer and admin, as bound.
    pub(super) addrs: [SocketAddr; 3],
}

impl NodeHandle {
    /// The group called `name`, if the node has it.
    pub fn group(&self, name: &str) -> Option<GroupHandle> {
        self.groups.get(name).map(|group| GroupHandle {
            group: Arc::clone(group),
        })
    }

    /// The names of the node's groups, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.iter().map(|g| g.name().to_owned()).collect();
        names.sort();
        names
    }

    /// The members as this node sees them now, itself included.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership.members.borrow().members.clone()
    }

    /// Whether the node takes traffic: its listeners are up and, with
    /// gossip, it has joined the cluster; false again once it drains.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Waits until the node is ready, or `timeout` passes (then false).
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.readiness.subscribe();
        loop {
            if self.readiness.is_ready() {
                return true;
            }
            // Out of time, or no change can come any more.
            if !matches!(
                tokio::time::timeout_at(deadline, changed.changed()).await,
                Ok(Ok(()))
            ) {
                return self.readiness.is_ready();
            }
        }
    }

    /// Where the service API listens.
    pub fn service_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Where the peer API listens.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addrs[1]
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs[2]
    }

    /// How many members own keys on this node's ring now.
    pub fn ring_len(&self) -> usize {
        self.rings.borrow().current().len()
    }

    /// Stops in order: not ready → leave the gossip cluster → hand the main
    /// caches to the next owners → drain (still serving) → stop accepting
    /// → wait for requests in flight → stop background loops.
    pub async fn shutdown(self) {
        shutdown::shut_down(self).await;
    }
}

/// One group of a running node: groupcache's `Get`, plus `put` and
/// `delete`, in the process.
#[derive(Clone)]
pub struct GroupHandle {
    group: Arc<Group>,
}

impl GroupHandle {
    /// The group's name.
    pub fn name(&self) -> &str {
        self.group.name()
    }

    /// The value for `key`: from this node's caches, its owner, or (at the
    /// owner, once for the whole cluster) the group's loader.
    pub async fn get(&self, key: &str) -> Result<Fetched, GroupError> {
        self.group.get(key, Requester::Client).await
    }

    /// Stores `value` at the key's owner and drops every other copy. A
    /// value the group cannot hold (over `max_value`, or an entry heavier
    /// than `capacity`) is [`GroupError::ValueTooLarge`], never an `Ok`
    /// that kept nothing.
    pub async fn put(&self, key: &str, value: Value) -> Result<(), GroupError> {
        self.group.put(key, value).await
    }

    /// Removes the key at its owner and drops every other copy.
    pub async fn delete(&self, key: &str) -> Result<(), GroupError> {
        self.group.delete(key).await
    }

    /// The group's counters and cache figures, as `/_stats` shows them.
    pub fn stats(&self) -> GroupStats {
        self.group.stats()
    }
}
