//! Facts about the host the node runs on, read once at start.

use std::net::{IpAddr, Ipv6Addr};

/// What the host tells us: read once at start, passed in so tests can vary it.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The node's name when neither a flag, `POD_NAME` nor the file gives one.
    pub hostname: String,
    /// The host's addresses, in interface order.
    pub addresses: Vec<IpAddr>,
    /// Whether the host can bind IPv6 (the default bind is then `::`).
    pub ipv6: bool,
    /// `POD_NAME` (downward API): the node's name.
    pub pod_name: Option<String>,
    /// `POD_IP` (downward API): the address to advertise.
    pub pod_ip: Option<IpAddr>,
    /// `POD_NAMESPACE` (downward API): the cross-check's namespace.
    pub pod_namespace: Option<String>,
}

impl HostFacts {
    /// Reads the hostname, interface addresses, IPv6 support and the
    /// Kubernetes downward-API variables `POD_NAME`, `POD_IP` and
    /// `POD_NAMESPACE`.
    pub fn detect() -> Self {
        let addresses = if_addrs::get_if_addrs()
            .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        Self {
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            addresses,
            ipv6: std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).is_ok(),
            pod_name: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()),
            pod_ip: std::env::var("POD_IP").ok().and_then(|s| s.parse().ok()),
            pod_namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}
