//! Loads from the group's origin: through the [`OriginGuard`] (the bound on
//! loads in flight and the circuit breaker), as owner or as a fallback,
//! and as a revalidation of an entry held, where a `304` renews its life
//! without a body.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::debug;

use super::{FlightResult, Group, origin_error};
use crate::cache::epochs::Epoch;
use crate::cache::error::GroupError;
use crate::cache::freshness::StaleDirectives;
use crate::cache::loader::{LoadError, NotModified, Reloaded};
use crate::cache::origin_guard::{OriginError, Refusal};
use crate::cache::value::{
    Entry, EntryKind, Fetched, Fresh, Source, hot_ttl, owner_ttl, worth_storing,
};
use crate::cache::version::Version;

impl Group {
    /// Runs one loader call through the guard, counted and timed.
    async fn call_origin<T>(
        &self,
        key: &str,
        load: impl Future<Output = Result<T, LoadError>>,
    ) -> Result<T, OriginError> {
        let metrics = &self.metrics;
        let counted = async {
            metrics.local_loads.inc();
            let timer = metrics.origin_duration.start_timer();
            let loaded = load.await;
            timer.observe_duration();
            if let Err(error) = &loaded {
                metrics.local_load_errors.inc();
                debug!(group = %self.name, key, %error, "origin load failed");
            }
            loaded
        };
        self.guard.call(counted).await
    }

    /// Loads `key`, or revalidates `reloading` where its origin gave
    /// validators, and keeps the value as owner.
    pub(super) async fn load_as_owner(
        &self,
        key: &str,
        digest: u128,
        epoch: Epoch,
        version: Version,
        reloading: Option<&Arc<Entry>>,
    ) -> FlightResult {
        let validators = reloading
            .and_then(|entry| entry.life())
            .map(|life| &life.validators)
            .filter(|validators| !validators.is_empty());
        let loaded = match validators {
            Some(validators) => {
                let reloaded = self
                    .call_origin(key, self.loader.reload_boxed(key, validators))
                    .await;
                let counters = &self.metrics.freshness;
                match &reloaded {
                    Ok(Reloaded::NotModified(_)) => counters.not_modified.inc(),
                    Ok(Reloaded::Modified(_)) => counters.modified.inc(),
                    Err(_) => counters.revalidation_failed.inc(),
                }
                reloaded
            }
            None => self
                .call_origin(key, self.loader.load_boxed(key))
                .await
                .map(Reloaded::Modified),
        };
        let loaded = match loaded {
            Ok(Reloaded::Modified(loaded)) => loaded,
            // Reloads are asked only for held values with validators, so
            // `None` is a loader answering not-modified to nothing held.
            Ok(Reloaded::NotModified(renewal)) => reloading
                .and_then(|entry| renewed(entry, renewal))
                .ok_or_else(|| {
                    GroupError::OriginFailure(
                        "the loader answered not-modified for a value this node does not hold"
                            .into(),
                    )
                })?,
            Err(OriginError::Load(LoadError::NotFound)) => {
                let now = Instant::now();
                let entry = self
                    .config
                    .negative_ttl
                    .map(|ttl| Entry::new(key, EntryKind::NotFound, Some(ttl), now, version));
                // The origin has no value now: what this node held goes too.
                self.epochs.store_if_current(digest, epoch, || match entry {
                    Some(entry) => self.main.insert(digest, entry),
                    None => self.main.remove(digest),
                });
                return Err(GroupError::OriginNotFound);
            }
            Err(error) => return Err(self.origin_failure(error)),
        };
        let mut fresh = self.as_owner(loaded, version);
        if !fresh.no_store && self.fits(&fresh.value) {
            let now = Instant::now();
            let entry = self.owner_entry(key, &fresh, now);
            // What copies elsewhere may keep: the stored entry's time, jittered.
            fresh.ttl = entry.copy_remaining(now);
            self.keep_entry(&self.main, digest, epoch, entry);
        }
        Ok(Fetched::fresh(fresh, Source::Origin))
    }

    /// The owner cannot be reached: load here, and keep the value only as a
    /// hot copy, since this node is not the owner. The load runs as its own
    /// task: it is inside a fetch, which its callers drive and drop if they
    /// all hang up, and an origin load, once started, is seen through.
    pub(super) async fn load_as_fallback(
        self: &Arc<Self>,
        key: &str,
        digest: u128,
        epoch: Epoch,
    ) -> FlightResult {
        let this = Arc::clone(self);
        let key = key.to_owned();
        tokio::spawn(async move { this.fallback_load(&key, digest, epoch).await })
            .await
            .unwrap_or(Err(GroupError::Internal))
    }

    async fn fallback_load(&self, key: &str, digest: u128, epoch: Epoch) -> FlightResult {
        let version = self.cluster.clock.now();
        let loaded = self
            .call_origin(key, self.loader.load_boxed(key))
            .await
            .map_err(|e| self.origin_failure(e))?;
        let fresh = self.as_owner(loaded, version);
        let copy_ttl = hot_ttl(fresh.ttl, self.config.hot_ttl);
        if !fresh.no_store && worth_storing(copy_ttl) && self.fits(&fresh.value) {
            self.keep(
                &self.hot,
                key,
                digest,
                epoch,
                EntryKind::Found(fresh.value.clone()),
                copy_ttl,
                version,
            );
        }
        Ok(Fetched::fresh(fresh, Source::Origin))
    }

    /// A value the loader gave, as its owner serves it: the group's TTL
    /// caps the origin's, a value with no time left is not stored, and it
    /// carries the version of the load.
    pub(super) fn as_owner(&self, loaded: Fresh, version: Version) -> Fresh {
        let ttl = owner_ttl(self.config.ttl, loaded.ttl);
        Fresh {
            ttl,
            no_store: loaded.no_store || !worth_storing(ttl),
            ..loaded.versioned(version)
        }
    }

    /// An origin failure or the guard's refusal, in words a user can act on.
    pub(super) fn origin_failure(&self, error: OriginError) -> GroupError {
        let limits = &self.config.origin;
        match error {
            OriginError::Load(error) => origin_error(error),
            OriginError::Refused(Refusal::Overloaded { max_concurrent }) => {
                GroupError::OriginOverloaded(
                    format!(
                        "group `{}` already has {max_concurrent} origin loads in flight at this node (max_concurrent_loads) and {} waiting (max_queued_loads); try again shortly",
                        self.name, limits.max_queued_loads
                    )
                    .into(),
                )
            }
            OriginError::Refused(Refusal::CircuitOpen { retry_in }) => {
                let failures = limits.circuit_breaker.map_or(0, |b| b.failures);
                GroupError::OriginCircuitOpen(
                    format!(
                        "the origin of group `{}` failed {failures} loads in a row, so this node does not ask it for {} (circuit_breaker); then one load probes it",
                        self.name,
                        humantime::format_duration(retry_in)
                    )
                    .into(),
                )
            }
        }
    }
}

/// The held entry's value with the freshness a `304` gave it: what the
/// answer leaves out stays as it was. `None` for a remembered 404.
fn renewed(entry: &Arc<Entry>, renewal: NotModified) -> Option<Fresh> {
    let value = entry.value()?;
    let life = entry.life()?;
    let validators = if renewal.validators.is_empty() {
        life.validators.clone()
    } else {
        renewal.validators
    };
    let renewed = renewal.stale_directives;
    let stale_directives = StaleDirectives {
        while_revalidate: renewed.while_revalidate.or(life.origin.while_revalidate),
        if_error: renewed.if_error.or(life.origin.if_error),
    };
    Some(
        Fresh {
            ttl: Some(renewal.ttl.unwrap_or(life.ttl)),
            age: renewal.age,
            ..Fresh::new(value.clone())
        }
        .with_validators(validators)
        .with_stale_directives(stale_directives),
    )
}
