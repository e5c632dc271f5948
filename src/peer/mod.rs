//! The peer API: how nodes fetch values from their owners and drop each
//! other's copies. `protocol` is the wire format both sides share, `client`
//! the requesting side (reqwest), `server` the answering side (axum).

pub mod client;
pub mod protocol;
pub mod server;

#[cfg(test)]
mod tests;
