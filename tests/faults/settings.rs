//! What a run does: its size and seed (from the environment), the node
//! config, and the bounds the checker holds the cluster to.

use std::net::SocketAddr;
use std::time::Duration;

/// How long a main-cache entry lives (the group's `ttl`).
pub const TTL: Duration = Duration::from_secs(3);
/// How long a hot copy lives at most (the group's `hot_ttl`).
pub const HOT_TTL: Duration = Duration::from_secs(2);
/// The origin loader's timeout: a load started before a write may still
/// be answered this long after it.
pub const LOADER_TIMEOUT: Duration = Duration::from_secs(2);
/// `peer.timeout`: above the loader timeout, as config requires.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// A client's whole-request timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);
/// Time between one client's requests.
pub const CLIENT_PERIOD: Duration = Duration::from_millis(15);
/// The bounded key set the clients read and write.
pub const KEYS: usize = 40;

/// The invalidation bound while every node runs and reaches every other:
/// gossip dissemination of the invalidation (fast SWIM profile: a gossip
/// round every 100 ms, each update sent several times), with room for a
/// busy machine.
pub const QUIET_BOUND: Duration = Duration::from_secs(3);
/// The bound when a partition, packet loss or a stopped node may have kept
/// the invalidation from some node: every copy there lives at most `TTL`
/// from when it was stored (hot copies at most `HOT_TTL`, and never longer
/// than the owner's time left), and a value is stored at most
/// `LOADER_TIMEOUT` after the origin produced it; one more second for the
/// time a copy spends between nodes and scheduling on a busy machine.
pub const FAULT_BOUND: Duration = Duration::from_secs(TTL.as_secs() + LOADER_TIMEOUT.as_secs() + 1);
/// Every node's resident set stays below this (a debug build with a 16 MiB
/// cache; idle it is about a fifth of this).
pub const RSS_LIMIT_KIB: u64 = 192 * 1024;
/// How long membership may take to converge after a heal or a restart:
/// failure detection, DNS re-resolution (every second) and a join, on a
/// busy machine.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// A SIGTERM'd node's drain (1 s) and handoff, on a busy machine.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(20);
/// The load runs this long before the first fault and after the last.
pub const QUIET_EDGE: Duration = Duration::from_secs(3);

/// A run's size and seed, from `FAULTS_NODES`, `FAULTS_SECS`,
/// `FAULTS_CLIENTS`, `FAULTS_SEED` and `FAULTS_REPORT`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodes: usize,
    /// How long the chaos loop injects faults.
    pub chaos: Duration,
    pub clients: usize,
    pub seed: u64,
    /// Where to write the report as well as printing it.
    pub report: Option<String>,
}

impl Settings {
    /// The CI defaults (5 nodes, 75 s of chaos, 6 clients, a random seed),
    /// each overridable by its variable. Panics naming a variable that is
    /// not a number in range.
    pub fn from_env() -> Self {
        let nodes = number("FAULTS_NODES", 5);
        assert!(
            (3..=20).contains(&nodes),
            "FAULTS_NODES must be 3 to 20, not {nodes}"
        );
        let clients = number("FAULTS_CLIENTS", 6);
        assert!(clients >= 1, "FAULTS_CLIENTS must be at least 1");
        Self {
            nodes: usize::try_from(nodes).expect("small"),
            chaos: Duration::from_secs(number("FAULTS_SECS", 75)),
            clients: usize::try_from(clients).expect("small"),
            seed: std::env::var("FAULTS_SEED").map_or_else(
                |_| rand::random(),
                |v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("FAULTS_SEED must be a number, not {v:?}"))
                },
            ),
            report: std::env::var("FAULTS_REPORT")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }
}

fn number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        _ => default,
    }
}

/// The config file every node gets: one group `data` on the test's origin,
/// with the short TTLs that make the fault bound a few seconds; the fast
/// SWIM profile and DNS re-resolution every second, so heals and restarts
/// converge quickly.
pub fn node_config(origin: SocketAddr) -> String {
    format!(
        "node: {{ drain: 1s }}\n\
         peer: {{ timeout: {peer}s, connect_timeout: 250ms }}\n\
         discovery: {{ resolve_interval: 1s }}\n\
         membership: {{ profile: fast }}\n\
         default_group: data\n\
         groups:\n  \
           data: {{ capacity: 16MiB, ttl: {ttl}s, hot_ttl: {hot}s, \
         loader: {{ http: {{ url: \"http://{origin}/data/{{key}}\", timeout: {loader}s }} }} }}\n",
        peer = PEER_TIMEOUT.as_secs(),
        ttl = TTL.as_secs(),
        hot = HOT_TTL.as_secs(),
        loader = LOADER_TIMEOUT.as_secs(),
    )
}
