#![warn(missing_docs)]
//! # shoal
//!
//! A distributed read-through cache: groupcache semantics (consistent-hash
//! ownership, singleflight loading, a main and a hot cache, peer fetches)
//! with memberlist-style SWIM gossip membership, for Kubernetes pods. It
//! runs as the `shoal` binary beside an app, which calls it over HTTP on
//! `localhost:3000`, or embedded in a Rust service as this library.
//!
//! # Embedding
//!
//! A [`Config`] (from YAML in the config file's format, or from flags and a
//! file as the binary builds it), a [`Loader`] per group, and the
//! [`Listeners`] to serve on: [`Node::builder`] starts a node and returns a
//! [`NodeHandle`], whose [`GroupHandle`]s get, put and delete in the
//! process. The node still serves the service, peer and admin APIs, so
//! embedded nodes, sidecar nodes and `kubectl port-forward` all meet in one
//! cluster. See `examples/embedded.rs` and the README.
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal::{Config, Fresh, Listeners, LoadError, Loader, Node, Value};
//!
//! struct Users;
//!
//! impl Loader for Users {
//!     async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
//!         let row = format!("user {key}"); // the slow part: a database, say
//!         Ok(Fresh::new(Value::new(row, None)).with_ttl(Duration::from_secs(60)))
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_yaml("membership: { static_peers: [10.0.0.1, 10.0.0.2] }")?;
//! let listeners = Listeners::bind(&config)?;
//! let node = Node::builder(config).loader("users", Users).start(listeners).await?;
//! let users = node.group("users").expect("added by the builder");
//! let user = users.get("42").await?; // loaded once for the whole cluster
//! # drop(user);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Imports point down this list, never up or sideways between the two HTTP
//! faces (`tests/suite/layering.rs` checks it); the pure parts know nothing
//! of HTTP.
//!
//! - `node`: the wiring. [`Node::builder`] → [`NodeHandle`]; the membership
//!   source (fixed or gossip, one struct), rings from membership, the
//!   ordered shutdown, and serving each TCP port under `limits:`
//!   (connection caps, head, idle and body timeouts; the open-file limit
//!   raised). The only module that joins the others.
//! - `fuzzing` (feature `fuzzing`, hidden): the fuzz targets' entry points
//!   under `fuzz/`, which run bytes through the parsers below (gossip
//!   datagrams, signed peer requests, service routes, config files) and
//!   check their invariants; and the corpora's seeds.
//! - `http`: the service API (apps, port 3000) and the admin API (metrics,
//!   health, members, ring, stats; port 9090), on axum.
//! - `peer`: the node-to-node API (port 8000): its wire format, the reqwest
//!   client the cache uses, and the axum server that answers.
//! - `wire`: what those two faces share: the JSON error response, the
//!   header names, body reading under a deadline.
//! - `loader`: the built-in loaders, [`DemoLoader`] and HTTP origins.
//! - `membership`: who is in the cluster, published as snapshots: a fixed
//!   list, or SWIM gossip (foca in a sans-I/O core, driven by one task;
//!   identities, timings, timers and invalidation broadcasts as pure
//!   parts). `sim` (feature `sim`, hidden): the membership simulator, many
//!   cores over a simulated network in virtual time.
//! - [`discovery`]: gossip seeds, re-resolved through DNS; whom to announce
//!   to; the Kubernetes EndpointSlice cross-check (the only place kube is
//!   used).
//! - `cache`: groups: main and hot caches (our own LRU and moka, weighed in bytes),
//!   singleflight, TTLs, invalidation epochs, hot admission, stats; the
//!   [`Loader`] trait and [`Fresh`], the one value-with-freshness type;
//!   freshness (refresh ahead, stale-while-revalidate, stale-if-error, TTL
//!   jitter: pure stages of an entry's life) and revalidation with the
//!   origin's validators; origin protection (a bound on loads in flight
//!   with a bounded queue, and a circuit breaker); and
//!   what keeps the cache warm through churn: previous-owner peeks,
//!   successor failover, handoff planning, write versions (a hybrid logical
//!   clock) and the record of superseded writes. Reads the rings from a
//!   snapshot; reaches peers through a trait.
//! - `ring`: the consistent-hash ring over member ids, and the history of
//!   rings that says whom to ask for a key that moved. Pure.
//! - [`config`]: file + environment + flags → a validated [`Config`]; the
//!   gossip [`config::Seed`]. Pure but for reading the file.
//! - `metrics`: the Prometheus registry and pre-labelled handles.
//! - `security`: the keyring, sealed gossip packets and signed peer
//!   requests (bound to their receiver, verified from the headers before
//!   the body is read).
//! - `error_kind`: the one enum of error kinds both HTTP faces answer with
//!   (its wire word, HTTP status and metric label); `error_chain`: walking
//!   an error's causes.

pub mod config;
pub mod discovery;

mod cache;
mod error_chain;
mod error_kind;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod loader;
mod membership;
mod metrics;
#[cfg(feature = "sim")]
#[doc(hidden)]
pub use membership::sim;
mod node;
mod peer;
mod ring;
mod security;
mod wire;

pub use cache::{
    Fetched, Fresh, GroupError, GroupStats, LoadError, Loader, NotModified, Reloaded, Source,
    StaleDirectives, StoreStats, Validators, Value,
};
pub use config::{Config, ConfigError};
pub use loader::DemoLoader;
pub use membership::{MemberInfo, MemberState};
pub use node::{
    GroupHandle, Listeners, Node, NodeBuilder, NodeError, NodeHandle, install_crypto_provider, run,
};
