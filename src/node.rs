//! Wiring: builds the groups, the ring, the membership source and the
//! listeners from a [`Config`], serves until `shutdown` resolves, then stops
//! in order: not ready → leave the gossip cluster → drain (still serving) →
//! stop accepting → wait for requests in flight → stop background loops.
//!
//! Membership (fixed list or gossip) is published as snapshots; a task here
//! turns each into a ring snapshot that the groups read, leaving off the
//! members Kubernetes reports as terminating when the EndpointSlice
//! cross-check is on. This is the only module that knows both the cache and
//! membership.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::{Clock, Cluster, CopyDrop, CopyDrops, Group, Groups, RingView, Version};
use crate::config::{Config, GossipConfig, KubernetesConfig, MembershipConfig};
use crate::discovery::kubernetes::{
    self, CrossCheckOutputs, CrossCheckSettings, SwimMember, Terminating,
};
use crate::discovery::{self, Seed, SeedResolver, SeedSettings};
use crate::http::admin::{self, AdminState, Readiness};
use crate::http::close_connections_while_draining;
use crate::http::service::{self, ServiceState};
use crate::loader::Loader;
use crate::membership::{
    Gossip, GossipSender, GossipSettings, Invalidation, MemberState, Members, NodeId,
};
use crate::metrics::Metrics;
use crate::peer::client::HttpPeers;
use crate::peer::server::{self as peer_server, PeerState};
use crate::ring::{Member, Ring, RingHistory, Rings};
use crate::security::{self, Keyring, KeyringError};

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("cannot listen on {addr} ({what} port): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Discovery(#[from] discovery::DiscoveryError),
    #[error("cannot listen on {addr} (gossip port): {source}")]
    GossipBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl NodeError {
    /// 2 for a bad file named by the config (as for config errors), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodeError::Keyring(_) => 2,
            _ => 1,
        }
    }
}

/// The listeners a node serves on, bound before it starts so that a port in
/// use is reported at once (and so tests can bind their own).
pub struct Listeners {
    pub service: TcpListener,
    pub peer: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub fn bind(config: &Config) -> Result<Self, NodeError> {
        let node = &config.node;
        Ok(Self {
            service: bind_tcp(
                "service",
                SocketAddr::new(node.service_bind, node.ports.service),
            )?,
            peer: bind_tcp("peer", SocketAddr::new(node.bind, node.ports.peer))?,
            admin: bind_tcp("admin", SocketAddr::new(node.bind, node.ports.admin))?,
        })
    }
}

/// A TCP listener; `::` accepts IPv4 too.
fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    let error = |source| NodeError::Bind { what, addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(error)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(error)?;
    }
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    socket.bind(&addr.into()).map_err(error)?;
    socket.listen(1024).map_err(error)?;
    TcpListener::from_std(socket.into()).map_err(error)
}

/// The ring over the members that own keys (alive and suspect), less those
/// at addresses Kubernetes reports as terminating.
pub fn ring_of(members: &Members, terminating: &HashSet<IpAddr>) -> Ring {
    Ring::new(
        members
            .members
            .iter()
            .filter(|m| m.state.on_ring() && !terminating.contains(&m.addr))
            .map(|m| Member::new(m.id(), m.name.as_str())),
    )
}

/// Runs a node until `shutdown` resolves, then drains and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let listeners = Listeners::bind(&config)?;
    serve(config, listeners, shutdown).await
}

/// Runs a node on listeners the caller bound.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let self_id = config.node.member_id();
    // Background loops (keyring watch, gossip helpers) stop last.
    let stop_loops = CancellationToken::new();
    let mut loops = JoinSet::new();

    let keyring = match &config.keyring_file {
        Some(path) => {
            let initial = Keyring::load(path)?;
            info!(path = %path.display(), keys = initial.len(), fingerprints = %initial.fingerprints(), "keyring loaded");
            Some(security::spawn_watch(
                path.clone(),
                initial,
                stop_loops.clone(),
            ))
        }
        None => None,
    };
    let mut peers = HttpPeers::new(&config.peer, config.churn.peek_timeout)?;
    if let Some(keyring) = &keyring {
        peers = peers.with_signing(self_id, keyring.clone());
    }
    let peers = Arc::new(peers);

    // The membership source: a fixed snapshot, or gossip.
    let (invalidations_tx, invalidations_rx) = mpsc::unbounded_channel();
    let (copy_drops, copy_drops_rx, gossip, fixed_members) = match &config.membership {
        MembershipConfig::Lone => {
            let members = Members::lone(&config.node.name, self_id);
            (CopyDrops::Fanout, None, None, Some(members))
        }
        MembershipConfig::Static(list) => {
            let members = Members::fixed(&config.node.name, self_id, list);
            (CopyDrops::Fanout, None, None, Some(members))
        }
        MembershipConfig::Gossip(gossip_config) => {
            let gossip = start_gossip(
                &config,
                gossip_config,
                keyring.clone(),
                &metrics,
                invalidations_tx,
            )
            .await?;
            let (tx, rx) = mpsc::unbounded_channel();
            (CopyDrops::Broadcast(tx), Some(rx), Some(gossip), None)
        }
    };
    let (fixed_members_tx, members_rx) = match (&gossip, fixed_members) {
        (Some(gossip), _) => (None, gossip.members()),
        (None, members) => {
            let members = members.unwrap_or_else(|| Members::lone(&config.node.name, self_id));
            let (tx, rx) = watch::channel(Arc::new(members));
            (Some(tx), rx)
        }
    };
    // Filled by the EndpointSlice cross-check, when it runs.
    let (terminating_tx, terminating_rx) = watch::channel(Terminating::default());
    // The ring, and the rings before it for previous-owner lookups. A
    // member that left may still be asked while it drains: about as long as
    // this node's own drain, plus a second for the leave to spread.
    let window = config.churn.previous_rings_window.unwrap_or_default();
    let leaver_grace = config.node.drain + Duration::from_secs(1);
    let history = RingHistory::new(Rings::new(
        self_id,
        ring_of(&members_rx.borrow(), &terminating_rx.borrow()),
        window,
        leaver_grace,
        tokio::time::Instant::now(),
    ));
    let (ring_tx, ring_rx) = watch::channel(Arc::new(history.rings().clone()));
    publish_membership_metrics(
        &metrics,
        &members_rx.borrow(),
        ring_rx.borrow().current().len(),
    );

    let origin_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let cluster = Cluster {
        peers: Arc::clone(&peers) as _,
        ring: RingView::new(ring_rx.clone()),
        copy_drops,
        clock: Arc::new(Clock::default()),
        successor_failover: config.churn.successor_failover,
        remember_writes: window,
    };
    let groups = config.groups.iter().map(|(name, group_config)| {
        Arc::new(Group::new(
            name,
            group_config.clone(),
            Loader::new(&group_config.loader, &origin_client),
            cluster.clone(),
            metrics.group(name),
        ))
    });
    let groups = Arc::new(Groups::new(
        groups.collect::<Vec<_>>(),
        config.default_group.as_deref(),
    ));

    loops.spawn(follow_membership(
        members_rx.clone(),
        terminating_rx,
        history,
        ring_tx,
        Arc::clone(&metrics),
        stop_loops.clone(),
    ));
    loops.spawn(apply_invalidations(
        invalidations_rx,
        Arc::clone(&groups),
        self_id,
    ));

    let readiness = Arc::new(Readiness::default());
    if let (Some(gossip), MembershipConfig::Gossip(gossip_config)) = (&gossip, &config.membership) {
        let sender = gossip.sender();
        if let Some(rx) = copy_drops_rx {
            loops.spawn(broadcast_copy_drops(rx, sender.clone()));
        }
        let me = SocketAddr::new(config.node.advertise, config.node.ports.gossip);
        let seeds = gossip_config.seeds.clone();
        let resolver = SeedResolver::new(gossip_config.dns_server)?;
        let (announce_tx, announce_rx) = mpsc::channel(64);
        let (ready_tx, ready_rx) = watch::channel(false);
        let members_view = members_rx.clone();
        let gossip_members = move || {
            members_view
                .borrow()
                .members
                .iter()
                .filter(|m| m.state.on_ring())
                .map(|m| SocketAddr::new(m.addr, m.gossip_port))
                .collect()
        };
        if let Some(kubernetes) = &gossip_config.kubernetes {
            let outputs = CrossCheckOutputs {
                terminating: terminating_tx,
                announce: announce_tx.clone(),
                metrics: Arc::clone(&metrics),
            };
            loops.spawn(cross_check(
                kubernetes,
                config.node.ports.gossip,
                members_rx.clone(),
                outputs,
                stop_loops.clone(),
            ));
        }
        loops.spawn(discovery::run_seed_loop(
            SeedSettings::new(seeds, me, gossip_config.resolve_interval),
            resolver,
            gossip_members,
            gossip.joined(),
            announce_tx,
            ready_tx,
            stop_loops.clone(),
        ));
        loops.spawn(forward_announces(announce_rx, sender));
        loops.spawn(become_ready(ready_rx, Arc::clone(&readiness)));
    }

    let service = service::router(Arc::new(ServiceState {
        groups: Arc::clone(&groups),
        max_key: config.node.max_key,
        readiness: Arc::clone(&readiness),
    }));
    let peer_state = Arc::new(PeerState {
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
    });
    let peer = match &keyring {
        Some(keyring) => peer_server::signed_router(peer_state, keyring.clone()),
        None => peer_server::router(peer_state),
    };
    let peer = close_connections_while_draining(peer, Arc::clone(&readiness));
    let admin = admin::router(Arc::new(AdminState {
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
        members: members_rx,
        ring: ring_rx.clone(),
        readiness: Arc::clone(&readiness),
        max_key: config.node.max_key,
    }));

    log_start(&config, &listeners, keyring.is_some());
    let stop_serving = CancellationToken::new();
    let mut servers = JoinSet::new();
    for (name, listener, router) in [
        ("service", listeners.service, service),
        ("peer", listeners.peer, peer),
        ("admin", listeners.admin, admin),
    ] {
        let stop = stop_serving.clone().cancelled_owned();
        servers.spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                warn!(server = name, %error, "server stopped with an error");
            }
        });
    }
    if gossip.is_none() {
        // A lone or fixed-membership node is ready once its listeners are up.
        readiness.set_ready();
    }

    shutdown.await;
    readiness.start_draining();
    info!(drain = %humantime::format_duration(config.node.drain), "shutting down: not ready");
    if let Some(gossip) = gossip {
        gossip.leave(Duration::from_secs(1)).await;
    }
    let drain_until = tokio::time::Instant::now() + config.node.drain;
    // Requests, peeks included, are still served while the handoff runs;
    // it never holds the node past the drain.
    if let Some(budget) = config.churn.handoff_max_bytes {
        let next_owners = ring_rx.borrow().current().without(&self_id);
        hand_off(&groups, &next_owners, budget, drain_until).await;
    }
    tokio::time::sleep_until(drain_until).await;
    stop_serving.cancel();
    // Requests still in flight get as long as a peer fetch may take.
    let grace = config.peer.timeout + Duration::from_secs(1);
    let finished = tokio::time::timeout(grace, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!("requests still in flight after the drain; stopping anyway");
    }
    stop_loops.cancel();
    loops.abort_all();
    drop(fixed_members_tx);
    info!("shoal node stopped");
    Ok(())
}

async fn start_gossip(
    config: &Config,
    gossip: &GossipConfig,
    keyring: Option<watch::Receiver<Arc<Keyring>>>,
    metrics: &Arc<Metrics>,
    invalidations: mpsc::UnboundedSender<Invalidation>,
) -> Result<Gossip, NodeError> {
    let node = &config.node;
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(1);
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

/// Hands the main caches to the next owners and logs what it did.
async fn hand_off(
    groups: &Groups,
    next_owners: &Ring,
    budget: u64,
    deadline: tokio::time::Instant,
) {
    if next_owners.is_empty() {
        return;
    }
    let started = tokio::time::Instant::now();
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

/// Turns every membership snapshot, and every change to the terminating
/// addresses, into a ring snapshot, keeping the rings it replaces.
async fn follow_membership(
    mut members: watch::Receiver<Arc<Members>>,
    mut terminating: watch::Receiver<Terminating>,
    mut history: RingHistory,
    ring: watch::Sender<Arc<Rings>>,
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

/// The EndpointSlice cross-check: compares SWIM's members with the
/// Service's endpoints, announces to ready ones SWIM lacks, and publishes
/// the terminating ones, which [`follow_membership`] leaves off the ring.
fn cross_check(
    config: &KubernetesConfig,
    gossip_port: u16,
    members: watch::Receiver<Arc<Members>>,
    outputs: CrossCheckOutputs,
    stop: CancellationToken,
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

fn publish_membership_metrics(metrics: &Metrics, members: &Members, ring_len: usize) {
    for state in MemberState::ALL {
        metrics.set_members(state.as_str(), members.count(state));
    }
    metrics
        .ring_members
        .set(i64::try_from(ring_len).unwrap_or(i64::MAX));
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

fn log_start(config: &Config, listeners: &Listeners, authenticated: bool) {
    let addr = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let membership = match &config.membership {
        MembershipConfig::Lone => "lone".to_owned(),
        MembershipConfig::Static(peers) => format!("fixed ({} peers)", peers.len()),
        MembershipConfig::Gossip(gossip) => {
            let seeds: Vec<String> = gossip.seeds.iter().map(Seed::to_string).collect();
            format!("gossip (seeds {})", seeds.join(","))
        }
    };
    info!(
        node = %config.node.name,
        service = %addr(&listeners.service),
        peer = %addr(&listeners.peer),
        admin = %addr(&listeners.admin),
        gossip = %SocketAddr::new(config.node.bind, config.node.ports.gossip),
        advertise = %config.node.advertise,
        membership = %membership,
        authenticated,
        groups = %config.groups.keys().cloned().collect::<Vec<_>>().join(","),
        default_group = config.default_group.as_deref().unwrap_or("-"),
        "shoal node started"
    );
}

/// One TLS crypto provider (ring) for every client in the process: reqwest
/// is built without one of its own, and kube uses ring, so they cannot clash.
pub fn install_crypto_provider() {
    // An error means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
