//! The main cache's map: entries by their key's digest, bounded in bytes,
//! least recently used out first, as in groupcache. Pure: no I/O, no
//! clock but the `now` and the second the caller passes in.
//!
//! Built for a million small entries (issue 11): moka keeps about 290
//! bytes of its own per entry (map bucket, value and info records, key
//! copies, access-order node); this keeps 24 in a slot, plus the hash
//! table's 4-byte index (at its load factor, 5 to 9 bytes). Slots live in
//! one `Vec` per shard, linked into a recency list by index, and freed
//! slots are reused, so an entry costs no allocation of the map's own.
//!
//! Recency is noted at most once a second per entry (the `second` a read
//! passes in, as memcached bumps an item at most once a minute): a read
//! that finds its entry already noted this second takes the shard's read
//! lock only, so a key read everywhere at once does not queue every core on
//! one write lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use tokio::time::Instant;

use super::freshness::Stage;
use super::value::Entry;

/// Shards of the map, each with its own lock; a power of two.
const SHARDS: usize = 16;

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

/// Slots a write looks at, beyond its own, for entries past every window,
/// so memory held by expired entries nobody reads comes back as the cache
/// is written.
const SWEEP_PER_WRITE: usize = 2;

pub struct Lru {
    shards: Box<[RwLock<Shard>]>,
    capacity: u64,
    /// What every entry held weighs, together ([`Entry::weight`]).
    weight: AtomicU64,
    /// The shard an over-full cache takes its next victim from when the
    /// writing shard has none to give.
    next_victim: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    /// Indexes into `slots`, hashed by the slot's digest.
    table: HashTable<u32>,
    slots: Vec<Slot>,
    /// The most recently used slot, and the least.
    head: u32,
    tail: u32,
    /// Freed slots, linked through `next`.
    free: u32,
    len: usize,
    /// Where the write-time sweep looks next.
    sweep_at: usize,
}

struct Slot {
    digest: u64,
    /// `None`: a free slot.
    entry: Option<Arc<Entry>>,
    prev: u32,
    next: u32,
}

/// What a write did beyond storing: entries pushed out to make room, and
/// entries dropped because they were past every window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub evicted: u64,
    pub expired: u64,
}

impl Lru {
    pub fn new(capacity: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
            capacity,
            weight: AtomicU64::new(0),
            next_victim: AtomicUsize::new(0),
        }
    }

    /// The entry under `digest`, noted as used at `second` unless it was
    /// already this second.
    pub fn get(&self, digest: u64, second: u32) -> Option<Arc<Entry>> {
        let shard = self.shard_index(digest);
        let entry = {
            let held = self.read(shard);
            let index = held.find(digest)?;
            held.entry(index)?
        };
        if entry.last_used() != second {
            let mut held = self.write(shard);
            if let Some(index) = held.find(digest) {
                held.bump(index);
            }
        }
        Some(entry)
    }

    /// The entry under `digest`, without noting a use.
    pub fn peek(&self, digest: u64) -> Option<Arc<Entry>> {
        let held = self.read(self.shard_index(digest));
        held.entry(held.find(digest)?)
    }

    /// Keeps `entry` under `digest` (in place of any entry there) as the
    /// most recently used, then pushes out the least recently used until the
    /// whole is within the capacity. `entry` itself is never pushed out: the
    /// caller keeps entries heavier than the capacity away.
    pub fn insert(&self, digest: u64, entry: Arc<Entry>, now: Instant) -> Removed {
        let shard = self.shard_index(digest);
        let weight = u64::from(entry.weight());
        let mut removed = Removed::default();
        {
            let mut held = self.write(shard);
            let replaced = held.put(digest, entry);
            self.weight.fetch_add(weight, Ordering::Relaxed);
            if let Some(old) = replaced {
                self.weight
                    .fetch_sub(u64::from(old.weight()), Ordering::Relaxed);
            }
            removed.expired = held.sweep(now, &self.weight);
            // Victims from this shard first, while it has any but the new
            // entry (at its head).
            while self.weight.load(Ordering::Relaxed) > self.capacity && held.len > 1 {
                if let Some(victim) = held.pop_tail() {
                    self.weight
                        .fetch_sub(u64::from(victim.weight()), Ordering::Relaxed);
                    removed.evicted += 1;
                }
            }
        }
        removed.evicted += self.evict_elsewhere(shard);
        removed
    }

    /// Pushes out least recently used entries of the other shards, one shard
    /// lock at a time, while the whole is over capacity.
    fn evict_elsewhere(&self, writer: usize) -> u64 {
        let mut evicted = 0;
        let mut empty_in_a_row = 0;
        while self.weight.load(Ordering::Relaxed) > self.capacity && empty_in_a_row < SHARDS {
            let shard = self.next_victim.fetch_add(1, Ordering::Relaxed) % SHARDS;
            if shard == writer {
                empty_in_a_row += 1;
                continue;
            }
            match self.write(shard).pop_tail() {
                Some(victim) => {
                    self.weight
                        .fetch_sub(u64::from(victim.weight()), Ordering::Relaxed);
                    evicted += 1;
                    empty_in_a_row = 0;
                }
                None => empty_in_a_row += 1,
            }
        }
        evicted
    }

    /// Drops the entry under `digest`, if there is one.
    pub fn remove(&self, digest: u64) {
        let mut held = self.write(self.shard_index(digest));
        if let Some(index) = held.find(digest)
            && let Some(old) = held.release(index)
        {
            self.weight
                .fetch_sub(u64::from(old.weight()), Ordering::Relaxed);
        }
    }

    /// Drops the entry under `digest` if it is still `entry` (not one
    /// written since it was read).
    pub fn remove_entry(&self, digest: u64, entry: &Arc<Entry>) {
        let mut held = self.write(self.shard_index(digest));
        if let Some(index) = held.find(digest)
            && held.slots[index as usize]
                .entry
                .as_ref()
                .is_some_and(|held| Arc::ptr_eq(held, entry))
            && let Some(old) = held.release(index)
        {
            self.weight
                .fetch_sub(u64::from(old.weight()), Ordering::Relaxed);
        }
    }

    /// Every entry held, in no particular order.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut entries = Vec::with_capacity(self.len());
        for shard in 0..SHARDS {
            let held = self.read(shard);
            entries.extend(held.slots.iter().filter_map(|slot| slot.entry.clone()));
        }
        entries
    }

    /// What the entries held weigh.
    pub fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|shard| self.read(shard).len).sum()
    }

    fn shard_index(&self, digest: u64) -> usize {
        // hashbrown places by the low bits and tags by the top seven; shard
        // by bits in between, so that neither is the same across a shard.
        (digest >> 32) as usize % SHARDS
    }

    // A panic while a shard is locked leaves it consistent (every change
    // to it completes before any call that could panic), so a poisoned lock
    // is used as it is.
    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shard {
    fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            free: NIL,
            ..Self::default()
        }
    }

    fn find(&self, digest: u64) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(digest, |&index| slots[index as usize].digest == digest)
            .copied()
    }

    fn entry(&self, index: u32) -> Option<Arc<Entry>> {
        self.slots[index as usize].entry.clone()
    }

    /// Stores `entry` under `digest` at the front; the entry it replaced,
    /// if any.
    fn put(&mut self, digest: u64, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        if let Some(index) = self.find(digest) {
            let old = self.slots[index as usize].entry.replace(entry);
            self.bump(index);
            return old;
        }
        let slot = Slot {
            digest,
            entry: Some(entry),
            prev: NIL,
            next: NIL,
        };
        let index = if self.free == NIL {
            // u32 slots per shard: 68 billion entries in all, far past
            // what any memory holds.
            let index = u32::try_from(self.slots.len()).unwrap_or(NIL - 1);
            self.slots.push(slot);
            index
        } else {
            let index = self.free;
            self.free = self.slots[index as usize].next;
            self.slots[index as usize] = slot;
            index
        };
        let slots = &self.slots;
        self.table
            .insert_unique(digest, index, |&held| slots[held as usize].digest);
        self.link_front(index);
        self.len += 1;
        None
    }

    /// Unlinks the slot, frees it and returns its entry.
    fn release(&mut self, index: u32) -> Option<Arc<Entry>> {
        let digest = self.slots[index as usize].digest;
        if let Ok(found) = self.table.find_entry(digest, |&held| held == index) {
            found.remove();
        }
        self.unlink(index);
        let slot = &mut self.slots[index as usize];
        let entry = slot.entry.take();
        slot.next = self.free;
        self.free = index;
        self.len -= 1;
        entry
    }

    fn pop_tail(&mut self) -> Option<Arc<Entry>> {
        if self.tail == NIL {
            return None;
        }
        self.release(self.tail)
    }

    /// Looks at the next [`SWEEP_PER_WRITE`] slots and frees those whose
    /// entry is past every window at `now`; how many it freed.
    fn sweep(&mut self, now: Instant, weight: &AtomicU64) -> u64 {
        let mut expired = 0;
        for _ in 0..SWEEP_PER_WRITE.min(self.slots.len()) {
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            let gone = self.slots[self.sweep_at]
                .entry
                .as_ref()
                .is_some_and(|entry| entry.stage(now) == Stage::Gone);
            // This frees the caller's own entry only if it is already past
            // every window, which a read would drop anyway.
            if gone && let Some(old) = self.release(self.sweep_at as u32) {
                weight.fetch_sub(u64::from(old.weight()), Ordering::Relaxed);
                expired += 1;
            }
        }
        expired
    }

    fn bump(&mut self, index: u32) {
        if self.head != index {
            self.unlink(index);
            self.link_front(index);
        }
    }

    fn link_front(&mut self, index: u32) {
        let old_head = self.head;
        {
            let slot = &mut self.slots[index as usize];
            slot.prev = NIL;
            slot.next = old_head;
        }
        if old_head == NIL {
            self.tail = index;
        } else {
            self.slots[old_head as usize].prev = index;
        }
        self.head = index;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::value::{ENTRY_OVERHEAD, EntryKind, Value};
    use crate::cache::version::Version;

    fn entry(key: &str, ttl: Option<Duration>) -> Arc<Entry> {
        Arc::new(Entry::new(
            key,
            EntryKind::Found(Value::new(format!("value of {key}"), None)),
            ttl,
            Instant::now(),
            Version::ZERO,
        ))
    }

    /// Digests spread over every shard, as real digests are.
    fn digest(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    fn weight_of(key: &str) -> u64 {
        u64::from(entry(key, None).weight())
    }

    fn keys(lru: &Lru) -> Vec<String> {
        let mut keys: Vec<String> = lru.entries().iter().map(|e| e.key().to_owned()).collect();
        keys.sort();
        keys
    }

    /// Within a shard, strictly: these digests (small numbers) all fall in
    /// shard 0.
    #[test]
    fn the_least_recently_used_go_first() {
        // Room for three entries of one size.
        let lru = Lru::new(3 * weight_of("k0"));
        let now = Instant::now();
        for i in 0..3 {
            lru.insert(i, entry(&format!("k{i}"), None), now);
        }
        // k0 read at second 1: k1 is now the oldest.
        assert!(lru.get(0, 1).is_some());
        let removed = lru.insert(3, entry("k3", None), now);
        assert_eq!(removed.evicted, 1);
        assert_eq!(keys(&lru), ["k0", "k2", "k3"]);
        assert_eq!(lru.weight(), 3 * weight_of("k0"));
    }

    #[test]
    fn a_full_cache_keeps_every_new_entry_and_stays_within_capacity() {
        let capacity = 50 * weight_of("key-0000");
        let lru = Lru::new(capacity);
        let now = Instant::now();
        let mut evicted = 0;
        for i in 0..1_000 {
            let key = format!("key-{i:04}");
            evicted += lru.insert(digest(i), entry(&key, None), now).evicted;
            assert!(lru.weight() <= capacity, "over capacity after {key}");
            assert_eq!(
                lru.peek(digest(i)).map(|e| e.key().to_owned()),
                Some(key),
                "the entry just written is held"
            );
        }
        assert_eq!(lru.len(), 50);
        assert_eq!(evicted, 950);
        assert_eq!(lru.weight(), 50 * weight_of("key-0000"));
    }

    #[test]
    fn an_entry_as_heavy_as_the_cache_takes_it_all() {
        let lru = Lru::new(weight_of("big") + 10);
        let now = Instant::now();
        for i in 0..20 {
            lru.insert(digest(i), entry("k", None), now);
        }
        lru.insert(digest(99), entry("big", None), now);
        assert_eq!(keys(&lru), ["big"]);
    }

    #[test]
    fn a_rewrite_replaces_in_place() {
        let lru = Lru::new(1 << 20);
        let now = Instant::now();
        lru.insert(7, entry("a", None), now);
        lru.insert(7, entry("b", None), now);
        assert_eq!(lru.len(), 1);
        assert_eq!(
            lru.peek(7).map(|e| e.key().to_owned()).as_deref(),
            Some("b")
        );
        assert_eq!(lru.weight(), weight_of("b"));
    }

    #[test]
    fn removed_slots_are_reused_and_weigh_nothing() {
        let lru = Lru::new(1 << 20);
        let now = Instant::now();
        for i in 0..100 {
            lru.insert(digest(i), entry(&format!("k{i}"), None), now);
        }
        for i in 0..100 {
            lru.remove(digest(i));
        }
        assert_eq!((lru.len(), lru.weight()), (0, 0));
        for i in 0..100 {
            lru.insert(digest(i), entry(&format!("k{i}"), None), now);
        }
        let slots: usize = lru
            .shards
            .iter()
            .map(|s| s.read().expect("lock").slots.len())
            .sum();
        assert_eq!(slots, 100, "freed slots are taken again");
        assert_eq!(lru.len(), 100);
    }

    #[test]
    fn remove_entry_spares_a_newer_write() {
        let lru = Lru::new(1 << 20);
        let now = Instant::now();
        let old = entry("k", None);
        lru.insert(1, old.clone(), now);
        lru.insert(1, entry("k", None), now);
        lru.remove_entry(1, &old);
        assert_eq!(lru.len(), 1, "the newer entry stays");
        let newer = lru.peek(1).expect("held");
        lru.remove_entry(1, &newer);
        assert_eq!((lru.len(), lru.weight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_sweep_out_entries_past_every_window() {
        let lru = Lru::new(1 << 20);
        for i in 0..64 {
            lru.insert(
                digest(i),
                entry(&format!("short-{i}"), Some(Duration::from_secs(1))),
                Instant::now(),
            );
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut expired = 0;
        for i in 100..200 {
            expired += lru
                .insert(digest(i), entry(&format!("long-{i}"), None), Instant::now())
                .expired;
        }
        assert_eq!(expired, 64);
        assert_eq!(lru.len(), 100);
        assert_eq!(
            lru.weight(),
            lru.entries()
                .iter()
                .map(|e| u64::from(e.weight()))
                .sum::<u64>()
        );
    }

    #[test]
    fn the_weight_is_the_sum_of_what_is_held() {
        let lru = Lru::new(40 * (ENTRY_OVERHEAD + 20));
        let now = Instant::now();
        for i in 0..500u64 {
            match i % 3 {
                0 | 1 => {
                    lru.insert(digest(i % 97), entry(&format!("key-{i}"), None), now);
                }
                _ => lru.remove(digest(i % 89)),
            }
        }
        let held: u64 = lru.entries().iter().map(|e| u64::from(e.weight())).sum();
        assert_eq!(lru.weight(), held);
        assert_eq!(lru.len(), lru.entries().len());
    }

    /// The recency list and the table agree after any mix of operations.
    #[test]
    fn lists_and_table_stay_consistent() {
        let lru = Lru::new(30 * weight_of("key-000"));
        let now = Instant::now();
        for i in 0..2_000u64 {
            let d = digest(i.wrapping_mul(7) % 150);
            match i % 5 {
                0..=2 => {
                    lru.insert(d, entry(&format!("key-{:03}", i % 150), None), now);
                }
                3 => {
                    lru.get(d, (i / 10) as u32);
                }
                _ => lru.remove(d),
            }
        }
        for shard in lru.shards.iter() {
            let shard = shard.read().expect("lock");
            let mut walked = 0;
            let (mut at, mut prev) = (shard.head, NIL);
            while at != NIL {
                let slot = &shard.slots[at as usize];
                assert_eq!(slot.prev, prev);
                assert!(slot.entry.is_some());
                assert_eq!(shard.find(slot.digest), Some(at));
                walked += 1;
                (prev, at) = (at, slot.next);
            }
            assert_eq!(prev, shard.tail);
            assert_eq!(walked, shard.len);
            assert_eq!(shard.table.len(), shard.len);
        }
    }
}
