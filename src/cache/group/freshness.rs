//! The owner's side of freshness: a hit late in an entry's life starts a
//! background refresh, an expired entry is served stale while it reloads
//! or when its reload fails, and what the owner stores carries the life
//! that decides this ([`Life`], from the group's settings and the origin's
//! directives). Copies on other nodes keep none of it: they live until the
//! owner's refresh point and then ask the owner, which answers by these
//! rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{FlightKind, FlightResult, Group, Requester, from_entry};
use crate::cache::error::GroupError;
use crate::cache::freshness::{Stage, StaleDirectives};
use crate::cache::value::{Entry, EntryKind, Fetched, Fresh, Life, Source};
use crate::ring::key_hash;

/// What a get does with a main-cache entry that is no longer plainly fresh.
// Made once per such get and matched at once: boxing the answer would cost
// an allocation instead.
#[allow(clippy::large_enum_variant)]
pub(super) enum Aging {
    /// Answer with this now.
    Answer(FlightResult),
    /// Reload it before answering, and serve it if the reload fails.
    Reload,
    /// Treat it as a miss.
    Miss,
}

/// What started a background reload, as `shoal_refreshes_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Ahead,
    Stale,
}

impl Group {
    /// Decides for an entry at `stage` (not [`Stage::Fresh`]). Only an
    /// owner refreshes or serves stale; a node holding a main entry for a
    /// key it no longer owns serves it while fresh and then asks the owner.
    pub(super) fn aging(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        stage: Stage,
        key: &str,
        digest: u128,
        from: Requester,
        now: Instant,
    ) -> Aging {
        let owner = self.answers_as_owner(key, from);
        match stage {
            Stage::Fresh | Stage::RefreshDue => {
                if owner {
                    self.refresh_in_background(entry, key, digest, Trigger::Ahead, now);
                }
                Aging::Answer(from_entry(entry, Source::Main, now))
            }
            Stage::StaleWhileRevalidate if owner => {
                self.refresh_in_background(entry, key, digest, Trigger::Stale, now);
                self.metrics.freshness.stale_while_revalidate.inc();
                Aging::Answer(stale_answer(entry, now))
            }
            Stage::StaleIfError | Stage::Revalidate if owner => Aging::Reload,
            _ => Aging::Miss,
        }
    }

    /// Starts one reload of `entry` in the background, unless one has
    /// started for it within the retry interval. It runs as the key's load
    /// (callers that miss meanwhile share it) and replaces the entry when
    /// it succeeds; when it fails, the entry stays as it is.
    fn refresh_in_background(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        key: &str,
        digest: u128,
        trigger: Trigger,
        now: Instant,
    ) {
        if !entry.claim_refresh(now) {
            return;
        }
        let refreshes = &self.metrics.freshness;
        match trigger {
            Trigger::Ahead => refreshes.refreshes_ahead.inc(),
            Trigger::Stale => refreshes.refreshes_stale.inc(),
        }
        let this = Arc::clone(self);
        let entry = Arc::clone(entry);
        let key = key.to_owned();
        let hash = key_hash(&self.name, &key);
        tokio::spawn(async move {
            // The outcome is the entry stored (or not); nobody waits here.
            let _ = this.load_here(&key, digest, hash, false, Some(entry)).await;
        });
    }

    /// `result`, or the stale entry in its place where `stale_if_error`
    /// allows: the reload failed, was refused (overloaded, circuit open) or
    /// timed out, and the entry has not outlived its window.
    pub(super) fn or_stale_if_error(
        &self,
        result: FlightResult,
        stale: Option<&Arc<Entry>>,
    ) -> FlightResult {
        let (Err(error), Some(entry)) = (&result, stale) else {
            return result;
        };
        let now = Instant::now();
        if !error.allows_stale() || entry.stage(now) > Stage::StaleIfError {
            return result;
        }
        self.metrics.freshness.stale_if_error.inc();
        stale_answer(entry, now)
    }

    /// For an expired entry that may be served if its reload fails: when a
    /// reload of it started within the retry interval, the answer without
    /// asking the origin again. The reload's, if it still runs; else (it
    /// failed, or is about to start) the stale value. So an origin that
    /// fails is asked about each key once a second, not once a read.
    /// `None`: this caller reloads it.
    pub(super) async fn reload_recently_tried(
        &self,
        held: &Arc<Entry>,
        digest: u128,
    ) -> Option<FlightResult> {
        let now = Instant::now();
        if held.stage(now) != Stage::StaleIfError || held.claim_refresh(now) {
            return None;
        }
        let result = match self.flights.join(&(digest, FlightKind::Load)).await {
            Some(result) => result,
            None if held.stage(Instant::now()) != Stage::StaleIfError => return None,
            None => Err(GroupError::OriginFailure(
                "the last reload of this key failed moments ago".into(),
            )),
        };
        Some(self.or_stale_if_error(result, Some(held)))
    }

    /// The entry an owner keeps for `fresh`, its TTL shortened by the
    /// group's `ttl_jitter`: with a [`Life`] when the group refreshes ahead
    /// or serves stale, or the origin gave validators or stale directives;
    /// else a plain entry, fresh until its TTL.
    pub(crate) fn owner_entry(&self, key: &str, fresh: &Fresh, now: Instant) -> Entry {
        let kind = EntryKind::Found(fresh.value.clone());
        let Some(ttl) = fresh.ttl else {
            return Entry::new(key, kind, None, now, fresh.version);
        };
        let stored = self.jittered(ttl);
        let entry = Entry::new(key, kind, Some(stored), now, fresh.version);
        let policy = &self.config.freshness;
        if !policy.is_active()
            && fresh.validators.is_empty()
            && fresh.stale_directives == StaleDirectives::default()
        {
            return entry;
        }
        let born = now.checked_sub(fresh.age).unwrap_or(now);
        let timeline = policy.timeline(
            now,
            stored,
            fresh.stale_directives,
            !fresh.validators.is_empty(),
        );
        entry.with_life(Life::new(
            timeline,
            born,
            ttl,
            fresh.stale_directives,
            fresh.validators.clone(),
        ))
    }

    /// A TTL shortened by the group's `ttl_jitter`.
    fn jittered(&self, ttl: Duration) -> Duration {
        self.config.freshness.jittered(ttl, rand::random::<f64>())
    }
}

/// An expired entry served as it is: no time left (so no node keeps a copy
/// of it), with its age.
fn stale_answer(entry: &Arc<Entry>, now: Instant) -> FlightResult {
    match entry.value() {
        Some(value) => Ok(Fetched {
            fresh: Fresh {
                ttl: Some(Duration::ZERO),
                ..Fresh::new(value).versioned(entry.version)
            },
            source: Source::Main,
            stale: Some(entry.age(now).unwrap_or_default()),
        }),
        None => Err(GroupError::OriginNotFound),
    }
}
