//! Versions that order the writes to a key across nodes, so that an older
//! copy arriving late (by a peek or a handoff) never undoes a newer PUT or
//! DELETE.
//!
//! A version is a hybrid logical clock reading: milliseconds of wall-clock
//! time in the high 48 bits, a counter in the low 16. Every node stamps the
//! values it loads or stores with its own clock, and moves its clock past
//! every version it receives, so a write that follows another (as a DELETE
//! follows the load it undoes) gets a higher version even when the nodes'
//! clocks disagree a little. Pure but for [`Clock::now`] reading the wall
//! clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Bits of a version that count within one millisecond.
const COUNTER_BITS: u32 = 16;
/// A received version more than this far ahead of the wall clock is not
/// followed: one node with a wild clock must not drag everyone's along.
const MAX_DRIFT: Duration = Duration::from_secs(60);

/// The version of one write to a key. `Version::ZERO` is older than any
/// write (what a copy from a node that sends no version gets).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Version(pub u64);

impl Version {
    pub const ZERO: Version = Version(0);

    /// The version just below this one: a PUT at `v` supersedes every copy
    /// up to `v.before()` but not its own value.
    pub fn before(self) -> Version {
        Version(self.0.saturating_sub(1))
    }

    fn at_millis(millis: u64) -> Version {
        Version(millis << COUNTER_BITS)
    }
}

/// A node's hybrid logical clock.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// A version above every one this clock produced or observed.
    pub fn now(&self) -> Version {
        self.tick(wall_millis())
    }

    /// Takes note of a version another node produced.
    pub fn observe(&self, seen: Version) {
        self.observe_at(seen, wall_millis());
    }

    fn tick(&self, wall_millis: u64) -> Version {
        let physical = Version::at_millis(wall_millis).0;
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(physical.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        Version(physical.max(previous.saturating_add(1)))
    }

    fn observe_at(&self, seen: Version, wall_millis: u64) {
        let limit = Version::at_millis(wall_millis.saturating_add(MAX_DRIFT.as_millis() as u64));
        if seen <= limit {
            self.last.fetch_max(seen.0, Ordering::AcqRel);
        }
    }
}

fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> COUNTER_BITS))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_increase_even_when_the_wall_clock_stands_still_or_steps_back() {
        let clock = Clock::default();
        let a = clock.tick(1_000);
        let b = clock.tick(1_000);
        let c = clock.tick(900);
        let d = clock.tick(2_000);
        assert!(a < b && b < c && c < d, "{a:?} {b:?} {c:?} {d:?}");
        assert_eq!(d, Version::at_millis(2_000));
    }

    #[test]
    fn a_write_after_a_received_version_is_newer_than_it() {
        // Node B's clock is 5 s behind node A's: B's DELETE of a value that
        // A loaded must still be newer than A's load.
        let a = Clock::default();
        let b = Clock::default();
        let loaded = a.tick(10_000);
        b.observe_at(loaded, 5_000);
        let deleted = b.tick(5_000);
        assert!(deleted > loaded);
    }

    #[test]
    fn a_wild_version_is_not_followed() {
        let clock = Clock::default();
        clock.observe_at(Version::at_millis(10_000_000), 1_000);
        assert!(clock.tick(1_000) < Version::at_millis(2_000));
        clock.observe_at(Version::at_millis(30_000), 1_000);
        assert!(clock.tick(1_000) > Version::at_millis(30_000));
    }

    #[test]
    fn before_is_just_below() {
        assert!(Version(5).before() < Version(5));
        assert_eq!(Version::ZERO.before(), Version::ZERO);
    }
}
