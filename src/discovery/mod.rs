//! Finding the cluster: gossip seeds, resolved through DNS again and again.
//!
//! A seed is `HOST[:PORT]`, an IP address or a DNS name (a headless Service
//! whose A/AAAA records are the pods), parsed once by config into a
//! [`Seed`] (re-exported here from [`crate::config`]). [`run_seed_loop`]
//! resolves the seeds, hands the gossip driver a few addresses not yet in
//! the membership to announce to, and says when the node may call itself
//! ready. Its parts:
//!
//! - `resolver`: [`SeedResolver`], the only place hickory-resolver is used.
//! - `schedule`: when to resolve again, whom to announce to, the readiness
//!   rule. Pure: time and randomness are inputs.
//! - `kubernetes`: the EndpointSlice cross-check (`discovery.kubernetes`),
//!   the only place kube is used.
//!
//! This module knows neither foca nor the membership types: the node passes
//! it a view of the membership's gossip addresses and takes announce
//! targets from a channel.

pub(crate) mod kubernetes;
mod resolver;
mod schedule;

pub use crate::config::{Seed, SeedHost};
pub use resolver::{Resolved, SeedResolver};
pub(crate) use schedule::{DEFAULT_FANOUT, Schedule, announce_targets, ready};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Why seeds cannot be resolved at all.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// `/etc/resolv.conf` (or its like) cannot be read or used.
    #[error("cannot use the system DNS configuration: {0}")]
    SystemDns(String),
    /// The configured `--dns-server` cannot be used.
    #[error("cannot use DNS server {server}: {reason}")]
    DnsServer {
        /// The server configured.
        server: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
}

/// What the seed loop works from.
#[derive(Debug, Clone)]
pub struct SeedSettings {
    /// The seeds to resolve.
    pub seeds: Vec<Seed>,
    /// This node's gossip address (advertise IP and gossip port): never
    /// announced to, and the one address a node may find alone.
    pub me: SocketAddr,
    /// How often to resolve once joined (`discovery.resolve_interval`).
    pub resolve_interval: Duration,
    /// At most this many announces a round.
    pub fanout: usize,
}

impl SeedSettings {
    /// Settings with the default fanout.
    pub fn new(seeds: Vec<Seed>, me: SocketAddr, resolve_interval: Duration) -> Self {
        Self {
            seeds,
            me,
            resolve_interval,
            fanout: DEFAULT_FANOUT,
        }
    }
}

/// Resolves the seeds until `shutdown`, on its schedule: at once, then
/// 1, 2, 4, 8 s … until `joined` turns true, then every resolve interval
/// (lookup failures are logged and retried on the quick steps, never fatal).
///
/// Each round sends up to `fanout` random resolved addresses that are
/// neither `me` nor in `members()` (the gossip addresses currently in the
/// membership) to `announce`, for the gossip driver to announce to.
///
/// `ready` turns true, and stays true, once `joined` is true or a round
/// found the seeds resolve to nothing but `me`; a gossiping node's
/// `/readyz` is this signal (and not draining).
///
/// Returns on `shutdown`, or when the `announce` receiver or the `joined`
/// sender is gone (the gossip driver stopped).
pub async fn run_seed_loop<M>(
    settings: SeedSettings,
    resolver: SeedResolver,
    members: M,
    mut joined: watch::Receiver<bool>,
    announce: mpsc::Sender<SocketAddr>,
    ready_tx: watch::Sender<bool>,
    shutdown: CancellationToken,
) where
    M: Fn() -> HashSet<SocketAddr> + Send,
{
    let SeedSettings {
        seeds,
        me,
        resolve_interval,
        fanout,
    } = settings;
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut schedule = Schedule::new(resolve_interval);
    let mut due = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            changed = joined.changed() => {
                if changed.is_err() {
                    debug!("gossip driver gone: seed loop stops");
                    return;
                }
                if *joined.borrow_and_update() {
                    mark_ready(&ready_tx);
                }
                continue;
            }
            () = sleep_until(due) => {}
        }

        let resolved = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            resolved = resolver.resolve(&seeds) => resolved,
        };
        for (seed, error) in &resolved.failures {
            warn!(seed = %seed, error = %error, "seed lookup failed");
        }
        let is_joined = *joined.borrow_and_update();
        if ready(is_joined, &resolved, me) {
            if !is_joined && !*ready_tx.borrow() {
                info!(me = %me, "seeds resolve to nothing but this node: ready alone");
            }
            mark_ready(&ready_tx);
        }

        let targets = announce_targets(&resolved.addrs, me, &members(), fanout, &mut rng);
        for addr in targets {
            info!(addr = %addr, "announcing to a seed address not in the membership");
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                sent = announce.send(addr) => if sent.is_err() {
                    debug!("announce receiver gone: seed loop stops");
                    return;
                },
            }
        }

        let now = Instant::now();
        due = schedule.next(now, is_joined, resolved.failures.is_empty());
        debug!(
            addrs = resolved.addrs.len(),
            failures = resolved.failures.len(),
            joined = is_joined,
            next_in = ?(due - now),
            "seeds resolved"
        );
    }
}

/// Latches `ready` to true.
fn mark_ready(ready: &watch::Sender<bool>) {
    ready.send_if_modified(|ready| !std::mem::replace(ready, true));
}
