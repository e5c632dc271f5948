//! Configuration: the config file, environment and flags merged into one
//! validated [`Config`]. Flags beat environment, environment beats the file,
//! the file beats defaults. A config file replaces the built-in demo group
//! entirely. No I/O here beyond reading the file; facts about the host come
//! in as a [`HostFacts`] value so resolution stays testable.
//!
//! # Layout
//!
//! - `types`: the validated types the rest of the node reads ([`Config`]
//!   and its sections).
//! - `resolve`: [`resolve`], file + flags + host facts into a [`Config`],
//!   one file per section (node, membership, groups, churn).
//! - `seed`: [`Seed`], a gossip seed `HOST[:PORT]`, parsed once here and
//!   resolved by [`crate::discovery`]. Pure.
//! - `file`: the config file as written, and [`read_file`].
//! - `cli`: the flags, [`Cli`].
//! - `host`: [`HostFacts`], what the host says about itself.
//! - `error`: [`ConfigError`]; `lines`: the line a field stands on, for
//!   errors found after parsing.
//! - `units`: sizes and durations as written; `boolean`: booleans as
//!   written (`true`/`false`, nothing else).
//! - `checks`: [`check`], what start-up needs of a whole [`Config`]
//!   beyond each field's own checks (ports that do not collide, a
//!   `max_value` whose entry fits `capacity`), run by `resolve` and again
//!   by the node for configs built in code.
//! - `limits`: [`LimitsConfig`], the bounds on every connection. Pure.

mod boolean;
mod checks;
mod cli;
mod error;
mod file;
mod host;
mod limits;
mod lines;
mod resolve;
mod seed;
mod types;
mod units;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use checks::{ENTRY_OVERHEAD, check};
pub use cli::{Cli, Command, LogFormat};
pub use error::ConfigError;
pub use file::{FileConfigText, SwimProfile, read_file};
pub use host::HostFacts;
pub use limits::{ConnectionCaps, LimitsConfig};
pub use resolve::resolve;
#[cfg(feature = "fuzzing")]
pub(crate) use resolve::resolve_embedded;
pub use seed::{Seed, SeedError, SeedHost};
pub use types::{
    ChurnConfig, CircuitBreaker, Config, Freshness, GossipConfig, GroupConfig, KubernetesConfig,
    LoaderConfig, MembershipConfig, NodeConfig, OriginLimits, PeerConfig, Ports, SwimConfig,
    UrlTemplate,
};

const DEFAULT_SERVICE_PORT: u16 = 3000;
const DEFAULT_PEER_PORT: u16 = 8000;
const DEFAULT_GOSSIP_PORT: u16 = 7946;
const DEFAULT_ADMIN_PORT: u16 = 9090;
const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
const DEFAULT_MAX_KEY: usize = 4 * 1024;
const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_CAPACITY: u64 = 64 << 20;
const DEFAULT_HOT_FRACTION: f64 = 0.125;
const DEFAULT_HOT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_VALUE: u64 = 1 << 20;
const DEFAULT_DEMO_DELAY: Duration = Duration::from_millis(400);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_PREVIOUS_RINGS_WINDOW: Duration = Duration::from_secs(5 * 60);
const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_millis(100);
const DEFAULT_HANDOFF_MAX_BYTES: u64 = 256 << 20;
/// The namespace of the cross-check's Service when neither the file nor
/// `POD_NAMESPACE` names one.
const DEFAULT_NAMESPACE: &str = "default";
/// The built-in demo group's name.
const DEMO_GROUP: &str = "heavy";
/// moka weighs entries in `u32`; keep values well below that.
const MAX_VALUE_LIMIT: u64 = 1 << 30;
