//! Membership snapshots into ring snapshots: the task that follows
//! membership, and the membership gauges.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::discovery::kubernetes::Terminating;
use crate::membership::{MemberState, Members};
use crate::metrics::Metrics;
use crate::peer::client::Generations;

use super::Background;
use crate::ring::{Member, Ring, RingHistory};

/// The ring over the members that own keys (alive and suspect), less those
/// at addresses Kubernetes reports as terminating.
pub(crate) fn ring_of(members: &Members, terminating: &HashSet<IpAddr>) -> Ring {
    Ring::new(
        members
            .members
            .iter()
            .filter(|m| m.state.on_ring() && !terminating.contains(&m.addr))
            .map(|m| Member::new(m.id(), m.name.as_str())),
    )
}

/// The generation of every member on the ring, by ring id, for signing
/// requests to it: the largest where a restarted member is still listed
/// beside its predecessor.
pub(crate) fn generations_of(members: &Members) -> Generations {
    let mut generations = Generations::with_capacity(members.members.len());
    for member in members.members.iter().filter(|m| m.state.on_ring()) {
        let generation = generations.entry(member.id()).or_insert(0);
        *generation = (*generation).max(member.generation);
    }
    generations
}

/// Follows membership into [`Generations`] for the peer client.
pub(super) fn follow_generations(
    mut members: watch::Receiver<Arc<Members>>,
    background: &mut Background,
) -> watch::Receiver<Arc<Generations>> {
    let (tx, rx) = watch::channel(Arc::new(generations_of(&members.borrow())));
    let stop = background.stop.clone();
    background.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = members.changed() => if changed.is_err() { return },
            }
            let next = generations_of(&members.borrow_and_update());
            tx.send_if_modified(|current| {
                let changed = **current != next;
                if changed {
                    *current = Arc::new(next);
                }
                changed
            });
        }
    });
    rx
}

/// Turns every membership snapshot, and every change to the terminating
/// addresses, into a ring snapshot, keeping the rings it replaces.
pub(super) async fn follow_membership(
    mut members: watch::Receiver<Arc<Members>>,
    mut terminating: watch::Receiver<Terminating>,
    mut history: RingHistory,
    ring: watch::Sender<Arc<crate::ring::Rings>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // Without the cross-check (or once it stopped) the set stays as it is.
    let mut cross_check = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = members.changed() => if changed.is_err() { return },
            changed = terminating.changed(), if cross_check => if changed.is_err() {
                cross_check = false;
                continue;
            },
        }
        let snapshot = Arc::clone(&members.borrow_and_update());
        let excluded = Arc::clone(&terminating.borrow_and_update());
        let next = ring_of(&snapshot, &excluded);
        let changes = ring_changes(history.rings().current(), &next);
        publish_membership_metrics(&metrics, &snapshot, next.len());
        if changes == 0 {
            continue;
        }
        metrics.membership_changes.inc_by(changes as u64);
        let members = next.len();
        let rings = history.advance(next, tokio::time::Instant::now());
        info!(
            members,
            terminating = excluded.len(),
            previous_rings = rings.previous_len(),
            "ring changed"
        );
        ring.send_replace(Arc::new(rings.clone()));
    }
}

/// How many members joined or left between two rings.
fn ring_changes(previous: &Ring, next: &Ring) -> usize {
    let joined = next
        .members()
        .iter()
        .filter(|m| !previous.contains(&m.id))
        .count();
    let left = previous
        .members()
        .iter()
        .filter(|m| !next.contains(&m.id))
        .count();
    joined + left
}

pub(super) fn publish_membership_metrics(metrics: &Metrics, members: &Members, ring_len: usize) {
    for state in MemberState::ALL {
        metrics.set_members(state.as_str(), members.count(state));
    }
    metrics
        .ring_members
        .set(i64::try_from(ring_len).unwrap_or(i64::MAX));
}
