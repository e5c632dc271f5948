//! The `membership` and `discovery` sections: a lone node, a fixed peer
//! list, or SWIM gossip from seeds (parsed here, once, into
//! [`Seed`]s), with its timings and the optional Kubernetes cross-check.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::file::{FileDiscovery, FileKubernetes, FileMembership};
use crate::config::{
    Cli, ConfigError, DEFAULT_NAMESPACE, DEFAULT_RESOLVE_INTERVAL, GossipConfig, HostFacts,
    KubernetesConfig, MembershipConfig, NodeConfig, Seed, SwimConfig,
};

/// Flags decide the mode when they name one (`--peer`, `--seed`); else the
/// file does (`membership.static_peers`, `discovery.seeds`); else the node
/// is alone.
pub(super) fn resolve(
    cli: &Cli,
    file_membership: FileMembership,
    file_discovery: FileDiscovery,
    node: &NodeConfig,
    host: &HostFacts,
) -> Result<MembershipConfig, ConfigError> {
    let swim = swim(&file_membership)?;
    let file_peers = file_membership.static_peers.clone().unwrap_or_default();
    let file_seeds = file_discovery.seeds.unwrap_or_default();
    let kubernetes = resolve_kubernetes(file_discovery.kubernetes, host)?;
    let mut membership = if !cli.peers.is_empty() {
        static_membership(&cli.peers, "--peer", node)?
    } else if !cli.seeds.is_empty() {
        gossip_membership(
            cli.seeds.clone(),
            "--seed",
            cli,
            node,
            file_discovery.resolve_interval,
            swim,
        )?
    } else if !file_peers.is_empty() && !file_seeds.is_empty() {
        return Err(ConfigError::field(
            "membership.static_peers",
            "fixed peers and discovery.seeds exclude each other: choose one",
        ));
    } else if !file_seeds.is_empty() {
        gossip_membership(
            file_seeds,
            "discovery.seeds",
            cli,
            node,
            file_discovery.resolve_interval,
            swim,
        )?
    } else {
        static_membership(&file_peers, "membership.static_peers", node)?
    };
    match (&mut membership, kubernetes) {
        (_, None) => {}
        (MembershipConfig::Gossip(gossip), Some(kubernetes)) => {
            gossip.kubernetes = Some(kubernetes)
        }
        (_, Some(_)) => {
            return Err(ConfigError::field(
                "discovery.kubernetes",
                "the EndpointSlice cross-check compares Kubernetes with gossip membership: it needs seeds (discovery.seeds or --seed), not fixed peers or a lone node",
            ));
        }
    }
    Ok(membership)
}

/// `membership`'s SWIM timings: a profile, each timing overridable.
fn swim(file: &FileMembership) -> Result<SwimConfig, ConfigError> {
    let base = SwimConfig::profile(file.profile.unwrap_or_default());
    let swim = SwimConfig {
        probe_interval: file.probe_interval.unwrap_or(base.probe_interval),
        probe_timeout: file.probe_timeout.unwrap_or(base.probe_timeout),
        indirect_probes: file.indirect_probes.unwrap_or(base.indirect_probes),
        suspicion_multiplier: file
            .suspicion_multiplier
            .unwrap_or(base.suspicion_multiplier),
        confirmed_suspicion_multiplier: file
            .confirmed_suspicion_multiplier
            .unwrap_or(base.confirmed_suspicion_multiplier),
        suspicion_confirmations: file
            .suspicion_confirmations
            .unwrap_or(base.suspicion_confirmations),
        gossip_interval: file.gossip_interval.unwrap_or(base.gossip_interval),
        gossip_nodes: file.gossip_nodes.unwrap_or(base.gossip_nodes),
        retransmit_multiplier: file
            .retransmit_multiplier
            .unwrap_or(base.retransmit_multiplier),
    };
    let field = |name: &str| format!("membership.{name}");
    if swim.probe_interval.is_zero() {
        return Err(ConfigError::field(
            field("probe_interval"),
            "must be above 0",
        ));
    }
    if swim.probe_timeout.is_zero() || swim.probe_timeout >= swim.probe_interval {
        return Err(ConfigError::field(
            field("probe_timeout"),
            "must be above 0 and below membership.probe_interval",
        ));
    }
    if swim.gossip_interval.is_zero() {
        return Err(ConfigError::field(
            field("gossip_interval"),
            "must be above 0",
        ));
    }
    if !(1.0..=100.0).contains(&swim.suspicion_multiplier) {
        return Err(ConfigError::field(
            field("suspicion_multiplier"),
            "must be between 1 and 100",
        ));
    }
    // Profiles' confirmed multiplier (1) fits under any valid suspicion_multiplier.
    if !(0.25..=swim.suspicion_multiplier).contains(&swim.confirmed_suspicion_multiplier) {
        return Err(ConfigError::field(
            field("confirmed_suspicion_multiplier"),
            "must be between 0.25 and membership.suspicion_multiplier",
        ));
    }
    for (name, value) in [
        ("indirect_probes", swim.indirect_probes),
        ("gossip_nodes", swim.gossip_nodes),
        ("retransmit_multiplier", swim.retransmit_multiplier),
    ] {
        if value == 0 {
            return Err(ConfigError::field(field(name), "must be at least 1"));
        }
    }
    Ok(swim)
}

fn static_membership(
    list: &[String],
    field: &str,
    node: &NodeConfig,
) -> Result<MembershipConfig, ConfigError> {
    if list.is_empty() {
        return Ok(MembershipConfig::Lone);
    }
    let mut peers = Vec::with_capacity(list.len());
    for entry in list {
        let addr = parse_peer_addr(entry, node.ports.peer)
            .map_err(|message| ConfigError::field(field, message))?;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(ConfigError::field(
                field,
                format!("`{entry}` is not an address another node can reach"),
            ));
        }
        if !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    let me = node.member_id();
    if !peers.contains(&me) {
        return Err(ConfigError::field(
            field,
            format!(
                "this node's own address {me} (advertise IP and peer port) is not in the peer list; every node lists the same peers, itself included (set --advertise if the address is wrong)"
            ),
        ));
    }
    Ok(MembershipConfig::Static(peers))
}

fn gossip_membership(
    seeds: Vec<String>,
    field: &str,
    cli: &Cli,
    node: &NodeConfig,
    resolve_interval: Option<Duration>,
    swim: SwimConfig,
) -> Result<MembershipConfig, ConfigError> {
    let seeds = Seed::parse_all(&seeds, node.ports.gossip)
        .map_err(|error| ConfigError::field(field, error.to_string()))?;
    let resolve_interval = resolve_interval.unwrap_or(DEFAULT_RESOLVE_INTERVAL);
    if resolve_interval.is_zero() {
        return Err(ConfigError::field(
            "discovery.resolve_interval",
            "must be above 0",
        ));
    }
    Ok(MembershipConfig::Gossip(GossipConfig {
        seeds,
        resolve_interval,
        dns_server: cli.dns_server,
        swim,
        kubernetes: None,
    }))
}

/// `discovery.kubernetes`: `None` unless enabled. The namespace defaults to
/// the pod's own (`POD_NAMESPACE`), then `default`; the Service is required.
fn resolve_kubernetes(
    file: Option<FileKubernetes>,
    host: &HostFacts,
) -> Result<Option<KubernetesConfig>, ConfigError> {
    let Some(file) = file.filter(|k| k.enabled == Some(true)) else {
        return Ok(None);
    };
    let Some(service) = file.service else {
        return Err(ConfigError::field(
            "discovery.kubernetes.service",
            "required when discovery.kubernetes.enabled is true: the headless Service whose EndpointSlices list the nodes",
        ));
    };
    check_dns_label(&service, true)
        .map_err(|m| ConfigError::field("discovery.kubernetes.service", m))?;
    let namespace = file
        .namespace
        .or_else(|| host.pod_namespace.clone())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    check_dns_label(&namespace, false)
        .map_err(|m| ConfigError::field("discovery.kubernetes.namespace", m))?;
    Ok(Some(KubernetesConfig { namespace, service }))
}

/// A Kubernetes object name that is a DNS label: at most 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit (a
/// Service name must start with a letter, RFC 1035).
fn check_dns_label(name: &str, letter_first: bool) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && (!letter_first || name.starts_with(|c: char| c.is_ascii_lowercase()));
    if valid {
        Ok(())
    } else {
        let first = if letter_first {
            "a letter"
        } else {
            "a letter or digit"
        };
        Err(format!(
            "`{name}` is not a valid name: at most 63 lowercase letters, digits and `-`, starting with {first} and ending with a letter or digit"
        ))
    }
}

/// Parses `IP`, `IP:PORT`, `[v6]` or `[v6]:PORT`; a missing port is `default_port`.
fn parse_peer_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("`{text}` is not IP[:PORT] (write IPv6 as [v6]:port)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("shoal-gossip", true).is_ok());
        assert!(check_dns_label("0abc", false).is_ok());
        assert!(check_dns_label("0abc", true).is_err());
        assert!(check_dns_label("", false).is_err());
        assert!(check_dns_label("-a", false).is_err());
        assert!(check_dns_label("a-", false).is_err());
        assert!(check_dns_label(&"a".repeat(63), true).is_ok());
        assert!(check_dns_label(&"a".repeat(64), true).is_err());
    }
}
