//! Where membership comes from: a fixed snapshot (a lone node, or a static
//! peer list), or SWIM gossip with its helpers (seed re-resolution, the
//! EndpointSlice cross-check, copy-drop broadcasts). Either way the rest of
//! the node sees one watch channel of [`Members`] snapshots.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Background, NodeError};
use crate::cache::{CopyDrop, CopyDrops, Groups, Version};
use crate::config::{Config, GossipConfig, KubernetesConfig, MembershipConfig};
use crate::discovery::kubernetes::{
    self, CrossCheckOutputs, CrossCheckSettings, SwimMember, Terminating,
};
use crate::discovery::{self, SeedResolver, SeedSettings};
use crate::http::admin::Readiness;
use crate::membership::{Gossip, GossipSender, GossipSettings, Invalidation, Members, NodeId};
use crate::metrics::Metrics;
use crate::security::Keyring;

/// The node's membership source.
pub(super) struct Membership {
    /// Every snapshot, this node included.
    pub members: watch::Receiver<Arc<Members>>,
    /// How PUT and DELETE reach the copies other members hold.
    pub copy_drops: CopyDrops,
    source: Source,
}

enum Source {
    /// The snapshot never changes; holding the sender keeps the channel
    /// open, so nobody reads the end of membership into it.
    Fixed {
        _snapshot: watch::Sender<Arc<Members>>,
    },
    Gossip {
        gossip: Gossip,
        /// The groups' copy-drop requests, until the broadcast task takes
        /// them (see [`Membership::spawn_helpers`]).
        copy_drops: Option<mpsc::UnboundedReceiver<CopyDrop>>,
        /// Invalidations other members broadcast, until
        /// [`Membership::spawn_helpers`] hands them to the groups.
        invalidations: Option<mpsc::UnboundedReceiver<Invalidation>>,
    },
}

impl Membership {
    /// A fixed snapshot, or gossip started on its UDP socket.
    /// `generation`: this run's, chosen at start (see [`super::start`]).
    pub async fn start(
        config: &Config,
        generation: u64,
        keyring: Option<watch::Receiver<Arc<Keyring>>>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, NodeError> {
        let node = &config.node;
        let self_id = node.member_id();
        let fixed = |members: Members| {
            let (tx, rx) = watch::channel(Arc::new(members));
            Self {
                members: rx,
                copy_drops: CopyDrops::Fanout,
                source: Source::Fixed { _snapshot: tx },
            }
        };
        match &config.membership {
            MembershipConfig::Lone => Ok(fixed(Members::lone(&node.name, self_id))),
            MembershipConfig::Static(list) => Ok(fixed(Members::fixed(&node.name, self_id, list))),
            MembershipConfig::Gossip(gossip_config) => {
                let (invalidations_tx, invalidations_rx) = mpsc::unbounded_channel();
                let gossip = start_gossip(
                    config,
                    gossip_config,
                    generation,
                    keyring,
                    metrics,
                    invalidations_tx,
                )
                .await?;
                let (copy_drops_tx, copy_drops_rx) = mpsc::unbounded_channel();
                Ok(Self {
                    members: gossip.members(),
                    copy_drops: CopyDrops::Broadcast(copy_drops_tx),
                    source: Source::Gossip {
                        gossip,
                        copy_drops: Some(copy_drops_rx),
                        invalidations: Some(invalidations_rx),
                    },
                })
            }
        }
    }

    /// Starts what gossip needs beside its driver: the seed loop (which
    /// also says when the node has joined and is ready), the EndpointSlice
    /// cross-check (which fills `terminating`), copy-drop broadcasts and
    /// applying other members' invalidations to `groups`. A fixed
    /// membership needs none of them and is ready at once.
    pub fn spawn_helpers(
        &mut self,
        config: &Config,
        groups: &Arc<Groups>,
        readiness: &Arc<Readiness>,
        terminating: watch::Sender<Terminating>,
        metrics: &Arc<Metrics>,
        background: &mut Background,
    ) -> Result<(), NodeError> {
        let (
            Source::Gossip {
                gossip,
                copy_drops,
                invalidations,
            },
            MembershipConfig::Gossip(gossip_config),
        ) = (&mut self.source, &config.membership)
        else {
            readiness.set_ready();
            return Ok(());
        };
        let sender = gossip.sender();
        if let Some(drops) = copy_drops.take() {
            background.spawn(broadcast_copy_drops(drops, sender.clone()));
        }
        if let Some(invalidations) = invalidations.take() {
            let self_id = config.node.member_id();
            background.spawn(apply_invalidations(
                invalidations,
                Arc::clone(groups),
                self_id,
            ));
        }
        let me = SocketAddr::new(config.node.advertise, config.node.ports.gossip);
        let seeds = gossip_config.seeds.clone();
        let resolver = SeedResolver::new(gossip_config.dns_server)?;
        // Addresses to announce to: from the seed loop and the cross-check.
        let (announce_tx, announce_rx) = mpsc::channel(64);
        // Turns true once the seed loop has joined the cluster.
        let (ready_tx, ready_rx) = watch::channel(false);
        if let Some(kubernetes) = &gossip_config.kubernetes {
            let outputs = CrossCheckOutputs {
                terminating,
                announce: announce_tx.clone(),
                metrics: Arc::clone(metrics),
            };
            background.spawn(cross_check(
                kubernetes,
                config.node.ports.gossip,
                self.members.clone(),
                outputs,
                background.stop.clone(),
            ));
        }
        let members_view = self.members.clone();
        let gossip_members = move || {
            members_view
                .borrow()
                .members
                .iter()
                .filter(|m| m.state.on_ring())
                .map(|m| SocketAddr::new(m.addr, m.gossip_port))
                .collect()
        };
        background.spawn(discovery::run_seed_loop(
            SeedSettings::new(seeds, me, gossip_config.resolve_interval),
            resolver,
            gossip_members,
            gossip.joined(),
            announce_tx,
            ready_tx,
            background.stop.clone(),
        ));
        background.spawn(forward_announces(announce_rx, sender));
        background.spawn(become_ready(ready_rx, Arc::clone(readiness)));
        Ok(())
    }

    /// Tells the gossip cluster this node is leaving, so members drop it
    /// at once; a fixed membership has nobody to tell.
    pub async fn leave(&mut self) {
        if let Source::Gossip { gossip, .. } = &mut self.source {
            gossip.leave(Duration::from_secs(1)).await;
        }
    }
}

async fn start_gossip(
    config: &Config,
    gossip: &GossipConfig,
    generation: u64,
    keyring: Option<watch::Receiver<Arc<Keyring>>>,
    metrics: &Arc<Metrics>,
    invalidations: mpsc::UnboundedSender<Invalidation>,
) -> Result<Gossip, NodeError> {
    let node = &config.node;
    let identity = NodeId::new(
        &node.name,
        SocketAddr::new(node.advertise, node.ports.gossip),
        node.ports.peer,
        generation,
    );
    let bind = SocketAddr::new(node.bind, node.ports.gossip);
    let settings = GossipSettings {
        identity,
        bind,
        swim: gossip.swim.clone(),
        keyring,
    };
    Gossip::start(settings, Arc::clone(metrics), invalidations)
        .await
        .map_err(|source| NodeError::GossipBind { addr: bind, source })
}

/// The EndpointSlice cross-check: compares SWIM's members with the
/// Service's endpoints, announces to ready ones SWIM lacks, and publishes
/// the terminating ones, which the ring leaves out.
fn cross_check(
    config: &KubernetesConfig,
    gossip_port: u16,
    members: watch::Receiver<Arc<Members>>,
    outputs: CrossCheckOutputs,
    stop: tokio_util::sync::CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let settings = CrossCheckSettings {
        namespace: config.namespace.clone(),
        service: config.service.clone(),
        gossip_port,
    };
    kubernetes::run_cross_check(settings, members, swim_view, outputs, stop)
}

/// SWIM's members as the cross-check compares them.
fn swim_view(members: &Arc<Members>) -> Vec<SwimMember> {
    members
        .members
        .iter()
        .map(|m| SwimMember {
            name: m.name.clone(),
            addr: m.addr,
            live: m.state.on_ring(),
        })
        .collect()
}

/// Drops the copies other members asked (by gossip) to drop.
async fn apply_invalidations(
    mut invalidations: mpsc::UnboundedReceiver<Invalidation>,
    groups: Arc<Groups>,
    self_id: SocketAddr,
) {
    while let Some(invalidation) = invalidations.recv().await {
        match groups.get(&invalidation.group) {
            Some(group) => group.drop_digest(
                invalidation.digest,
                invalidation.owner != Some(self_id),
                Version(invalidation.superseded),
            ),
            None => {
                warn!(group = %invalidation.group, "invalidation for a group this node does not have")
            }
        }
    }
}

/// Hands the groups' copy-drop requests to gossip.
async fn broadcast_copy_drops(mut drops: mpsc::UnboundedReceiver<CopyDrop>, gossip: GossipSender) {
    while let Some(drop) = drops.recv().await {
        gossip
            .invalidate(Invalidation {
                id: rand::random(),
                group: drop.group.to_string(),
                digest: drop.digest,
                owner: drop.owner,
                superseded: drop.superseded.0,
            })
            .await;
    }
}

async fn forward_announces(mut announces: mpsc::Receiver<SocketAddr>, gossip: GossipSender) {
    while let Some(addr) = announces.recv().await {
        gossip.announce(addr).await;
    }
}

async fn become_ready(mut ready: watch::Receiver<bool>, readiness: Arc<Readiness>) {
    if ready.wait_for(|ready| *ready).await.is_ok() {
        readiness.set_ready();
        info!("ready");
    }
}
