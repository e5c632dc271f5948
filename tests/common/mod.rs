//! Test harness: real shoal nodes on loopback addresses, and a counting
//! HTTP origin inside the test.
//!
//! - [`Node`]: one node with its own temp dir (config file, log file). By
//!   default it runs in the test process, as mini-redis's tests run its
//!   server: the library's `shoal::Node` on listeners bound to the node's
//!   address, on a thread and a single-threaded runtime of its own, from
//!   the same flags and config file the binary would get. Where the process
//!   is the point (signals, exit codes, environment variables, network
//!   namespaces) [`NodeSpec::in_own_process`] starts the `shoal` binary instead.
//!   Either way: killed on drop (an in-process node by dropping its runtime,
//!   which closes every socket as SIGKILL would), its log printed when the
//!   test failed; [`Node::terminate`] and [`Node::wait_exit`] check clean
//!   shutdowns.
//! - [`Cluster`]: N nodes with fixed membership (`--peer` lists all of them).
//! - [`Origin`]: an axum server on `127.0.0.1:0` that records every request as
//!   it arrived (raw path, query, headers) and answers by key prefix.
//! - [`ControlledOrigin`]: an origin whose answers the test sets per key
//!   while it runs (delay, status, hang, versioned body, `ETag`,
//!   `Last-Modified` with `304`s, `Cache-Control`), counting requests,
//!   conditional requests, `304`s and the most in flight at once.
//! - [`Config`]: the YAML config file the nodes get.
//! - [`Addrs`]: hands out loopback addresses `127.0.X.Y`, one `X` per test file
//!   (test files run one after another, tests within a file run in parallel),
//!   so every node uses the standard ports on an address of its own.
//! - [`poll_until`]: every wait is a poll for a condition with a deadline.
//!
//! # Layout
//!
//! One file per job: `wait`, `addrs`, `http` (the client, whole answers, raw
//! requests, keys as path segments), `config`, `node` (the spec and the
//! handle), `in_process` and `process` (the two ways a node runs),
//! `cluster`, `origin`, `controlled_origin`, `keyring`. This file re-exports what the tests use, so every
//! path is `common::X`. `dns.rs`, `fake_kube.rs` and `netns.rs` beside it
//! are modules of the test crates themselves, each included by `#[path]`
//! where it is needed.
#![allow(dead_code)]

mod addrs;
mod cluster;
mod config;
mod controlled_origin;
mod http;
mod in_process;
mod keyring;
mod node;
mod origin;
mod process;
mod wait;

// Each test crate uses a part of the harness: a re-export one of them
// leaves unused is no mistake (as `dead_code` above).
#[allow(unused_imports)]
pub use addrs::Addrs;
#[allow(unused_imports)]
pub use cluster::Cluster;
#[allow(unused_imports)]
pub use config::Config;
#[allow(unused_imports)]
pub use controlled_origin::{Behaviour, ControlledOrigin, Counts};
#[allow(unused_imports)]
pub use http::{Resp, enc, http_client, pct_decode, raw_request};
#[allow(unused_imports)]
pub use keyring::keyring_file;
#[allow(unused_imports)]
pub use node::{ADMIN_PORT, Node, NodeSpec, PEER_PORT, READY_TIMEOUT, SERVICE_PORT, parse_ip};
#[allow(unused_imports)]
pub use origin::{HANG, Origin, SLOW, Seen, serve_origin};
#[allow(unused_imports)]
pub use process::{run_to_exit, shoal_command, shoal_command_wrapped};
#[allow(unused_imports)]
pub use wait::{WAIT, poll_until};
