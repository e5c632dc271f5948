//! Wiring: builds the groups, the ring and the listeners from a [`Config`],
//! serves until `shutdown` resolves, then drains and stops in order: not
//! ready → drain (still serving) → stop accepting → wait for requests in
//! flight.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::{Group, Groups, RingView};
use crate::config::{Config, MembershipConfig};
use crate::http::admin::{self, AdminState, Readiness};
use crate::http::service::{self, ServiceState};
use crate::loader::Loader;
use crate::membership::{MemberState, Members};
use crate::metrics::Metrics;
use crate::peer::client::HttpPeers;
use crate::peer::server::{self as peer_server, PeerState};
use crate::ring::{Member, Ring};

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

/// The ring over the members that own keys (alive and suspect).
pub fn ring_of(members: &Members) -> Ring {
    Ring::new(
        members
            .members
            .iter()
            .filter(|m| m.state.on_ring())
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
    let members = match &config.membership {
        MembershipConfig::Lone => Members::lone(&config.node.name, self_id),
        MembershipConfig::Static(peers) => Members::fixed(&config.node.name, self_id, peers),
    };
    for state in MemberState::ALL {
        metrics.set_members(state.as_str(), members.count(state));
    }
    let ring = ring_of(&members);
    metrics
        .ring_members
        .set(i64::try_from(ring.len()).unwrap_or(i64::MAX));
    // The senders stay alive for the node's life: membership sources publish here.
    let (_members_tx, members_rx) = watch::channel(Arc::new(members));
    let (_ring_tx, ring_rx) = watch::channel(Arc::new(ring));

    let peers = Arc::new(HttpPeers::new(&config.peer)?);
    let origin_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let ring_view = RingView::new(ring_rx.clone(), self_id);
    let groups = config.groups.iter().map(|(name, group_config)| {
        Arc::new(Group::new(
            name,
            group_config.clone(),
            Loader::new(&group_config.loader, &origin_client),
            Arc::clone(&peers) as _,
            ring_view.clone(),
            metrics.group(name),
        ))
    });
    let groups = Arc::new(Groups::new(
        groups.collect::<Vec<_>>(),
        config.default_group.as_deref(),
    ));

    let readiness = Arc::new(Readiness::default());
    let service = service::router(Arc::new(ServiceState {
        groups: Arc::clone(&groups),
        max_key: config.node.max_key,
    }));
    let peer = peer_server::router(Arc::new(PeerState {
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
    }));
    let admin = admin::router(Arc::new(AdminState {
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
        members: members_rx,
        ring: ring_rx,
        readiness: Arc::clone(&readiness),
        max_key: config.node.max_key,
    }));

    let addr = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    info!(
        node = %config.node.name,
        service = %addr(&listeners.service),
        peer = %addr(&listeners.peer),
        admin = %addr(&listeners.admin),
        advertise = %advertised(config.node.advertise, config.node.ports.peer),
        members = ring_view.snapshot().len(),
        groups = %config.groups.keys().cloned().collect::<Vec<_>>().join(","),
        default_group = config.default_group.as_deref().unwrap_or("-"),
        "shoal node started"
    );

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
    // A lone or fixed-membership node is ready once its listeners are up.
    readiness.set_ready();

    shutdown.await;
    readiness.start_draining();
    info!(drain = %humantime::format_duration(config.node.drain), "shutting down: not ready, draining");
    tokio::time::sleep(config.node.drain).await;
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
    info!("shoal node stopped");
    Ok(())
}

/// One TLS crypto provider (ring) for every client in the process: reqwest
/// is built without one of its own, and kube uses ring, so they cannot clash.
pub fn install_crypto_provider() {
    // An error means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn advertised(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}
