//! Hot-cache admission: a value fetched from its owner is copied into this
//! node's hot cache only when its key is read often here.
//!
//! A count-min sketch (four rows of saturating 8-bit counters, halved
//! periodically so old popularity fades) estimates how often each key was
//! read at this node. One read is never enough, so a scan of keys read once
//! cannot push hot keys out; moka's own TinyLFU admission then guards a full
//! hot cache against keys less popular than its victims.

use std::sync::Mutex;

const ROWS: usize = 4;

pub struct HotAdmission {
    inner: Mutex<Sketch>,
    /// Reads needed (this one included) before a key is admitted.
    min_reads: u8,
}

struct Sketch {
    counters: Vec<[u8; ROWS]>,
    mask: usize,
    increments: usize,
    /// After this many increments every counter is halved.
    reset_after: usize,
}

impl HotAdmission {
    /// A sketch with about `width` slots per row (rounded up to a power of
    /// two, at least 4096), admitting keys read at least `min_reads` times.
    /// False admissions stay rare while the keys read between two halvings
    /// number well under `width`.
    pub fn new(width: usize, min_reads: u8) -> Self {
        let width = width.clamp(4096, 1 << 22).next_power_of_two();
        Self {
            inner: Mutex::new(Sketch {
                counters: vec![[0; ROWS]; width],
                mask: width - 1,
                increments: 0,
                reset_after: width * 10,
            }),
            min_reads: min_reads.max(1),
        }
    }

    /// Records one read of the key with this hash; returns the new estimate.
    pub fn record(&self, hash: u64) -> u8 {
        let mut sketch = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sketch.increment(hash)
    }

    /// Whether a key read `estimate` times (as [`Self::record`] returned) may enter.
    pub fn admits(&self, estimate: u8) -> bool {
        estimate >= self.min_reads
    }
}

impl Sketch {
    fn slot(&self, hash: u64, row: usize) -> usize {
        // Each row takes its index from a different part of a remixed hash.
        let mixed =
            hash.rotate_left(16 * row as u32) ^ (hash >> 29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed as usize) & self.mask
    }

    fn increment(&mut self, hash: u64) -> u8 {
        let mut estimate = u8::MAX;
        for row in 0..ROWS {
            let slot = self.slot(hash, row);
            let counter = &mut self.counters[slot][row];
            *counter = counter.saturating_add(1);
            estimate = estimate.min(*counter);
        }
        self.increments += 1;
        if self.increments >= self.reset_after {
            self.increments = 0;
            for slot in &mut self.counters {
                for counter in slot.iter_mut() {
                    *counter /= 2;
                }
            }
        }
        estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn hash(i: u64) -> u64 {
        xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn a_key_read_once_is_not_admitted() {
        let admission = HotAdmission::new(4096, 2);
        for i in 0..200 {
            assert!(
                !admission.admits(admission.record(hash(i))),
                "key {i} admitted on its first read"
            );
        }
    }

    #[test]
    fn a_key_read_twice_is_admitted() {
        let admission = HotAdmission::new(4096, 2);
        let first = admission.record(hash(7));
        assert!(!admission.admits(first));
        assert!(admission.admits(admission.record(hash(7))));
    }

    #[test]
    fn popularity_fades() {
        let admission = HotAdmission::new(4096, 2);
        for _ in 0..8 {
            admission.record(hash(1));
        }
        // Reads of another key until the counters are halved once.
        for _ in 0..4096 * 10 - 8 {
            admission.record(hash(2));
        }
        assert_eq!(admission.record(hash(1)), 4 + 1);
    }
}
