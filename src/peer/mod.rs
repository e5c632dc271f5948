//! The peer API: how nodes fetch values from their owners and drop each
//! other's copies. `protocol` is the wire format both sides share, `client`
//! the requesting side (over `connections`, one HTTP/2 connection per peer),
//! `server` the answering side (axum).

pub mod client;
pub(crate) mod coalesce;
mod connections;
pub(crate) mod cork;
pub mod protocol;
pub mod server;

#[cfg(test)]
mod tests;
