//! A running node: [`Node::builder`] takes a [`Config`] and the loaders a
//! program brings, [`NodeBuilder::start`] serves on the [`Listeners`] it is
//! given and returns a [`NodeHandle`], and [`NodeHandle::shutdown`] stops in
//! order. [`run`] is the binary's whole life: start, wait for a signal,
//! shut down.
//!
//! - `start`: the wiring, each channel named where it is made.
//! - `membership`: the membership source, fixed or gossip, in one struct.
//! - `rings`: membership snapshots into ring snapshots.
//! - `shutdown`: not ready → leave → hand off → drain → stop.
//! - `listeners`: the TCP listeners; `serve`: serving one of them under
//!   `limits:` (connection cap, head, idle and body timeouts);
//!   `fd_limit`: the open-file limit raised, and the caps fitted under it.

mod fd_limit;
mod handle;
mod listeners;
mod membership;
mod rings;
mod serve;
mod shutdown;
mod start;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use handle::{GroupHandle, NodeHandle};
pub use listeners::Listeners;

use crate::cache::{DynLoader, Loader};
use crate::config::{Config, ConfigError};
use crate::discovery::DiscoveryError;
use crate::security::KeyringError;

/// Why a node could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A listener's address is in use or not this host's.
    #[error("cannot listen on {addr} ({what} port): {source}")]
    Bind {
        /// Which port: `service`, `peer` or `admin`.
        what: &'static str,
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HTTP client for peers and origins could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The config fails a check start-up makes of the whole of it
    /// ([`crate::config::check`]): ports that collide, a `max_value` that
    /// does not fit `capacity`.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The keyring file is missing or malformed.
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    /// Gossip seeds or the DNS resolver could not be set up.
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// A group of the config has no `loader`, and the program gave none.
    #[error(
        "group `{0}` has no loader: name one in its config, or give one with NodeBuilder::loader"
    )]
    NoLoader(String),
    /// Gossip's UDP socket could not be bound.
    #[error("cannot listen on {addr} (gossip port): {source}")]
    GossipBind {
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl NodeError {
    /// The process exit status for this error: 2 for a bad file named by
    /// the config (as for config errors), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodeError::Keyring(_) | NodeError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Where a node starts: `Node::builder(config).loader(..).start(listeners)`.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use shoal::{Config, DemoLoader, Listeners, Node};
///
/// let config = Config::from_yaml("groups: { users: { capacity: 16MiB, loader: demo } }")?;
/// let listeners = Listeners::bind(&config)?;
/// let node = Node::builder(config)
///     .loader("users", DemoLoader::new(std::time::Duration::from_millis(10)))
///     .start(listeners)
///     .await?;
/// let users = node.group("users").expect("configured");
/// let value = users.get("42").await?;
/// println!("{:?} from {}", value.fresh.value.bytes, value.source.as_str());
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Node {}

impl Node {
    /// Runs every check a node makes of `config` before it serves (the
    /// whole-config checks, the keyring file read and parsed), without
    /// binding or starting anything: what `shoal check-config` runs.
    /// Binding (a port in use) is found out only by starting.
    pub fn check(config: &Config) -> Result<(), NodeError> {
        start::preflight(config).map(drop)
    }

    /// A node to run with `config`.
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder {
            config,
            loaders: BTreeMap::new(),
        }
    }
}

/// A node not yet started: its config and the loaders the program brings.
pub struct NodeBuilder {
    config: Config,
    loaders: BTreeMap<String, Arc<dyn DynLoader>>,
}

impl NodeBuilder {
    /// Loads group `group`'s values with `loader`, in place of the loader
    /// the config names for it. A group the config does not have is added,
    /// with the default settings (see [`crate::config::GroupConfig`]).
    pub fn loader(mut self, group: &str, loader: impl Loader) -> Self {
        self.loaders.insert(group.to_owned(), Arc::new(loader));
        self
    }

    /// Starts serving on `listeners` and returns at once: with gossip, the
    /// node joins in the background ([`NodeHandle::ready`] waits for it).
    pub async fn start(self, listeners: Listeners) -> Result<NodeHandle, NodeError> {
        start::start(self.config, self.loaders, listeners).await
    }
}

/// Runs a node on the listeners its config names until `shutdown`
/// resolves, then shuts it down in order: the `shoal` binary's whole life.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    // Config errors (exit 2) before a port in use (exit 1).
    Node::check(&config)?;
    let listeners = Listeners::bind(&config)?;
    let node = Node::builder(config).start(listeners).await?;
    shutdown.await;
    node.shutdown().await;
    Ok(())
}

/// The node's background loops (keyring watch, ring follower, gossip
/// helpers): stopped last, and aborted if the node is dropped.
pub(crate) struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Background {
    fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    fn stop(&mut self) {
        self.stop.cancel();
        self.tasks.abort_all();
    }
}

/// One TLS crypto provider (ring) for every client in the process: reqwest
/// is built without one of its own, and kube uses ring, so they cannot clash.
pub fn install_crypto_provider() {
    // An error means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
