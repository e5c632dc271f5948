//! Configuration: the config file, environment and flags merged into one
//! validated [`Config`]. Flags beat environment, environment beats the file,
//! the file beats defaults. A config file replaces the built-in demo group
//! entirely. No I/O here beyond reading the file; facts about the host come
//! in as a [`HostFacts`] value so resolution stays testable.

mod cli;
mod file;
mod seed;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use cli::{Cli, Command, LogFormat};
pub use units::{Size, parse_duration};

pub use file::SwimProfile;
use file::{FileChurn, FileConfig, FileGroup, FileKubernetes, FileLoader, FileMembership};
pub use seed::{Seed, SeedError, SeedHost};

pub const DEFAULT_SERVICE_PORT: u16 = 3000;
pub const DEFAULT_PEER_PORT: u16 = 8000;
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
pub const DEFAULT_ADMIN_PORT: u16 = 9090;
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_KEY: usize = 4 * 1024;
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
pub const DEFAULT_CAPACITY: u64 = 64 << 20;
pub const DEFAULT_HOT_FRACTION: f64 = 0.125;
pub const DEFAULT_HOT_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_VALUE: u64 = 1 << 20;
pub const DEFAULT_DEMO_DELAY: Duration = Duration::from_millis(400);
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_PREVIOUS_RINGS_WINDOW: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_HANDOFF_MAX_BYTES: u64 = 256 << 20;
/// The namespace of the cross-check's Service when neither the file nor
/// `POD_NAMESPACE` names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The built-in demo group's name.
pub const DEMO_GROUP: &str = "heavy";
/// moka weighs entries in `u32`; keep values well below that.
const MAX_VALUE_LIMIT: u64 = 1 << 30;

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeConfig,
    pub peer: PeerConfig,
    pub membership: MembershipConfig,
    /// Keys that seal gossip and sign peer requests; `None`: unauthenticated.
    pub keyring_file: Option<PathBuf>,
    pub default_group: Option<String>,
    pub groups: BTreeMap<String, GroupConfig>,
    pub churn: ChurnConfig,
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

impl ChurnConfig {
    /// Everything off: plain groupcache behaviour.
    pub fn off() -> Self {
        Self {
            previous_rings_window: None,
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
            handoff_max_bytes: None,
            successor_failover: false,
        }
    }

    fn resolve(file: Option<FileChurn>) -> Result<Self, ConfigError> {
        let file = file.unwrap_or_default();
        let lookup = file.previous_owner_lookup.unwrap_or(true);
        let window = file
            .previous_rings_window
            .unwrap_or(DEFAULT_PREVIOUS_RINGS_WINDOW);
        let peek_timeout = file.peek_timeout.unwrap_or(DEFAULT_PEEK_TIMEOUT);
        if lookup && !window.is_zero() && peek_timeout.is_zero() {
            return Err(ConfigError::field(
                "churn.peek_timeout",
                "must be above 0 while previous_owner_lookup is on (a peek that may not wait never hits)",
            ));
        }
        let handoff_max_bytes = file
            .handoff_max_bytes
            .map_or(DEFAULT_HANDOFF_MAX_BYTES, |s| s.0);
        Ok(Self {
            previous_rings_window: (lookup && !window.is_zero()).then_some(window),
            peek_timeout,
            handoff_max_bytes: (file.handoff.unwrap_or(true) && handoff_max_bytes > 0)
                .then_some(handoff_max_bytes),
            successor_failover: file.successor_failover.unwrap_or(true),
        })
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Address of the peer, gossip and admin listeners.
    pub bind: IpAddr,
    /// Address of the service listener.
    pub service_bind: IpAddr,
    /// Address other nodes reach this node at.
    pub advertise: IpAddr,
    pub ports: Ports,
    pub drain: Duration,
    pub max_key: usize,
}

impl NodeConfig {
    /// This node's id on the ring: advertise IP and peer port.
    pub fn member_id(&self) -> SocketAddr {
        SocketAddr::new(self.advertise, self.ports.peer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub service: u16,
    pub peer: u16,
    pub gossip: u16,
    pub admin: u16,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Whole-request timeout for peer fetches; exceeds every loader timeout.
    pub timeout: Duration,
    /// How long to wait for a peer to accept a connection before loading locally.
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MembershipConfig {
    /// A node on its own: it owns every key.
    Lone,
    /// A fixed list of peer addresses (advertise IP + peer port), self included.
    Static(Vec<SocketAddr>),
    /// SWIM gossip, seeded by DNS names or addresses.
    Gossip(GossipConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// The seeds, parsed; a name stands for every address it resolves to.
    pub seeds: Vec<Seed>,
    pub resolve_interval: Duration,
    /// DNS server for seed lookups; `None`: the system resolver.
    pub dns_server: Option<SocketAddr>,
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
    /// How often updates are gossiped, and to how many members.
    pub gossip_interval: Duration,
    pub gossip_nodes: u8,
    /// An update is sent this many × ceil(log10(N + 1)) times.
    pub retransmit_multiplier: u8,
}

impl SwimConfig {
    pub fn profile(profile: SwimProfile) -> Self {
        match profile {
            SwimProfile::Lan => Self {
                probe_interval: Duration::from_secs(1),
                probe_timeout: Duration::from_millis(500),
                indirect_probes: 3,
                suspicion_multiplier: 4.0,
                gossip_interval: Duration::from_millis(200),
                gossip_nodes: 3,
                retransmit_multiplier: 4,
            },
            SwimProfile::Fast => Self {
                probe_interval: Duration::from_millis(500),
                probe_timeout: Duration::from_millis(250),
                indirect_probes: 3,
                suspicion_multiplier: 3.0,
                gossip_interval: Duration::from_millis(100),
                gossip_nodes: 3,
                retransmit_multiplier: 4,
            },
        }
    }

    fn resolve(file: &FileMembership) -> Result<Self, ConfigError> {
        let base = Self::profile(file.profile.unwrap_or_default());
        let swim = Self {
            probe_interval: file.probe_interval.unwrap_or(base.probe_interval),
            probe_timeout: file.probe_timeout.unwrap_or(base.probe_timeout),
            indirect_probes: file.indirect_probes.unwrap_or(base.indirect_probes),
            suspicion_multiplier: file
                .suspicion_multiplier
                .unwrap_or(base.suspicion_multiplier),
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
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Main cache size in bytes; the hot cache gets `hot_fraction` of it on top.
    pub capacity: u64,
    pub hot_fraction: f64,
    /// `None`: entries do not expire (an origin's max-age may still cap them).
    pub ttl: Option<Duration>,
    /// Cap on a hot copy's life; `None`: no cap beyond the owner's TTL.
    pub hot_ttl: Option<Duration>,
    /// How long an origin 404 is remembered; `None`: not at all.
    pub negative_ttl: Option<Duration>,
    pub read_only: bool,
    /// Larger values are served but not cached (and refused by PUT).
    pub max_value: u64,
    pub loader: LoaderConfig,
}

impl GroupConfig {
    pub fn hot_capacity(&self) -> u64 {
        (self.capacity as f64 * self.hot_fraction) as u64
    }
}

#[derive(Debug, Clone)]
pub enum LoaderConfig {
    /// Sleeps `delay`, then answers `Value of <key>`.
    Demo { delay: Duration },
    /// Fetches the key from an HTTP origin.
    Http {
        url: UrlTemplate,
        timeout: Duration,
        headers: HeaderMap,
    },
}

impl LoaderConfig {
    /// The longest a load may take before it fails.
    pub fn max_duration(&self) -> Duration {
        match self {
            LoaderConfig::Demo { delay } => *delay,
            LoaderConfig::Http { timeout, .. } => *timeout,
        }
    }
}

/// An origin URL with one `{key}` placeholder, split around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    pub before: String,
    pub after: String,
}

impl UrlTemplate {
    fn parse(template: &str) -> Result<Self, String> {
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

/// What the host tells us: read once at start, passed in so tests can vary it.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: String,
    /// The host's addresses, in interface order.
    pub addresses: Vec<IpAddr>,
    pub ipv6: bool,
    pub pod_name: Option<String>,
    pub pod_ip: Option<IpAddr>,
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

/// A configuration error: which field, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, when the value came from one.
    pub file: Option<PathBuf>,
    pub line: Option<u64>,
    /// The field, as a dotted path or a flag name.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(format!("config file {}", file.display()));
        }
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        if let Some(field) = &self.field {
            parts.push(format!("field `{field}`"));
        }
        if parts.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<FileConfigText, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_owned()),
        line: None,
        field: None,
        message: format!("cannot read it: {e}"),
    })?;
    Ok(FileConfigText {
        path: path.to_owned(),
        text,
    })
}

/// A config file's path and contents.
#[derive(Debug, Clone)]
pub struct FileConfigText {
    pub path: PathBuf,
    pub text: String,
}

/// Builds the node's configuration from flags (with their environment
/// variables already applied by clap), an optional config file and host facts.
pub fn resolve(
    cli: &Cli,
    file: Option<&FileConfigText>,
    host: &HostFacts,
) -> Result<Config, ConfigError> {
    let path = file.map(|f| f.path.clone());
    let in_file = |mut error: ConfigError| {
        if error.file.is_none() && error.field.as_deref().is_some_and(|f| !f.starts_with('-')) {
            error.file.clone_from(&path);
        }
        error
    };
    let parsed = match file {
        Some(file) => Some(file::parse(&file.text).map_err(|failure| ConfigError {
            file: Some(file.path.clone()),
            line: failure.line,
            field: failure.field,
            message: failure.message,
        })?),
        None => None,
    };
    resolve_parsed(cli, parsed, host).map_err(in_file)
}

fn resolve_parsed(
    cli: &Cli,
    parsed: Option<FileConfig>,
    host: &HostFacts,
) -> Result<Config, ConfigError> {
    let from_file = parsed.is_some();
    let file = parsed.unwrap_or_default();
    let file_node = file.node.unwrap_or_default();
    let file_ports = file_node.ports.unwrap_or_default();
    let file_peer = file.peer.unwrap_or_default();

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
    let node = NodeConfig {
        name,
        bind,
        service_bind,
        advertise,
        ports,
        drain: file_node.drain.unwrap_or(DEFAULT_DRAIN),
        max_key: usize::try_from(max_key).unwrap_or(usize::MAX),
    };

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

    let file_membership = file.membership.unwrap_or_default();
    let file_discovery = file.discovery.unwrap_or_default();
    let swim = SwimConfig::resolve(&file_membership)?;
    let file_peers = file_membership.static_peers.clone().unwrap_or_default();
    let file_seeds = file_discovery.seeds.unwrap_or_default();
    let kubernetes = resolve_kubernetes(file_discovery.kubernetes, host)?;
    // Flags decide the mode when they name one; else the file does.
    let mut membership = if !cli.peers.is_empty() {
        static_membership(&cli.peers, "--peer", &node)?
    } else if !cli.seeds.is_empty() {
        gossip_membership(
            cli.seeds.clone(),
            "--seed",
            cli,
            &node,
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
            &node,
            file_discovery.resolve_interval,
            swim,
        )?
    } else {
        static_membership(&file_peers, "membership.static_peers", &node)?
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
    let keyring_file = cli
        .keyring
        .clone()
        .or(file.security.and_then(|s| s.keyring_file));

    let (groups, default_group) = match (from_file, file.groups) {
        (false, _) => (demo_groups(), Some(DEMO_GROUP.to_owned())),
        (true, None) => {
            return Err(ConfigError::field(
                "groups",
                "the config file has no groups; a config file replaces the built-in demo, so it must define at least one group",
            ));
        }
        (true, Some(groups)) => (resolve_groups(groups)?, file.default_group),
    };
    if groups.is_empty() {
        return Err(ConfigError::field("groups", "define at least one group"));
    }
    if let Some(default) = &default_group
        && !groups.contains_key(default)
    {
        return Err(ConfigError::field(
            "default_group",
            format!(
                "`{default}` is not one of the groups ({})",
                group_names(&groups)
            ),
        ));
    }
    for (group_name, group) in &groups {
        let slowest = group.loader.max_duration();
        if peer.timeout <= slowest {
            return Err(ConfigError::field(
                "peer.timeout",
                format!(
                    "{} must exceed every loader timeout, and group `{group_name}` may take {}",
                    humantime::format_duration(peer.timeout),
                    humantime::format_duration(slowest)
                ),
            ));
        }
    }

    Ok(Config {
        node,
        peer,
        membership,
        keyring_file,
        default_group,
        groups,
        churn: ChurnConfig::resolve(file.churn)?,
        log_format: cli.log_format,
    })
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
pub fn parse_peer_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
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

fn demo_groups() -> BTreeMap<String, GroupConfig> {
    let heavy = GroupConfig {
        capacity: DEFAULT_CAPACITY,
        hot_fraction: DEFAULT_HOT_FRACTION,
        ttl: None,
        hot_ttl: Some(DEFAULT_HOT_TTL),
        negative_ttl: None,
        read_only: false,
        max_value: DEFAULT_MAX_VALUE,
        loader: LoaderConfig::Demo {
            delay: DEFAULT_DEMO_DELAY,
        },
    };
    BTreeMap::from([(DEMO_GROUP.to_owned(), heavy)])
}

fn group_names(groups: &BTreeMap<String, GroupConfig>) -> String {
    groups
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Group names travel unescaped in URLs, metric labels and log lines.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group name cannot be empty".into());
    }
    if name.starts_with('_') {
        return Err(format!(
            "`{name}`: group names may not start with `_` (reserved for /_stats and other built-in paths)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a usable group name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "`{name}`: group names may use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

fn resolve_groups(
    groups: BTreeMap<String, FileGroup>,
) -> Result<BTreeMap<String, GroupConfig>, ConfigError> {
    let mut resolved = BTreeMap::new();
    for (name, group) in groups {
        validate_group_name(&name).map_err(|m| ConfigError::field(format!("groups.{name}"), m))?;
        let config = resolve_group(&name, group)?;
        resolved.insert(name, config);
    }
    Ok(resolved)
}

fn nonzero(duration: Option<Duration>) -> Option<Duration> {
    duration.filter(|d| !d.is_zero())
}

fn resolve_group(name: &str, group: FileGroup) -> Result<GroupConfig, ConfigError> {
    let field = |suffix: &str| format!("groups.{name}.{suffix}");
    let capacity = group.capacity.map_or(DEFAULT_CAPACITY, |s| s.0);
    if capacity == 0 {
        return Err(ConfigError::field(field("capacity"), "must be above 0"));
    }
    let hot_fraction = group.hot_fraction.unwrap_or(DEFAULT_HOT_FRACTION);
    if !(0.0..=1.0).contains(&hot_fraction) {
        return Err(ConfigError::field(
            field("hot_fraction"),
            format!("{hot_fraction} is not between 0 and 1"),
        ));
    }
    let max_value = group.max_value.map_or(DEFAULT_MAX_VALUE, |s| s.0);
    if max_value == 0 || max_value > MAX_VALUE_LIMIT {
        return Err(ConfigError::field(
            field("max_value"),
            "must be between 1 byte and 1GiB",
        ));
    }
    let loader = match group.loader {
        FileLoader::Demo(demo) => LoaderConfig::Demo {
            delay: demo.delay.unwrap_or(DEFAULT_DEMO_DELAY),
        },
        FileLoader::Http(http) => {
            let url = UrlTemplate::parse(&http.url)
                .map_err(|m| ConfigError::field(field("loader.http.url"), m))?;
            let timeout = http.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT);
            if timeout.is_zero() {
                return Err(ConfigError::field(
                    field("loader.http.timeout"),
                    "must be above 0",
                ));
            }
            let mut headers = HeaderMap::new();
            for (header, value) in http.headers {
                let header_field = || field(&format!("loader.http.headers.{header}"));
                let header_name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| ConfigError::field(header_field(), "not a valid header name"))?;
                let header_value = HeaderValue::from_str(&value).map_err(|_| {
                    ConfigError::field(
                        header_field(),
                        "not a valid header value (no control characters)",
                    )
                })?;
                headers.insert(header_name, header_value);
            }
            LoaderConfig::Http {
                url,
                timeout,
                headers,
            }
        }
    };
    Ok(GroupConfig {
        capacity,
        hot_fraction,
        ttl: nonzero(group.ttl),
        hot_ttl: nonzero(group.hot_ttl.or(Some(DEFAULT_HOT_TTL))),
        negative_ttl: nonzero(group.negative_ttl),
        read_only: group.read_only.unwrap_or(false),
        max_value,
        loader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn host() -> HostFacts {
        HostFacts {
            hostname: "box".into(),
            addresses: vec![
                "127.0.0.1".parse().expect("ip"),
                "10.1.2.3".parse().expect("ip"),
            ],
            ipv6: true,
            pod_name: None,
            pod_ip: None,
            pod_namespace: None,
        }
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
            .expect("valid flags")
    }

    fn file(text: &str) -> FileConfigText {
        FileConfigText {
            path: "shoal.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn no_config_is_the_demo() {
        let config = resolve(&cli(&[]), None, &host()).expect("demo config");
        assert_eq!(config.default_group.as_deref(), Some("heavy"));
        assert!(matches!(
            config.groups["heavy"].loader,
            LoaderConfig::Demo { delay } if delay == Duration::from_millis(400)
        ));
        assert_eq!(config.node.name, "box");
        assert_eq!(config.node.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            config.node.advertise,
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(config.membership, MembershipConfig::Lone);
        assert_eq!(config.node.ports.service, 3000);
    }

    #[test]
    fn flags_beat_env_facts_beat_file() {
        let text = "node: { name: from-file, advertise: 10.9.9.9, ports: { service: 3100 } }\ngroups: { g: { loader: { demo: {} } } }\n";
        let mut facts = host();
        facts.pod_name = Some("from-env".into());
        facts.pod_ip = Some("10.8.8.8".parse().expect("ip"));
        let config = resolve(&cli(&[]), Some(&file(text)), &facts).expect("valid");
        assert_eq!(config.node.name, "from-env");
        assert_eq!(
            config.node.advertise,
            "10.8.8.8".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(config.node.ports.service, 3100);
        let config = resolve(
            &cli(&["--node-name", "from-flag", "--service-port", "3200"]),
            Some(&file(text)),
            &facts,
        )
        .expect("valid");
        assert_eq!(config.node.name, "from-flag");
        assert_eq!(config.node.ports.service, 3200);
        assert_eq!(config.default_group, None);
    }

    #[test]
    fn a_file_without_groups_is_refused() {
        let error =
            resolve(&cli(&[]), Some(&file("node: { name: a }\n")), &host()).expect_err("no groups");
        assert_eq!(error.field.as_deref(), Some("groups"));
        assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")));
    }

    #[test]
    fn bad_groups_are_named() {
        let cases = [
            ("groups: { _x: { loader: { demo: {} } } }", "groups._x"),
            (
                "groups: { g: { loader: { http: { url: 'http://o/x' } } } }",
                "groups.g.loader.http.url",
            ),
            (
                "groups: { g: { hot_fraction: 2, loader: { demo: {} } } }",
                "groups.g.hot_fraction",
            ),
            (
                "groups: { g: { loader: { demo: {} } } }\ndefault_group: h",
                "default_group",
            ),
            (
                "groups: { g: { loader: { demo: { delay: 5s } } } }",
                "peer.timeout",
            ),
            (
                "groups: { g: { loader: { http: { url: 'http://o/{key}', headers: { 'a b': x } } } } }",
                "groups.g.loader.http.headers.a b",
            ),
        ];
        for (text, field) in cases {
            let error = resolve(&cli(&[]), Some(&file(text)), &host()).expect_err(text);
            assert_eq!(error.field.as_deref(), Some(field), "{text}: {error}");
        }
    }

    #[test]
    fn peer_list_must_hold_this_node() {
        let args = ["--advertise", "127.0.0.2", "--peer", "127.0.0.3,127.0.0.4"];
        let error = resolve(&cli(&args), None, &host()).expect_err("self missing");
        assert_eq!(error.field.as_deref(), Some("--peer"));
        assert!(error.to_string().contains("127.0.0.2:8000"), "{error}");

        let args = [
            "--advertise",
            "127.0.0.2",
            "--peer",
            "127.0.0.2,127.0.0.3:8000,[::1]:8001",
        ];
        let config = resolve(&cli(&args), None, &host()).expect("self present");
        let MembershipConfig::Static(peers) = config.membership else {
            panic!("static membership expected");
        };
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[2], "[::1]:8001".parse::<SocketAddr>().expect("addr"));
    }

    const GROUPS: &str = "groups: { g: { loader: { demo: {} } } }\n";

    fn kubernetes_of(config: &Config) -> Option<&KubernetesConfig> {
        match &config.membership {
            MembershipConfig::Gossip(gossip) => gossip.kubernetes.as_ref(),
            other => panic!("gossip membership expected, got {other:?}"),
        }
    }

    #[test]
    fn kubernetes_cross_check_namespace_defaults() {
        let text = format!(
            "discovery: {{ seeds: [shoal-gossip], kubernetes: {{ enabled: true, service: shoal-gossip }} }}\n{GROUPS}"
        );
        let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
        assert_eq!(
            kubernetes_of(&config),
            Some(&KubernetesConfig {
                namespace: "default".into(),
                service: "shoal-gossip".into(),
            })
        );

        let mut facts = host();
        facts.pod_namespace = Some("from-env".into());
        let config = resolve(&cli(&[]), Some(&file(&text)), &facts).expect("valid");
        assert_eq!(
            kubernetes_of(&config).map(|k| k.namespace.as_str()),
            Some("from-env")
        );

        let text = format!(
            "discovery: {{ seeds: [shoal-gossip], kubernetes: {{ enabled: true, namespace: from-file, service: shoal-gossip }} }}\n{GROUPS}"
        );
        let config = resolve(&cli(&[]), Some(&file(&text)), &facts).expect("valid");
        assert_eq!(
            kubernetes_of(&config).map(|k| k.namespace.as_str()),
            Some("from-file")
        );
    }

    #[test]
    fn kubernetes_cross_check_off_unless_enabled() {
        for section in [
            "",
            ", kubernetes: { enabled: false, service: s }",
            ", kubernetes: {}",
        ] {
            let text = format!("discovery: {{ seeds: [shoal-gossip]{section} }}\n{GROUPS}");
            let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
            assert_eq!(kubernetes_of(&config), None, "{text}");
        }
        // Off, it is no error outside gossip mode either.
        let text = format!("discovery: {{ kubernetes: {{ enabled: false }} }}\n{GROUPS}");
        let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
        assert_eq!(config.membership, MembershipConfig::Lone);
    }

    #[test]
    fn kubernetes_cross_check_with_seeds_from_flags() {
        let text =
            format!("discovery: {{ kubernetes: {{ enabled: true, service: gossip }} }}\n{GROUPS}");
        let config = resolve(
            &cli(&["--seed", "gossip.ns.svc"]),
            Some(&file(&text)),
            &host(),
        )
        .expect("valid");
        assert_eq!(
            kubernetes_of(&config).map(|k| k.service.as_str()),
            Some("gossip")
        );
    }

    #[test]
    fn kubernetes_cross_check_errors_name_the_field() {
        let enabled = "kubernetes: { enabled: true, service: shoal-gossip }";
        let cases: [(&[&str], String, &str); 7] = [
            (&[], format!("discovery: {{ {enabled} }}"), "discovery.kubernetes"),
            (
                &["--advertise", "127.0.0.2", "--peer", "127.0.0.2"],
                format!("discovery: {{ {enabled} }}"),
                "discovery.kubernetes",
            ),
            (
                &[],
                "discovery: { seeds: [s], kubernetes: { enabled: true } }".into(),
                "discovery.kubernetes.service",
            ),
            (
                &[],
                "discovery: { seeds: [s], kubernetes: { enabled: true, service: Shoal_Gossip } }"
                    .into(),
                "discovery.kubernetes.service",
            ),
            (
                &[],
                "discovery: { seeds: [s], kubernetes: { enabled: true, service: 1shoal } }".into(),
                "discovery.kubernetes.service",
            ),
            (
                &[],
                "discovery: { seeds: [s], kubernetes: { enabled: true, service: s, namespace: 'a.b' } }"
                    .into(),
                "discovery.kubernetes.namespace",
            ),
            (
                &[],
                "discovery: { seeds: [s], kubernetes: { enabled: true, service: s, labels: x } }"
                    .into(),
                "discovery.kubernetes.labels",
            ),
        ];
        for (args, section, field) in cases {
            let text = format!("{section}\n{GROUPS}");
            let error = resolve(&cli(args), Some(&file(&text)), &host()).expect_err(&text);
            assert_eq!(error.field.as_deref(), Some(field), "{text}: {error}");
            assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")), "{text}");
        }
    }

    #[test]
    fn churn_is_on_by_default_and_each_part_can_be_switched_off() {
        let config = resolve(&cli(&[]), Some(&file(GROUPS)), &host()).expect("valid");
        assert_eq!(config.churn, ChurnConfig::default());
        assert_eq!(
            config.churn.previous_rings_window,
            Some(DEFAULT_PREVIOUS_RINGS_WINDOW)
        );
        let off =
            "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }";
        let config =
            resolve(&cli(&[]), Some(&file(&format!("{off}\n{GROUPS}"))), &host()).expect("valid");
        assert_eq!(config.churn, ChurnConfig::off());
        let tuned =
            "churn: { previous_rings_window: 1m, peek_timeout: 50ms, handoff_max_bytes: 1MiB }";
        let config = resolve(
            &cli(&[]),
            Some(&file(&format!("{tuned}\n{GROUPS}"))),
            &host(),
        )
        .expect("valid");
        assert_eq!(
            config.churn,
            ChurnConfig {
                previous_rings_window: Some(Duration::from_secs(60)),
                peek_timeout: Duration::from_millis(50),
                handoff_max_bytes: Some(1 << 20),
                successor_failover: true,
            }
        );
        let zero_window = format!("churn: {{ previous_rings_window: 0s }}\n{GROUPS}");
        let config = resolve(&cli(&[]), Some(&file(&zero_window)), &host()).expect("valid");
        assert_eq!(config.churn.previous_rings_window, None);
    }

    #[test]
    fn churn_errors_name_the_field() {
        for (section, field) in [
            ("churn: { peek_timeout: 0s }", "churn.peek_timeout"),
            ("churn: { handoff: maybe }", "churn.handoff"),
            (
                "churn: { handoff_max_bytes: lots }",
                "churn.handoff_max_bytes",
            ),
            ("churn: { warm: true }", "churn"),
        ] {
            let text = format!("{section}\n{GROUPS}");
            let error = resolve(&cli(&[]), Some(&file(&text)), &host()).expect_err(&text);
            assert!(
                error.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{text}: {error:?}"
            );
        }
    }

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

    #[test]
    fn url_templates() {
        assert!(UrlTemplate::parse("http://o:8080/users/{key}?x=1").is_ok());
        assert!(UrlTemplate::parse("http://o/{key}/{key}").is_err());
        assert!(UrlTemplate::parse("ftp://o/{key}").is_err());
        assert!(UrlTemplate::parse("http://{key}/x").is_err());
    }

    #[test]
    fn error_names_file_line_and_field() {
        let error = resolve(
            &cli(&[]),
            Some(&file(
                "groups:\n  g:\n    ttl: forever\n    loader: { demo: {} }\n",
            )),
            &host(),
        )
        .expect_err("bad duration");
        let text = error.to_string();
        assert!(
            text.starts_with("config file shoal.yaml, line 3, field `groups.g.ttl`"),
            "{text}"
        );
    }

    #[test]
    fn seeds_are_parsed_once_and_bad_ones_name_the_field() {
        let text = format!("discovery: {{ seeds: ['shoal-gossip', '10.0.0.7:7000'] }}\n{GROUPS}");
        let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
        let MembershipConfig::Gossip(gossip) = &config.membership else {
            panic!("gossip membership expected");
        };
        let seeds: Vec<String> = gossip.seeds.iter().map(Seed::to_string).collect();
        assert_eq!(seeds, ["shoal-gossip:7946", "10.0.0.7:7000"]);

        let error =
            resolve(&cli(&["--seed", "a.example,b:x"]), None, &host()).expect_err("bad seed");
        assert_eq!(error.field.as_deref(), Some("--seed"));
        assert_eq!(error.file, None);
        assert!(error.to_string().contains("seed \"b:x\": port"), "{error}");

        let text = format!("discovery: {{ seeds: ['[fd00::7'] }}\n{GROUPS}");
        let error = resolve(&cli(&[]), Some(&file(&text)), &host()).expect_err("bad seed");
        assert_eq!(error.field.as_deref(), Some("discovery.seeds"));
        assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")));
    }
}
