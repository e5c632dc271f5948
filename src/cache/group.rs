//! A group: one named keyspace with its own origin, caches and counters.
//!
//! `get` is groupcache's read path: this node's main cache, then its hot
//! cache, then (one load per key, whoever asks) either the origin, when this
//! node owns the key, or the owner. PUT and DELETE go to the owner, then drop
//! every other node's copies.

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
use super::peers::{PeerError, PeerValue, Peers};
use super::singleflight::SingleFlight;
use super::store::{Store, StoreStats};
use super::value::{
    Entry, EntryKind, Source, Value, hot_ttl, key_digest, owner_ttl, worth_storing,
};
use crate::config::GroupConfig;
use crate::loader::{LoadError, Loaded, Loader};
use crate::metrics::GroupMetrics;
use crate::ring::{Member, MemberId, Ring, key_hash};

/// Reads of a key at this node before a copy fetched from its owner is kept.
const HOT_ADMISSION_READS: u8 = 2;

/// Who is asking: a client of this node, or another node that believes this
/// node owns the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    Client,
    Peer,
}

/// A value as a get returns it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub value: Value,
    pub source: Source,
    /// Time left to live; `None`: no expiry.
    pub ttl: Option<Duration>,
    /// Other nodes must not keep copies of it.
    pub no_store: bool,
}

/// The ring as this node sees it, and which member is this node.
#[derive(Clone)]
pub struct RingView {
    ring: watch::Receiver<Arc<Ring>>,
    self_id: MemberId,
}

impl RingView {
    pub fn new(ring: watch::Receiver<Arc<Ring>>, self_id: MemberId) -> Self {
        Self { ring, self_id }
    }

    pub fn snapshot(&self) -> Arc<Ring> {
        Arc::clone(&self.ring.borrow())
    }

    pub fn self_id(&self) -> MemberId {
        self.self_id
    }

    /// The owner of a key, unless it is this node (or the ring is empty).
    fn remote_owner(&self, hash: u64) -> Option<Member> {
        let ring = self.ring.borrow();
        ring.owner_of_hash(hash)
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
}

pub struct Group {
    name: Arc<str>,
    config: GroupConfig,
    main: Store,
    hot: Store,
    loader: Loader,
    peers: Arc<dyn Peers>,
    ring: RingView,
    flights: Arc<SingleFlight<(u128, FlightKind), FlightResult>>,
    copy_drops: CopyDrops,
    epochs: Epochs,
    admission: HotAdmission,
    metrics: GroupMetrics,
}

/// The groupcache counters and both caches' figures, as `/_stats` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    pub gets: u64,
    pub cache_hits: u64,
    pub peer_loads: u64,
    pub peer_errors: u64,
    pub loads: u64,
    pub loads_deduped: u64,
    pub local_loads: u64,
    pub local_load_errs: u64,
    pub server_requests: u64,
    pub main: StoreStats,
    pub hot: StoreStats,
}

impl Group {
    pub fn new(
        name: &str,
        config: GroupConfig,
        loader: Loader,
        peers: Arc<dyn Peers>,
        ring: RingView,
        copy_drops: CopyDrops,
        metrics: GroupMetrics,
    ) -> Self {
        let main = Store::new(config.capacity, metrics.main.clone());
        let hot = Store::new(config.hot_capacity(), metrics.hot.clone());
        // About one sketch slot per hot entry of 1 KiB.
        let admission =
            HotAdmission::new((config.hot_capacity() / 1024) as usize, HOT_ADMISSION_READS);
        Self {
            name: name.into(),
            config,
            main,
            hot,
            loader,
            peers,
            ring,
            flights: Arc::new(SingleFlight::new(|| Err(GroupError::Internal))),
            copy_drops,
            epochs: Epochs::default(),
            admission,
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

    /// The value for `key`, from wherever it is cheapest to get.
    pub async fn get(self: &Arc<Self>, key: &str, from: Requester) -> Result<Fetched, GroupError> {
        self.metrics.gets.inc();
        if from == Requester::Peer {
            self.metrics.server_requests.inc();
        }
        let now = Instant::now();
        let digest = key_digest(key);
        if let Some(entry) = self.main.get(digest, key, now) {
            return from_entry(entry, Source::Main, now);
        }
        if let Some(entry) = self.hot.get(digest, key, now) {
            return from_entry(entry, Source::Hot, now);
        }
        self.metrics.loads.inc();

        let hash = key_hash(&self.name, key);
        // A peer's request is answered here and never forwarded again,
        // whatever this node's ring says: no loops while rings disagree.
        let owner = match from {
            Requester::Peer => None,
            Requester::Client => self.ring.remote_owner(hash),
        };
        let kind = if owner.is_some() {
            FlightKind::Fetch
        } else {
            FlightKind::Load
        };
        let admit = owner.is_some() && self.admission.admits(self.admission.record(hash));

        let this = Arc::clone(self);
        let key = key.to_owned();
        let (result, _role) = self
            .flights
            .run((digest, kind), move || async move {
                this.metrics.loads_deduped.inc();
                let epoch = this.epochs.current(digest);
                match owner {
                    None => this.load_as_owner(&key, digest, epoch).await,
                    Some(owner) => {
                        this.fetch_from_owner(&owner, &key, digest, epoch, admit)
                            .await
                    }
                }
            })
            .await;
        result
    }

    async fn load_from_origin(&self, key: &str) -> Result<Loaded, LoadError> {
        self.metrics.local_loads.inc();
        let timer = self.metrics.origin_duration.start_timer();
        let loaded = self.loader.load(key).await;
        timer.observe_duration();
        if let Err(error) = &loaded {
            self.metrics.local_load_errors.inc();
            debug!(group = %self.name, key, %error, "origin load failed");
        }
        loaded
    }

    async fn load_as_owner(&self, key: &str, digest: u128, epoch: Epoch) -> FlightResult {
        match self.load_from_origin(key).await {
            Ok(loaded) => {
                let ttl = owner_ttl(self.config.ttl, loaded.max_age);
                let value = Value::new(loaded.bytes, loaded.content_type);
                let keep = !loaded.no_store && worth_storing(ttl) && self.fits(&value);
                if keep {
                    self.keep(
                        &self.main,
                        key,
                        digest,
                        epoch,
                        EntryKind::Found(value.clone()),
                        ttl,
                    );
                }
                Ok(Fetched {
                    value,
                    source: Source::Origin,
                    ttl,
                    no_store: loaded.no_store || !worth_storing(ttl),
                })
            }
            Err(LoadError::NotFound) => {
                if let Some(ttl) = self.config.negative_ttl {
                    self.keep(
                        &self.main,
                        key,
                        digest,
                        epoch,
                        EntryKind::NotFound,
                        Some(ttl),
                    );
                }
                Err(GroupError::OriginNotFound)
            }
            Err(error) => Err(origin_error(error)),
        }
    }

    async fn fetch_from_owner(
        &self,
        owner: &Member,
        key: &str,
        digest: u128,
        epoch: Epoch,
        admit: bool,
    ) -> FlightResult {
        let timer = self.peers_timer();
        let fetched = self.peers.fetch(owner, &self.name, key).await;
        timer.observe_duration();
        match fetched {
            Ok(PeerValue {
                value,
                remaining_ttl,
                no_store,
            }) => {
                self.metrics.peer_loads.inc();
                let ttl = hot_ttl(remaining_ttl, self.config.hot_ttl);
                if admit && !no_store && worth_storing(ttl) && self.fits(&value) {
                    self.keep(
                        &self.hot,
                        key,
                        digest,
                        epoch,
                        EntryKind::Found(value.clone()),
                        ttl,
                    );
                }
                Ok(Fetched {
                    value,
                    source: Source::Peer,
                    ttl: remaining_ttl,
                    no_store,
                })
            }
            Err(PeerError::Unreachable { detail, .. }) => {
                self.metrics.peer_errors.inc();
                warn!(group = %self.name, owner = %owner, error = %detail, "owner unreachable; loading locally");
                self.load_as_fallback(key, digest, epoch).await
            }
            Err(PeerError::Origin(error)) => Err(match error {
                LoadError::NotFound => GroupError::OriginNotFound,
                other => origin_error(other),
            }),
            Err(PeerError::Timeout(after)) => {
                self.metrics.peer_errors.inc();
                Err(GroupError::PeerTimeout {
                    owner: owner.name.clone(),
                    after,
                })
            }
            Err(PeerError::Failed(detail)) => {
                self.metrics.peer_errors.inc();
                warn!(group = %self.name, owner = %owner, error = %detail, "peer fetch failed");
                Err(GroupError::PeerFailure {
                    owner: owner.name.clone(),
                    detail: detail.into(),
                })
            }
        }
    }

    /// The owner cannot be reached: load here, and keep the value only as a
    /// hot copy, since this node is not the owner.
    async fn load_as_fallback(&self, key: &str, digest: u128, epoch: Epoch) -> FlightResult {
        let loaded = self
            .load_from_origin(key)
            .await
            .map_err(|error| match error {
                LoadError::NotFound => GroupError::OriginNotFound,
                other => origin_error(other),
            })?;
        let ttl = owner_ttl(self.config.ttl, loaded.max_age);
        let value = Value::new(loaded.bytes, loaded.content_type);
        let copy_ttl = hot_ttl(ttl, self.config.hot_ttl);
        if !loaded.no_store && worth_storing(copy_ttl) && self.fits(&value) {
            self.keep(
                &self.hot,
                key,
                digest,
                epoch,
                EntryKind::Found(value.clone()),
                copy_ttl,
            );
        }
        Ok(Fetched {
            value,
            source: Source::Origin,
            ttl,
            no_store: loaded.no_store || !worth_storing(ttl),
        })
    }

    /// Keeps an entry in `cache`, unless the key was invalidated since the
    /// load that produced it started (`epoch`).
    fn keep(
        &self,
        cache: &Store,
        key: &str,
        digest: u128,
        epoch: Epoch,
        kind: EntryKind,
        ttl: Option<Duration>,
    ) {
        let entry = Entry::new(key, kind, ttl, Instant::now());
        self.epochs
            .store_if_current(digest, epoch, || cache.insert(digest, entry));
    }

    /// Stores a value at its owner, then drops every other node's copies.
    pub async fn put(&self, key: &str, value: Value) -> Result<(), GroupError> {
        let hash = key_hash(&self.name, key);
        let ring = self.ring.snapshot();
        let owner = ring.owner_of_hash(hash).cloned();
        match owner.as_ref().filter(|o| o.id != self.ring.self_id()) {
            None => self.store_as_owner(key, value),
            Some(owner) => self
                .peers
                .store(owner, &self.name, key, &value)
                .await
                .map_err(|error| self.owner_error(owner, error))?,
        }
        self.drop_copies_elsewhere(&ring, owner.as_ref(), key).await;
        Ok(())
    }

    /// Removes a key at its owner and drops every other node's copies.
    pub async fn delete(&self, key: &str) -> Result<(), GroupError> {
        let hash = key_hash(&self.name, key);
        let ring = self.ring.snapshot();
        let owner = ring.owner_of_hash(hash).cloned();
        let at_owner = match owner.as_ref().filter(|o| o.id != self.ring.self_id()) {
            None => {
                self.drop_local(key);
                Ok(())
            }
            Some(owner) => match self.peers.remove(owner, &self.name, key).await {
                // Nothing listens there, so nothing is cached there either.
                Err(PeerError::Unreachable { refused: true, .. }) => Ok(()),
                other => other.map_err(|error| self.owner_error(owner, error)),
            },
        };
        // Dropping copies is harmless even when the owner failed.
        self.drop_copies_elsewhere(&ring, owner.as_ref(), key).await;
        at_owner
    }

    /// Stores a value as its owner (a PUT from a client or a peer). Loads in
    /// flight for the key are detached, so they cannot overwrite it.
    pub fn store_as_owner(&self, key: &str, value: Value) {
        let digest = key_digest(key);
        let entry = Entry::new(
            key,
            EntryKind::Found(value),
            self.config.ttl,
            Instant::now(),
        );
        self.epochs.invalidate(digest, || {
            self.main.insert(digest, entry);
            self.hot.remove(digest);
        });
        self.forget_flights(digest);
    }

    /// Drops this node's copies of a key, main and hot.
    pub fn drop_local(&self, key: &str) {
        self.drop_digest(key_digest(key), true);
    }

    /// Drops this node's copies of the key with this digest: the hot copy,
    /// and the main one too unless `keep_main` (the owner keeping the value a
    /// PUT just stored). Loads in flight for it will not store their values.
    pub fn drop_digest(&self, digest: u128, drop_main: bool) {
        self.epochs.invalidate(digest, || {
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
    async fn drop_copies_elsewhere(&self, ring: &Ring, owner: Option<&Member>, key: &str) {
        let self_id = self.ring.self_id();
        if owner.is_some_and(|o| o.id != self_id) {
            self.drop_local(key);
        }
        if let CopyDrops::Broadcast(gossip) = &self.copy_drops {
            let drop = CopyDrop {
                group: self.name.clone(),
                digest: key_digest(key),
                owner: owner.map(|o| o.id),
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
            (member, self.peers.remove(member, &self.name, key).await)
        });
        for (member, result) in join_all(drops).await {
            match result {
                Ok(()) | Err(PeerError::Unreachable { refused: true, .. }) => {}
                Err(error) => {
                    self.metrics.peer_errors.inc();
                    warn!(group = %self.name, member = %member, ?error, "could not drop a copy");
                }
            }
        }
    }

    fn owner_error(&self, owner: &Member, error: PeerError) -> GroupError {
        self.metrics.peer_errors.inc();
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

    fn peers_timer(&self) -> prometheus::HistogramTimer {
        self.metrics.peer_duration.start_timer()
    }

    pub fn stats(&self) -> GroupStats {
        let m = &self.metrics;
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
            main: self.main.stats(),
            hot: self.hot.stats(),
        }
    }
}

fn from_entry(entry: Entry, source: Source, now: Instant) -> FlightResult {
    let ttl = entry.remaining(now);
    match entry.kind {
        EntryKind::Found(value) => Ok(Fetched {
            value,
            source,
            ttl,
            no_store: false,
        }),
        EntryKind::NotFound => Err(GroupError::OriginNotFound),
    }
}

fn origin_error(error: LoadError) -> GroupError {
    match error {
        LoadError::NotFound => GroupError::OriginNotFound,
        LoadError::Failure(detail) => GroupError::OriginFailure(detail.into()),
        LoadError::Timeout(after) => GroupError::OriginTimeout(after),
    }
}

#[cfg(test)]
mod tests;
