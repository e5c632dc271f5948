//! When to resolve the seeds again, whom to announce to, and when a
//! gossiping node is ready. Pure: time and randomness are inputs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::time::Instant;

use super::Resolved;

/// The first quick retry; each one after doubles, up to the interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How many addresses one round announces to at most: enough that a new
/// node reaches the cluster, few enough for a sidecar cluster of hundreds.
pub const DEFAULT_FANOUT: usize = 3;

/// The re-resolve schedule.
///
/// Until the node has joined someone it resolves quickly, 1, 2, 4, 8 s …
/// (capped at the interval), so pods that start together and each see only
/// themselves at first find each other in seconds. Once joined, it resolves
/// every `interval`, so that halves started apart or split by a partition
/// merge again. A round in which a seed failed to resolve is retried on the
/// same doubling steps, never given up.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    /// The delay the next quick retry waits.
    step: Duration,
}

impl Schedule {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            step: FIRST_RETRY.min(interval),
        }
    }

    /// When the next round is due, given that the last one ended at `now`,
    /// whether the node has joined someone, and whether every seed resolved.
    pub fn next(&mut self, now: Instant, joined: bool, all_resolved: bool) -> Instant {
        if joined && all_resolved {
            self.step = FIRST_RETRY.min(self.interval);
            return now + self.interval;
        }
        let delay = self.step;
        self.step = (self.step * 2).min(self.interval);
        now + delay
    }
}

/// Whom to announce to this round: the resolved addresses other than this
/// node's own gossip address and those already in the membership, at most
/// `fanout` of them, chosen at random.
pub fn announce_targets<R: Rng + ?Sized>(
    resolved: &[SocketAddr],
    me: SocketAddr,
    members: &HashSet<SocketAddr>,
    fanout: usize,
    rng: &mut R,
) -> Vec<SocketAddr> {
    let candidates: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|addr| *addr != me && !members.contains(addr))
        .collect();
    candidates.sample(rng, fanout).copied().collect()
}

/// The seeds resolved, every one of them, to nothing but this node: no one
/// else to join, so waiting would never end.
pub fn alone(resolved: &Resolved, me: SocketAddr) -> bool {
    resolved.failures.is_empty() && resolved.addrs.iter().all(|addr| *addr == me)
}

/// A gossiping node is ready once it has joined someone, or its seeds
/// resolved to nothing but itself.
pub fn ready(joined: bool, resolved: &Resolved, me: SocketAddr) -> bool {
    joined || alone(resolved, me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const INTERVAL: Duration = Duration::from_secs(30);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7946))
    }

    /// The delays a schedule hands out for a run of rounds.
    fn delays(schedule: &mut Schedule, rounds: &[(bool, bool)]) -> Vec<Duration> {
        let mut now = Instant::now();
        rounds
            .iter()
            .map(|&(joined, all_resolved)| {
                let next = schedule.next(now, joined, all_resolved);
                let delay = next - now;
                now = next;
                delay
            })
            .collect()
    }

    #[test]
    fn before_joining_it_doubles_from_one_second_to_the_interval() {
        let mut schedule = Schedule::new(INTERVAL);
        let got = delays(&mut schedule, &[(false, true); 8]);
        let want = [1, 2, 4, 8, 16, 30, 30, 30].map(secs);
        assert_eq!(got, want);
    }

    #[test]
    fn once_joined_it_waits_the_interval() {
        let mut schedule = Schedule::new(INTERVAL);
        let got = delays(
            &mut schedule,
            &[(false, true), (false, true), (true, true), (true, true)],
        );
        assert_eq!(got, [secs(1), secs(2), INTERVAL, INTERVAL]);
    }

    #[test]
    fn failures_after_joining_back_off_from_one_second_and_reset_on_success() {
        let mut schedule = Schedule::new(INTERVAL);
        let rounds = [
            (true, true),
            (true, false),
            (true, false),
            (true, false),
            (true, true),
            (true, false),
        ];
        let got = delays(&mut schedule, &rounds);
        assert_eq!(
            got,
            [INTERVAL, secs(1), secs(2), secs(4), INTERVAL, secs(1)]
        );
    }

    #[test]
    fn failures_never_stop_the_schedule() {
        let mut schedule = Schedule::new(INTERVAL);
        let got = delays(&mut schedule, &[(true, false); 40]);
        assert!(
            got.iter().all(|d| *d >= secs(1) && *d <= INTERVAL),
            "{got:?}"
        );
        assert_eq!(got.last(), Some(&INTERVAL));
    }

    #[test]
    fn a_short_interval_caps_the_quick_steps() {
        let mut schedule = Schedule::new(Duration::from_millis(500));
        let got = delays(&mut schedule, &[(false, true), (false, true), (true, true)]);
        assert_eq!(got, [Duration::from_millis(500); 3]);
        let mut schedule = Schedule::new(secs(3));
        let got = delays(&mut schedule, &[(false, true); 4]);
        assert_eq!(got, [secs(1), secs(2), secs(3), secs(3)]);
    }

    #[test]
    fn losing_the_cluster_goes_back_to_quick_steps() {
        let mut schedule = Schedule::new(INTERVAL);
        let got = delays(&mut schedule, &[(true, true), (false, true), (false, true)]);
        assert_eq!(got, [INTERVAL, secs(1), secs(2)]);
    }

    #[test]
    fn targets_leave_out_this_node_and_members_and_are_bounded() {
        let me = addr(1);
        let resolved: Vec<SocketAddr> = (1..=200).map(addr).collect();
        let members: HashSet<SocketAddr> = (2..=100).map(addr).collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let targets = announce_targets(&resolved, me, &members, DEFAULT_FANOUT, &mut rng);
            assert_eq!(targets.len(), DEFAULT_FANOUT, "{targets:?}");
            let distinct: HashSet<_> = targets.iter().collect();
            assert_eq!(
                distinct.len(),
                targets.len(),
                "no address twice: {targets:?}"
            );
            for target in &targets {
                assert_ne!(*target, me);
                assert!(!members.contains(target), "{target} is already a member");
                assert!(resolved.contains(target));
            }
            seen.extend(targets);
        }
        // Random, not always the same few: over 200 rounds nearly all of the
        // 100 candidates come up (a fixed choice would show 3).
        assert!(seen.len() > 90, "only {} distinct targets", seen.len());
    }

    #[test]
    fn targets_are_reproducible_with_a_seeded_rng() {
        let resolved: Vec<SocketAddr> = (1..=50).map(addr).collect();
        let pick = |seed| {
            announce_targets(
                &resolved,
                addr(1),
                &HashSet::new(),
                3,
                &mut StdRng::seed_from_u64(seed),
            )
        };
        assert_eq!(pick(42), pick(42));
        assert_ne!((1..10).map(pick).collect::<HashSet<_>>().len(), 1);
    }

    #[test]
    fn few_candidates_are_all_taken_and_none_gives_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let resolved = [addr(1), addr(2), addr(3)];
        let mut targets = announce_targets(&resolved, addr(1), &HashSet::new(), 3, &mut rng);
        targets.sort();
        assert_eq!(targets, [addr(2), addr(3)]);
        let members: HashSet<_> = [addr(2), addr(3)].into();
        assert!(announce_targets(&resolved, addr(1), &members, 3, &mut rng).is_empty());
        assert!(announce_targets(&[], addr(1), &members, 3, &mut rng).is_empty());
        assert!(announce_targets(&resolved, addr(9), &HashSet::new(), 0, &mut rng).is_empty());
    }

    fn resolved(addrs: &[SocketAddr], failures: usize) -> Resolved {
        Resolved {
            addrs: addrs.to_vec(),
            failures: (0..failures)
                .map(|i| (format!("bad{i}.example:7946"), "no such name".to_owned()))
                .collect(),
        }
    }

    #[test]
    fn ready_once_joined_or_alone_by_the_seeds() {
        let me = addr(1);
        assert!(ready(true, &resolved(&[me, addr(2)], 0), me), "joined");
        assert!(
            ready(true, &resolved(&[], 1), me),
            "joined, lookups failing"
        );
        assert!(
            ready(false, &resolved(&[me], 0), me),
            "the seeds show only this node"
        );
        assert!(ready(false, &resolved(&[], 0), me), "no seeds at all");
        assert!(
            !ready(false, &resolved(&[me, addr(2)], 0), me),
            "someone to join"
        );
        assert!(
            !ready(false, &resolved(&[addr(2)], 0), me),
            "someone else only"
        );
        assert!(
            !ready(false, &resolved(&[me], 1), me),
            "a seed did not resolve"
        );
        assert!(!ready(false, &resolved(&[], 1), me), "nothing resolved");
        assert!(alone(&resolved(&[me], 0), me));
        assert!(!alone(&resolved(&[me], 1), me));
    }
}
