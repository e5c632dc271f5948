//! What the benches in `examples/` share (churn_bench and freshness_bench
//! include it with `#[macro_use] #[path = "../bench_common/mod.rs"] mod
//! bench_common;`, at their root and before their own modules). No
//! `main.rs`, so cargo does not take this folder for an example.
//!
//! # Layout
//!
//! - `progress`: the `progress!` lines on stdout and the run's clock;
//! - `entry`: what `main` does around the run (exit 1 on an error);
//! - `flags`: `--flag value` parsing and `--help`;
//! - `node_process`: a `shoal` node as a child process, with its log file;
//! - `binary`: one-shot runs of the binary: `--version`, `check-config`;
//! - `run_info`: the tree, the load average and the machine, for a
//!   report's header;
//! - `retry`: which client failures are worth the one retry;
//! - `messages`: error messages counted by text, boundedly;
//! - `format`: times, numbers and key names as text.

#[macro_use]
pub mod progress;

pub mod binary;
pub mod entry;
pub mod flags;
pub mod format;
pub mod messages;
pub mod node_process;
pub mod retry;
pub mod run_info;
