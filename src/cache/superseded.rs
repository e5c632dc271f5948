//! What PUTs and DELETEs have superseded, per key: copies of a key at or
//! below its recorded version are refused when they arrive by a peek or a
//! handoff, so an acknowledged write is never undone by an older copy.
//!
//! The map is bounded. A record pushed out by the bound raises a floor that
//! applies to every key instead, so forgetting a record can only make this
//! node refuse more (and load again), never accept a copy it should not.
//! Records also expire after the time a copy can plausibly still be on its
//! way (the previous-rings window, and at least ten minutes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hashbrown::HashTable;
use tokio::time::Instant;

use super::version::Version;

/// Records kept per group.
const CAPACITY: usize = 100_000;
/// The shortest time a record is kept.
const MIN_KEEP: Duration = Duration::from_secs(600);

/// Compact, as the main cache is (issue 11): a full record of 100,000
/// writes is about 6 MB (a 24-byte record in the table, and a 16-byte place
/// in the order queue, at most two per record), where moka took 35 MB.
pub struct Superseded {
    records: Mutex<Records>,
    /// Every key's copies at or below this are refused.
    floor: AtomicU64,
    capacity: usize,
    /// Seconds a record is kept.
    keep: u32,
    started: Instant,
}

#[derive(Default)]
struct Records {
    /// Keyed by the low 64 bits of the key's digest: two keys that share
    /// them share a record, which can only refuse more, never less.
    table: HashTable<Record>,
    /// `(slot, stamp)` in the order records were written; a place whose
    /// stamp is no longer its record's is a stale one, skipped.
    order: VecDeque<(u64, u32)>,
}

struct Record {
    slot: u64,
    version: Version,
    /// When it was last raised, in seconds since `started`.
    stamp: u32,
}

impl Superseded {
    pub fn new(keep: Duration) -> Self {
        Self::with_capacity(CAPACITY, keep)
    }

    fn with_capacity(capacity: usize, keep: Duration) -> Self {
        Self {
            records: Mutex::new(Records::default()),
            floor: AtomicU64::new(0),
            capacity,
            keep: u32::try_from(keep.max(MIN_KEEP).as_secs()).unwrap_or(u32::MAX),
            started: Instant::now(),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(
            Instant::now()
                .saturating_duration_since(self.started)
                .as_secs(),
        )
        .unwrap_or(u32::MAX)
    }

    /// Records that every copy of the key up to `version` is superseded.
    pub fn supersede(&self, digest: u128, version: Version) {
        let slot = digest as u64;
        let now = self.now();
        // Nothing in here panics mid-change, so a poisoned lock is whole.
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.expire(now, self.keep);
        match records.table.find_mut(slot, |record| record.slot == slot) {
            Some(record) if record.version >= version => return,
            Some(record) => {
                record.version = version;
                record.stamp = now;
            }
            None => {
                records.table.insert_unique(
                    slot,
                    Record {
                        slot,
                        version,
                        stamp: now,
                    },
                    |record| record.slot,
                );
            }
        }
        records.order.push_back((slot, now));
        while records.table.len() > self.capacity {
            match records.pop_oldest() {
                // Forgetting it must not let an older copy in: raise the floor.
                Some(forgotten) => {
                    self.floor.fetch_max(forgotten.0, Ordering::AcqRel);
                }
                None => break,
            }
        }
        if records.order.len() > 2 * records.table.len() + 1024 {
            records.compact();
        }
    }

    /// Whether a copy of the key at `version` is older than a write this
    /// node knows of.
    pub fn refuses(&self, digest: u128, version: Version) -> bool {
        let floor = Version(self.floor.load(Ordering::Acquire));
        let slot = digest as u64;
        let now = self.now();
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let through = records
            .table
            .find(slot, |record| record.slot == slot)
            .filter(|record| now.saturating_sub(record.stamp) < self.keep)
            .map_or(Version::ZERO, |record| record.version);
        version <= floor.max(through)
    }
}

impl Records {
    /// Drops records not raised for `keep` seconds.
    fn expire(&mut self, now: u32, keep: u32) {
        while let Some(&(_, stamp)) = self.order.front()
            && now.saturating_sub(stamp) >= keep
        {
            self.pop_front();
        }
    }

    /// Drops the record written longest ago; its version.
    fn pop_oldest(&mut self) -> Option<Version> {
        while !self.order.is_empty() {
            if let Some(version) = self.pop_front() {
                return Some(version);
            }
        }
        None
    }

    /// Takes the first place in the order, and its record if the place is
    /// the record's latest; that record's version.
    fn pop_front(&mut self) -> Option<Version> {
        let (slot, stamp) = self.order.pop_front()?;
        let found = self
            .table
            .find_entry(slot, |record| record.slot == slot && record.stamp == stamp)
            .ok()?;
        Some(found.remove().0.version)
    }

    /// Rebuilds the order from the records, without stale places.
    fn compact(&mut self) {
        let mut order: Vec<(u64, u32)> = self
            .table
            .iter()
            .map(|record| (record.slot, record.stamp))
            .collect();
        order.sort_by_key(|&(_, stamp)| stamp);
        self.order = order.into();
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

    #[tokio::test(start_paused = true)]
    async fn records_expire_after_they_were_last_raised() {
        let superseded = Superseded::new(Duration::from_secs(60));
        superseded.supersede(1, Version(10));
        superseded.supersede(2, Version(10));
        tokio::time::advance(Duration::from_secs(400)).await;
        // Raised again: kept 600 s from now.
        superseded.supersede(2, Version(11));
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(!superseded.refuses(1, Version(5)), "forgotten after 600 s");
        assert!(superseded.refuses(2, Version(11)), "600 s after its raise");
        superseded.supersede(3, Version(1));
        assert_eq!(superseded.records.lock().expect("lock").table.len(), 2);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(!superseded.refuses(2, Version(11)));
    }

    /// Raising one record over and over does not grow the order queue
    /// without bound.
    #[test]
    fn the_order_stays_bounded_under_rewrites() {
        let superseded = Superseded::with_capacity(100, Duration::from_secs(60));
        for version in 0..10_000u64 {
            superseded.supersede(u128::from(version % 7), Version(version));
        }
        let records = superseded.records.lock().expect("lock");
        assert_eq!(records.table.len(), 7);
        assert!(records.order.len() <= 2 * 7 + 1024 + 1);
        drop(records);
        // 9,999 is the last version written to slot 3 (9,999 % 7 == 3).
        assert!(superseded.refuses(3, Version(9_999)));
        assert!(!superseded.refuses(3, Version(10_000)));
    }

    #[test]
    fn a_record_pushed_out_raises_the_floor() {
        let superseded = Superseded::with_capacity(10, Duration::from_secs(60));
        for digest in 0..1000u128 {
            superseded.supersede(digest, Version(100 + digest as u64));
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
