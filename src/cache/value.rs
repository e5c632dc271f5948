//! Values, cache entries and the TTL policy. Pure: no I/O, no clocks read
//! here except through the `now` the caller passes in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use tokio::time::Instant;

use super::freshness::{Stage, StaleDirectives, Timeline};
use super::version::Version;

/// How long a background refresh that failed keeps the next hit from
/// starting another: the origin is not asked more than once a second per
/// key while it fails.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// A value's bytes and the content type that goes with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value itself.
    pub bytes: Bytes,
    /// The media type served with it; `None`: `application/octet-stream`.
    pub content_type: Option<HeaderValue>,
}

impl Value {
    /// A value with the given content type.
    pub fn new(bytes: impl Into<Bytes>, content_type: Option<HeaderValue>) -> Self {
        Self {
            bytes: bytes.into(),
            content_type,
        }
    }
}

/// Content types common enough to keep as one static copy for every entry.
const COMMON_CONTENT_TYPES: [&str; 12] = [
    "application/octet-stream",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/plain; charset=utf-8",
    "text/html",
    "text/html; charset=utf-8",
    "text/css",
    "application/javascript",
    "image/png",
    "image/jpeg",
    "application/x-protobuf",
];

/// `given`'s index in [`COMMON_CONTENT_TYPES`], if it is one.
fn common_content_type_index(given: &HeaderValue) -> Option<u8> {
    COMMON_CONTENT_TYPES
        .iter()
        .position(|common| common.as_bytes() == given.as_bytes())
        .and_then(|index| u8::try_from(index).ok())
}

/// What a content type costs an entry: nothing for a common one (static),
/// else its bytes.
fn content_type_cost(content_type: Option<&HeaderValue>) -> usize {
    content_type
        .filter(|given| common_content_type_index(given).is_none())
        .map_or(0, HeaderValue::len)
}

/// What an origin gave to revalidate a value with (RFC 9110's validators):
/// a reload sends them back as `If-None-Match` and `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The origin's `ETag`.
    pub etag: Option<HeaderValue>,
    /// The origin's `Last-Modified`.
    pub last_modified: Option<HeaderValue>,
}

impl Validators {
    /// True when there is nothing to revalidate with.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    fn len(&self) -> usize {
        self.etag.as_ref().map_or(0, HeaderValue::len)
            + self.last_modified.as_ref().map_or(0, HeaderValue::len)
    }
}

/// A value and how long it may be kept: what a loader returns, what another
/// node sends, and (with where it came from) what a get returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The bytes and their content type.
    pub value: Value,
    /// Time left to live, from now; `None`: no expiry beyond the group's TTL.
    /// A loader sets it from the origin's `max-age`; the group's `ttl` caps it.
    /// From a cache, the time left until the owner refreshes it, where that
    /// comes sooner (`refresh_ahead`): a copy is not kept past it.
    pub ttl: Option<Duration>,
    /// Serve it but keep no copy (the origin said `no-store`, `no-cache` or
    /// `private`, or the value has no time left).
    pub no_store: bool,
    /// The origin's `ETag` and `Last-Modified`, to revalidate it with.
    pub validators: Validators,
    /// The origin's `stale-while-revalidate` and `stale-if-error`, which
    /// replace the group's settings for this value.
    pub stale_directives: StaleDirectives,
    /// How old the value already was when loaded (the origin's `Age`); from
    /// another node, how long ago its origin made it.
    pub age: Duration,
    /// Another node served it past its TTL (its `x-shoal-stale`).
    pub(crate) served_stale: bool,
    /// The write it came from ([`Version::ZERO`] for a fresh origin load
    /// until the group stamps it, and from a node that sends none).
    pub(crate) version: Version,
}

impl Fresh {
    /// A value to keep as long as the group's TTL allows.
    pub fn new(value: Value) -> Self {
        Self {
            value,
            ttl: None,
            no_store: false,
            validators: Validators::default(),
            stale_directives: StaleDirectives::default(),
            age: Duration::ZERO,
            served_stale: false,
            version: Version::ZERO,
        }
    }

    /// Caps how long the value may be kept (an origin's `max-age`).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Serves the value without keeping a copy anywhere.
    #[must_use]
    pub fn not_stored(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// Keeps the origin's `ETag` / `Last-Modified`, so that a reload asks
    /// whether the value changed (and a `304` costs no body).
    #[must_use]
    pub fn with_validators(mut self, validators: Validators) -> Self {
        self.validators = validators;
        self
    }

    /// The origin's `stale-while-revalidate` and `stale-if-error` for this
    /// value (RFC 5861), in place of the group's.
    #[must_use]
    pub fn with_stale_directives(mut self, directives: StaleDirectives) -> Self {
        self.stale_directives = directives;
        self
    }

    /// `Some(age)` when another node served it stale.
    pub(crate) fn stale_age(&self) -> Option<Duration> {
        self.served_stale.then_some(self.age)
    }

    pub(crate) fn versioned(mut self, version: Version) -> Self {
        self.version = version;
        self
    }
}

/// A value as a get returns it: the value, its freshness and where it came
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The value and how long it may still be kept.
    pub fresh: Fresh,
    /// Which cache or node answered.
    pub source: Source,
    /// `Some(age)`: the value is past its TTL, served stale (while it
    /// reloads, or because the reload failed); `age` is how long ago the
    /// origin made it.
    pub stale: Option<Duration>,
}

impl Fetched {
    /// A value served fresh.
    pub fn fresh(fresh: Fresh, source: Source) -> Self {
        Self {
            fresh,
            source,
            stale: None,
        }
    }
}

/// Where a value came from, as the `x-shoal-source` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// This node's main cache (keys it owns).
    Main,
    /// This node's hot cache (popular keys owned by others).
    Hot,
    /// Fetched from the owner.
    Peer,
    /// Loaded from the origin by this node.
    Origin,
}

impl Source {
    /// The name in the `x-shoal-source` header and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Main => "main",
            Source::Hot => "hot",
            Source::Peer => "peer",
            Source::Origin => "origin",
        }
    }

    /// Index into [`crate::metrics::SOURCES`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a cache holds for a key: a value, or a remembered origin 404.
/// Caches are indexed by the key's digest; the entry keeps the key itself so
/// a digest collision is a miss, never a wrong value.
///
/// Laid out for a million small entries (issue 11): the key, the value and
/// an uncommon content type share one allocation of exactly their length,
/// the deadline is 8 bytes, and what only an owner's refreshable entry
/// needs is boxed apart. In an `Arc` the whole is glibc's 80-byte class;
/// [`Entry::value`] hands the bytes out without copying them. The block is
/// a copy: hyper reads a message's head and body into one buffer and hands
/// out slices of it, and a kept slice (a body, a `Content-Type`) would hold
/// every other message read into that buffer, unaccounted, for as long as
/// the entry lives.
#[derive(Debug)]
pub struct Entry {
    /// The uncommon content type's bytes (if any), the key, the value.
    block: Box<[u8]>,
    expires: Deadline,
    /// Orders this write against others to the same key.
    pub version: Version,
    /// An owner's entry that may be refreshed, served stale or revalidated;
    /// `None` (boxed, so plain entries stay small): fresh until
    /// `expires_at`, then gone.
    life: Option<Box<Life>>,
    key_len: u32,
    /// When the entry was last read, in seconds of [`Recency`]: a handoff
    /// sends the most recently used entries first.
    last_used: AtomicU32,
    /// Length of the uncommon content type at the start of `block`.
    content_type_len: u16,
    shape: Shape,
}

/// What an entry holds: a remembered 404, or a value with no content
/// type, one of [`COMMON_CONTENT_TYPES`] (by index), or an uncommon one
/// (its bytes at the start of the block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    NotFound,
    Untyped,
    Common(u8),
    Uncommon,
}

/// A deadline on tokio's clock in 8 bytes: nanoseconds after [`epoch`],
/// plus one; 0 is "never". 584 years of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline(u64);

/// The instant deadlines count from: a day before the first use, so every
/// instant an entry meets (tokio's paused test clock included, which stands
/// at or after the moment it was paused) comes after it.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

impl Deadline {
    const NEVER: Deadline = Deadline(0);

    fn at(at: Option<Instant>) -> Self {
        at.map_or(Self::NEVER, |at| {
            let nanos = at.saturating_duration_since(epoch()).as_nanos();
            Deadline(
                u64::try_from(nanos)
                    .unwrap_or(u64::MAX - 1)
                    .saturating_add(1),
            )
        })
    }

    fn instant(self) -> Option<Instant> {
        (self.0 != 0).then(|| epoch() + Duration::from_nanos(self.0 - 1))
    }
}

/// An entry's value bytes, as the owner of the [`Bytes`] [`Entry::value`]
/// hands out: the entry lives as long as any of them.
struct ValueBytes(Arc<Entry>);

impl AsRef<[u8]> for ValueBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.value_bytes()
    }
}

/// When an owner's entry is refreshed and how long it may be served
/// stale, with what to revalidate it by.
#[derive(Debug)]
pub struct Life {
    pub timeline: Timeline,
    /// When the origin made the value: the load, less the origin's `Age`.
    pub born: Instant,
    /// The TTL it was stored with, before jitter: what a `304` that names
    /// no `max-age` renews.
    pub ttl: Duration,
    /// The origin's stale windows, kept for a `304` that names none.
    pub origin: StaleDirectives,
    pub validators: Validators,
    /// Milliseconds after `born`, plus one, when a background reload was
    /// last started; 0: never.
    refresh_started: AtomicU64,
}

impl Life {
    pub fn new(
        timeline: Timeline,
        born: Instant,
        ttl: Duration,
        origin: StaleDirectives,
        validators: Validators,
    ) -> Self {
        Self {
            timeline,
            born,
            ttl,
            origin,
            validators,
            refresh_started: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    Found(Value),
    NotFound,
}

/// Bytes an entry costs beyond its key and value. Its home is the config,
/// which checks that `max_value` leaves room for it.
pub use crate::config::ENTRY_OVERHEAD;

impl Entry {
    pub fn new(
        key: &str,
        kind: EntryKind,
        ttl: Option<Duration>,
        now: Instant,
        version: Version,
    ) -> Self {
        let (shape, content_type, bytes): (Shape, &[u8], &[u8]) = match &kind {
            EntryKind::NotFound => (Shape::NotFound, &[], &[]),
            EntryKind::Found(value) => match &value.content_type {
                None => (Shape::Untyped, &[], &value.bytes),
                Some(given) => match common_content_type_index(given) {
                    Some(index) => (Shape::Common(index), &[], &value.bytes),
                    None => (Shape::Uncommon, given.as_bytes(), &value.bytes),
                },
            },
        };
        // A content type is a header value, far below 64 KiB; a longer one
        // is dropped rather than kept wrong.
        let (shape, content_type) = match u16::try_from(content_type.len()) {
            Ok(_) => (shape, content_type),
            Err(_) => (Shape::Untyped, &[][..]),
        };
        let mut block = Vec::with_capacity(content_type.len() + key.len() + bytes.len());
        block.extend_from_slice(content_type);
        block.extend_from_slice(key.as_bytes());
        block.extend_from_slice(bytes);
        Self {
            block: block.into_boxed_slice(),
            expires: Deadline::at(ttl.map(|ttl| now + ttl)),
            version,
            life: None,
            // The config keeps keys (node.max_key) and whole entries within
            // a u32.
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            last_used: AtomicU32::new(0),
            content_type_len: content_type.len() as u16,
            shape,
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        // The block was built from a `&str` at exactly these offsets, so
        // this never falls back.
        std::str::from_utf8(self.key_bytes()).unwrap_or_default()
    }

    /// True when the entry is `key`'s (a byte comparison: the read path's
    /// check, which need not validate the key as [`Entry::key`] does).
    pub fn has_key(&self, key: &str) -> bool {
        self.key_bytes() == key.as_bytes()
    }

    fn key_bytes(&self) -> &[u8] {
        let start = usize::from(self.content_type_len);
        &self.block[start..start + self.key_len as usize]
    }

    fn value_bytes(&self) -> &[u8] {
        &self.block[usize::from(self.content_type_len) + self.key_len as usize..]
    }

    /// The value, or `None` for a remembered origin 404. Its bytes are the
    /// entry's own, shared, not copied.
    pub fn value(self: &Arc<Self>) -> Option<Value> {
        let content_type = match self.shape {
            Shape::NotFound => return None,
            Shape::Untyped => None,
            Shape::Common(index) => COMMON_CONTENT_TYPES
                .get(usize::from(index))
                .map(|common| HeaderValue::from_static(common)),
            Shape::Uncommon => {
                HeaderValue::from_bytes(&self.block[..usize::from(self.content_type_len)]).ok()
            }
        };
        let bytes = if self.value_bytes().is_empty() {
            Bytes::new()
        } else {
            Bytes::from_owner(ValueBytes(Arc::clone(self)))
        };
        Some(Value {
            bytes,
            content_type,
        })
    }

    /// When the entry stops being fresh; `None`: never.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires.instant()
    }

    /// The entry with a life: it expires when `life` says, and may then be
    /// served stale.
    pub fn with_life(mut self, life: Life) -> Self {
        self.expires = Deadline::at(Some(life.timeline.expires_at));
        self.life = Some(Box::new(life));
        self
    }

    pub fn life(&self) -> Option<&Life> {
        self.life.as_deref()
    }

    /// Where the entry is in its life at `now`.
    pub fn stage(&self, now: Instant) -> Stage {
        match (&self.life, self.is_fresh(now)) {
            (Some(life), _) => life.timeline.stage(now),
            (None, true) => Stage::Fresh,
            (None, false) => Stage::Gone,
        }
    }

    /// How long the cache must still hold the entry: its TTL, or its last
    /// stale window.
    pub fn keep_for(&self, now: Instant) -> Option<Duration> {
        match &self.life {
            Some(life) => Some(life.timeline.keep_until().saturating_duration_since(now)),
            None => self.remaining(now),
        }
    }

    /// How long ago the origin made the value, where the entry knows.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.life
            .as_ref()
            .map(|life| now.saturating_duration_since(life.born))
    }

    /// Claims the one background reload for this entry at `now`: true for
    /// the first caller, and again once [`REFRESH_RETRY`] has passed (the
    /// reload failed and the entry is still here).
    pub fn claim_refresh(&self, now: Instant) -> bool {
        let Some(life) = &self.life else {
            return false;
        };
        let at = u64::try_from(now.saturating_duration_since(life.born).as_millis())
            .unwrap_or(u64::MAX - 1)
            + 1;
        let started = life.refresh_started.load(Ordering::Relaxed);
        let retry = u64::try_from(REFRESH_RETRY.as_millis()).unwrap_or(u64::MAX);
        if started != 0 && at < started.saturating_add(retry) {
            return false;
        }
        life.refresh_started
            .compare_exchange(started, at, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Notes a read at `second` (of [`Recency`]). Most reads find the
    /// second already noted and write nothing, so a popular entry's cache
    /// line is not written by every core on every read.
    pub fn touch(&self, second: u32) {
        if self.last_used.load(Ordering::Relaxed) != second {
            self.last_used.store(second, Ordering::Relaxed);
        }
    }

    pub fn last_used(&self) -> u32 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// The entry as a value with its time left, or `None` for a
    /// remembered origin 404.
    pub fn fresh(self: &Arc<Self>, now: Instant) -> Option<Fresh> {
        self.value().map(|value| Fresh {
            ttl: self.copy_remaining(now),
            version: self.version,
            ..Fresh::new(value)
        })
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.expires_at().is_none_or(|at| now < at)
    }

    /// Time left to live, `None` for no expiry.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expires_at()
            .map(|at| at.saturating_duration_since(now))
    }

    /// How long a copy elsewhere may live: until expiry, or until the
    /// owner refreshes the entry, whichever is sooner.
    pub fn copy_remaining(&self, now: Instant) -> Option<Duration> {
        match &self.life {
            Some(life) => Some(life.timeline.copy_until().saturating_duration_since(now)),
            None => self.remaining(now),
        }
    }

    /// What the entry weighs against the cache's capacity.
    pub fn weight(&self) -> u32 {
        let life = self
            .life
            .as_ref()
            .map_or(0, |life| LIFE_OVERHEAD + life.validators.len() as u64);
        u32::try_from(self.block.len() as u64 + ENTRY_OVERHEAD + life).unwrap_or(u32::MAX)
    }
}

/// What a [`Life`] adds to an entry beyond its validators' bytes.
const LIFE_OVERHEAD: u64 = std::mem::size_of::<Life>() as u64;

/// What an entry of `key` and `value` (`None`: a remembered 404) weighs:
/// key, value bytes, content type (nothing for a common one, kept as one
/// static copy) and [`ENTRY_OVERHEAD`]. The config keeps the largest a PUT
/// may bring within a `u32`, which moka weighs in.
pub fn weight_of(key: &str, value: Option<&Value>) -> u64 {
    let value = value.map_or(0, |value| {
        value.bytes.len() + content_type_cost(value.content_type.as_ref())
    });
    key.len() as u64 + value as u64 + ENTRY_OVERHEAD
}

/// The TTL for a value this node stores as owner: the group's TTL, capped by
/// the origin's `max-age`. `None` means no expiry; `Some(ZERO)` means do not
/// store.
pub fn owner_ttl(
    group_ttl: Option<Duration>,
    origin_max_age: Option<Duration>,
) -> Option<Duration> {
    min_ttl(group_ttl, origin_max_age)
}

/// The TTL for a hot (non-owner) copy: what the owner said is left, capped by
/// the group's `hot_ttl`.
pub fn hot_ttl(remaining: Option<Duration>, hot_ttl: Option<Duration>) -> Option<Duration> {
    min_ttl(remaining, hot_ttl)
}

fn min_ttl(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A coarse clock for entry recency: whole seconds since it started.
#[derive(Debug, Clone, Copy)]
pub struct Recency {
    started: Instant,
}

impl Recency {
    pub fn new(started: Instant) -> Self {
        Self { started }
    }

    pub fn second(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.started).as_secs()).unwrap_or(u32::MAX)
    }
}

/// True when a value with this TTL should be stored at all.
pub fn worth_storing(ttl: Option<Duration>) -> bool {
    ttl.is_none_or(|ttl| !ttl.is_zero())
}

/// A key's digest: what caches, epochs, flights and gossip invalidations
/// index it by (keys may be 4 KiB; a digest fits any datagram).
pub fn key_digest(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn origin_max_age_caps_group_ttl() {
        assert_eq!(owner_ttl(None, None), None);
        assert_eq!(owner_ttl(Some(S(300)), None), Some(S(300)));
        assert_eq!(owner_ttl(None, Some(S(10))), Some(S(10)));
        assert_eq!(owner_ttl(Some(S(300)), Some(S(10))), Some(S(10)));
        assert_eq!(owner_ttl(Some(S(5)), Some(S(10))), Some(S(5)));
    }

    #[test]
    fn hot_copy_never_outlives_hot_ttl_or_owner() {
        assert_eq!(hot_ttl(None, Some(S(60))), Some(S(60)));
        assert_eq!(hot_ttl(Some(S(5)), Some(S(60))), Some(S(5)));
        assert_eq!(hot_ttl(Some(S(500)), Some(S(60))), Some(S(60)));
        assert_eq!(hot_ttl(None, None), None);
    }

    #[test]
    fn zero_ttl_is_not_stored() {
        assert!(worth_storing(None));
        assert!(worth_storing(Some(S(1))));
        assert!(!worth_storing(Some(Duration::ZERO)));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_on_time() {
        let now = Instant::now();
        let entry = Entry::new("k", EntryKind::NotFound, Some(S(10)), now, Version::ZERO);
        assert!(entry.is_fresh(now));
        tokio::time::advance(S(4)).await;
        assert_eq!(entry.remaining(Instant::now()), Some(S(6)));
        tokio::time::advance(S(6)).await;
        assert!(!entry.is_fresh(Instant::now()));
        assert!(
            Entry::new("k", EntryKind::NotFound, None, now, Version::ZERO).is_fresh(Instant::now())
        );
    }

    /// In an `Arc` (16 bytes of counts) and with malloc's 8 bytes of size,
    /// the entry stays in glibc's 80-byte class: a field that grows it
    /// costs every entry, and ENTRY_OVERHEAD is measured with it.
    #[test]
    fn an_entry_stays_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 56,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn a_stored_value_owns_its_bytes_and_a_common_content_type_is_static() {
        let arrived = Bytes::from(vec![b'x'; 8192]);
        let entry = Arc::new(Entry::new(
            "k",
            EntryKind::Found(Value::new(
                arrived.slice(100..110),
                Some(HeaderValue::from_bytes(b"application/json").expect("valid")),
            )),
            None,
            Instant::now(),
            Version::ZERO,
        ));
        let value = entry.value().expect("a value");
        assert_eq!(value.bytes, arrived.slice(100..110));
        assert_eq!(
            value.content_type,
            Some(HeaderValue::from_static("application/json"))
        );
        // Its own copy, not a view into the 8 KiB it arrived in.
        assert!(!std::ptr::eq(value.bytes.as_ptr(), arrived[100..].as_ptr()));
        assert_eq!(weight_of("k", Some(&value)), 1 + 10 + ENTRY_OVERHEAD);
        assert_eq!(u64::from(entry.weight()), 1 + 10 + ENTRY_OVERHEAD);
        let rare = Value::new("v", Some(HeaderValue::from_static("text/x-rare")));
        assert_eq!(weight_of("k", Some(&rare)), 2 + 11 + ENTRY_OVERHEAD);
    }

    #[test]
    fn an_entry_gives_back_its_key_value_and_content_type() {
        let now = Instant::now();
        let rare = HeaderValue::from_static("text/x-rare; q=1");
        for content_type in [None, Some(HeaderValue::from_static("text/css")), Some(rare)] {
            let entry = Arc::new(Entry::new(
                "ключ",
                EntryKind::Found(Value::new("value", content_type.clone())),
                None,
                now,
                Version(3),
            ));
            assert_eq!(entry.key(), "ключ");
            assert!(entry.has_key("ключ") && !entry.has_key("ключ2"));
            assert_eq!(
                entry.value(),
                Some(Value::new("value", content_type.clone()))
            );
            assert_eq!(
                u64::from(entry.weight()),
                weight_of("ключ", Some(&Value::new("value", content_type)))
            );
            let fresh = entry.fresh(now).expect("a value");
            assert_eq!(
                (fresh.value.bytes, fresh.version),
                (Bytes::from("value"), Version(3))
            );
        }
        let gone = Arc::new(Entry::new(
            "k",
            EntryKind::NotFound,
            None,
            now,
            Version::ZERO,
        ));
        assert_eq!((gone.key(), gone.value()), ("k", None));
        let empty = Arc::new(Entry::new(
            "k",
            EntryKind::Found(Value::new(Bytes::new(), None)),
            None,
            now,
            Version::ZERO,
        ));
        assert_eq!(empty.value(), Some(Value::new(Bytes::new(), None)));
    }

    /// The value's bytes outlive the cache's hold on the entry.
    #[test]
    fn a_value_handed_out_outlives_its_entry() {
        let entry = Arc::new(Entry::new(
            "k",
            EntryKind::Found(Value::new("still here", None)),
            None,
            Instant::now(),
            Version::ZERO,
        ));
        let value = entry.value().expect("a value");
        drop(entry);
        assert_eq!(value.bytes, "still here");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_keeps_its_instant_to_the_nanosecond() {
        let now = Instant::now();
        for ttl in [
            Duration::ZERO,
            Duration::from_nanos(1),
            S(1),
            S(86_400 * 365),
        ] {
            assert_eq!(Deadline::at(Some(now + ttl)).instant(), Some(now + ttl));
        }
        assert_eq!(Deadline::at(None).instant(), None);
    }

    #[test]
    fn weight_counts_key_value_and_overhead() {
        let entry = Entry::new(
            "abcd",
            EntryKind::Found(Value::new(vec![0u8; 1000], None)),
            None,
            Instant::now(),
            Version::ZERO,
        );
        assert_eq!(u64::from(entry.weight()), 1004 + ENTRY_OVERHEAD);
    }
}
