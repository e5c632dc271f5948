//! Lifeguard's dynamic suspicion, without I/O: a suspicion this member
//! raised (its own probe failed) is cut short as other members confirm it
//! independently (their own probes failed too), from `max` with no
//! confirmation down to `min` with `expected` of them:
//!
//! `timeout(C) = max(min, max − (max − min) · ln(C + 1) / ln(expected + 1))`
//!
//! as memberlist's `suspicion.go` computes it. Unlike memberlist, `max` is
//! the classic SWIM suspicion (`suspicion_multiplier`), so an unconfirmed
//! suspicion lasts exactly what it did before and only confirmed ones end
//! sooner: a dead member is probed, and so confirmed, by several members
//! within a second or two, a healthy one behind a lossy link almost never
//! by two at once.
//!
//! Only members whose own probe failed hold foca's `ChangeSuspectToDown`
//! timer, so they are the ones that count. A confirmation that arrives
//! before this member's own probe fails is kept, and counted once it does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use foca::Timer;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::identity::NodeId;

/// Suspicions followed at once; far more than a cluster has at a time. A
/// flood of confirmations for made-up members is dropped beyond it.
const MAX_FOLLOWED: usize = 4096;

/// One suspicion of one member: its identity and the incarnation it was
/// suspected at. A refutation raises the incarnation, so confirmations of a
/// refuted suspicion never count towards a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Suspect {
    pub gossip: SocketAddr,
    pub generation: u64,
    pub incarnation: u16,
}

impl Suspect {
    pub fn new(id: &NodeId, incarnation: u16) -> Self {
        Self {
            gossip: id.gossip,
            generation: id.generation,
            incarnation,
        }
    }
}

/// How long a suspicion lasts, by confirmations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// With no confirmation: foca's `suspect_to_down_after`.
    pub max: Duration,
    /// With `expected` confirmations or more.
    pub min: Duration,
    /// Confirmations that bring it down to `min`; 0 turns confirmations off.
    pub expected: u8,
}

impl Bounds {
    pub fn timeout(&self, confirmations: usize) -> Duration {
        if self.expected == 0 || confirmations == 0 || self.min >= self.max {
            return self.max;
        }
        let fraction = ((confirmations + 1) as f64).ln() / (f64::from(self.expected) + 1.0).ln();
        let cut = (self.max - self.min).mul_f64(fraction.min(1.0));
        (self.max - cut).max(self.min)
    }
}

/// What Lifeguard did since it was last asked: the node's
/// `shoal_gossip_suspicion_events_total`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// Confirmations of this member's failed probes, broadcast.
    pub confirmations_sent: u64,
    /// Other members' confirmations taken in.
    pub confirmations_received: u64,
    /// Suspicion timers brought forward by confirmations.
    pub shortened: u64,
    /// Suspicions of this member refuted straight to their confirmer.
    pub refuted: u64,
}

/// The suspicions this member follows.
#[derive(Default)]
pub struct Suspicions {
    followed: HashMap<Suspect, Suspicion>,
}

#[derive(Default)]
struct Suspicion {
    /// This member's own: when its probe failed, and foca's timer to fire
    /// sooner as confirmations come.
    own: Option<Own>,
    /// Other members that confirmed, at most `expected` of them.
    confirmers: Vec<SocketAddr>,
    /// Last change: followed suspicions are forgotten some time after.
    touched: Option<Instant>,
}

struct Own {
    started: Instant,
    timer: Timer<NodeId>,
    /// The earliest this member's timer is due.
    due: Instant,
}

impl Suspicions {
    /// This member's probe failed and foca scheduled `timer` for `due`.
    /// Returns an earlier deadline for the same timer when the
    /// confirmations already in call for one.
    pub fn raised(
        &mut self,
        suspect: Suspect,
        timer: Timer<NodeId>,
        due: Instant,
        now: Instant,
        bounds: Bounds,
    ) -> Option<(Instant, Timer<NodeId>)> {
        let suspicion = self.follow(suspect)?;
        suspicion.touched = Some(now);
        match &mut suspicion.own {
            // A later failed probe of the same suspicion: the first counts.
            Some(own) => {
                own.due = own.due.min(due);
                None
            }
            None => {
                suspicion.own = Some(Own {
                    started: now,
                    timer,
                    due,
                });
                suspicion.sooner(bounds)
            }
        }
    }

    /// Member `from` confirmed the suspicion. Returns the timer to fire
    /// again at an earlier deadline, if this member holds one.
    pub fn confirmed(
        &mut self,
        suspect: Suspect,
        from: SocketAddr,
        now: Instant,
        bounds: Bounds,
    ) -> Option<(Instant, Timer<NodeId>)> {
        let suspicion = self.follow(suspect)?;
        suspicion.touched = Some(now);
        if suspicion.confirmers.contains(&from)
            || suspicion.confirmers.len() >= usize::from(bounds.expected)
        {
            return None;
        }
        suspicion.confirmers.push(from);
        suspicion.sooner(bounds)
    }

    /// Forgets suspicions untouched for `age`: settled one way or the other
    /// by then (foca's own timer for them has fired).
    pub fn forget_older_than(&mut self, age: Duration, now: Instant) {
        self.followed
            .retain(|_, suspicion| suspicion.touched.is_some_and(|t| now - t < age));
    }

    pub fn is_empty(&self) -> bool {
        self.followed.is_empty()
    }

    fn follow(&mut self, suspect: Suspect) -> Option<&mut Suspicion> {
        if self.followed.len() >= MAX_FOLLOWED && !self.followed.contains_key(&suspect) {
            return None;
        }
        Some(self.followed.entry(suspect).or_default())
    }
}

impl Suspicion {
    fn sooner(&mut self, bounds: Bounds) -> Option<(Instant, Timer<NodeId>)> {
        let own = self.own.as_mut()?;
        let due = own.started + bounds.timeout(self.confirmers.len());
        if due >= own.due {
            return None;
        }
        own.due = due;
        Some((due, own.timer.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max: Duration::from_secs(8),
        min: Duration::from_secs(2),
        expected: 2,
    };

    fn id() -> NodeId {
        NodeId::new("x", "10.0.0.9:7946".parse().expect("addr"), 8000, 5)
    }

    fn timer(incarnation: u16) -> Timer<NodeId> {
        Timer::ChangeSuspectToDown {
            member_id: id(),
            incarnation,
            token: 1,
        }
    }

    fn from(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7946))
    }

    #[test]
    fn the_timeout_falls_from_max_to_min_with_confirmations() {
        assert_eq!(BOUNDS.timeout(0), BOUNDS.max);
        // memberlist's figure: 8 − 6 · ln 2 / ln 3 = 4.21 s.
        let one = BOUNDS.timeout(1).as_secs_f64();
        assert!((one - 4.214).abs() < 0.01, "{one}");
        assert_eq!(BOUNDS.timeout(2), BOUNDS.min);
        assert_eq!(BOUNDS.timeout(9), BOUNDS.min);
        let off = Bounds {
            expected: 0,
            ..BOUNDS
        };
        assert_eq!(off.timeout(5), BOUNDS.max);
    }

    #[test]
    fn confirmations_bring_the_own_timer_forward_once_each() {
        let start = Instant::now();
        let mut suspicions = Suspicions::default();
        let suspect = Suspect::new(&id(), 3);
        assert!(
            suspicions
                .raised(suspect, timer(3), start + BOUNDS.max, start, BOUNDS)
                .is_none()
        );
        let (due, again) = suspicions
            .confirmed(suspect, from(1), start, BOUNDS)
            .expect("sooner");
        assert_eq!(due, start + BOUNDS.timeout(1));
        assert_eq!(again, timer(3));
        // The same member again counts for nothing.
        assert!(
            suspicions
                .confirmed(suspect, from(1), start, BOUNDS)
                .is_none()
        );
        let (due, _) = suspicions
            .confirmed(suspect, from(2), start, BOUNDS)
            .expect("sooner");
        assert_eq!(due, start + BOUNDS.min);
        assert!(
            suspicions
                .confirmed(suspect, from(3), start, BOUNDS)
                .is_none()
        );
    }

    #[test]
    fn confirmations_before_the_own_probe_fails_count_when_it_does() {
        let start = Instant::now();
        let mut suspicions = Suspicions::default();
        let suspect = Suspect::new(&id(), 3);
        assert!(
            suspicions
                .confirmed(suspect, from(1), start, BOUNDS)
                .is_none()
        );
        assert!(
            suspicions
                .confirmed(suspect, from(2), start, BOUNDS)
                .is_none()
        );
        let later = start + Duration::from_secs(1);
        let (due, _) = suspicions
            .raised(suspect, timer(3), later + BOUNDS.max, later, BOUNDS)
            .expect("sooner");
        assert_eq!(due, later + BOUNDS.min);
    }

    #[test]
    fn a_refuted_suspicion_does_not_lend_its_confirmations() {
        let start = Instant::now();
        let mut suspicions = Suspicions::default();
        suspicions.confirmed(Suspect::new(&id(), 3), from(1), start, BOUNDS);
        suspicions.confirmed(Suspect::new(&id(), 3), from(2), start, BOUNDS);
        // The member refuted: incarnation 4 is a new suspicion.
        assert!(
            suspicions
                .raised(
                    Suspect::new(&id(), 4),
                    timer(4),
                    start + BOUNDS.max,
                    start,
                    BOUNDS
                )
                .is_none()
        );
    }

    #[test]
    fn old_suspicions_are_forgotten_and_the_table_is_bounded() {
        let start = Instant::now();
        let mut suspicions = Suspicions::default();
        for port in 0..(MAX_FOLLOWED as u16 + 10) {
            let suspect = Suspect {
                gossip: SocketAddr::from(([10, 0, 0, 1], port)),
                generation: 1,
                incarnation: 0,
            };
            suspicions.confirmed(suspect, from(1), start, BOUNDS);
        }
        assert_eq!(suspicions.followed.len(), MAX_FOLLOWED);
        suspicions.forget_older_than(Duration::from_secs(30), start + Duration::from_secs(31));
        assert!(suspicions.is_empty());
    }
}
