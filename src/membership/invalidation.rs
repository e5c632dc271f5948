//! Cache invalidations carried by gossip. A PUT or DELETE in gossip mode
//! hands the key's digest to foca as a custom broadcast; it rides along
//! with gossip to every member, which drops its copies. Keys may be 4 KiB
//! and datagrams are at most 1400 bytes, so the broadcast carries a
//! fixed-size digest, never the key.
//!
//! Each invalidation has a random id: a member passes on only ids it has
//! not seen, so dissemination stops once everyone has it.
//!
//! The same channel carries Lifeguard's confirmations ([`Confirmation`]:
//! "my own probe of this member failed too"). Nodes from before them
//! decode every item as an invalidation, so a confirmation travels inside
//! one: an invalidation of group `""` (a name no group can have: an older
//! node drops no copy, it only logs the unknown group and passes it on)
//! followed by the confirmation, which postcard lets an older node ignore
//! as trailing bytes.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_64;

use super::identity::NodeId;
use super::lifeguard::Suspect;

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

/// The group of the invalidation a [`Confirmation`] travels in.
const CONFIRMATION_GROUP: &str = "";

/// "My own probe of `suspect` failed": Lifeguard's independent confirmation
/// of a suspicion, which cuts it short (see `lifeguard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub suspect: Suspect,
    /// The confirming member's gossip address: each counts once.
    pub from: SocketAddr,
}

impl Confirmation {
    /// The broadcast: an invalidation of no group with the confirmation
    /// after it. Its id is a hash of the confirmation, not a random
    /// number: the same member confirming the same suspicion again adds
    /// nothing, and the simulator's runs stay a function of their seed.
    pub fn encode(&self) -> Vec<u8> {
        let confirmation = postcard::to_stdvec(self).unwrap_or_default();
        let mut data = Invalidation {
            id: xxh3_64(&confirmation),
            group: CONFIRMATION_GROUP.to_owned(),
            digest: 0,
            owner: None,
            superseded: 0,
        }
        .encode();
        data.extend(confirmation);
        data
    }
}

/// A custom broadcast item, decoded.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Invalidation(Invalidation),
    Confirmation { id: u64, confirmation: Confirmation },
}

impl Item {
    fn decode(data: &[u8]) -> Result<Self, postcard::Error> {
        if let Ok((envelope, rest)) = postcard::take_from_bytes::<Invalidation>(data)
            && envelope.group == CONFIRMATION_GROUP
        {
            let confirmation = postcard::from_bytes(rest)?;
            return Ok(Self::Confirmation {
                id: envelope.id,
                confirmation,
            });
        }
        Invalidation::decode(data).map(Self::Invalidation)
    }
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
/// replaces one not yet fully sent. A confirmation's key is its id: none
/// replaces another.
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
#[error("malformed gossip broadcast: {0}")]
pub struct MalformedBroadcast(postcard::Error);

/// foca's handler of our custom broadcasts: invalidations and confirmations.
pub struct Broadcasts {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// Invalidations from other members, for the node to apply.
    received: mpsc::UnboundedSender<Invalidation>,
    /// Confirmations from other members, for the core's suspicions.
    confirmations: mpsc::UnboundedSender<Confirmation>,
    /// While set, broadcasts ride only packets to this gossip address
    /// (see [`BroadcastTarget`]).
    target: BroadcastTarget,
}

/// Narrows, for one `Foca::broadcast` call, where broadcasts go: the core
/// sends a suspect the confirmation of its own suspicion this way, so it
/// can refute at once rather than when gossip happens to reach it.
#[derive(Clone, Default)]
pub struct BroadcastTarget(Arc<Mutex<Option<SocketAddr>>>);

impl BroadcastTarget {
    pub fn set(&self, target: Option<SocketAddr>) {
        if let Ok(mut current) = self.0.lock() {
            *current = target;
        }
    }

    fn admits(&self, member: &NodeId) -> bool {
        match self.0.lock().map(|current| *current) {
            Ok(Some(target)) => member.gossip == target,
            _ => true,
        }
    }
}

impl Broadcasts {
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn new(
        received: mpsc::UnboundedSender<Invalidation>,
        confirmations: mpsc::UnboundedSender<Confirmation>,
    ) -> Self {
        Self::with_target(received, confirmations, BroadcastTarget::default())
    }

    pub fn with_target(
        received: mpsc::UnboundedSender<Invalidation>,
        confirmations: mpsc::UnboundedSender<Confirmation>,
        target: BroadcastTarget,
    ) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            received,
            confirmations,
            target,
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

impl BroadcastHandler<NodeId> for Broadcasts {
    type Key = InvalidationKey;
    type Error = MalformedBroadcast;

    fn should_add_broadcast_data(&self, member: &NodeId) -> bool {
        self.target.admits(member)
    }

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<Self::Key>, Self::Error> {
        let invalidation = match Item::decode(data).map_err(MalformedBroadcast)? {
            Item::Invalidation(invalidation) => invalidation,
            Item::Confirmation { id, confirmation } => {
                if !self.first_sight(id) {
                    return Ok(None);
                }
                // Our own (sender None) is this member's own suspicion.
                if sender.is_some() {
                    let _ = self.confirmations.send(confirmation);
                }
                return Ok(Some(InvalidationKey {
                    group: CONFIRMATION_GROUP.to_owned(),
                    digest: u128::from(id),
                }));
            }
        };
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
        let mut handler = Broadcasts::new(tx, mpsc::unbounded_channel().0);
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
        let mut handler = Broadcasts::new(tx, mpsc::unbounded_channel().0);
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
        let mut handler = Broadcasts::new(tx, mpsc::unbounded_channel().0);
        assert!(handler.receive_item(&[0xff; 3], Some(&sender())).is_err());
        assert!(handler.receive_item(&[], Some(&sender())).is_err());
    }

    fn confirmation() -> Confirmation {
        Confirmation {
            suspect: Suspect {
                gossip: "10.0.0.9:7946".parse().expect("addr"),
                generation: 1_764_000_000_000,
                incarnation: 3,
            },
            from: "10.0.0.2:7946".parse().expect("addr"),
        }
    }

    #[test]
    fn confirmations_reach_the_core_once_and_never_the_cache() {
        let (tx, mut invalidations) = mpsc::unbounded_channel();
        let (confirm_tx, mut confirmations) = mpsc::unbounded_channel();
        let mut handler = Broadcasts::new(tx, confirm_tx);
        let data = confirmation().encode();
        assert!(
            handler
                .receive_item(&data, Some(&sender()))
                .expect("valid")
                .is_some()
        );
        assert_eq!(confirmations.try_recv().ok(), Some(confirmation()));
        assert!(invalidations.try_recv().is_err());
        assert!(
            handler
                .receive_item(&data, Some(&sender()))
                .expect("valid")
                .is_none()
        );
        // Our own is passed on, not counted.
        let mut own = confirmation();
        own.suspect.incarnation = 4;
        assert!(
            handler
                .receive_item(&own.encode(), None)
                .expect("valid")
                .is_some()
        );
        assert!(confirmations.try_recv().is_err());
    }

    #[test]
    fn an_older_node_reads_a_confirmation_as_an_invalidation_of_no_group() {
        let data = confirmation().encode();
        let seen = Invalidation::decode(&data).expect("decodes");
        assert_eq!((seen.group.as_str(), seen.owner), ("", None));
        let truncated = &data[..data.len() - 2];
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut handler = Broadcasts::new(tx, mpsc::unbounded_channel().0);
        assert!(handler.receive_item(truncated, Some(&sender())).is_err());
    }

    #[test]
    fn a_target_narrows_broadcasts_to_one_member_until_cleared() {
        let target = BroadcastTarget::default();
        let handler = Broadcasts::with_target(
            mpsc::unbounded_channel().0,
            mpsc::unbounded_channel().0,
            target.clone(),
        );
        let other = NodeId::new("c", "10.0.0.3:7946".parse().expect("addr"), 8000, 1);
        assert!(handler.should_add_broadcast_data(&other));
        target.set(Some(sender().gossip));
        assert!(handler.should_add_broadcast_data(&sender()));
        assert!(!handler.should_add_broadcast_data(&other));
        target.set(None);
        assert!(handler.should_add_broadcast_data(&other));
    }

    #[test]
    fn fits_a_datagram() {
        assert!(confirmation().encode().len() < 64);
        let mut long = invalidation(u64::MAX);
        long.group = "g".repeat(200);
        assert!(long.encode().len() < 300);
    }
}
