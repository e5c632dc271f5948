//! Consistent-hash ring over member ids: which member owns a key.
//!
//! Pure logic, no I/O. Every node that holds the same set of members builds
//! the same ring and so computes the same owner for every key, whatever order
//! the members arrived in.
//!
//! Each member is placed at [`VNODES_PER_MEMBER`] points on a 64-bit circle
//! (xxh3 of its id with the point index as seed); a key belongs to the first
//! point at or after the key's own hash. Many points per member keep shares
//! even (the spread of a member's share shrinks as 1/sqrt(points)), and a
//! member's arrival or departure only moves the keys between its own points
//! and their predecessors.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

mod history;

pub use history::{RingHistory, Rings};

/// Points per member. 1024 keeps the largest of ten shares within a few per
/// cent of the mean (see the tests); a ring of 1,000 members is still only
/// about 16 MiB and is rebuilt only when membership changes.
pub const VNODES_PER_MEMBER: u32 = 1024;

/// A member's identity on the ring: its advertised IP and peer port.
pub type MemberId = SocketAddr;

/// A member as the ring knows it: the id it is hashed by and a display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub id: MemberId,
    pub name: Arc<str>,
}

impl Member {
    pub fn new(id: MemberId, name: impl Into<Arc<str>>) -> Self {
        Self {
            id,
            name: name.into(),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.id)
    }
}

/// An immutable ring. Build a new one when membership changes.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// Members sorted by id; `points` refer to them by index.
    members: Vec<Member>,
    /// (hash, index into `members`), sorted by hash.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds a ring over `members`. Duplicate ids are kept once.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort();
        members.dedup_by(|a, b| a.id == b.id);

        let mut points = Vec::with_capacity(members.len() * VNODES_PER_MEMBER as usize);
        for (index, member) in members.iter().enumerate() {
            let id = member_id_bytes(&member.id);
            for vnode in 0..VNODES_PER_MEMBER {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                points.push((xxh3_64_with_seed(&id, u64::from(vnode)), index));
            }
        }
        // Ties (vanishingly rare) are broken by member order, so every node
        // still agrees.
        points.sort_unstable();
        Self { members, points }
    }

    /// The members on the ring, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: &MemberId) -> bool {
        self.members.binary_search_by(|m| m.id.cmp(id)).is_ok()
    }

    /// The owner of `key` in `group`, or `None` on an empty ring.
    pub fn owner(&self, group: &str, key: &str) -> Option<&Member> {
        self.owner_of_hash(key_hash(group, key))
    }

    /// The owner of a key already hashed with [`key_hash`].
    pub fn owner_of_hash(&self, hash: u64) -> Option<&Member> {
        self.owner_excluding(hash, |_| false)
    }

    /// The first member clockwise from `hash` that `skip` does not rule out:
    /// the key's owner on this ring without those members. With the owner
    /// skipped this is the key's successor, the member that takes the key
    /// over once the owner is gone (the ring does not have to be rebuilt to
    /// know it).
    pub fn owner_excluding(&self, hash: u64, skip: impl Fn(&MemberId) -> bool) -> Option<&Member> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(point, _)| point < hash);
        let len = self.points.len();
        // Every member appears within one lap; skipped ones are passed over.
        (0..len)
            .map(|step| self.points[(start + step) % len].1)
            .filter_map(|index| self.members.get(index as usize))
            .find(|member| !skip(&member.id))
    }

    /// This ring without one member.
    pub fn without(&self, id: &MemberId) -> Ring {
        Ring::new(self.members.iter().filter(|m| m.id != *id).cloned())
    }

    /// How many points the ring holds (what it costs in memory).
    pub fn points(&self) -> usize {
        self.points.len()
    }
}

/// The hash that places a key on the ring. The group takes part so that the
/// same key in two groups need not land on the same node.
pub fn key_hash(group: &str, key: &str) -> u64 {
    let mut buf = Vec::with_capacity(group.len() + 1 + key.len());
    buf.extend_from_slice(group.as_bytes());
    buf.push(0);
    buf.extend_from_slice(key.as_bytes());
    xxh3_64(&buf)
}

/// A stable byte form of an id, independent of how `SocketAddr` prints.
fn member_id_bytes(id: &MemberId) -> Vec<u8> {
    let mut bytes = match id.ip() {
        std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    bytes.extend_from_slice(&id.port().to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEYS: usize = 1_000_000;

    fn member(i: u8) -> Member {
        let id: MemberId = format!("10.0.{}.{}:8000", i / 200, i % 200 + 1)
            .parse()
            .expect("valid address");
        Member::new(id, format!("node-{i}"))
    }

    fn owners(ring: &Ring) -> Vec<MemberId> {
        (0..KEYS)
            .map(|k| ring.owner("g", &format!("key-{k}")).expect("non-empty").id)
            .collect()
    }

    fn shares(owners: &[MemberId]) -> HashMap<MemberId, usize> {
        let mut shares = HashMap::new();
        for id in owners {
            *shares.entry(*id).or_insert(0) += 1;
        }
        shares
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert!(Ring::default().owner("g", "k").is_none());
        assert!(Ring::new([]).is_empty());
    }

    #[test]
    fn owner_does_not_depend_on_member_order() {
        let forward = Ring::new((0..10).map(member));
        let backward = Ring::new((0..10).rev().map(member));
        for k in 0..10_000 {
            let key = format!("k{k}");
            assert_eq!(forward.owner("g", &key), backward.owner("g", &key));
        }
    }

    #[test]
    fn duplicate_members_count_once() {
        let ring = Ring::new([member(1), member(1), member(2)]);
        assert_eq!(ring.len(), 2);
        assert!(ring.contains(&member(1).id));
        assert!(!ring.contains(&member(3).id));
    }

    #[test]
    fn ten_members_share_keys_evenly() {
        let ring = Ring::new((0..10).map(member));
        let shares = shares(&owners(&ring));
        assert_eq!(shares.len(), 10);
        let mean = KEYS as f64 / 10.0;
        let max = *shares.values().max().expect("ten shares") as f64;
        assert!(max / mean <= 1.10, "max/mean = {}", max / mean);
    }

    #[test]
    fn adding_a_member_moves_only_its_share_to_it() {
        let before = owners(&Ring::new((0..10).map(member)));
        let newcomer = member(10);
        let after = owners(&Ring::new((0..11).map(member)));
        let mut moved = 0;
        for (old, new) in before.iter().zip(&after) {
            if old != new {
                moved += 1;
                assert_eq!(*new, newcomer.id, "a key moved between old members");
            }
        }
        let limit = 1.1 * KEYS as f64 / 11.0;
        assert!((moved as f64) <= limit, "moved {moved} keys, limit {limit}");
        assert!(moved > 0);
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let before = owners(&Ring::new((0..10).map(member)));
        let gone = member(3).id;
        let after = owners(&Ring::new((0..10).filter(|&i| i != 3).map(member)));
        for (old, new) in before.iter().zip(&after) {
            if *old != gone {
                assert_eq!(old, new, "a key of a remaining member moved");
            } else {
                assert_ne!(*new, gone);
            }
        }
    }

    #[test]
    fn the_successor_is_the_owner_once_the_owner_is_gone() {
        let ring = Ring::new((0..10).map(member));
        // Each member's absence, built once: rebuilding a ring per key is
        // what made this test take half a minute.
        let without: HashMap<MemberId, Ring> = ring
            .members()
            .iter()
            .map(|m| (m.id, ring.without(&m.id)))
            .collect();
        for k in 0..10_000 {
            let hash = key_hash("g", &format!("k{k}"));
            let owner = ring.owner_of_hash(hash).expect("non-empty").id;
            let successor = ring
                .owner_excluding(hash, |id| *id == owner)
                .expect("others");
            assert_ne!(successor.id, owner);
            assert_eq!(
                without[&owner].owner_of_hash(hash).map(|m| m.id),
                Some(successor.id)
            );
        }
        let lone = Ring::new([member(1)]);
        assert!(lone.owner_excluding(1, |id| *id == member(1).id).is_none());
    }

    #[test]
    fn ipv4_and_ipv6_members_coexist() {
        let v6: MemberId = "[fd00::1]:8000".parse().expect("valid");
        let ring = Ring::new([member(1), Member::new(v6, "v6")]);
        let owned: std::collections::HashSet<_> = (0..1000)
            .filter_map(|k| ring.owner("g", &k.to_string()).map(|m| m.id))
            .collect();
        assert_eq!(owned.len(), 2);
    }
}
