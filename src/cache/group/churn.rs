//! The group's part in keeping the cache warm through churn: peeking at a
//! key's previous owners before an origin load, failing over to an
//! unreachable owner's successor, and the two ends of a warm handoff.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{FlightResult, Group};
use crate::cache::epochs::Epoch;
use crate::cache::handoff::{self, HandedOff, HandoffReceipt};
use crate::cache::peers::{Ask, PeerError};
use crate::cache::value::{Fetched, Fresh, Source, key_digest, worth_storing};
use crate::ring::{Member, MemberId, Ring};

/// Successors asked, one after another, when an owner cannot be reached.
const MAX_SUCCESSORS: usize = 2;
/// Handoff requests in flight at once.
const HANDOFF_CONCURRENCY: usize = 4;

/// What one group's handoff did.
#[derive(Debug, Default, Clone)]
pub struct HandoffReport {
    pub entries: u64,
    pub bytes: u64,
    pub refused: u64,
    /// Entries planned but not delivered (a request failed or time ran out).
    pub undelivered: u64,
    /// Entries not planned: over the budget, or nobody to take them.
    pub left_out: u64,
    pub nodes: BTreeSet<MemberId>,
}

impl HandoffReport {
    pub fn add(&mut self, other: HandoffReport) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.refused += other.refused;
        self.undelivered += other.undelivered;
        self.left_out += other.left_out;
        self.nodes.extend(other.nodes);
    }
}

impl Group {
    /// Asks the key's previous owners (see
    /// [`crate::ring::Rings::previous_owners`]) for the copy they hold, all
    /// at once; the newest copy found is kept as owner and served. `None`: nobody had it, or none was asked. Loading
    /// as an unreachable owner's successor, the owner is not asked: it
    /// cannot be connected to, and asking would cost a connect timeout.
    pub(super) async fn peek_previous_owners(
        &self,
        key: &str,
        digest: u128,
        hash: u64,
        epoch: Epoch,
        as_successor: bool,
    ) -> Option<Fetched> {
        let rings = self.cluster.ring.snapshot();
        let unreachable = as_successor
            .then(|| rings.current().owner_of_hash(hash).map(|m| m.id))
            .flatten();
        let mut owners = rings.previous_owners(hash, Instant::now());
        owners.retain(|m| Some(m.id) != unreachable);
        if owners.is_empty() {
            return None;
        }
        let peeks = owners
            .iter()
            .map(|owner| self.peers().peek(owner, &self.name, key));
        let mut newest: Option<Fresh> = None;
        let mut failed = false;
        for (owner, answer) in owners.iter().zip(join_all(peeks).await) {
            match answer {
                Ok(Some(copy)) => {
                    self.cluster.clock.observe(copy.version);
                    if newest.as_ref().is_none_or(|n| copy.version > n.version) {
                        newest = Some(copy);
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    failed = true;
                    debug!(group = %self.name, owner = %owner, ?error, "peek failed");
                }
            }
        }
        let churn = &self.metrics.churn;
        let Some(copy) = newest.filter(|copy| !self.superseded.refuses(digest, copy.version))
        else {
            if failed {
                churn.previous_owner_errors.inc();
            } else {
                churn.previous_owner_misses.inc();
            }
            return None;
        };
        churn.previous_owner_hits.inc();
        if !copy.no_store && worth_storing(copy.ttl) && self.fits(&copy.value) {
            let entry = self.owner_entry(key, &copy, Instant::now());
            self.keep_entry(&self.main, digest, epoch, entry);
        }
        Some(Fetched::fresh(copy, Source::Peer))
    }

    /// The owner cannot be connected to: the next distinct member clockwise
    /// (the node that owns the key once the owner is declared down) loads it
    /// as owner-in-waiting and keeps it. Every node that misses the owner
    /// asks the same successor, so the key is loaded once. Only when no
    /// successor can be reached does this node load locally.
    pub(super) async fn fail_over(
        self: &Arc<Self>,
        owner: &Member,
        key: &str,
        digest: u128,
        hash: u64,
        epoch: Epoch,
        admit: bool,
    ) -> FlightResult {
        let ring = self.cluster.ring.current();
        let mut unreachable = vec![owner.id];
        for _ in 0..MAX_SUCCESSORS {
            let Some(successor) = ring
                .owner_excluding(hash, |id| unreachable.contains(id))
                .cloned()
            else {
                break;
            };
            if successor.id == self.self_id() {
                // Inside this key's fetch, which counted the load already.
                return self.load_here(key, digest, hash, true, None).await.0;
            }
            let timer = self.metrics.peer_duration.start_timer();
            let fetched = self
                .peers()
                .fetch(&successor, Ask::Successor, &self.name, key)
                .await;
            timer.observe_duration();
            match fetched {
                Ok(copy) => return Ok(self.keep_fetched(copy, key, digest, epoch, admit)),
                Err(PeerError::Unreachable { detail, .. }) => {
                    self.metrics.peer_errors.inc();
                    debug!(group = %self.name, successor = %successor, error = %detail, "successor unreachable too");
                    unreachable.push(successor.id);
                }
                Err(error) => return Err(self.owner_error(&successor, error)),
            }
        }
        warn!(group = %self.name, owner = %owner, "owner and its successors unreachable; loading locally");
        self.load_as_fallback(key, digest, epoch).await
    }

    /// Takes over entries a leaving node handed off: each is kept as owner
    /// with the time it had left, unless this node knows a write of the key
    /// as new or newer (a PUT or DELETE acknowledged meanwhile, or a newer
    /// copy already here).
    pub fn accept_handoff(&self, entries: Vec<HandedOff>) -> HandoffReceipt {
        let mut receipt = HandoffReceipt::default();
        let churn = &self.metrics.churn;
        for entry in entries {
            self.cluster.clock.observe(entry.version);
            let digest = key_digest(&entry.key);
            let bytes = entry.bytes();
            let cacheable = worth_storing(entry.ttl) && self.fits(&entry.value);
            let kept = cacheable
                && self.epochs.locked(digest, || {
                    let now = Instant::now();
                    if self.superseded.refuses(digest, entry.version) {
                        return false;
                    }
                    let newer_here = [&self.main, &self.hot].iter().any(|cache| {
                        cache
                            .peek(digest, &entry.key, now)
                            .is_some_and(|held| held.version >= entry.version)
                    });
                    if newer_here {
                        return false;
                    }
                    let fresh = Fresh {
                        ttl: entry.ttl,
                        ..Fresh::new(entry.value).versioned(entry.version)
                    };
                    self.main
                        .insert(digest, self.owner_entry(&entry.key, &fresh, now));
                    true
                });
            if kept {
                receipt.accepted += 1;
                churn.handoff_received_entries.inc();
                churn.handoff_received_bytes.inc_by(bytes);
            } else {
                receipt.refused += 1;
                churn.handoff_refused.inc();
            }
        }
        receipt
    }

    /// Hands this node's main-cache entries, most recently used first, to
    /// their owners on `next_owners` (the ring without this node), at most
    /// `budget` bytes (what is used is taken off it), until `deadline`.
    pub async fn hand_off(
        &self,
        next_owners: &Ring,
        budget: &mut u64,
        deadline: Instant,
    ) -> HandoffReport {
        let now = Instant::now();
        let self_id = self.self_id();
        let entries = self
            .main
            .entries_by_recency(now)
            .into_iter()
            .filter_map(|entry| {
                Some(HandedOff {
                    key: entry.key().to_owned(),
                    value: entry.value()?,
                    ttl: entry.remaining(now),
                    version: entry.version,
                })
            })
            .filter(|entry| worth_storing(entry.ttl));
        let next_owner = |key: &str| {
            next_owners
                .owner(&self.name, key)
                .filter(|m| m.id != self_id)
                .cloned()
        };
        let plan = handoff::plan(entries, next_owner, *budget);
        *budget -= plan.bytes;
        let mut report = HandoffReport {
            left_out: plan.left_out as u64,
            ..HandoffReport::default()
        };
        let sends = plan.batches.into_iter().map(|batch| async move {
            let sent = tokio::time::timeout_at(
                deadline,
                self.peers().hand_off(&batch.to, &self.name, &batch.entries),
            )
            .await;
            (batch, sent)
        });
        let mut sends = futures::stream::iter(sends).buffer_unordered(HANDOFF_CONCURRENCY);
        let churn = &self.metrics.churn;
        while let Some((batch, sent)) = sends.next().await {
            let count = batch.entries.len() as u64;
            match sent {
                Ok(Ok(receipt)) => {
                    report.entries += count;
                    report.bytes += batch.bytes;
                    report.refused += receipt.refused;
                    report.nodes.insert(batch.to.id);
                    churn.handoff_sent_entries.inc_by(count);
                    churn.handoff_sent_bytes.inc_by(batch.bytes);
                }
                Ok(Err(error)) => {
                    report.undelivered += count;
                    warn!(group = %self.name, to = %batch.to, ?error, entries = count, "handoff batch failed");
                }
                Err(_) => report.undelivered += count,
            }
        }
        report
    }
}
