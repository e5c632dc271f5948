//! Who is in the cluster. Membership is published as a snapshot on a watch
//! channel; the node turns each snapshot into a ring. The source is a fixed
//! peer list (or a lone node), or SWIM gossip (foca): `core` is the
//! protocol without I/O (foca, its timers, retuning, the snapshot),
//! `driver` the one task that feeds it from the socket; `identity`, `swim`,
//! `timers`, `invalidation` and `lifeguard` (confirmed suspicions) are its
//! pure parts. `sim` (feature `sim`)
//! runs many cores over a simulated network in virtual time. This module
//! does not know the cache.

mod core;
mod driver;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod identity;
mod invalidation;
mod lifeguard;
mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
mod swim;
mod timers;

pub use driver::{Gossip, GossipSender, GossipSettings};
pub use identity::NodeId;
pub use invalidation::Invalidation;

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

/// A member's state, as SWIM sees it (fixed members are always alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; still owns keys until suspicion runs out.
    Suspect,
    /// Left, or failed: owns no keys.
    Down,
}

impl MemberState {
    /// Every state, in the order of the `shoal_members{state}` gauges.
    pub const ALL: [MemberState; 3] = [MemberState::Alive, MemberState::Suspect, MemberState::Down];

    /// The state's name on `/_members` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }

    /// Alive and suspect members own keys; down ones do not.
    pub fn on_ring(self) -> bool {
        !matches!(self, MemberState::Down)
    }
}

/// One member, as `/_members` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// The member's node name (a fixed peer's is its address).
    pub name: String,
    /// The member's advertised IP.
    pub addr: IpAddr,
    /// Its peer API port.
    pub peer_port: u16,
    /// Its gossip port (0 for a fixed peer).
    pub gossip_port: u16,
    /// Alive, suspect or down.
    pub state: MemberState,
    /// SWIM's counter for refuting suspicion.
    pub incarnation: u64,
    /// Chosen when the node started: a restarted node has a new one.
    pub generation: u64,
}

impl MemberInfo {
    /// The member's id on the ring.
    pub fn id(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.peer_port)
    }
}

/// One view of the membership, this node included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Members {
    #[serde(rename = "self")]
    pub self_name: String,
    pub members: Vec<MemberInfo>,
}

impl Members {
    /// A node on its own.
    pub fn lone(self_name: &str, self_id: SocketAddr) -> Self {
        Self::fixed(self_name, self_id, &[self_id])
    }

    /// A fixed peer list: every peer is alive. Peers other than this node
    /// are named by their address, which is all the list says of them.
    pub fn fixed(self_name: &str, self_id: SocketAddr, peers: &[SocketAddr]) -> Self {
        let members = peers
            .iter()
            .map(|&peer| MemberInfo {
                name: if peer == self_id {
                    self_name.to_owned()
                } else {
                    peer.to_string()
                },
                addr: peer.ip(),
                peer_port: peer.port(),
                gossip_port: 0,
                state: MemberState::Alive,
                incarnation: 0,
                generation: 0,
            })
            .collect();
        Self {
            self_name: self_name.to_owned(),
            members,
        }
    }

    pub fn count(&self, state: MemberState) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_members_are_alive_and_self_is_named() {
        let me: SocketAddr = "127.0.0.2:8000".parse().expect("addr");
        let other: SocketAddr = "127.0.0.3:8000".parse().expect("addr");
        let members = Members::fixed("a", me, &[me, other]);
        assert_eq!(members.count(MemberState::Alive), 2);
        assert_eq!(members.members[0].name, "a");
        assert_eq!(members.members[1].name, "127.0.0.3:8000");
        assert_eq!(members.members[1].id(), other);
    }
}
