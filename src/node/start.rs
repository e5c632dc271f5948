//! The wiring: builds the groups, the rings, the membership source and the
//! servers from a [`Config`], and returns the [`NodeHandle`] that owns them.
//!
//! The channels, each made once here:
//! - membership snapshots (`Membership::members`): from gossip or a fixed
//!   list, read by the ring follower, the admin API and the cross-check;
//! - terminating addresses (`terminating`): from the EndpointSlice
//!   cross-check to the ring follower, which leaves them off the ring;
//! - rings (`rings`): from the ring follower to the groups, the admin API
//!   and the shutdown's handoff, with the previous rings kept for
//!   previous-owner lookups;
//! - the keyring: from its file watch to gossip and to the peer client and
//!   server, so a reloaded one applies at once.
//!
//! Gossip's own channels (copy drops, invalidations, announces, joined)
//! are made in `membership`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::fd_limit;
use super::membership::Membership;
use super::rings::{follow_generations, follow_membership, publish_membership_metrics, ring_of};
use super::serve::{Port, serve};
use super::{Background, Listeners, NodeError, NodeHandle, install_crypto_provider};
use crate::cache::{Clock, Cluster, DynLoader, Group, Groups, RingView};
use crate::config::{Config, MembershipConfig};
use crate::discovery::kubernetes::Terminating;
use crate::http::admin::{self, AdminState, Readiness};
use crate::http::close_connections_while_draining;
use crate::http::service::{self, ServiceState};
use crate::loader;
use crate::metrics::Metrics;
use crate::peer::client::HttpPeers;
use crate::peer::server::{self as peer_server, PeerState};
use crate::ring::{RingHistory, Rings};
use crate::security::{self, Keyring, ThisNode};

pub(super) async fn start(
    mut config: Config,
    mut loaders: BTreeMap<String, Arc<dyn DynLoader>>,
    listeners: Listeners,
) -> Result<NodeHandle, NodeError> {
    install_crypto_provider();
    let initial_keyring = preflight(&config)?;
    let addrs = listeners.addrs().map_err(|source| NodeError::Bind {
        what: "service",
        addr: std::net::SocketAddr::new(config.node.service_bind, config.node.ports.service),
        source,
    })?;
    // The ports the listeners have are the node's ports, whatever the
    // config said: a caller may bind port 0. The peer port is part of the
    // node's id on every ring.
    let [service, peer, admin] = addrs;
    config.node.ports.service = service.port();
    config.node.ports.peer = peer.port();
    config.node.ports.admin = admin.port();
    let metrics = Arc::new(Metrics::new());
    let self_id = config.node.member_id();
    let mut background = Background::new();

    let keyring = match (&config.keyring_file, initial_keyring) {
        (Some(path), Some(initial)) => {
            info!(path = %path.display(), keys = initial.len(), fingerprints = %initial.fingerprints(), "keyring loaded");
            Some(security::spawn_watch(
                path.clone(),
                initial,
                background.stop.clone(),
            ))
        }
        _ => None,
    };
    // A restarted node is a new member: a generation from the clock tells
    // it apart from its earlier self, in gossip and in signed requests.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let generation = u64::try_from(started.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let this_node = ThisNode {
        addr: self_id,
        generation,
        started: started.as_secs(),
    };
    let mut peers = HttpPeers::new(
        &config.peer,
        config.churn.peek_timeout,
        config.limits.idle_timeout / 2,
    );
    let mut membership = Membership::start(&config, generation, keyring.clone(), &metrics).await?;
    if let Some(keyring) = &keyring {
        let generations = follow_generations(membership.members.clone(), &mut background);
        peers = peers.with_signing(self_id, keyring.clone(), generations);
    }

    // The ring, and the rings before it for previous-owner lookups. A
    // member that left may still be asked while it drains: about as long as
    // this node's own drain, plus a second for the leave to spread.
    let (terminating_tx, terminating_rx) = watch::channel(Terminating::default());
    let window = config.churn.previous_rings_window.unwrap_or_default();
    let leaver_grace = config.node.drain + Duration::from_secs(1);
    let history = RingHistory::new(Rings::new(
        self_id,
        ring_of(&membership.members.borrow(), &terminating_rx.borrow()),
        window,
        leaver_grace,
        tokio::time::Instant::now(),
    ));
    let (rings_tx, rings) = watch::channel(Arc::new(history.rings().clone()));
    publish_membership_metrics(
        &metrics,
        &membership.members.borrow(),
        rings.borrow().current().len(),
    );
    background.spawn(follow_membership(
        membership.members.clone(),
        terminating_rx,
        history,
        rings_tx,
        Arc::clone(&metrics),
        background.stop.clone(),
    ));

    let cluster = Cluster {
        peers: Arc::new(peers),
        ring: RingView::new(rings.clone()),
        copy_drops: membership.copy_drops.clone(),
        clock: Arc::new(Clock::default()),
        successor_failover: config.churn.successor_failover,
        remember_writes: window,
    };
    let origin_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| NodeError::Client(e.to_string()))?;
    let mut group_configs = config.groups.clone();
    for name in loaders.keys() {
        group_configs.entry(name.clone()).or_default();
    }
    let mut groups = Vec::with_capacity(group_configs.len());
    for (name, group_config) in group_configs {
        let loader = match loaders.remove(&name) {
            Some(loader) => loader,
            None => loader::from_config(&group_config.loader, &origin_client)
                .ok_or_else(|| NodeError::NoLoader(name.clone()))?,
        };
        groups.push(Arc::new(Group::new(
            &name,
            group_config,
            loader,
            cluster.clone(),
            metrics.group(&name),
        )));
    }
    let groups = Arc::new(Groups::new(groups, config.default_group.as_deref()));

    let readiness = Arc::new(Readiness::default());
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
        Some(keyring) => peer_server::signed_router(peer_state, keyring.clone(), this_node),
        None => peer_server::router(peer_state),
    };
    let peer = close_connections_while_draining(peer, Arc::clone(&readiness));
    let admin = admin::router(Arc::new(AdminState {
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
        members: membership.members.clone(),
        ring: rings.clone(),
        readiness: Arc::clone(&readiness),
        max_key: config.node.max_key,
    }));

    log_start(&config, &listeners, &groups, keyring.is_some());
    let stop_serving = CancellationToken::new();
    let caps = fd_limit::fit(config.limits.max_connections, fd_limit::raise());
    let limits = Arc::new(config.limits.clone());
    let mut servers = JoinSet::new();
    // Only peers speak HTTP/2 to each other (src/peer/client.rs).
    for (name, listener, router, max_connections, http2) in [
        ("service", listeners.service, service, caps.service, false),
        ("peer", listeners.peer, peer, caps.peer, true),
        ("admin", listeners.admin, admin, caps.admin, false),
    ] {
        let port = Port {
            name,
            listener,
            router,
            max_connections,
            http2,
        };
        servers.spawn(serve(
            port,
            Arc::clone(&limits),
            Arc::clone(&metrics),
            stop_serving.clone(),
        ));
    }
    // Last, so a fixed membership's node is ready only once it serves.
    membership.spawn_helpers(
        &config,
        &groups,
        &readiness,
        terminating_tx,
        &metrics,
        &mut background,
    )?;
    Ok(NodeHandle {
        config,
        groups,
        readiness,
        membership,
        rings,
        servers,
        stop_serving,
        background,
        addrs,
    })
}

/// Everything a node checks of its config before it serves, in one place
/// so that `shoal check-config` ([`super::Node::check`]) runs the very same:
/// the whole-config checks of [`crate::config::check`] (ports, entry sizes)
/// and the keyring file, read and parsed as the node will use it. Returns
/// the keyring. Binding is not among them: a port in use is found only by
/// binding it.
pub(super) fn preflight(config: &Config) -> Result<Option<Keyring>, NodeError> {
    crate::config::check(config)?;
    Ok(config
        .keyring_file
        .as_deref()
        .map(Keyring::load)
        .transpose()?)
}

fn log_start(config: &Config, listeners: &Listeners, groups: &Groups, authenticated: bool) {
    let addr = |listener: &tokio::net::TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let membership = match &config.membership {
        MembershipConfig::Lone => "lone".to_owned(),
        MembershipConfig::Static(peers) => format!("fixed ({} peers)", peers.len()),
        MembershipConfig::Gossip(gossip) => {
            let seeds: Vec<String> = gossip.seeds.iter().map(ToString::to_string).collect();
            format!("gossip (seeds {})", seeds.join(","))
        }
    };
    let mut names: Vec<&str> = groups.iter().map(|g| g.name()).collect();
    names.sort_unstable();
    info!(
        node = %config.node.name,
        service = %addr(&listeners.service),
        peer = %addr(&listeners.peer),
        admin = %addr(&listeners.admin),
        gossip = %std::net::SocketAddr::new(config.node.bind, config.node.ports.gossip),
        advertise = %config.node.advertise,
        membership = %membership,
        authenticated,
        groups = %names.join(","),
        default_group = config.default_group.as_deref().unwrap_or("-"),
        "shoal node started"
    );
}
