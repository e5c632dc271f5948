//! Seed lookups on hickory's tokio resolver: the system configuration
//! (`/etc/resolv.conf`) by default, or one given DNS server (`--dns-server`)
//! over UDP and TCP. Nothing is cached: seeds are re-resolved to see the
//! headless Service change.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::join_all;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::DiscoveryError;
use crate::config::{Seed, SeedHost};

/// How long one query to a given DNS server waits for its answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What one round of lookups found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Every address of every seed, each with its seed's port, in seed
    /// order, without duplicates.
    pub addrs: Vec<SocketAddr>,
    /// `(seed, error)` for each name that did not resolve.
    pub failures: Vec<(String, String)>,
}

/// Resolves seeds to gossip addresses. Cheap to clone.
#[derive(Clone)]
pub struct SeedResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for SeedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedResolver").finish_non_exhaustive()
    }
}

impl SeedResolver {
    /// `Some(server)`: ask that server only; `None`: the system resolver.
    pub fn new(dns_server: Option<SocketAddr>) -> Result<Self, DiscoveryError> {
        match dns_server {
            Some(server) => Self::with_server(server),
            None => Self::system(),
        }
    }

    /// The system configuration: name servers, search domains and `ndots`
    /// from `/etc/resolv.conf`, and the hosts file.
    pub fn system() -> Result<Self, DiscoveryError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DiscoveryError::SystemDns(e.to_string()))?;
        no_cache(builder.options_mut());
        let resolver = builder
            .build()
            .map_err(|e| DiscoveryError::SystemDns(e.to_string()))?;
        Ok(Self { resolver })
    }

    /// One DNS server over UDP (TCP when an answer is truncated); no search
    /// domains, no hosts file.
    pub fn with_server(server: SocketAddr) -> Result<Self, DiscoveryError> {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut options = ResolverOpts::default();
        options.timeout = QUERY_TIMEOUT;
        options.use_hosts_file = ResolveHosts::Never;
        no_cache(&mut options);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| DiscoveryError::DnsServer {
                server,
                reason: e.to_string(),
            })?;
        Ok(Self { resolver })
    }

    /// Resolves every seed: each name to all its A and AAAA records, each
    /// literal IP to itself, every address with its seed's port. Names are
    /// looked up concurrently; one that fails is reported in `failures` and
    /// does not hide the others.
    pub async fn resolve(&self, seeds: &[Seed]) -> Resolved {
        // Belt and braces: the TTLs are already capped at zero.
        self.resolver.clear_cache();
        let lookups = join_all(seeds.iter().map(|seed| async move {
            match &seed.host {
                SeedHost::Ip(ip) => Ok(vec![*ip]),
                SeedHost::Name(name) => self.lookup(name).await,
            }
        }))
        .await;

        let mut resolved = Resolved::default();
        let mut seen = HashSet::new();
        for (seed, lookup) in seeds.iter().zip(lookups) {
            match lookup {
                Ok(ips) => {
                    for ip in ips {
                        let addr = SocketAddr::new(ip.to_canonical(), seed.port);
                        if seen.insert(addr) {
                            resolved.addrs.push(addr);
                        }
                    }
                }
                Err(error) => resolved.failures.push((seed.to_string(), error)),
            }
        }
        resolved
    }

    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Err("no A or AAAA records".to_owned())
                } else {
                    Ok(ips)
                }
            }
            Err(error) => Err(describe(&error)),
        }
    }
}

/// Caps every TTL at zero (so nothing is served from the cache) and asks for
/// both A and AAAA records.
fn no_cache(options: &mut ResolverOpts) {
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
}

fn describe(error: &NetError) -> String {
    if error.is_nx_domain() {
        "no such name (NXDOMAIN)".to_owned()
    } else if error.is_no_records_found() {
        "no A or AAAA records".to_owned()
    } else {
        error.to_string()
    }
}
