//! The ordered shutdown: not ready → leave the gossip cluster → hand the
//! main caches to the next owners → drain (still serving) → stop accepting
//! → wait for requests in flight → stop background loops.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::NodeHandle;
use crate::cache::Groups;
use crate::ring::Ring;

pub(super) async fn shut_down(mut node: NodeHandle) {
    let drain = node.config.node.drain;
    node.readiness.start_draining();
    info!(drain = %humantime::format_duration(drain), "shutting down: not ready");
    node.membership.leave().await;
    // The drain counts from the leave: that is when other members stop
    // sending this node requests.
    let drain_until = Instant::now() + drain;
    // Requests, peeks included, are still served while the handoff runs;
    // it never holds the node past the drain.
    if let Some(budget) = node.config.churn.handoff_max_bytes {
        let self_id = node.config.node.member_id();
        let next_owners = node.rings.borrow().current().without(&self_id);
        hand_off(&node.groups, &next_owners, budget, drain_until).await;
    }
    tokio::time::sleep_until(drain_until).await;
    node.stop_serving.cancel();
    // Requests still in flight get as long as a peer fetch may take.
    let grace = node.config.peer.timeout + Duration::from_secs(1);
    let finished = tokio::time::timeout(grace, async {
        while node.servers.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!("requests still in flight after the drain; stopping anyway");
    }
    node.background.stop();
    info!("shoal node stopped");
}

/// Hands the main caches to the next owners and logs what it did.
async fn hand_off(groups: &Groups, next_owners: &Ring, budget: u64, deadline: Instant) {
    if next_owners.is_empty() {
        return;
    }
    let started = Instant::now();
    let report = groups.hand_off(next_owners, budget, deadline).await;
    info!(
        entries = report.entries,
        bytes = report.bytes,
        nodes = report.nodes.len(),
        refused = report.refused,
        undelivered = report.undelivered,
        left_out = report.left_out,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "handoff finished"
    );
}
