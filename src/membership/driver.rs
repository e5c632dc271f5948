//! The gossip driver: the one task that owns the `Foca` instance.
//!
//! It is fed datagrams from the UDP socket, its own timers (one ordered
//! queue) and commands from the node (announce, invalidate, leave). After
//! every call into foca it drains, in order, what to send, what to schedule
//! and what happened, then publishes the membership as a snapshot.
//! Nothing else touches foca, so there is no lock around it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::OwnedNotification;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::Members;
use super::core::{Core, GOSSIP_LABEL, max_packet};
use super::identity::NodeId;
use super::invalidation::Invalidation;
use super::swim::MAX_DATAGRAM;
use crate::config::SwimConfig;
use crate::metrics::Metrics;
use crate::security::{self, Keyring};

/// A datagram this large cannot be ours; reading one more byte tells.
const RECEIVE_BUFFER: usize = MAX_DATAGRAM + 1;
/// Kernel receive buffer asked for the gossip socket.
const RECEIVE_SOCKET_BUFFER: usize = 4 << 20;

pub struct GossipSettings {
    pub identity: NodeId,
    /// The address the UDP socket binds.
    pub bind: SocketAddr,
    pub swim: SwimConfig,
    pub keyring: Option<watch::Receiver<Arc<Keyring>>>,
}

enum Command {
    Announce(SocketAddr),
    Invalidate(Invalidation),
    Leave(oneshot::Sender<()>),
}

/// The node's handle on gossip.
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Members>>,
    joined: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Gossip {
    /// Binds the gossip socket and starts the driver. Invalidations other
    /// members send arrive on `invalidations`.
    pub async fn start(
        settings: GossipSettings,
        metrics: Arc<Metrics>,
        invalidations: mpsc::UnboundedSender<Invalidation>,
    ) -> std::io::Result<Self> {
        let socket = bind_udp(settings.bind)?;
        let core = Core::new(
            settings.identity,
            settings.swim,
            max_packet(settings.keyring.is_some()),
            StdRng::from_rng(&mut rand::rng()),
            invalidations,
        );
        let members = Arc::new(core.snapshot());
        let (members_tx, members_rx) = watch::channel(members);
        let (joined_tx, joined_rx) = watch::channel(false);
        let (commands_tx, commands_rx) = mpsc::channel(1024);
        let driver = Driver {
            core,
            socket,
            keyring: settings.keyring,
            members_tx,
            joined_tx,
            metrics,
        };
        let task = tokio::spawn(driver.run(commands_rx));
        Ok(Self {
            commands: commands_tx,
            members: members_rx,
            joined: joined_rx,
            task,
        })
    }

    /// Membership snapshots, this node included.
    pub fn members(&self) -> watch::Receiver<Arc<Members>> {
        self.members.clone()
    }

    /// Turns true once this node has joined someone.
    pub fn joined(&self) -> watch::Receiver<bool> {
        self.joined.clone()
    }

    /// A handle for announcing and invalidating from other tasks.
    pub fn sender(&self) -> GossipSender {
        GossipSender {
            commands: self.commands.clone(),
        }
    }

    /// Tells the cluster this node is leaving, so members drop it at once
    /// rather than after failure detection, and stops the driver.
    pub async fn leave(&mut self, within: Duration) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.commands.send(Command::Leave(done_tx)).await.is_ok() {
            let _ = tokio::time::timeout(within, done_rx).await;
        }
        self.task.abort();
    }
}

impl Drop for Gossip {
    /// A node dropped without leaving stops gossiping at once, as a crashed
    /// one would: members find it gone by failure detection.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Announces and invalidations, from any task.
#[derive(Clone)]
pub struct GossipSender {
    commands: mpsc::Sender<Command>,
}

impl GossipSender {
    /// Asks whoever listens at `addr` to let this node in.
    pub async fn announce(&self, addr: SocketAddr) {
        let _ = self.commands.send(Command::Announce(addr)).await;
    }

    /// Spreads an invalidation to every member.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        let _ = self.commands.send(Command::Invalidate(invalidation)).await;
    }
}

/// The socket, tokio's timers and the node's commands around one [`Core`].
struct Driver {
    core: Core,
    socket: UdpSocket,
    keyring: Option<watch::Receiver<Arc<Keyring>>>,
    members_tx: watch::Sender<Arc<Members>>,
    joined_tx: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let deadline = self.core.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Announce(addr)) => {
                        let result = self.core.announce(addr);
                        log_error("announce", result);
                    }
                    Some(Command::Invalidate(invalidation)) => {
                        let result = self.core.invalidate(&invalidation);
                        log_error("invalidation broadcast", result);
                    }
                    Some(Command::Leave(done)) => {
                        let result = self.core.leave();
                        log_error("leave", result);
                        self.flush_sends().await;
                        info!("left the gossip cluster");
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => self.receive(&buffer[..len], from),
                    Err(error) => debug!(%error, "gossip receive failed"),
                },
                () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    let now = Instant::now();
                    while let Some(result) = self.core.fire_due_timer(now) {
                        log_error("timer", result);
                    }
                }
            }
            self.drain().await;
        }
    }

    /// One datagram: too large, unsealable or malformed ones are dropped
    /// and counted, never a panic.
    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        self.metrics.gossip_packet("in", datagram.len());
        let keyring = self.keyring.as_ref().map(|k| Arc::clone(&k.borrow()));
        if let Err(dropped) = self.core.receive(keyring.as_deref(), datagram) {
            self.metrics.gossip_rejected(dropped.reason());
            debug!(%from, error = %dropped, "gossip packet dropped");
        }
    }

    /// Sends, then timers, confirmations and notifications, then what they
    /// sent, then the new snapshot.
    async fn drain(&mut self) {
        self.flush_sends().await;
        for notification in self.core.settle(Instant::now()) {
            match notification {
                OwnedNotification::MemberUp(id) => debug!(member = ?id, "member up"),
                OwnedNotification::MemberDown(id) => info!(member = ?id, "member down"),
                OwnedNotification::Rename(old, new) => debug!(?old, ?new, "member renamed"),
                OwnedNotification::Rejoin(id) => {
                    warn!(identity = ?id, "declared down by the cluster; rejoined as a new generation");
                }
                OwnedNotification::Active => info!("joined the gossip cluster"),
                OwnedNotification::Idle => info!("no other members left"),
                OwnedNotification::Defunct => warn!("this node's identity was declared down"),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        // A refutation in `settle` may have queued packets.
        self.flush_sends().await;
        let events = self.core.take_lifeguard_events();
        self.metrics.gossip_suspicion_events(&[
            ("confirmation_sent", events.confirmations_sent),
            ("confirmation_received", events.confirmations_received),
            ("shortened", events.shortened),
            ("refuted", events.refuted),
        ]);
        if self.core.joined() {
            self.joined_tx
                .send_if_modified(|joined| !std::mem::replace(joined, true));
        }
        self.publish();
    }

    async fn flush_sends(&mut self) {
        while let Some((to, data)) = self.core.next_send() {
            let packet = self.seal(data);
            self.metrics.gossip_packet("out", packet.len());
            if let Err(error) = self.socket.send_to(&packet, to).await {
                debug!(to = %to, %error, "gossip send failed");
            }
        }
    }

    fn seal(&self, data: Bytes) -> Bytes {
        match &self.keyring {
            Some(keyring) => Bytes::from(security::seal(&keyring.borrow(), GOSSIP_LABEL, &data)),
            None => data,
        }
    }

    /// Publishes the membership if it changed.
    fn publish(&mut self) {
        let members = self.core.snapshot();
        self.members_tx.send_if_modified(|current| {
            let changed = **current != members;
            if changed {
                *current = Arc::new(members);
            }
            changed
        });
    }
}

fn log_error<E: std::fmt::Display>(what: &str, result: Result<(), E>) {
    if let Err(error) = result {
        debug!(%error, "gossip {what} failed");
    }
}

/// The gossip socket: `::` accepts IPv4 too, and a receive buffer larger
/// than the default absorbs bursts (many members answering at once).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECEIVE_SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}
