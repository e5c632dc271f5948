//! # shoal
//!
//! A distributed read-through cache node: groupcache semantics (consistent-hash
//! ownership, singleflight loading, a main and a hot cache, peer fetches)
//! served over HTTP, with memberlist-style SWIM gossip membership, for
//! Kubernetes pods.
//!
//! # Layout
//!
//! Dependencies point down the list: the pure parts know nothing of HTTP.
//!
//! - [`node`]: wiring. Builds everything from a [`config::Config`], serves,
//!   shuts down in order. The only module that joins the others.
//! - [`http`]: the service API (apps, port 3000) and the admin API (metrics,
//!   health, members, ring, stats; port 9090), on axum.
//! - [`peer`]: the node-to-node API (port 8000): its wire format, the reqwest
//!   client the cache uses, and the axum server that answers.
//! - [`wire`]: what those two faces share, so neither imports the other:
//!   the JSON error response, the one [`wire::ErrorKind`] of every error
//!   either answers with (defined below the cache, which names kinds), the
//!   shared header names, body reading.
//! - [`membership`]: who is in the cluster, published as snapshots: a fixed
//!   list, or SWIM gossip (foca, driven by one task; identities, timings,
//!   timers and invalidation broadcasts as pure parts).
//! - [`discovery`]: gossip seeds, re-resolved through DNS; whom to announce to;
//!   the Kubernetes EndpointSlice cross-check (the only place kube is used).
//! - [`cache`]: groups: main and hot caches (moka, weighed in bytes),
//!   singleflight, TTLs, invalidation epochs, hot admission, stats; and what
//!   keeps them warm through churn: previous-owner peeks, successor
//!   failover, handoff planning, write versions (a hybrid logical clock) and
//!   the record of superseded writes. Reads the rings from a snapshot;
//!   reaches peers through a trait.
//! - [`loader`]: origins: the demo loader and HTTP origins.
//! - [`ring`]: consistent-hash ring over member ids, and the history of
//!   rings that says whom to ask for a key that moved. Pure.
//! - [`config`]: file + environment + flags → a validated config. Pure but
//!   for reading the file.
//! - [`metrics`]: the Prometheus registry and pre-labelled handles.
//! - [`security`]: the keyring, sealed gossip packets and signed peer requests.

pub mod cache;
pub mod config;
pub mod discovery;
mod error_chain;
mod error_kind;
pub mod http;
pub mod loader;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod ring;
pub mod security;
pub mod wire;

pub use cache::{Fetched, Fresh, GroupError, GroupStats, LoadError, Loader, Source, Value};
pub use config::{Config, ConfigError};
pub use loader::DemoLoader;
pub use membership::{MemberInfo, MemberState};
pub use node::{GroupHandle, Listeners, Node, NodeBuilder, NodeError, NodeHandle};
