//! The `node` and `peer` sections: name, addresses, ports, limits and
//! peer timeouts. The node name and advertise address fall back on the
//! host's (`POD_NAME`, `POD_IP`, hostname, interfaces).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::file::{FileNode, FilePeer};
use crate::config::{
    Cli, ConfigError, DEFAULT_ADMIN_PORT, DEFAULT_DRAIN, DEFAULT_GOSSIP_PORT, DEFAULT_MAX_KEY,
    DEFAULT_PEER_CONNECT_TIMEOUT, DEFAULT_PEER_PORT, DEFAULT_PEER_TIMEOUT, DEFAULT_SERVICE_PORT,
    HostFacts, NodeConfig, PeerConfig, Ports,
};

/// `node`: flags beat the pod's environment, which beats the file, which
/// beats the host's own facts.
pub(super) fn resolve(
    cli: &Cli,
    file_node: FileNode,
    host: &HostFacts,
) -> Result<NodeConfig, ConfigError> {
    let file_ports = file_node.ports.unwrap_or_default();

    let name = cli
        .node_name
        .clone()
        .or_else(|| host.pod_name.clone())
        .or(file_node.name)
        .unwrap_or_else(|| host.hostname.clone());
    if name.is_empty() {
        return Err(ConfigError::field("node.name", "the node name is empty"));
    }

    let default_bind = if host.ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let bind = cli.bind.or(file_node.bind).unwrap_or(default_bind);
    let service_bind = cli.service_bind.or(file_node.service_bind).unwrap_or(bind);
    let advertise = cli
        .advertise
        .or(host.pod_ip)
        .or(file_node.advertise)
        .unwrap_or_else(|| default_advertise(bind, &host.addresses));
    if advertise.is_unspecified() {
        return Err(ConfigError::field(
            "node.advertise",
            format!("{advertise} is not an address other nodes can reach; give a specific IP"),
        ));
    }

    let ports = Ports {
        service: cli
            .service_port
            .or(file_ports.service)
            .unwrap_or(DEFAULT_SERVICE_PORT),
        peer: cli
            .peer_port
            .or(file_ports.peer)
            .unwrap_or(DEFAULT_PEER_PORT),
        gossip: cli
            .gossip_port
            .or(file_ports.gossip)
            .unwrap_or(DEFAULT_GOSSIP_PORT),
        admin: cli
            .admin_port
            .or(file_ports.admin)
            .unwrap_or(DEFAULT_ADMIN_PORT),
    };
    if ports.peer == 0 {
        return Err(ConfigError::field(
            "node.ports.peer",
            "the peer port is part of this node's identity and cannot be 0",
        ));
    }

    let max_key = file_node.max_key.map_or(DEFAULT_MAX_KEY as u64, |s| s.0);
    if max_key == 0 {
        return Err(ConfigError::field(
            "node.max_key",
            "must be at least 1 byte",
        ));
    }
    Ok(NodeConfig {
        name,
        bind,
        service_bind,
        advertise,
        ports,
        drain: file_node.drain.unwrap_or(DEFAULT_DRAIN),
        max_key: usize::try_from(max_key).unwrap_or(usize::MAX),
    })
}

/// `peer`: how long a peer fetch, and a connection to a peer, may take.
pub(super) fn peer(file_peer: FilePeer) -> Result<PeerConfig, ConfigError> {
    let peer = PeerConfig {
        timeout: file_peer.timeout.unwrap_or(DEFAULT_PEER_TIMEOUT),
        connect_timeout: file_peer
            .connect_timeout
            .unwrap_or(DEFAULT_PEER_CONNECT_TIMEOUT),
    };
    if peer.connect_timeout.is_zero() {
        return Err(ConfigError::field(
            "peer.connect_timeout",
            "must be above 0",
        ));
    }
    Ok(peer)
}

/// The advertise address when none is given: the bind address if it is a
/// specific one, else the host's first non-loopback address (IPv4 first).
fn default_advertise(bind: IpAddr, addresses: &[IpAddr]) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let usable = |ip: &&IpAddr| {
        !ip.is_loopback()
            && !ip.is_unspecified()
            && !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
    };
    addresses
        .iter()
        .filter(usable)
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses.iter().find(usable))
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
