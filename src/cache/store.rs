//! One byte-bounded cache (main or hot), with per-entry expiry and the
//! counters `/_stats` reports: the main cache in [`Lru`], a compact map of
//! our own, the hot cache in moka for its TinyLFU admission.

use std::sync::Arc;
use std::time::Duration;

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use serde::Serialize;
use tokio::time::Instant;

use super::freshness::Stage;
use super::lru::Lru;
use super::value::{Entry, Recency};
use crate::metrics::CacheMetrics;

/// How a full cache makes room for a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Every new entry is kept; the least recently used make room, as in
    /// groupcache. The main cache's: a PUT answered 204 must be held, and
    /// moka's TinyLFU would refuse a new key in a cache full of popular ones.
    Lru,
    /// moka's TinyLFU: a new entry may be refused in favour of more popular
    /// ones. The hot cache's: its entries are copies the owner also holds.
    TinyLfu,
}

/// What moka keeps per entry beyond what [`Lru`] does (its map bucket,
/// value and info records, key copies, access-order and timer-wheel nodes,
/// against `Lru`'s slot and index), measured with `tests/memory.rs`: a hot
/// entry weighs this much more than a main one.
pub const MOKA_EXTRA_OVERHEAD: u64 = 304;

pub struct Store {
    map: Map,
    capacity: u64,
    recency: Recency,
    metrics: CacheMetrics,
}

enum Map {
    Lru(Lru),
    /// Keyed by [`slot`]: half the digest, so moka's per-entry copies of
    /// the key (it keeps several) are 8 bytes, not 16.
    TinyLfu(Cache<u64, Arc<Entry>>),
}

/// One cache's figures, as `/_stats` reports them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes held, as weighed against the capacity.
    pub bytes: u64,
    /// Entries held.
    pub items: u64,
    /// Lookups.
    pub gets: u64,
    /// Lookups that found a fresh entry.
    pub hits: u64,
    /// Entries pushed out to stay within the capacity.
    pub evictions: u64,
}

/// Where a key's digest lives in the cache: its low 64 bits. Two keys
/// that share them (about one chance in 10^7 among a million keys) take
/// turns in one slot: the entry keeps its key, so the other is a miss,
/// never a wrong value, as for a full digest collision.
fn slot(digest: u128) -> u64 {
    digest as u64
}

/// Lets moka reclaim an entry's memory once it is past its TTL and its
/// stale windows. Freshness itself is decided by [`Entry::stage`] on
/// tokio's clock, so tests can move time.
struct EntryExpiry;

impl Expiry<u64, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &u64,
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        entry.keep_for(Instant::now())
    }

    fn expire_after_update(
        &self,
        _key: &u64,
        entry: &Arc<Entry>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        entry.keep_for(Instant::now())
    }
}

impl Store {
    pub fn new(capacity: u64, eviction: Eviction, metrics: CacheMetrics) -> Self {
        let map = match eviction {
            Eviction::Lru => Map::Lru(Lru::new(capacity)),
            Eviction::TinyLfu => {
                let evictions = metrics.evictions.clone();
                Map::TinyLfu(
                    Cache::builder()
                        .max_capacity(capacity)
                        .eviction_policy(EvictionPolicy::tiny_lfu())
                        .weigher(|_slot: &u64, entry: &Arc<Entry>| {
                            u32::try_from(u64::from(entry.weight()) + MOKA_EXTRA_OVERHEAD)
                                .unwrap_or(u32::MAX)
                        })
                        .expire_after(EntryExpiry)
                        .eviction_listener(move |_key, _entry, cause| {
                            if cause == RemovalCause::Size {
                                evictions.inc();
                            }
                        })
                        .build(),
                )
            }
        };
        Self {
            map,
            capacity,
            recency: Recency::new(Instant::now()),
            metrics,
        }
    }

    /// What `entry` weighs in this cache.
    fn weight(&self, entry: &Entry) -> u64 {
        match self.map {
            Map::Lru(_) => u64::from(entry.weight()),
            Map::TinyLfu(_) => u64::from(entry.weight()) + MOKA_EXTRA_OVERHEAD,
        }
    }

    /// The entry for `key` (whose digest is `digest`) if it is present at
    /// `now`, fresh or within a stale window ([`Entry::stage`] says which):
    /// a read, noted as the entry's last use, and counted as a hit when the
    /// entry can be served as it is (fresh, or stale while it revalidates).
    pub fn get(&self, digest: u128, key: &str, now: Instant) -> Option<Arc<Entry>> {
        self.metrics.gets.inc();
        let second = self.recency.second(now);
        let entry = match &self.map {
            Map::Lru(lru) => lru.get(slot(digest), second),
            Map::TinyLfu(cache) => cache.get(&slot(digest)),
        };
        let entry = self.present(digest, entry?, key, now)?;
        if entry.stage(now) <= Stage::StaleWhileRevalidate {
            self.metrics.hits.inc();
        }
        entry.touch(second);
        Some(entry)
    }

    /// The fresh entry for `key`, without counting a read or noting a use
    /// (for comparing versions, and for other nodes' peeks).
    pub fn peek(&self, digest: u128, key: &str, now: Instant) -> Option<Arc<Entry>> {
        let entry = match &self.map {
            Map::Lru(lru) => lru.peek(slot(digest)),
            Map::TinyLfu(cache) => cache.get(&slot(digest)),
        };
        self.present(digest, entry?, key, now)
            .filter(|entry| entry.stage(now) <= Stage::RefreshDue)
    }

    /// `entry`, found under `digest`, if it is `key`'s and not past every
    /// window; one that is past them is dropped on the way.
    fn present(
        &self,
        digest: u128,
        entry: Arc<Entry>,
        key: &str,
        now: Instant,
    ) -> Option<Arc<Entry>> {
        if !entry.has_key(key) {
            return None;
        }
        if entry.stage(now) == Stage::Gone {
            match &self.map {
                Map::Lru(lru) => lru.remove_entry(slot(digest), &entry),
                Map::TinyLfu(cache) => cache.invalidate(&slot(digest)),
            }
            return None;
        }
        Some(entry)
    }

    /// Keeps an entry, unless it is heavier than the whole cache. The main
    /// cache never sees such an entry from a PUT: `Group::put` and
    /// `Group::store_as_owner` refuse it first, with `value-too-large`, so a
    /// PUT never answers 204 for what is not kept. The hot cache has only
    /// `hot_fraction` of the capacity, so a value that fits the main cache
    /// may not fit it: that is refused silently, and rightly, since a hot
    /// entry is a copy the owner also holds.
    pub fn insert(&self, digest: u128, entry: Entry) {
        if self.capacity == 0 || self.weight(&entry) > self.capacity {
            return;
        }
        let now = Instant::now();
        entry.touch(self.recency.second(now));
        match &self.map {
            Map::Lru(lru) => {
                let removed = lru.insert(slot(digest), Arc::new(entry), now);
                self.metrics.evictions.inc_by(removed.evicted);
            }
            Map::TinyLfu(cache) => cache.insert(slot(digest), Arc::new(entry)),
        }
    }

    /// Every fresh entry at `now`, most recently used first.
    pub fn entries_by_recency(&self, now: Instant) -> Vec<Arc<Entry>> {
        let mut entries: Vec<Arc<Entry>> = match &self.map {
            Map::Lru(lru) => lru.entries(),
            Map::TinyLfu(cache) => cache.iter().map(|(_, entry)| entry).collect(),
        };
        entries.retain(|entry| entry.is_fresh(now));
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.last_used()));
        entries
    }

    pub fn remove(&self, digest: u128) {
        match &self.map {
            Map::Lru(lru) => lru.remove(slot(digest)),
            Map::TinyLfu(cache) => cache.invalidate(&slot(digest)),
        }
    }

    /// Current figures; also refreshes the byte and item gauges.
    pub fn stats(&self) -> StoreStats {
        let (bytes, items) = match &self.map {
            Map::Lru(lru) => (lru.weight(), lru.len() as u64),
            Map::TinyLfu(cache) => {
                // moka applies writes in batches; settle them so the sizes
                // are exact.
                cache.run_pending_tasks();
                (cache.weighted_size(), cache.entry_count())
            }
        };
        self.metrics
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .items
            .set(i64::try_from(items).unwrap_or(i64::MAX));
        StoreStats {
            bytes,
            items,
            gets: self.metrics.gets.get(),
            hits: self.metrics.hits.get(),
            evictions: self.metrics.evictions.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::value::{ENTRY_OVERHEAD, EntryKind, Value, key_digest};
    use crate::cache::version::Version;
    use crate::metrics::Metrics;

    fn store(capacity: u64) -> Store {
        Store::new(capacity, Eviction::Lru, Metrics::new().group("g").main)
    }

    fn entry(key: &str, len: usize, ttl: Option<Duration>) -> Entry {
        Entry::new(
            key,
            EntryKind::Found(Value::new(vec![b'x'; len], None)),
            ttl,
            Instant::now(),
            Version::ZERO,
        )
    }

    #[test]
    fn stays_within_capacity() {
        let store = store(100 * (1000 + ENTRY_OVERHEAD + 8));
        for i in 0..1000 {
            let key = format!("key-{i:04}");
            store.insert(key_digest(&key), entry(&key, 1000, None));
        }
        let stats = store.stats();
        assert!(
            stats.bytes <= 100 * (1000 + ENTRY_OVERHEAD + 8),
            "{stats:?}"
        );
        assert!(stats.items <= 100 && stats.items > 50, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
    }

    #[test]
    fn an_entry_larger_than_the_cache_is_not_kept() {
        let store = store(500);
        store.insert(key_digest("big"), entry("big", 1000, None));
        assert!(
            store
                .get(key_digest("big"), "big", Instant::now())
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_misses() {
        let store = store(1 << 20);
        store.insert(
            key_digest("k"),
            entry("k", 10, Some(Duration::from_secs(5))),
        );
        assert!(store.get(key_digest("k"), "k", Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(store.get(key_digest("k"), "k", Instant::now()).is_none());
        let stats = store.stats();
        assert_eq!((stats.gets, stats.hits), (2, 1));
    }

    /// A full cache of often-read entries, then one new entry: kept by the
    /// main cache's LRU (so a PUT's 204 is true), refused by TinyLFU.
    fn new_entry_kept_in_a_full_cache_of_popular_ones(eviction: Eviction) -> bool {
        let store = Store::new(1, eviction, Metrics::new().group("g").main);
        let weight = store.weight(&entry("key-0000", 1000, None));
        let store = Store::new(10 * weight, eviction, Metrics::new().group("g").main);
        for i in 0..10 {
            let key = format!("key-{i:04}");
            store.insert(key_digest(&key), entry(&key, 1000, None));
        }
        for _ in 0..5 {
            for i in 0..10 {
                let key = format!("key-{i:04}");
                store.get(key_digest(&key), &key, Instant::now());
            }
        }
        store.stats();
        store.insert(key_digest("new-0001"), entry("new-0001", 1000, None));
        store.stats();
        store
            .get(key_digest("new-0001"), "new-0001", Instant::now())
            .is_some()
    }

    #[test]
    fn lru_keeps_every_new_entry_tiny_lfu_may_not() {
        assert!(new_entry_kept_in_a_full_cache_of_popular_ones(
            Eviction::Lru
        ));
        // What the main cache did before it was LRU: a PUT answered 204
        // and kept nothing.
        assert!(!new_entry_kept_in_a_full_cache_of_popular_ones(
            Eviction::TinyLfu
        ));
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let store = store(0);
        store.insert(key_digest("k"), entry("k", 1, None));
        assert!(store.get(key_digest("k"), "k", Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_come_most_recently_used_first() {
        let store = store(1 << 20);
        for key in ["a", "b", "c"] {
            store.insert(key_digest(key), entry(key, 1, None));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.get(key_digest("b"), "b", Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.get(key_digest("c"), "c", Instant::now()).is_some());
        let order: Vec<String> = store
            .entries_by_recency(Instant::now())
            .iter()
            .map(|e| e.key().to_owned())
            .collect();
        assert_eq!(order, ["c", "b", "a"]);
    }

    #[test]
    fn a_digest_collision_is_a_miss() {
        let store = store(1 << 20);
        store.insert(7, entry("one", 1, None));
        assert!(store.get(7, "other", Instant::now()).is_none());
        assert!(store.get(7, "one", Instant::now()).is_some());
    }
}
