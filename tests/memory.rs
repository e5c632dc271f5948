//! What cache entries really cost, against what the cache says they weigh
//! (`/_stats` bytes, which `capacity` bounds): a real embedded node, and a
//! global allocator that counts every live byte as glibc charges it (the
//! usable size of each block plus its size word), so the figures are the
//! heap the entries hold, the map's slots and the `Arc`s included.
//!
//! Its own test binary (a global allocator is per binary), one test at a
//! time (`--test-threads 1` is not needed: the tests take one lock), so
//! each measures only its own entries. Every figure is a difference of
//! live bytes over thousands of entries, so the node's own background
//! allocations are noise well inside the margins.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};

use shoal::{Config, Listeners, Node, NodeHandle};
use tokio::net::TcpListener;

/// Every live heap byte, as glibc charges it.
static LIVE: AtomicI64 = AtomicI64::new(0);

/// Live blocks by charged size in 16-byte steps (the last step: anything
/// larger), for the breakdown a test prints.
static BY_SIZE: [AtomicI64; 65] = [const { AtomicI64::new(0) }; 65];

fn note(charge: i64, count: i64) {
    let step = ((charge / 16) as usize).min(64);
    BY_SIZE[step].fetch_add(count, Ordering::Relaxed);
}

fn by_size() -> Vec<i64> {
    BY_SIZE.iter().map(|n| n.load(Ordering::Relaxed)).collect()
}

/// The blocks that grew between two [`by_size`] readings, per `n` entries.
fn breakdown(before: &[i64], after: &[i64], n: u64) -> String {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| (*a - *b).unsigned_abs() * 20 >= n)
        .map(|(step, (b, a))| format!("{} B × {:.2}", step * 16, (a - b) as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One measuring test at a time: the counter is the whole process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Counting;

/// What glibc's malloc charges for the block at `ptr`: its usable size and
/// the size word before it.
fn charge(ptr: *mut u8) -> i64 {
    // SAFETY: `ptr` is a live block from the system allocator (malloc,
    // calloc, realloc or posix_memalign), which is what the call takes.
    let usable = unsafe { libc::malloc_usable_size(ptr.cast()) };
    (usable + std::mem::size_of::<usize>()) as i64
}

/// Counts a block `System` just handed out (none if it failed).
fn counted(ptr: *mut u8) -> *mut u8 {
    if !ptr.is_null() {
        let charged = charge(ptr);
        LIVE.fetch_add(charged, Ordering::Relaxed);
        note(charged, 1);
    }
    ptr
}

// SAFETY: every call is passed to `System` unchanged; the counting only
// reads the blocks' sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        counted(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        counted(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let charged = charge(ptr);
        LIVE.fetch_sub(charged, Ordering::Relaxed);
        note(charged, -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = charge(ptr);
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            let after = charge(moved);
            LIVE.fetch_add(after - before, Ordering::Relaxed);
            note(before, -1);
            note(after, 1);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// A lone node (no peers, no gossip) on 127.0.0.1 with one group `g`
/// with `settings` (YAML flow-mapping entries) whose demo loader answers at
/// once with `Value of <key>`.
async fn lone_node(settings: &str) -> NodeHandle {
    let config = Config::from_yaml(&format!(
        "node: {{ bind: 127.0.0.1, advertise: 127.0.0.1, drain: 0s }}
groups:
  g: {{ {settings}, loader: {{ demo: {{ delay: 0ms }} }} }}"
    ))
    .expect("config");
    let bind = || async {
        TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .expect("bind port 0")
    };
    let listeners = Listeners {
        service: bind().await,
        peer: bind().await,
        admin: bind().await,
    };
    Node::builder(config)
        .start(listeners)
        .await
        .expect("start the node")
}

/// Loads `keys` through the group's loader (the way most entries arrive:
/// a miss at the owner), and returns the live heap bytes they added with
/// the main cache's `(bytes, items)` from its stats.
async fn load_keys(node: &NodeHandle, keys: impl Iterator<Item = String>) -> (i64, u64, u64) {
    let group = node.group("g").expect("group g");
    group.stats();
    let before = live();
    for key in keys {
        group.get(&key).await.expect("the demo loader answers");
    }
    let stats = group.stats();
    (live() - before, stats.main.bytes, stats.main.items)
}

fn ratio(real: i64, accounted: u64) -> f64 {
    real as f64 / accounted as f64
}

/// Loads `n` small entries into a node with group `settings` and checks
/// that the heap they hold is within 10 % of what the cache accounts.
async fn weight_within_ten_percent(settings: &str, n: u64) {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = lone_node(settings).await;
    // Warm the structures that grow once (the map's slots and tables, the runtime's
    // buffers) before counting.
    load_keys(&node, (0..2_000).map(|i| format!("warm-{i}"))).await;
    let (_, bytes_before, items_before) = load_keys(&node, std::iter::empty()).await;

    let sizes = by_size();
    let (real, bytes, items) = load_keys(&node, (0..n).map(|i| format!("key-{i:08}"))).await;
    let (accounted, held) = (bytes - bytes_before, items - items_before);
    assert_eq!(held, n, "every entry is held");
    let per_entry_real = real as f64 / n as f64;
    let per_entry_accounted = accounted as f64 / n as f64;
    // key-00000000 (12 bytes) and "Value of key-00000000" (21 bytes); the
    // demo loader's content type is a static one.
    let payload = 12.0 + 21.0;
    let r = ratio(real, accounted);
    println!(
        "{settings}: {n} entries: heap {real} B ({per_entry_real:.1} B each, {:.1} beyond key and value), accounted {accounted} B ({per_entry_accounted:.1} B each), heap / accounted {r:.3}",
        per_entry_real - payload,
    );
    println!("blocks per entry: {}", breakdown(&sizes, &by_size(), n));
    assert!(
        (0.9..=1.1).contains(&r),
        "the heap the entries hold is {r:.3} × what the cache accounts for them ({per_entry_real:.1} B against {per_entry_accounted:.1} B an entry)"
    );
    node.shutdown().await;
}

/// The accounted weight of many small entries is within 10 % of the heap
/// they really hold: `capacity` means bytes of memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounted_weight_is_within_ten_percent_of_the_heap_entries_hold() {
    weight_within_ten_percent("capacity: 512MiB", 30_000).await;
}

/// The same for entries with a TTL (which a cache may file apart, as moka
/// did in its timer wheel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_with_a_ttl_weigh_what_they_cost_too() {
    weight_within_ten_percent("capacity: 512MiB, ttl: 10m", 30_000).await;
}

/// A cache filled far past its capacity holds no more heap than the
/// capacity (within the same 10 %): evicted entries are freed, and what
/// stays weighs what it costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_bounds_the_heap_a_full_cache_holds() {
    let _one = ONE_AT_A_TIME.lock().await;
    let capacity: u64 = 2 << 20;
    let node = lone_node("capacity: 2MiB").await;
    let group = node.group("g").expect("group g");

    // About five times what fits (an entry weighs 169 bytes), from an
    // empty cache.
    let (real, bytes, items) = load_keys(&node, (0..60_000).map(|i| format!("key-{i:08}"))).await;
    let held = group.stats().main;
    println!(
        "filled past capacity: heap grew {real} B, cache holds {bytes} B in {items} items ({} evictions), capacity {capacity} B",
        held.evictions
    );
    assert!(held.evictions > 40_000, "the cache evicted: {held:?}");
    assert!(bytes <= capacity, "{bytes} B accounted over {capacity} B");
    assert!(
        real as f64 <= capacity as f64 * 1.1,
        "the heap grew {real} B for a cache of {capacity} B"
    );
    node.shutdown().await;
}
