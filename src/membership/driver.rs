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
use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::identity::NodeId;
use super::invalidation::{Invalidation, InvalidationHandler};
use super::swim::{MAX_DATAGRAM, foca_config};
use super::timers::TimerQueue;
use super::{MemberInfo, MemberState, Members};
use crate::config::SwimConfig;
use crate::metrics::Metrics;
use crate::security::{self, Keyring};

/// Associated data for sealed gossip: a packet sealed for another purpose
/// (or another protocol version) never opens as gossip.
pub(crate) const GOSSIP_LABEL: &[u8] = b"shoal-gossip-v1";
/// A datagram this large cannot be ours; reading one more byte tells.
const RECEIVE_BUFFER: usize = MAX_DATAGRAM + 1;
/// Kernel receive buffer asked for the gossip socket.
const RECEIVE_SOCKET_BUFFER: usize = 4 << 20;

pub(super) type FocaInstance = Foca<NodeId, PostcardCodec, StdRng, InvalidationHandler>;

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
        let max_packet = max_packet(settings.keyring.is_some());
        let config = foca_config(&settings.swim, 1, max_packet);
        let rng = StdRng::from_rng(&mut rand::rng());
        let foca = Foca::with_custom_broadcast(
            settings.identity.clone(),
            config,
            rng,
            PostcardCodec,
            InvalidationHandler::new(invalidations),
        );
        let members = Arc::new(snapshot(&settings.identity, &foca));
        let (members_tx, members_rx) = watch::channel(members);
        let (joined_tx, joined_rx) = watch::channel(false);
        let (commands_tx, commands_rx) = mpsc::channel(1024);
        let driver = Driver {
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: TimerQueue::default(),
            socket,
            identity: settings.identity,
            swim: settings.swim,
            max_packet,
            cluster_size: 1,
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

struct Driver {
    foca: FocaInstance,
    runtime: AccumulatingRuntime<NodeId>,
    timers: TimerQueue<Timer<NodeId>>,
    socket: UdpSocket,
    identity: NodeId,
    swim: SwimConfig,
    max_packet: usize,
    /// Members counted into the suspicion and retransmission formulas.
    cluster_size: usize,
    keyring: Option<watch::Receiver<Arc<Keyring>>>,
    members_tx: watch::Sender<Arc<Members>>,
    joined_tx: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let deadline = self.timers.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Announce(addr)) => {
                        let result = self.foca.announce(NodeId::seed(addr), &mut self.runtime);
                        self.log_error("announce", result);
                    }
                    Some(Command::Invalidate(invalidation)) => {
                        let result = self.foca.add_broadcast(&invalidation.encode()).map(|_| ());
                        self.log_error("invalidation broadcast", result);
                    }
                    Some(Command::Leave(done)) => {
                        let result = self.foca.leave_cluster(&mut self.runtime);
                        self.log_error("leave", result);
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
                    while let Some(timer) = self.timers.pop_due(now) {
                        let result = self.foca.handle_timer(timer, &mut self.runtime);
                        self.log_error("timer", result);
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
        if let Err(dropped) = take_datagram(
            &mut self.foca,
            &mut self.runtime,
            keyring.as_deref(),
            datagram,
        ) {
            self.metrics.gossip_rejected(dropped.reason());
            debug!(%from, error = %dropped, "gossip packet dropped");
        }
    }

    /// Sends, then timers, then notifications, then the new snapshot.
    async fn drain(&mut self) {
        self.flush_sends().await;
        let now = Instant::now();
        while let Some((delay, timer)) = self.runtime.to_schedule() {
            self.timers.push(now + delay, timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => debug!(member = ?id, "member up"),
                OwnedNotification::MemberDown(id) => info!(member = ?id, "member down"),
                OwnedNotification::Rename(old, new) => debug!(?old, ?new, "member renamed"),
                OwnedNotification::Rejoin(id) => {
                    warn!(identity = ?id, "declared down by the cluster; rejoined as a new generation");
                    self.identity = id;
                }
                OwnedNotification::Active => info!("joined the gossip cluster"),
                OwnedNotification::Idle => info!("no other members left"),
                OwnedNotification::Defunct => warn!("this node's identity was declared down"),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if self.foca.num_members() > 0 {
            self.joined_tx
                .send_if_modified(|joined| !std::mem::replace(joined, true));
        }
        self.publish();
    }

    async fn flush_sends(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            let packet = self.seal(data);
            self.metrics.gossip_packet("out", packet.len());
            if let Err(error) = self.socket.send_to(&packet, to.gossip).await {
                debug!(to = %to.gossip, %error, "gossip send failed");
            }
        }
    }

    fn seal(&self, data: Bytes) -> Bytes {
        match &self.keyring {
            Some(keyring) => Bytes::from(security::seal(&keyring.borrow(), GOSSIP_LABEL, &data)),
            None => data,
        }
    }

    /// Publishes the membership if it changed, and retunes foca to its size.
    fn publish(&mut self) {
        let members = snapshot(&self.identity, &self.foca);
        let size = members.members.iter().filter(|m| m.state.on_ring()).count();
        if size != self.cluster_size {
            self.cluster_size = size;
            let config = foca_config(&self.swim, size, self.max_packet);
            if let Err(error) = self.foca.set_config(config) {
                warn!(%error, "could not retune gossip to the cluster size");
            }
        }
        self.members_tx.send_if_modified(|current| {
            let changed = **current != members;
            if changed {
                *current = Arc::new(members);
            }
            changed
        });
    }

    fn log_error(&self, what: &str, result: Result<(), foca::Error>) {
        if let Err(error) = result {
            debug!(%error, "gossip {what} failed");
        }
    }
}

/// Membership as foca knows it, this node first, then by name.
fn snapshot(identity: &NodeId, foca: &FocaInstance) -> Members {
    let me = MemberInfo {
        name: identity.name.clone(),
        addr: identity.gossip.ip(),
        peer_port: identity.peer_port,
        gossip_port: identity.gossip.port(),
        state: MemberState::Alive,
        incarnation: 0,
        generation: identity.generation,
    };
    let mut others: Vec<MemberInfo> = foca
        .iter_membership_state()
        .filter(|member| !member.id().is_seed() && member.id().gossip != identity.gossip)
        .map(|member| MemberInfo {
            name: member.id().name.clone(),
            addr: member.id().gossip.ip(),
            peer_port: member.id().peer_port,
            gossip_port: member.id().gossip.port(),
            state: match member.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            },
            incarnation: u64::from(member.incarnation()),
            generation: member.id().generation,
        })
        .collect();
    others.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    let mut members = vec![me];
    members.extend(others);
    Members {
        self_name: identity.name.clone(),
        members,
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

/// Why a received datagram was dropped. [`Dropped::reason`] is its metric
/// label.
#[derive(Debug)]
pub(super) enum Dropped {
    Oversized,
    Unsealed(security::seal::OpenError),
    Undecoded(foca::Error),
}

impl Dropped {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Dropped::Oversized | Dropped::Undecoded(foca::Error::DataTooBig) => "oversized",
            Dropped::Unsealed(error) => error.reason(),
            Dropped::Undecoded(foca::Error::DataFromOurselves) => "from-ourselves",
            Dropped::Undecoded(_) => "malformed",
        }
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::Oversized => write!(f, "larger than {MAX_DATAGRAM} bytes"),
            Dropped::Unsealed(error) => error.fmt(f),
            Dropped::Undecoded(error) => error.fmt(f),
        }
    }
}

/// The largest packet foca may write: a datagram, less the seal's bytes
/// when packets are sealed.
pub(super) fn max_packet(sealed: bool) -> usize {
    if sealed {
        MAX_DATAGRAM - security::SEAL_OVERHEAD
    } else {
        MAX_DATAGRAM
    }
}

/// Hands one datagram, as it came off the socket, to foca: the size check,
/// the seal (when there is a keyring), then foca's decoder. Free of the
/// socket so the fuzz targets run exactly this.
pub(super) fn take_datagram(
    foca: &mut FocaInstance,
    runtime: &mut AccumulatingRuntime<NodeId>,
    keyring: Option<&Keyring>,
    datagram: &[u8],
) -> Result<(), Dropped> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(Dropped::Oversized);
    }
    let opened;
    let payload = match keyring {
        Some(keyring) => {
            opened = security::open(keyring, GOSSIP_LABEL, datagram).map_err(Dropped::Unsealed)?;
            &opened[..]
        }
        None => datagram,
    };
    foca.handle_data(payload, runtime)
        .map_err(Dropped::Undecoded)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn foca() -> FocaInstance {
        let me = NodeId::new("me", "127.0.0.1:7946".parse().expect("addr"), 8000, 1);
        let swim = SwimConfig::profile(crate::config::SwimProfile::Lan);
        let (tx, _rx) = mpsc::unbounded_channel();
        Foca::with_custom_broadcast(
            me,
            foca_config(&swim, 1, MAX_DATAGRAM),
            StdRng::seed_from_u64(7),
            PostcardCodec,
            InvalidationHandler::new(tx),
        )
    }

    proptest! {
        /// Whatever arrives on the gossip port, decoding returns (an error
        /// or not) and never panics.
        #[test]
        fn junk_never_panics_the_decoder(datagram in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let mut foca = foca();
            let mut runtime = AccumulatingRuntime::new();
            let _ = foca.handle_data(&datagram, &mut runtime);
        }
    }

    #[test]
    fn a_real_announce_decodes_and_truncations_do_not_panic() {
        let mut sender = foca();
        let mut runtime = AccumulatingRuntime::new();
        let other = NodeId::new("other", "127.0.0.2:7946".parse().expect("addr"), 8000, 1);
        sender.announce(other, &mut runtime).expect("announce");
        let (_, packet) = runtime.to_send().expect("an announce packet");
        let mut receiver = Foca::with_custom_broadcast(
            NodeId::new("other", "127.0.0.2:7946".parse().expect("addr"), 8000, 1),
            foca_config(
                &SwimConfig::profile(crate::config::SwimProfile::Lan),
                1,
                MAX_DATAGRAM,
            ),
            StdRng::seed_from_u64(8),
            PostcardCodec,
            InvalidationHandler::new(mpsc::unbounded_channel().0),
        );
        let mut runtime = AccumulatingRuntime::new();
        receiver
            .handle_data(&packet, &mut runtime)
            .expect("a real packet decodes");
        assert_eq!(receiver.num_members(), 1);
        for cut in 0..packet.len() {
            let _ = receiver.handle_data(&packet[..cut], &mut runtime);
        }
    }
}
