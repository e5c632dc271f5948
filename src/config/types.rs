//! The validated configuration: what [`resolve`](super::resolve) returns
//! and the rest of the node reads. Every value here has passed its checks;
//! the resolution that builds them lives in `resolve`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;

use super::cli::LogFormat;
use super::file::SwimProfile;
use super::limits::LimitsConfig;
use super::seed::Seed;
use super::{DEFAULT_HANDOFF_MAX_BYTES, DEFAULT_PEEK_TIMEOUT, DEFAULT_PREVIOUS_RINGS_WINDOW};

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node: name, addresses, ports, drain, key limit (`node:`).
    pub node: NodeConfig,
    /// Requests to other nodes (`peer:`).
    pub peer: PeerConfig,
    /// Who is in the cluster (`membership:` and `discovery:`).
    pub membership: MembershipConfig,
    /// Keys that seal gossip and sign peer requests; `None`: unauthenticated.
    pub keyring_file: Option<PathBuf>,
    /// Run without a keyring on non-loopback addresses, knowingly
    /// (`--insecure`, `security.insecure`).
    pub insecure: bool,
    /// Bounds on every connection to the three TCP ports (`limits:`).
    pub limits: LimitsConfig,
    /// The group that one-segment paths (`/{key}`) read.
    pub default_group: Option<String>,
    /// The groups, by name.
    pub groups: BTreeMap<String, GroupConfig>,
    /// What keeps the cache warm while membership changes (`churn:`).
    pub churn: ChurnConfig,
    /// How the binary writes its log.
    pub log_format: LogFormat,
}

/// What keeps the cache warm while membership changes (`churn:`). All on by
/// default; all off is plain groupcache behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnConfig {
    /// Before an owner loads a key it does not hold, it peeks (cache-only)
    /// at the key's owners under the rings it had within this window.
    /// `None`: no previous-owner lookup.
    pub previous_rings_window: Option<Duration>,
    /// How long a peek may wait for its answer once connected (connecting
    /// is bounded by `peer.connect_timeout`).
    pub peek_timeout: Duration,
    /// On SIGTERM, push main-cache entries to their next owners during the
    /// drain, at most this many bytes. `None`: no handoff.
    pub handoff_max_bytes: Option<u64>,
    /// When the owner cannot be connected to, ask its ring successor to
    /// load the key as owner-in-waiting instead of loading locally.
    pub successor_failover: bool,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            previous_rings_window: Some(DEFAULT_PREVIOUS_RINGS_WINDOW),
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
            handoff_max_bytes: Some(DEFAULT_HANDOFF_MAX_BYTES),
            successor_failover: true,
        }
    }
}

/// This node (`node:`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name in logs and on `/_members`.
    pub name: String,
    /// Address of the peer, gossip and admin listeners.
    pub bind: IpAddr,
    /// Address of the service listener.
    pub service_bind: IpAddr,
    /// Address other nodes reach this node at.
    pub advertise: IpAddr,
    /// The four ports.
    pub ports: Ports,
    /// How long a node still serves after it leaves, on SIGTERM.
    pub drain: Duration,
    /// The longest key accepted, in bytes.
    pub max_key: usize,
}

impl NodeConfig {
    /// This node's id on the ring: advertise IP and peer port.
    pub fn member_id(&self) -> SocketAddr {
        SocketAddr::new(self.advertise, self.ports.peer)
    }
}

/// The node's ports (`node.ports:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The service API, for apps (3000).
    pub service: u16,
    /// The peer API, for other nodes (8000); part of the node's id.
    pub peer: u16,
    /// SWIM gossip, UDP (7946).
    pub gossip: u16,
    /// Metrics, health, members (9090).
    pub admin: u16,
}

/// Requests to other nodes (`peer:`).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Whole-request timeout for peer fetches; exceeds every loader timeout.
    pub timeout: Duration,
    /// How long to wait for a peer to accept a connection before loading locally.
    pub connect_timeout: Duration,
}

/// Where membership comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MembershipConfig {
    /// A node on its own: it owns every key.
    Lone,
    /// A fixed list of peer addresses (advertise IP + peer port), self included.
    Static(Vec<SocketAddr>),
    /// SWIM gossip, seeded by DNS names or addresses.
    Gossip(GossipConfig),
}

/// SWIM gossip membership.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// The seeds, parsed; a name stands for every address it resolves to.
    pub seeds: Vec<Seed>,
    /// How often the seeds are resolved again once joined.
    pub resolve_interval: Duration,
    /// DNS server for seed lookups; `None`: the system resolver.
    pub dns_server: Option<SocketAddr>,
    /// SWIM's timings.
    pub swim: SwimConfig,
    /// The EndpointSlice cross-check; `None`: off, SWIM alone.
    pub kubernetes: Option<KubernetesConfig>,
}

/// The EndpointSlice cross-check (`discovery.kubernetes`, when enabled):
/// the node watches the EndpointSlices of the headless Service that seeds
/// gossip and compares them with SWIM's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The Service's namespace: the file's, else `POD_NAMESPACE`, else `default`.
    pub namespace: String,
    /// The headless Service; its slices carry the label
    /// `kubernetes.io/service-name=<service>`.
    pub service: String,
}

/// SWIM timings. The defaults are memberlist's LAN profile.
#[derive(Debug, Clone, PartialEq)]
pub struct SwimConfig {
    /// How often this node probes a random member.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before asking others.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: u8,
    /// Suspicion lasts this many × max(1, log10 N) probe intervals.
    pub suspicion_multiplier: f64,
    /// ... and this many once `suspicion_confirmations` other members
    /// confirm it (Lifeguard): at most `suspicion_multiplier`.
    pub confirmed_suspicion_multiplier: f64,
    /// Independent confirmations that bring suspicion down to its
    /// confirmed length; 0 turns confirmations off.
    pub suspicion_confirmations: u8,
    /// How often updates are gossiped, and to how many members.
    pub gossip_interval: Duration,
    /// Members each gossip round goes to.
    pub gossip_nodes: u8,
    /// An update is sent this many × ceil(log10(N + 1)) times.
    pub retransmit_multiplier: u8,
}

impl SwimConfig {
    /// The timings of a named profile.
    pub fn profile(profile: SwimProfile) -> Self {
        match profile {
            SwimProfile::Lan => Self {
                probe_interval: Duration::from_secs(1),
                probe_timeout: Duration::from_millis(500),
                indirect_probes: 3,
                suspicion_multiplier: 4.0,
                confirmed_suspicion_multiplier: 1.0,
                suspicion_confirmations: 2,
                gossip_interval: Duration::from_millis(200),
                gossip_nodes: 3,
                retransmit_multiplier: 4,
            },
            SwimProfile::Fast => Self {
                probe_interval: Duration::from_millis(500),
                probe_timeout: Duration::from_millis(250),
                indirect_probes: 3,
                suspicion_multiplier: 3.0,
                confirmed_suspicion_multiplier: 1.0,
                suspicion_confirmations: 2,
                gossip_interval: Duration::from_millis(100),
                gossip_nodes: 3,
                retransmit_multiplier: 4,
            },
        }
    }
}

/// One group's settings (`groups.NAME:`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Main cache size in bytes; the hot cache gets `hot_fraction` of it on top.
    pub capacity: u64,
    /// The hot cache's size as a fraction of `capacity`.
    pub hot_fraction: f64,
    /// `None`: entries do not expire (an origin's max-age may still cap them).
    pub ttl: Option<Duration>,
    /// Cap on a hot copy's life; `None`: no cap beyond the owner's TTL.
    pub hot_ttl: Option<Duration>,
    /// How long an origin 404 is remembered; `None`: not at all.
    pub negative_ttl: Option<Duration>,
    /// Refuse PUT and DELETE on the service API.
    pub read_only: bool,
    /// Larger values are served but not cached (and refused by PUT).
    pub max_value: u64,
    /// Refresh ahead, the stale windows and TTL jitter.
    pub freshness: Freshness,
    /// How many origin loads this node sends at once, and the breaker.
    pub origin: OriginLimits,
    /// Where values come from.
    pub loader: LoaderConfig,
}

/// When an owner refreshes its entries and serves them stale (all off by
/// default: fresh until the TTL, then gone, as in groupcache). The logic
/// that reads these is the cache's (`cache::freshness`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Freshness {
    /// Fraction of an entry's TTL after which a hit also starts a
    /// background reload; 0: off.
    pub refresh_ahead: f64,
    /// How long after expiry an entry is served at once while one
    /// background reload runs; `None`: off.
    pub stale_while_revalidate: Option<Duration>,
    /// How long after expiry an entry is served in place of a failed
    /// reload; `None`: off.
    pub stale_if_error: Option<Duration>,
    /// Each stored TTL is shortened by a random fraction below this; 0: off.
    pub ttl_jitter: f64,
}

/// What protects a group's origin from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginLimits {
    /// Origin loads in flight at once; `None`: unbounded.
    pub max_concurrent_loads: Option<usize>,
    /// Loads that may wait for a slot; past it, 503 `origin-overloaded`.
    pub max_queued_loads: usize,
    /// How long a load may wait for a slot: half of what `peer.timeout`
    /// leaves after the loader's timeout, so that a peer waiting on it
    /// does not give up first, network time included.
    pub queue_wait: Duration,
    /// `None`: no breaker.
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl Default for OriginLimits {
    fn default() -> Self {
        Self {
            max_concurrent_loads: None,
            max_queued_loads: 0,
            queue_wait: Duration::ZERO,
            circuit_breaker: None,
        }
    }
}

/// The origin's circuit breaker (`circuit_breaker:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failed loads that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe load.
    pub cool_down: Duration,
}

impl GroupConfig {
    /// The hot cache's size in bytes.
    pub fn hot_capacity(&self) -> u64 {
        (self.capacity as f64 * self.hot_fraction) as u64
    }
}

/// A group with every setting at its default, and its loader left to the
/// program that embeds shoal (a group added by `NodeBuilder::loader`).
impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            capacity: super::DEFAULT_CAPACITY,
            hot_fraction: super::DEFAULT_HOT_FRACTION,
            ttl: None,
            hot_ttl: Some(super::DEFAULT_HOT_TTL),
            negative_ttl: None,
            read_only: false,
            max_value: super::DEFAULT_MAX_VALUE,
            freshness: Freshness::default(),
            origin: OriginLimits::default(),
            loader: LoaderConfig::Embedded,
        }
    }
}

impl Config {
    /// A config for a program that embeds shoal, from YAML in the config
    /// file's format (see the README), without flags or environment
    /// variables: `groups`, and each group's `loader`, may be left out for
    /// [`crate::NodeBuilder::loader`] to give. `""` is a lone node on the
    /// default ports with no groups.
    pub fn from_yaml(yaml: &str) -> Result<Self, super::ConfigError> {
        super::resolve::resolve_embedded(yaml, &super::HostFacts::detect())
    }
}

/// A group's origin (`groups.NAME.loader:`).
#[derive(Debug, Clone)]
pub enum LoaderConfig {
    /// Sleeps `delay`, then answers `Value of <key>`.
    Demo {
        /// How long each load takes.
        delay: Duration,
    },
    /// Fetches the key from an HTTP origin.
    Http {
        /// The origin URL, with the key in place of `{key}`.
        url: UrlTemplate,
        /// How long a load may take.
        timeout: Duration,
        /// Headers sent with every request.
        headers: HeaderMap,
    },
    /// Given by the program that embeds shoal
    /// ([`crate::NodeBuilder::loader`]).
    Embedded,
}

impl LoaderConfig {
    /// The longest a load may take before it fails.
    pub(crate) fn max_duration(&self) -> Duration {
        match self {
            LoaderConfig::Demo { delay } => *delay,
            LoaderConfig::Http { timeout, .. } => *timeout,
            // Bounded by the program; nothing to check it against here.
            LoaderConfig::Embedded => Duration::ZERO,
        }
    }
}

/// An origin URL with one `{key}` placeholder, split around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    /// The URL up to `{key}`.
    pub before: String,
    /// The URL after `{key}`.
    pub after: String,
}

impl UrlTemplate {
    /// Splits `template` around its one `{key}`; the error says what is
    /// wrong with it.
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let Some((before, after)) = template.split_once("{key}") else {
            return Err(format!("`{template}` has no {{key}} placeholder"));
        };
        if after.contains("{key}") {
            return Err(format!(
                "`{template}` has more than one {{key}} placeholder"
            ));
        }
        let sample = format!("{before}k{after}");
        let url =
            reqwest::Url::parse(&sample).map_err(|e| format!("`{template}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{template}` must be an http:// or https:// URL"));
        }
        if url
            .host_str()
            .is_none_or(|host| host.contains('k') && before.ends_with("//"))
        {
            return Err(format!("`{template}`: {{key}} may not stand in the host"));
        }
        Ok(Self {
            before: before.to_owned(),
            after: after.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates() {
        assert!(UrlTemplate::parse("http://o:8080/users/{key}?x=1").is_ok());
        assert!(UrlTemplate::parse("http://o/{key}/{key}").is_err());
        assert!(UrlTemplate::parse("ftp://o/{key}").is_err());
        assert!(UrlTemplate::parse("http://{key}/x").is_err());
    }
}
