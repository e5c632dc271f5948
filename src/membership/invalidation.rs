//! Cache invalidations carried by gossip. A PUT or DELETE in gossip mode
//! hands the key's digest to foca as a custom broadcast; it rides along
//! with gossip to every member, which drops its copies. Keys may be 4 KiB
//! and datagrams are at most 1400 bytes, so the broadcast carries a
//! fixed-size digest, never the key.
//!
//! Each invalidation has a random id: a member passes on only ids it has
//! not seen, so dissemination stops once everyone has it.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

use super::identity::NodeId;

/// Ids remembered to stop re-dissemination; far more than can be in flight.
const SEEN_CAPACITY: usize = 100_000;

/// "Drop every copy of this key", as gossip carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub id: u64,
    pub group: String,
    pub digest: u128,
    /// The key's owner when the change was made: it keeps its main copy.
    pub owner: Option<SocketAddr>,
    /// Copies of the key up to this version (the cache's write versions)
    /// are superseded. Last, so that a node that predates it still decodes
    /// the fields it knows (postcard ignores trailing bytes).
    pub superseded: u64,
}

/// An invalidation as nodes that predate versions send it.
#[derive(Deserialize)]
struct LegacyInvalidation {
    id: u64,
    group: String,
    digest: u128,
    owner: Option<SocketAddr>,
}

impl Invalidation {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes an invalidation, from a current node or one that predates
    /// versions (whose copies are then superseded up to version 0 only).
    pub fn decode(data: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(data).or_else(|error| {
            let legacy: LegacyInvalidation = postcard::from_bytes(data).map_err(|_| error)?;
            Ok(Self {
                id: legacy.id,
                group: legacy.group,
                digest: legacy.digest,
                owner: legacy.owner,
                superseded: 0,
            })
        })
    }
}

/// Orders invalidations in foca's backlog: a newer one for the same key
/// replaces one not yet fully sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationKey {
    group: String,
    digest: u128,
}

impl Invalidates for InvalidationKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug, Error)]
#[error("malformed invalidation broadcast: {0}")]
pub struct MalformedInvalidation(postcard::Error);

pub struct InvalidationHandler {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// Invalidations from other members, for the node to apply.
    received: mpsc::UnboundedSender<Invalidation>,
}

impl InvalidationHandler {
    pub fn new(received: mpsc::UnboundedSender<Invalidation>) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            received,
        }
    }

    /// Records an id; false if it was seen before.
    fn first_sight(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

impl BroadcastHandler<NodeId> for InvalidationHandler {
    type Key = InvalidationKey;
    type Error = MalformedInvalidation;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<Self::Key>, Self::Error> {
        let invalidation = Invalidation::decode(data).map_err(MalformedInvalidation)?;
        if !self.first_sight(invalidation.id) {
            return Ok(None);
        }
        let key = InvalidationKey {
            group: invalidation.group.clone(),
            digest: invalidation.digest,
        };
        // Our own (sender None) was applied locally when it was made.
        if sender.is_some() {
            // The node stops listening only when it shuts down.
            let _ = self.received.send(invalidation);
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalidation(id: u64) -> Invalidation {
        Invalidation {
            id,
            group: "g".into(),
            digest: 42,
            owner: Some("10.0.0.1:8000".parse().expect("addr")),
            superseded: 7 << 16,
        }
    }

    fn sender() -> NodeId {
        NodeId::new("b", "10.0.0.2:7946".parse().expect("addr"), 8000, 1)
    }

    #[test]
    fn new_invalidations_are_applied_and_passed_on_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut handler = InvalidationHandler::new(tx);
        let data = invalidation(7).encode();
        assert!(
            handler
                .receive_item(&data, Some(&sender()))
                .expect("valid")
                .is_some()
        );
        assert_eq!(rx.try_recv().ok(), Some(invalidation(7)));
        assert!(
            handler
                .receive_item(&data, Some(&sender()))
                .expect("valid")
                .is_none()
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn our_own_invalidations_are_not_applied_again() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut handler = InvalidationHandler::new(tx);
        assert!(
            handler
                .receive_item(&invalidation(1).encode(), None)
                .expect("valid")
                .is_some()
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn invalidations_from_older_nodes_still_decode() {
        #[derive(Serialize)]
        struct Old {
            id: u64,
            group: String,
            digest: u128,
            owner: Option<SocketAddr>,
        }
        let old = Old {
            id: 3,
            group: "g".into(),
            digest: 42,
            owner: None,
        };
        let data = postcard::to_stdvec(&old).expect("encode");
        let decoded = Invalidation::decode(&data).expect("decodes");
        assert_eq!((decoded.id, decoded.digest, decoded.superseded), (3, 42, 0));
        // And an older node reads the fields it knows from a new one.
        let new = invalidation(9).encode();
        let seen: LegacyInvalidation = postcard::from_bytes(&new).expect("decodes");
        assert_eq!((seen.id, seen.digest), (9, 42));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut handler = InvalidationHandler::new(tx);
        assert!(handler.receive_item(&[0xff; 3], Some(&sender())).is_err());
        assert!(handler.receive_item(&[], Some(&sender())).is_err());
    }

    #[test]
    fn fits_a_datagram() {
        let mut long = invalidation(u64::MAX);
        long.group = "g".repeat(200);
        assert!(long.encode().len() < 300);
    }
}
