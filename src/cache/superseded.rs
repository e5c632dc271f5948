//! What PUTs and DELETEs have superseded, per key: copies of a key at or
//! below its recorded version are refused when they arrive by a peek or a
//! handoff, so an acknowledged write is never undone by an older copy.
//!
//! The map is bounded. A record pushed out by the bound raises a floor that
//! applies to every key instead, so forgetting a record can only make this
//! node refuse more (and load again), never accept a copy it should not.
//! Records also expire after the time a copy can plausibly still be on its
//! way (the previous-rings window, and at least ten minutes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::version::Version;

/// Records kept per group.
const CAPACITY: u64 = 100_000;
/// The shortest time a record is kept.
const MIN_KEEP: Duration = Duration::from_secs(600);

pub struct Superseded {
    through: Cache<u128, Version>,
    /// Every key's copies at or below this are refused.
    floor: Arc<AtomicU64>,
}

impl Superseded {
    pub fn new(keep: Duration) -> Self {
        Self::with_capacity(CAPACITY, keep)
    }

    fn with_capacity(capacity: u64, keep: Duration) -> Self {
        let floor = Arc::new(AtomicU64::new(0));
        let raise = Arc::clone(&floor);
        let through = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(keep.max(MIN_KEEP))
            .eviction_listener(move |_digest, version: Version, cause| {
                if cause == RemovalCause::Size {
                    raise.fetch_max(version.0, Ordering::AcqRel);
                }
            })
            .build();
        Self { through, floor }
    }

    /// Records that every copy of the key up to `version` is superseded.
    pub fn supersede(&self, digest: u128, version: Version) {
        let entry = self.through.entry(digest).or_insert(version);
        if !entry.is_fresh() && *entry.value() < version {
            self.through.insert(digest, version);
        }
    }

    /// Whether a copy of the key at `version` is older than a write this
    /// node knows of.
    pub fn refuses(&self, digest: u128, version: Version) -> bool {
        let floor = Version(self.floor.load(Ordering::Acquire));
        let through = self.through.get(&digest).unwrap_or(Version::ZERO);
        version <= floor.max(through)
    }

    #[cfg(test)]
    fn settle(&self) {
        self.through.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_at_or_below_a_write_are_refused() {
        let superseded = Superseded::new(Duration::from_secs(60));
        assert!(!superseded.refuses(1, Version(5)));
        superseded.supersede(1, Version(10));
        assert!(superseded.refuses(1, Version(5)));
        assert!(superseded.refuses(1, Version(10)));
        assert!(!superseded.refuses(1, Version(11)));
        assert!(
            !superseded.refuses(2, Version(5)),
            "other keys are unaffected"
        );
        superseded.supersede(1, Version(3));
        assert!(
            superseded.refuses(1, Version(10)),
            "an older write lowers nothing"
        );
        superseded.supersede(1, Version(20));
        assert!(superseded.refuses(1, Version(15)));
    }

    #[test]
    fn a_record_pushed_out_raises_the_floor() {
        let superseded = Superseded::with_capacity(10, Duration::from_secs(60));
        for digest in 0..1000u128 {
            superseded.supersede(digest, Version(100 + digest as u64));
            superseded.settle();
        }
        // Whatever was forgotten, no key accepts a copy it had refused.
        for digest in 0..1000u128 {
            assert!(
                superseded.refuses(digest, Version(100 + digest as u64)),
                "{digest}"
            );
        }
        assert!(!superseded.refuses(5, Version(5000)));
    }
}
