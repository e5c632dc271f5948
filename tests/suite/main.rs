//! The integration suite, in one test binary so that its tests run side by
//! side (`RUST_TEST_THREADS` in `.cargo/config.toml`) and the crate is
//! linked into one test executable rather than one per file.
//!
//! Every module has a loopback block of its own (`127.0.X.0/24`, see
//! [`common::Addrs`]), so nodes of tests running at once never share an
//! address. Nodes run in the test process unless the process is the point.
//!
//! - `node`: one node: routing, errors, limits, stats, TTLs; and, as the
//!   `shoal` binary, the demo default, SIGTERM and config exit codes.
//! - `cluster`: fixed-membership clusters: singleflight across nodes,
//!   ownership, invalidation, peer errors, a killed owner.
//! - `gossip`: SWIM clusters seeded by a DNS name: convergence, leaving,
//!   failure detection, rejoining, keyrings, junk datagrams.
//! - `churn`: restarts, rolls, scale-out and a killed owner with the cache
//!   kept warm: previous-owner peeks, handoff, successor failover.
//! - `embedded`: shoal as a library: `Node::builder`, Rust loaders,
//!   caller-bound listeners, `NodeHandle` and `GroupHandle`.
//! - `freshness`: refresh ahead, stale-while-revalidate, stale-if-error,
//!   revalidation, the origin's load bound and circuit breaker, TTL
//!   jitter, against a controllable origin.
//! - `discovery`: seed resolution against a real DNS server, and the seed
//!   loop.
//! - `kubernetes`: the EndpointSlice cross-check against a fake API server
//!   (`shoal` processes: `KUBECONFIG` is per process).
//! - `limits`: bounded connections (`limits:`) probed over raw TCP, and
//!   unsigned or read-only peer writes.
//! - `layering`: imports point down the layers of `src/lib.rs`; external
//!   crates stay where the design puts them.
//!
//! The partition test (`tests/partition.rs`) is a binary of its own: it
//! needs root and network namespaces, and says when it was skipped.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/dns.rs"]
mod dns;
#[path = "../common/fake_kube.rs"]
mod fake_kube;

mod churn;
mod cluster;
mod discovery;
mod embedded;
mod freshness;
mod gossip;
mod kubernetes;
mod layering;
mod limits;
mod node;
