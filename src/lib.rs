//! # shoal
//!
//! A distributed read-through cache node: groupcache semantics (consistent-hash
//! ownership, singleflight loading, a main and a hot cache, peer fetches) served
//! over HTTP, with membership from a fixed peer list.
//!
//! # Layout
//!
//! - [`config`]: file + environment + flags → a validated [`config::Config`].
//! - [`ring`]: consistent-hash ring over member ids; pure, no I/O.

pub mod config;
pub mod ring;
