//! A node's identity in gossip. Pure.
//!
//! The ring keys members by advertise IP and peer port; gossip keys them by
//! gossip address. The generation, chosen at start, tells a restarted pod
//! (same name, same IP) from its dead predecessor: the newer generation wins
//! an address conflict, and foca's `renew` bumps it when this node is
//! declared down but is in fact alive, so it rejoins at once.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    /// Where this node's gossip goes: advertise IP and gossip port.
    pub gossip: SocketAddr,
    pub peer_port: u16,
    /// Chosen at start (milliseconds since the epoch); larger is newer.
    pub generation: u64,
}

impl NodeId {
    pub fn new(name: &str, gossip: SocketAddr, peer_port: u16, generation: u64) -> Self {
        Self {
            name: name.to_owned(),
            gossip,
            peer_port,
            generation: generation.max(1),
        }
    }

    /// Stands for a seed address before anyone there has answered. Its
    /// generation 0 loses every address conflict, so the real member that
    /// answers replaces it.
    pub fn seed(gossip: SocketAddr) -> Self {
        Self {
            name: String::new(),
            gossip,
            peer_port: 0,
            generation: 0,
        }
    }

    pub fn is_seed(&self) -> bool {
        self.generation == 0
    }

    /// The member's id on the ring: advertise IP and peer port.
    #[cfg(test)]
    fn ring_id(&self) -> SocketAddr {
        SocketAddr::new(self.gossip.ip(), self.peer_port)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.gossip, self.generation)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1).max(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(generation: u64) -> NodeId {
        NodeId::new(
            "a",
            "10.0.0.1:7946".parse().expect("addr"),
            8000,
            generation,
        )
    }

    #[test]
    fn a_restarted_node_wins_over_its_predecessor() {
        let old = id(1_000);
        let new = id(2_000);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn renewing_makes_a_newer_identity() {
        let renewed = id(5).renew().expect("renewable");
        assert!(renewed.win_addr_conflict(&id(5)));
        assert_eq!(renewed.ring_id(), id(5).ring_id());
    }

    #[test]
    fn a_seed_placeholder_loses_to_anyone() {
        let seed = NodeId::seed("10.0.0.1:7946".parse().expect("addr"));
        assert!(seed.is_seed());
        assert!(id(1).win_addr_conflict(&seed));
        assert!(!id(1).is_seed());
    }
}
