//! Each mode's config file (issue 10's settings exactly as the interface
//! names them); `bench_common::binary::check_config` checks it.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::args::Mode;
use crate::{DRAIN, GROUP, LOADER_TIMEOUT, PEER_PORT, node_name};

/// The group settings that make `mode` what it is, beyond `ttl: 2s`.
fn freshness_settings(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Baseline => &[],
        Mode::RefreshAhead => &["refresh_ahead: 0.8"],
        Mode::Full => &[
            "refresh_ahead: 0.8",
            "stale_while_revalidate: 2s",
            "stale_if_error: 30s",
            "ttl_jitter: 0.1",
            "max_concurrent_loads: 16",
        ],
        Mode::Guarded => &[
            "refresh_ahead: 0.8",
            "stale_while_revalidate: 2s",
            "stale_if_error: 30s",
            "ttl_jitter: 0.1",
            "max_concurrent_loads: 16",
            "circuit_breaker: { failures: 5, cool_down: 2s }",
        ],
    }
}

/// The config of the node on `me` in `mode`: fixed membership over `ips`
/// (the same list on every node, itself included), one group loading from
/// the origin under the mode's own prefix. One file per node, so that
/// `shoal check-config` sees each node's own address and checks it against
/// the peer list as start-up does. Loopback only, so no keyring.
pub fn config_yaml(mode: Mode, origin: SocketAddr, ips: &[IpAddr], me: IpAddr) -> String {
    let peers = ips
        .iter()
        .map(|ip| format!("\"{}\"", SocketAddr::new(*ip, PEER_PORT)))
        .collect::<Vec<_>>()
        .join(", ");
    let name = node_name(me);
    let mut yaml = format!(
        "node: {{ name: {name}, bind: {me}, advertise: {me}, drain: {DRAIN} }}\n\
         membership: {{ static_peers: [{peers}] }}\n\
         default_group: {GROUP}\n\
         groups:\n  \
         {GROUP}:\n    \
         capacity: 64MiB\n    \
         ttl: 2s\n"
    );
    for setting in freshness_settings(mode) {
        let _ = writeln!(yaml, "    {setting}");
    }
    let _ = writeln!(
        yaml,
        "    loader: {{ http: {{ url: \"http://{origin}/{}/{{key}}\", timeout: {LOADER_TIMEOUT} }} }}",
        mode.name()
    );
    yaml
}
