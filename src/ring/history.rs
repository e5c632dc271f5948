//! The rings a node had before the current one, and whom to ask for a key
//! that moved. Pure: time comes in as an argument.
//!
//! When membership changes, a key's new owner starts with an empty cache for
//! it while the key's previous owner may still hold it. So a node keeps the
//! rings it had for a while (`churn.previous_rings_window`), several of them
//! since a rolling restart changes the ring many times, and an owner that
//! misses a key first asks the key's owners under those rings
//! ([`Rings::previous_owners`]).
//!
//! A node that just joined has no ring from before, but the ring the cluster
//! had before it came is the current one without it: the key's successor
//! clockwise. So for a window after joining, that member is asked too (and
//! the one after it, in case the successor had just joined as well). It
//! covers both scale-out (a new node pulls its share) and an in-place restart
//! (the node comes back empty and pulls what its successors held meanwhile).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Member, MemberId, Ring};

/// At most this many previous rings are kept, however many changes fit in
/// the window.
pub const MAX_PREVIOUS_RINGS: usize = 16;
/// And at most this many points in all (16 bytes each): a large cluster
/// keeps fewer rings rather than hundreds of MiB of them.
pub const MAX_PREVIOUS_POINTS: usize = 1 << 22;
/// At most this many previous owners are asked for one key.
pub const MAX_PREVIOUS_OWNERS: usize = 4;
/// Successors a node that just joined asks for a key: several nodes that
/// join one after another (a scale-out, a replace-style roll) move a key
/// along the ring one step each, and the last one may not have pulled it.
pub const JOINER_SUCCESSORS: usize = 2;

/// The current ring and what came before it, as the node publishes it.
#[derive(Debug, Clone)]
pub struct Rings {
    self_id: MemberId,
    current: Arc<Ring>,
    /// Newest first: each ring and when the next one replaced it.
    previous: VecDeque<(Arc<Ring>, Instant)>,
    /// When this node first shared a ring with another member.
    joined_at: Option<Instant>,
    window: Duration,
    /// How long a member that left the ring may still be asked: it serves
    /// while it drains.
    leaver_grace: Duration,
}

impl Rings {
    /// Rings with no history: `window` zero means none is ever kept.
    pub fn new(
        self_id: MemberId,
        current: Ring,
        window: Duration,
        leaver_grace: Duration,
        now: Instant,
    ) -> Self {
        let current = Arc::new(current);
        let joined_at = has_others(&current, self_id).then_some(now);
        Self {
            self_id,
            current,
            previous: VecDeque::new(),
            joined_at,
            window,
            leaver_grace,
        }
    }

    /// The ring that owns keys now.
    pub fn current(&self) -> &Arc<Ring> {
        &self.current
    }

    pub fn self_id(&self) -> MemberId {
        self.self_id
    }

    /// How many previous rings are kept.
    pub fn previous_len(&self) -> usize {
        self.previous.len()
    }

    /// The members to peek at before this node loads a key it owns and does
    /// not hold, most likely holder first: the key's owners under the
    /// previous rings of the window (newest first) that are still on the
    /// ring or left it within the leaver grace, then, for a window after
    /// this node joined, the key's successor. Never this node; each member
    /// once; at most `MAX_PREVIOUS_OWNERS` (four).
    pub fn previous_owners(&self, hash: u64, now: Instant) -> Vec<Member> {
        let mut owners: Vec<Member> = Vec::new();
        if self.window.is_zero() {
            return owners;
        }
        let mut add = |member: &Member| {
            if member.id != self.self_id
                && owners.len() < MAX_PREVIOUS_OWNERS
                && !owners.iter().any(|m| m.id == member.id)
            {
                owners.push(member.clone());
            }
        };
        for (ring, retired_at) in &self.previous {
            if now.saturating_duration_since(*retired_at) > self.window {
                break;
            }
            if let Some(owner) = ring.owner_of_hash(hash)
                && self.reachable(&owner.id, now)
            {
                add(owner);
            }
        }
        let joined_recently = self
            .joined_at
            .is_some_and(|at| now.saturating_duration_since(at) <= self.window);
        if joined_recently {
            // The key's successor held it before this node came, unless it
            // had itself only just come and not pulled it yet: then the
            // next one clockwise did.
            let mut passed = vec![self.self_id];
            for _ in 0..JOINER_SUCCESSORS {
                let Some(successor) = self.current.owner_excluding(hash, |id| passed.contains(id))
                else {
                    break;
                };
                passed.push(successor.id);
                add(successor);
            }
        }
        owners
    }

    /// Whether a member is worth asking: on the current ring, or off it for
    /// less than the leaver grace (the newest ring that still had it was
    /// replaced when it left).
    fn reachable(&self, id: &MemberId, now: Instant) -> bool {
        if self.current.contains(id) {
            return true;
        }
        self.previous
            .iter()
            .find(|(ring, _)| ring.contains(id))
            .is_some_and(|(_, left_at)| {
                now.saturating_duration_since(*left_at) <= self.leaver_grace
            })
    }
}

/// Builds each [`Rings`] from the one before, one ring change at a time.
#[derive(Debug, Clone)]
pub struct RingHistory {
    rings: Rings,
}

impl RingHistory {
    pub fn new(rings: Rings) -> Self {
        Self { rings }
    }

    pub fn rings(&self) -> &Rings {
        &self.rings
    }

    /// Makes `next` the current ring; the one it replaces joins the history
    /// (unless nothing changed), and rings past the window or the limits go.
    pub fn advance(&mut self, next: Ring, now: Instant) -> &Rings {
        let rings = &mut self.rings;
        if rings.current.members() == next.members() {
            return rings;
        }
        let next = Arc::new(next);
        if rings.joined_at.is_none() && has_others(&next, rings.self_id) {
            rings.joined_at = Some(now);
        }
        let retired = std::mem::replace(&mut rings.current, next);
        if !rings.window.is_zero() {
            rings.previous.push_front((retired, now));
        }
        let mut points = 0;
        let mut keep = 0;
        for (ring, retired_at) in &rings.previous {
            points += ring.points();
            let fits = keep == 0 || points <= MAX_PREVIOUS_POINTS;
            if keep >= MAX_PREVIOUS_RINGS
                || !fits
                || now.saturating_duration_since(*retired_at) > rings.window
            {
                break;
            }
            keep += 1;
        }
        rings.previous.truncate(keep);
        rings
    }
}

fn has_others(ring: &Ring, self_id: MemberId) -> bool {
    ring.members().iter().any(|m| m.id != self_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::key_hash;

    const WINDOW: Duration = Duration::from_secs(300);
    const GRACE: Duration = Duration::from_secs(6);

    fn member(i: u8) -> Member {
        let id: MemberId = format!("10.0.0.{i}:8000").parse().expect("valid address");
        Member::new(id, format!("node-{i}"))
    }

    fn ring(ids: &[u8]) -> Ring {
        Ring::new(ids.iter().map(|&i| member(i)))
    }

    fn history(me: u8, ids: &[u8]) -> RingHistory {
        RingHistory::new(Rings::new(
            member(me).id,
            ring(ids),
            WINDOW,
            GRACE,
            Instant::now(),
        ))
    }

    /// A key that `owner` owns on `ring`.
    fn key_owned_by(ring: &Ring, owner: u8) -> u64 {
        (0..)
            .map(|k| key_hash("g", &format!("k{k}")))
            .find(|&hash| ring.owner_of_hash(hash).map(|m| m.id) == Some(member(owner).id))
            .expect("some key")
    }

    fn ids(members: &[Member]) -> Vec<MemberId> {
        members.iter().map(|m| m.id).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_leaver_is_asked_while_it_drains() {
        // Node 1 sees 4 leave: 4's keys moved to 1, 2 or 3, and 4 holds
        // them while it drains.
        let mut history = history(1, &[1, 2, 3, 4]);
        let hash = key_owned_by(&ring(&[1, 2, 3, 4]), 4);
        history.advance(ring(&[1, 2, 3]), Instant::now());
        let asked = ids(&history.rings().previous_owners(hash, Instant::now()));
        assert_eq!(
            asked.first(),
            Some(&member(4).id),
            "the leaver first: {asked:?}"
        );
        tokio::time::advance(GRACE + Duration::from_secs(1)).await;
        let asked = ids(&history.rings().previous_owners(hash, Instant::now()));
        assert!(
            !asked.contains(&member(4).id),
            "a member gone longer than the grace is not asked: {asked:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_joiner_asks_the_successor_for_its_window() {
        let mut history = history(5, &[5]);
        let full = ring(&[1, 2, 3, 5]);
        let hash = key_owned_by(&full, 5);
        history.advance(full.clone(), Instant::now());
        let successor = full
            .owner_excluding(hash, |id| *id == member(5).id)
            .expect("others")
            .id;
        let second = full
            .owner_excluding(hash, |id| *id == member(5).id || *id == successor)
            .expect("others")
            .id;
        let asked = history.rings().previous_owners(hash, Instant::now());
        assert_eq!(ids(&asked), vec![successor, second]);
        tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
        assert!(
            history
                .rings()
                .previous_owners(hash, Instant::now())
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rings_past_the_window_are_forgotten() {
        let mut history = history(1, &[1, 2]);
        let hash = key_owned_by(&ring(&[1, 2]), 2);
        tokio::time::advance(WINDOW * 2).await;
        history.advance(ring(&[1, 2, 3]), Instant::now());
        // The joiner window of node 1 is long over; [1, 2] was retired now.
        assert_eq!(history.rings().previous_len(), 1);
        let owners = history.rings().previous_owners(hash, Instant::now());
        assert_eq!(ids(&owners), vec![member(2).id]);
        tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
        assert!(
            history
                .rings()
                .previous_owners(hash, Instant::now())
                .is_empty()
        );
        history.advance(ring(&[1, 3]), Instant::now());
        assert_eq!(history.rings().previous_len(), 1, "the old one aged out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolling_restart_keeps_every_ring_of_the_roll() {
        let all = [1, 2, 3, 4, 5];
        let mut history = history(1, &all);
        let mut hashes = Vec::new();
        for gone in 2..=5u8 {
            hashes.push((gone, key_owned_by(&ring(&all), gone)));
            let without: Vec<u8> = all.iter().copied().filter(|&i| i != gone).collect();
            history.advance(ring(&without), Instant::now());
            history.advance(ring(&all), Instant::now());
        }
        assert_eq!(history.rings().previous_len(), 8);
        for (owner, hash) in hashes {
            let asked = ids(&history.rings().previous_owners(hash, Instant::now()));
            assert!(asked.contains(&member(owner).id), "{owner}: {asked:?}");
            assert!(!asked.contains(&member(1).id));
            assert!(asked.len() <= MAX_PREVIOUS_OWNERS);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_of_rings_is_bounded_and_an_unchanged_ring_is_no_change() {
        let mut history = history(1, &[1, 2]);
        history.advance(ring(&[1, 2]), Instant::now());
        assert_eq!(history.rings().previous_len(), 0);
        for i in 0..40u8 {
            history.advance(ring(&[1, 2, 10 + i]), Instant::now());
        }
        assert_eq!(history.rings().previous_len(), MAX_PREVIOUS_RINGS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_keeps_nothing_and_asks_no_one() {
        let mut history = RingHistory::new(Rings::new(
            member(1).id,
            ring(&[1]),
            Duration::ZERO,
            GRACE,
            Instant::now(),
        ));
        history.advance(ring(&[1, 2]), Instant::now());
        assert_eq!(history.rings().previous_len(), 0);
        for k in 0..100 {
            let hash = key_hash("g", &format!("k{k}"));
            assert!(
                history
                    .rings()
                    .previous_owners(hash, Instant::now())
                    .is_empty()
            );
        }
    }
}
