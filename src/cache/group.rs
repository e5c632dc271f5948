//! A group: one named keyspace with its own origin, caches and counters.
//!
//! `get` is groupcache's read path: this node's main cache, then its hot
//! cache, then (one load per key, whoever asks) either the origin, when this
//! node owns the key, or the owner. PUT and DELETE go to the owner, then drop
//! every other node's copies.
//!
//! Churn (see the README): an owner that misses a key first peeks at the
//! key's previous owners; a fetch whose owner cannot be connected to goes to
//! the owner's ring successor, which loads as owner-in-waiting; a leaving
//! node hands its main cache to the next owners. Every stored entry carries
//! the [`Version`] of the write it came from, and a copy older than a write
//! this node knows of is refused.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::admission::HotAdmission;
use super::epochs::{Epoch, Epochs};
use super::error::GroupError;
use super::freshness::Stage;
use super::loader::{DynLoader, LoadError};
use super::origin_guard::OriginGuard;
use super::peers::{Ask, PeerError, Peers};
use super::singleflight::{Detach, Role, SingleFlight};
use super::store::{Eviction, Store, StoreStats};
use super::superseded::Superseded;
use super::value::{
    ENTRY_OVERHEAD, Entry, EntryKind, Fetched, Fresh, Source, Value, hot_ttl, key_digest,
    weight_of, worth_storing,
};
use super::version::{Clock, Version};
use crate::config::GroupConfig;
use crate::metrics::GroupMetrics;
use crate::ring::{Member, MemberId, Ring, Rings, key_hash};
use freshness::Aging;

/// Reads of a key at this node before a copy fetched from its owner is kept.
const HOT_ADMISSION_READS: u8 = 2;

/// Who is asking: a client of this node, or another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    Client,
    /// A node that believes this node owns the key.
    Peer,
    /// A node that cannot reach the key's owner, and found this node next
    /// on the ring: it loads as owner-in-waiting.
    Successor,
}

/// The rings as this node sees them, and which member is this node.
#[derive(Clone)]
pub struct RingView {
    rings: watch::Receiver<Arc<Rings>>,
    self_id: MemberId,
}

impl RingView {
    pub fn new(rings: watch::Receiver<Arc<Rings>>) -> Self {
        let self_id = rings.borrow().self_id();
        Self { rings, self_id }
    }

    /// The rings now, previous ones included.
    pub fn snapshot(&self) -> Arc<Rings> {
        Arc::clone(&self.rings.borrow())
    }

    /// The ring that owns keys now.
    pub fn current(&self) -> Arc<Ring> {
        Arc::clone(self.rings.borrow().current())
    }

    pub fn self_id(&self) -> MemberId {
        self.self_id
    }

    /// The owner of a key, unless it is this node (or the ring is empty).
    fn remote_owner(&self, hash: u64) -> Option<Member> {
        let rings = self.rings.borrow();
        rings
            .current()
            .owner_of_hash(hash)
            .filter(|owner| owner.id != self.self_id)
            .cloned()
    }
}

/// Loads for one key are shared only between callers that would do the same
/// thing: an owner's origin load and a non-owner's fetch stay apart, so two
/// nodes whose rings disagree cannot wait on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FlightKind {
    Load,
    Fetch,
}

type FlightResult = Result<Fetched, GroupError>;

/// How a PUT or DELETE drops the copies other nodes hold.
#[derive(Clone)]
pub enum CopyDrops {
    /// Ask every other member directly, before answering (fixed membership).
    Fanout,
    /// Hand the key's digest to gossip, which spreads it to every member.
    Broadcast(mpsc::UnboundedSender<CopyDrop>),
}

/// A request to drop every copy of a key, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDrop {
    pub group: Arc<str>,
    pub digest: u128,
    /// The owner when the request was made: it keeps its main copy (a PUT
    /// just stored it there), and drops only a hot one.
    pub owner: Option<MemberId>,
    /// Copies up to this version are superseded: refused if they arrive later.
    pub superseded: Version,
}

/// How a group reaches the rest of the cluster: the same for every group
/// of a node.
#[derive(Clone)]
pub struct Cluster {
    pub peers: Arc<dyn Peers>,
    pub ring: RingView,
    pub copy_drops: CopyDrops,
    /// The node's version clock.
    pub clock: Arc<Clock>,
    /// Ask an unreachable owner's successor rather than load locally.
    pub successor_failover: bool,
    /// How long superseded writes are remembered (the previous-rings window).
    pub remember_writes: Duration,
}

pub struct Group {
    name: Arc<str>,
    config: GroupConfig,
    main: Store,
    hot: Store,
    loader: Arc<dyn DynLoader>,
    cluster: Cluster,
    flights: Arc<SingleFlight<(u128, FlightKind), FlightResult>>,
    epochs: Epochs,
    superseded: Superseded,
    admission: HotAdmission,
    guard: Arc<OriginGuard>,
    metrics: GroupMetrics,
}

/// The groupcache counters, the churn counters and both caches' figures, as
/// `/_stats` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    /// Gets, from clients and from other nodes.
    pub gets: u64,
    /// Gets answered from the main or hot cache.
    pub cache_hits: u64,
    /// Values fetched from another node.
    pub peer_loads: u64,
    /// Requests to other nodes that failed.
    pub peer_errors: u64,
    /// Gets that missed both caches.
    pub loads: u64,
    /// Misses that ran a load (the rest joined one already running).
    pub loads_deduped: u64,
    /// Loads this node ran through its loader.
    pub local_loads: u64,
    /// Of those, the ones that failed.
    pub local_load_errs: u64,
    /// Gets that came from other nodes.
    pub server_requests: u64,
    /// Entries this node handed to the next owners when it left.
    pub handoff_entries_sent: u64,
    /// Entries other nodes handed to this one.
    pub handoff_entries_received: u64,
    /// Bytes of the entries sent.
    pub handoff_bytes_sent: u64,
    /// Bytes of the entries received.
    pub handoff_bytes_received: u64,
    /// Handed-off entries refused as older than what this node knows.
    pub handoff_refused: u64,
    /// Previous owners' copies taken instead of a load.
    pub previous_owner_hits: u64,
    /// Peeks at previous owners that found nothing.
    pub previous_owner_misses: u64,
    /// Peeks at previous owners that failed.
    pub previous_owner_errors: u64,
    /// Keys loaded as an unreachable owner's successor.
    pub successor_loads: u64,
    /// Expired values served stale: while they reloaded, or in place of a
    /// failed reload.
    pub stale_served: u64,
    /// Background reloads started (refresh ahead, or after expiry).
    pub refreshes: u64,
    /// Reloads the origin answered `304 Not Modified`.
    pub revalidated_not_modified: u64,
    /// Origin loads not sent: overloaded, or the circuit open.
    pub origin_rejected: u64,
    /// The main cache: keys this node owns.
    pub main: StoreStats,
    /// The hot cache: popular keys owned by others.
    pub hot: StoreStats,
}

impl Group {
    pub(crate) fn new(
        name: &str,
        config: GroupConfig,
        loader: Arc<dyn DynLoader>,
        cluster: Cluster,
        metrics: GroupMetrics,
    ) -> Self {
        let main = Store::new(config.capacity, Eviction::Lru, metrics.main.clone());
        let hot = Store::new(
            config.hot_capacity(),
            Eviction::TinyLfu,
            metrics.hot.clone(),
        );
        // About one sketch slot per hot entry of 1 KiB.
        let admission =
            HotAdmission::new((config.hot_capacity() / 1024) as usize, HOT_ADMISSION_READS);
        let superseded = Superseded::new(cluster.remember_writes);
        let guard = OriginGuard::new(config.origin, metrics.origin.clone());
        Self {
            name: name.into(),
            config,
            main,
            hot,
            loader,
            cluster,
            flights: Arc::new(SingleFlight::new(|| Err(GroupError::Internal))),
            epochs: Epochs::default(),
            superseded,
            admission,
            guard,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn metrics(&self) -> &GroupMetrics {
        &self.metrics
    }

    fn peers(&self) -> &dyn Peers {
        self.cluster.peers.as_ref()
    }

    fn self_id(&self) -> MemberId {
        self.cluster.ring.self_id()
    }

    /// The value for `key`, from wherever it is cheapest to get.
    pub async fn get(self: &Arc<Self>, key: &str, from: Requester) -> Result<Fetched, GroupError> {
        self.metrics.gets.inc();
        if from != Requester::Client {
            self.metrics.server_requests.inc();
        }
        let now = Instant::now();
        let digest = key_digest(key);
        let mut stale = None;
        if let Some(entry) = self.main.get(digest, key, now) {
            match entry.stage(now) {
                Stage::Fresh => return from_entry(&entry, Source::Main, now),
                stage => match self.aging(&entry, stage, key, digest, from, now) {
                    Aging::Answer(answer) => return answer,
                    Aging::Reload => stale = Some(entry),
                    Aging::Miss => {}
                },
            }
        }
        if let Some(entry) = self.hot.get(digest, key, now) {
            return from_entry(&entry, Source::Hot, now);
        }
        self.metrics.loads.inc();

        let hash = key_hash(&self.name, key);
        // A peer's request is answered here and never forwarded again,
        // whatever this node's ring says: no loops while rings disagree.
        let owner = match from {
            Requester::Client => self.cluster.ring.remote_owner(hash),
            Requester::Peer | Requester::Successor => None,
        };
        let Some(owner) = owner else {
            if let Some(held) = &stale
                && let Some(answer) = self.reload_recently_tried(held, digest).await
            {
                return answer;
            }
            let (result, role) = self
                .load_here(
                    key,
                    digest,
                    hash,
                    from == Requester::Successor,
                    stale.clone(),
                )
                .await;
            if role == Role::Leader {
                self.metrics.loads_deduped.inc();
            }
            return self.or_stale_if_error(result, stale.as_ref());
        };
        let admit = self.admission.admits(self.admission.record(hash));
        let this = Arc::clone(self);
        let key = key.to_owned();
        let (result, role) = self
            .flights
            .run(
                (digest, FlightKind::Fetch),
                // A fetch its callers drive: no task of its own on the peer
                // hit's path (the owner's load goes on without it).
                Detach::No,
                move || async move {
                    let epoch = this.epochs.current(digest);
                    this.fetch_from_owner(&owner, &key, digest, hash, epoch, admit)
                        .await
                },
            )
            .await;
        if role == Role::Leader {
            self.metrics.loads_deduped.inc();
        }
        result
    }

    /// Whether this node answers for `key` as its owner: it is the owner on
    /// its ring, or another node asked it as one.
    fn answers_as_owner(&self, key: &str, from: Requester) -> bool {
        from != Requester::Client
            || self
                .cluster
                .ring
                .remote_owner(key_hash(&self.name, key))
                .is_none()
    }

    /// Loads a key as its owner (or owner-in-waiting), once for every
    /// caller that asks meanwhile, this node's clients and other nodes
    /// alike. `reloading`: the entry this node holds for the key, which
    /// the load replaces (a refresh, or a reload after expiry): it is
    /// revalidated where the origin gave validators, and no previous owner
    /// is asked.
    async fn load_here(
        self: &Arc<Self>,
        key: &str,
        digest: u128,
        hash: u64,
        as_successor: bool,
        reloading: Option<Arc<Entry>>,
    ) -> (FlightResult, Role) {
        let this = Arc::clone(self);
        let key = key.to_owned();
        self.flights
            .run(
                (digest, FlightKind::Load),
                // The origin's answer is kept for the cache whether or not
                // its callers wait for it.
                Detach::Task,
                move || async move {
                    let epoch = this.epochs.current(digest);
                    // A load that finished since the caller missed (one another
                    // node's successor request started, say) already stored it.
                    if let Some(found) = this.held(&key, digest, reloading.as_ref()) {
                        return found;
                    }
                    // Stamped before the load: a DELETE acknowledged while it
                    // runs is newer than the value it brings.
                    let version = this.cluster.clock.now();
                    if reloading.is_none()
                        && let Some(found) = this
                            .peek_previous_owners(&key, digest, hash, epoch, as_successor)
                            .await
                    {
                        return Ok(found);
                    }
                    if as_successor {
                        this.metrics.churn.successor_loads.inc();
                    }
                    this.load_as_owner(&key, digest, epoch, version, reloading.as_ref())
                        .await
                },
            )
            .await
    }

    async fn fetch_from_owner(
        self: &Arc<Self>,
        owner: &Member,
        key: &str,
        digest: u128,
        hash: u64,
        epoch: Epoch,
        admit: bool,
    ) -> FlightResult {
        let timer = self.metrics.peer_duration.start_timer();
        let fetched = self.peers().fetch(owner, Ask::Owner, &self.name, key).await;
        timer.observe_duration();
        match fetched {
            Ok(copy) => Ok(self.keep_fetched(copy, key, digest, epoch, admit)),
            Err(PeerError::Unreachable { detail, .. }) => {
                self.metrics.peer_errors.inc();
                if self.cluster.successor_failover {
                    debug!(group = %self.name, owner = %owner, error = %detail, "owner unreachable; asking its successor");
                    return self.fail_over(owner, key, digest, hash, epoch, admit).await;
                }
                warn!(group = %self.name, owner = %owner, error = %detail, "owner unreachable; loading locally");
                self.load_as_fallback(key, digest, epoch).await
            }
            Err(error) => Err(self.owner_error(owner, error)),
        }
    }

    /// A value fetched from another node: served, and kept as a hot copy if
    /// the key is read often enough here.
    fn keep_fetched(
        &self,
        copy: Fresh,
        key: &str,
        digest: u128,
        epoch: Epoch,
        admit: bool,
    ) -> Fetched {
        self.metrics.peer_loads.inc();
        self.cluster.clock.observe(copy.version);
        let ttl = hot_ttl(copy.ttl, self.config.hot_ttl);
        if admit && !copy.no_store && worth_storing(ttl) && self.fits(&copy.value) {
            self.keep(
                &self.hot,
                key,
                digest,
                epoch,
                EntryKind::Found(copy.value.clone()),
                ttl,
                copy.version,
            );
        }
        Fetched {
            stale: copy.stale_age(),
            fresh: copy,
            source: Source::Peer,
        }
    }

    /// Keeps an entry in `cache`, unless the key was invalidated since the
    /// load that produced it started (`epoch`).
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &self,
        cache: &Store,
        key: &str,
        digest: u128,
        epoch: Epoch,
        kind: EntryKind,
        ttl: Option<Duration>,
        version: Version,
    ) {
        let entry = Entry::new(key, kind, ttl, Instant::now(), version);
        self.keep_entry(cache, digest, epoch, entry);
    }

    fn keep_entry(&self, cache: &Store, digest: u128, epoch: Epoch, entry: Entry) {
        self.epochs
            .store_if_current(digest, epoch, || cache.insert(digest, entry));
    }

    /// The copy this node holds, main or hot, for another node's peek:
    /// never loaded, never counted as a read.
    pub fn peek(&self, key: &str) -> Option<Fetched> {
        self.held(key, key_digest(key), None).and_then(Result::ok)
    }

    /// What this node's caches hold fresh for a key, without counting a
    /// read, unless it is the entry `reloading` (which a refresh is about
    /// to replace).
    fn held(
        &self,
        key: &str,
        digest: u128,
        reloading: Option<&Arc<Entry>>,
    ) -> Option<FlightResult> {
        let now = Instant::now();
        let (entry, source) = match self.main.peek(digest, key, now) {
            Some(entry) => (entry, Source::Main),
            None => (self.hot.peek(digest, key, now)?, Source::Hot),
        };
        if reloading.is_some_and(|reloading| Arc::ptr_eq(reloading, &entry)) {
            return None;
        }
        Some(from_entry(&entry, source, now))
    }

    /// Stores a value at its owner, then drops every other node's copies.
    /// A value the group cannot store is refused here, before it travels,
    /// and again by the owner (whose answer comes back as the same error).
    pub async fn put(&self, key: &str, value: Value) -> Result<(), GroupError> {
        self.check_storable(key, &value)?;
        let hash = key_hash(&self.name, key);
        let ring = self.cluster.ring.current();
        let owner = ring.owner_of_hash(hash).cloned();
        let version = match owner.as_ref().filter(|o| o.id != self.self_id()) {
            None => self.store_as_owner(key, value)?,
            Some(owner) => {
                let version = self
                    .peers()
                    .store(owner, &self.name, key, &value)
                    .await
                    .map_err(|error| self.owner_error(owner, error))?;
                self.observed_or_now(version)
            }
        };
        self.drop_copies_elsewhere(&ring, owner.as_ref(), key, version.before())
            .await;
        Ok(())
    }

    /// Removes a key at its owner and drops every other node's copies.
    pub async fn delete(&self, key: &str) -> Result<(), GroupError> {
        let hash = key_hash(&self.name, key);
        let ring = self.cluster.ring.current();
        let owner = ring.owner_of_hash(hash).cloned();
        let (version, at_owner) = match owner.as_ref().filter(|o| o.id != self.self_id()) {
            None => (self.drop_local(key, None), Ok(())),
            Some(owner) => match self.peers().remove(owner, &self.name, key, None).await {
                Ok(version) => (self.observed_or_now(version), Ok(())),
                // Nothing listens there, so nothing is cached there either.
                Err(PeerError::Unreachable { refused: true, .. }) => {
                    (self.cluster.clock.now(), Ok(()))
                }
                Err(error) => (
                    self.cluster.clock.now(),
                    Err(self.owner_error(owner, error)),
                ),
            },
        };
        // Dropping copies is harmless even when the owner failed.
        self.drop_copies_elsewhere(&ring, owner.as_ref(), key, version)
            .await;
        at_owner
    }

    /// A version another node gave a write, or this node's clock if it gave
    /// none (an older node).
    fn observed_or_now(&self, version: Version) -> Version {
        if version == Version::ZERO {
            self.cluster.clock.now()
        } else {
            self.cluster.clock.observe(version);
            version
        }
    }

    /// Stores a value as its owner (a PUT from a client or a peer) and
    /// returns the write's version. Loads in flight for the key are
    /// detached, so they cannot overwrite it, and older copies of the key
    /// are refused from now on. A value the main cache cannot hold is an
    /// error, not a write that silently keeps nothing.
    pub fn store_as_owner(&self, key: &str, value: Value) -> Result<Version, GroupError> {
        self.check_storable(key, &value)?;
        let digest = key_digest(key);
        let version = self.cluster.clock.now();
        let written = Fresh {
            ttl: self.config.ttl,
            ..Fresh::new(value).versioned(version)
        };
        let entry = self.owner_entry(key, &written, Instant::now());
        self.epochs.invalidate(digest, || {
            self.superseded.supersede(digest, version.before());
            self.main.insert(digest, entry);
            self.hot.remove(digest);
        });
        self.forget_flights(digest);
        Ok(version)
    }

    /// Whether a PUT of `value` under `key` can be stored: a value within
    /// `max_value` whose entry (key, value, content type, per-entry
    /// overhead) is no heavier than the main cache. The config keeps
    /// `max_value` within the capacity, so the second refusal is for a
    /// long content type or a config built in code.
    fn check_storable(&self, key: &str, value: &Value) -> Result<(), GroupError> {
        let size = value.bytes.len() as u64;
        let max_value = self.config.max_value;
        if size > max_value {
            return Err(GroupError::ValueTooLarge(
                format!(
                    "the value is {size} bytes, larger than group `{}`'s max_value of {max_value} bytes",
                    self.name
                )
                .into(),
            ));
        }
        let weight = weight_of(key, Some(value));
        let capacity = self.config.capacity;
        if weight > capacity {
            return Err(GroupError::ValueTooLarge(
                format!(
                    "the entry weighs {weight} bytes (key {} + value {size} + content type {} + {ENTRY_OVERHEAD} overhead), more than group `{}`'s capacity of {capacity} bytes",
                    key.len(),
                    value.content_type.as_ref().map_or(0, |t| t.len()),
                    self.name
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// Drops this node's copies of a key, main and hot, and refuses copies
    /// up to `superseded` (`None`: up to now on this node's clock). Returns
    /// the version recorded.
    pub fn drop_local(&self, key: &str, superseded: Option<Version>) -> Version {
        let version = match superseded {
            Some(version) => {
                self.cluster.clock.observe(version);
                version
            }
            None => self.cluster.clock.now(),
        };
        self.drop_digest(key_digest(key), true, version);
        version
    }

    /// Drops this node's copies of the key with this digest: the hot copy,
    /// and the main one too unless `keep_main` (the owner keeping the value a
    /// PUT just stored). Loads in flight for it will not store their values,
    /// and copies up to `superseded` arriving later are refused.
    pub fn drop_digest(&self, digest: u128, drop_main: bool, superseded: Version) {
        self.cluster.clock.observe(superseded);
        self.epochs.invalidate(digest, || {
            self.superseded.supersede(digest, superseded);
            if drop_main {
                self.main.remove(digest);
            }
            self.hot.remove(digest);
        });
        self.forget_flights(digest);
    }

    fn forget_flights(&self, digest: u128) {
        for kind in [FlightKind::Load, FlightKind::Fetch] {
            self.flights.forget(&(digest, kind));
        }
    }

    /// Every member but the owner drops its copies (hot ones, or main ones
    /// from an earlier ownership); this node does so directly.
    async fn drop_copies_elsewhere(
        &self,
        ring: &Ring,
        owner: Option<&Member>,
        key: &str,
        superseded: Version,
    ) {
        let self_id = self.self_id();
        if owner.is_some_and(|o| o.id != self_id) {
            self.drop_local(key, Some(superseded));
        }
        if let CopyDrops::Broadcast(gossip) = &self.cluster.copy_drops {
            let drop = CopyDrop {
                group: self.name.clone(),
                digest: key_digest(key),
                owner: owner.map(|o| o.id),
                superseded,
            };
            if gossip.send(drop).is_err() {
                warn!(group = %self.name, "gossip is not running; other nodes keep their copies until they expire");
            }
            return;
        }
        let others = ring
            .members()
            .iter()
            .filter(|m| m.id != self_id && owner.is_none_or(|o| o.id != m.id));
        let drops = others.map(|member| async move {
            let result = self
                .peers()
                .remove(member, &self.name, key, Some(superseded))
                .await;
            (member, result)
        });
        for (member, result) in join_all(drops).await {
            match result {
                Ok(_) | Err(PeerError::Unreachable { refused: true, .. }) => {}
                Err(error) => {
                    self.metrics.peer_errors.inc();
                    warn!(group = %self.name, member = %member, ?error, "could not drop a copy");
                }
            }
        }
    }

    fn owner_error(&self, owner: &Member, error: PeerError) -> GroupError {
        // The owner refusing a value too large is the client's error, and
        // an origin the owner protects is the owner's answer: neither is a
        // failure between peers.
        if !matches!(
            error,
            PeerError::ValueTooLarge(_) | PeerError::OriginRefused { .. }
        ) {
            self.metrics.peer_errors.inc();
        }
        let owner_name = owner.name.clone();
        match error {
            PeerError::Unreachable { detail, .. } => GroupError::OwnerUnreachable {
                owner: owner_name,
                detail: detail.into(),
            },
            PeerError::Timeout(after) => GroupError::PeerTimeout {
                owner: owner_name,
                after,
            },
            PeerError::Origin(error) => origin_error(error),
            PeerError::ValueTooLarge(detail) => GroupError::ValueTooLarge(detail.into()),
            PeerError::OriginRefused {
                circuit_open: true,
                detail,
            } => GroupError::OriginCircuitOpen(detail.into()),
            PeerError::OriginRefused { detail, .. } => GroupError::OriginOverloaded(detail.into()),
            PeerError::Failed(detail) => GroupError::PeerFailure {
                owner: owner_name,
                detail: detail.into(),
            },
        }
    }

    /// Whether a value is small enough to cache (`max_value`).
    pub fn fits(&self, value: &Value) -> bool {
        value.bytes.len() as u64 <= self.config.max_value
    }

    pub fn stats(&self) -> GroupStats {
        let m = &self.metrics;
        let c = &m.churn;
        let f = &m.freshness;
        GroupStats {
            gets: m.gets.get(),
            cache_hits: m.main.hits.get() + m.hot.hits.get(),
            peer_loads: m.peer_loads.get(),
            peer_errors: m.peer_errors.get(),
            loads: m.loads.get(),
            loads_deduped: m.loads_deduped.get(),
            local_loads: m.local_loads.get(),
            local_load_errs: m.local_load_errors.get(),
            server_requests: m.server_requests.get(),
            handoff_entries_sent: c.handoff_sent_entries.get(),
            handoff_entries_received: c.handoff_received_entries.get(),
            handoff_bytes_sent: c.handoff_sent_bytes.get(),
            handoff_bytes_received: c.handoff_received_bytes.get(),
            handoff_refused: c.handoff_refused.get(),
            previous_owner_hits: c.previous_owner_hits.get(),
            previous_owner_misses: c.previous_owner_misses.get(),
            previous_owner_errors: c.previous_owner_errors.get(),
            successor_loads: c.successor_loads.get(),
            stale_served: f.stale_while_revalidate.get() + f.stale_if_error.get(),
            refreshes: f.refreshes_ahead.get() + f.refreshes_stale.get(),
            revalidated_not_modified: f.not_modified.get(),
            origin_rejected: m.origin.overloaded.get() + m.origin.circuit_open.get(),
            main: self.main.stats(),
            hot: self.hot.stats(),
        }
    }
}

fn from_entry(entry: &Arc<Entry>, source: Source, now: Instant) -> FlightResult {
    match entry.fresh(now) {
        Some(fresh) => Ok(Fetched::fresh(fresh, source)),
        None => Err(GroupError::OriginNotFound),
    }
}

fn origin_error(error: LoadError) -> GroupError {
    match error {
        LoadError::NotFound => GroupError::OriginNotFound,
        LoadError::Failure(detail) => GroupError::OriginFailure(detail.into()),
        LoadError::Timeout(after) => GroupError::OriginTimeout(after),
    }
}

mod churn;
mod freshness;
mod origin;
#[cfg(test)]
mod tests;

pub use churn::HandoffReport;
