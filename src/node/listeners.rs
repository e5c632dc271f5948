//! The TCP listeners a node serves on.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::NodeError;
use crate::config::Config;

/// The listeners a node serves its three HTTP faces on: bound before the
/// node starts, so that a port in use is reported at once, and so a caller
/// (a test, an embedding program) can bind its own, on port 0 say.
///
/// Gossip's UDP socket is not here: it is bound from the config
/// (`node.bind`, `node.ports.gossip`) when membership is gossip.
#[derive(Debug)]
pub struct Listeners {
    /// The service API: apps' GET, PUT and DELETE (`node.ports.service`).
    pub service: TcpListener,
    /// The peer API: other nodes' fetches (`node.ports.peer`).
    pub peer: TcpListener,
    /// The admin API: metrics, health, members (`node.ports.admin`).
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses the config names.
    pub fn bind(config: &Config) -> Result<Self, NodeError> {
        let node = &config.node;
        Ok(Self {
            service: bind_tcp(
                "service",
                SocketAddr::new(node.service_bind, node.ports.service),
            )?,
            peer: bind_tcp("peer", SocketAddr::new(node.bind, node.ports.peer))?,
            admin: bind_tcp("admin", SocketAddr::new(node.bind, node.ports.admin))?,
        })
    }

    /// The address of each listener, in the order service, peer, admin.
    pub(crate) fn addrs(&self) -> std::io::Result<[SocketAddr; 3]> {
        Ok([
            self.service.local_addr()?,
            self.peer.local_addr()?,
            self.admin.local_addr()?,
        ])
    }
}

/// A TCP listener; `::` accepts IPv4 too.
fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    let error = |source| NodeError::Bind { what, addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(error)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(error)?;
    }
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    socket.bind(&addr.into()).map_err(error)?;
    socket.listen(1024).map_err(error)?;
    TcpListener::from_std(socket.into()).map_err(error)
}
