//! The gossip protocol around foca, without I/O: the `Foca` instance, its
//! timers (one ordered queue), retuning foca to the cluster's size,
//! Lifeguard's confirmed suspicions (`lifeguard`) and the membership
//! snapshot. Time enters as a parameter, randomness as the RNG
//! it is built with, datagrams as bytes; what to send comes out as
//! (address, bytes). The driver feeds it from a socket, tokio timers and
//! the node's commands; the simulator (`sim`) feeds thousands of them
//! from a virtual network and a virtual clock, so both run this same code.

use std::net::SocketAddr;

use bytes::Bytes;
use foca::{Foca, OwnedNotification, PostcardCodec, Runtime, Timer};
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::identity::NodeId;
use super::invalidation::{BroadcastTarget, Broadcasts, Confirmation, Invalidation};
use super::lifeguard::{self, Bounds, Suspect, Suspicions};
use super::runtime::CoreRuntime;
use super::swim::{MAX_DATAGRAM, confirmed_suspicion, foca_config, suspicion};
use super::timers::TimerQueue;
use super::{MemberInfo, MemberState, Members};
use crate::config::SwimConfig;
use crate::security::{self, Keyring};

/// Associated data for sealed gossip: a packet sealed for another purpose
/// (or another protocol version) never opens as gossip.
pub(crate) const GOSSIP_LABEL: &[u8] = b"shoal-gossip-v1";

pub(super) type FocaInstance = Foca<NodeId, PostcardCodec, StdRng, Broadcasts>;

/// How often followed suspicions are swept, and how many of their longest
/// timeouts after their last change they are forgotten.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const FORGET_AFTER_TIMEOUTS: u32 = 3;

/// One member's protocol state: everything gossip does but the I/O.
pub struct Core {
    foca: FocaInstance,
    runtime: CoreRuntime,
    timers: TimerQueue<Timer<NodeId>>,
    /// Suspicions this member raised or others confirmed.
    suspicions: Suspicions,
    /// Other members' confirmations, from the broadcast handler.
    confirmations: mpsc::UnboundedReceiver<Confirmation>,
    /// Where the next `Foca::broadcast` goes (a suspect, see `tell_suspect`).
    broadcast_target: BroadcastTarget,
    swept_at: Option<Instant>,
    /// Since the driver last took them.
    lifeguard_events: lifeguard::Events,
    identity: NodeId,
    swim: SwimConfig,
    max_packet: usize,
    /// Members counted into the suspicion and retransmission formulas.
    cluster_size: usize,
    /// foca's count of active members when `cluster_size` was last
    /// counted: the on-ring count can change only when this does, so the
    /// members are not walked after every packet.
    counted_at_active: usize,
}

impl Core {
    /// A member on its own. Invalidations other members send arrive on
    /// `invalidations`; `max_packet` is the largest packet foca may write
    /// (see [`max_packet`]).
    pub fn new(
        identity: NodeId,
        swim: SwimConfig,
        max_packet: usize,
        rng: StdRng,
        invalidations: mpsc::UnboundedSender<Invalidation>,
    ) -> Self {
        let (confirm_tx, confirmations) = mpsc::unbounded_channel();
        let broadcast_target = BroadcastTarget::default();
        let foca = Foca::with_custom_broadcast(
            identity.clone(),
            foca_config(&swim, 1, max_packet),
            rng,
            PostcardCodec,
            Broadcasts::with_target(invalidations, confirm_tx, broadcast_target.clone()),
        );
        Self {
            foca,
            runtime: CoreRuntime::default(),
            timers: TimerQueue::default(),
            suspicions: Suspicions::default(),
            confirmations,
            broadcast_target,
            swept_at: None,
            lifeguard_events: lifeguard::Events::default(),
            identity,
            swim,
            max_packet,
            cluster_size: 1,
            counted_at_active: 0,
        }
    }

    /// Asks whoever listens at `addr` to let this member in.
    pub fn announce(&mut self, addr: SocketAddr) -> Result<(), foca::Error> {
        self.foca.announce(NodeId::seed(addr), &mut self.runtime)
    }

    /// Queues an invalidation to ride along with gossip to every member.
    pub fn invalidate(&mut self, invalidation: &Invalidation) -> Result<(), foca::Error> {
        self.foca.add_broadcast(&invalidation.encode()).map(|_| ())
    }

    /// Tells the cluster this member is leaving (the packets are queued:
    /// send them before stopping).
    pub fn leave(&mut self) -> Result<(), foca::Error> {
        self.foca.leave_cluster(&mut self.runtime)
    }

    /// One datagram as it came off the network.
    pub fn receive(&mut self, keyring: Option<&Keyring>, datagram: &[u8]) -> Result<(), Dropped> {
        take_datagram(&mut self.foca, &mut self.runtime, keyring, datagram)
    }

    /// When the earliest timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fires the earliest timer if it is due at `now`: `None` when none is.
    pub fn fire_due_timer(&mut self, now: Instant) -> Option<Result<(), foca::Error>> {
        let timer = self.timers.pop_due(now)?;
        if self.is_stale_suspicion(&timer) {
            return Some(Ok(()));
        }
        let gossip_round = matches!(timer, Timer::PeriodicGossip(_));
        let handled = self.foca.handle_timer(timer, &mut self.runtime);
        if gossip_round && handled.is_ok() {
            return Some(self.broadcast_past_the_backlog());
        }
        Some(handled)
    }

    /// Sends the queued broadcasts (invalidations, confirmations) on their
    /// own to a few members while membership updates are queued too. foca
    /// fills a packet with membership updates first and gives broadcasts
    /// what is left; after a cold start of thousands, the backlog of
    /// updates takes whole packets for a minute, and the simulator found
    /// invalidations at N = 5,000 reaching nobody within 5 s
    /// (BENCHMARKS.md, "Simulation"). With no updates queued, gossip
    /// carries them and this sends nothing more.
    fn broadcast_past_the_backlog(&mut self) -> Result<(), foca::Error> {
        if self.foca.updates_backlog() == 0 || self.foca.custom_broadcast_backlog() == 0 {
            return Ok(());
        }
        self.foca.broadcast(&mut self.runtime)
    }

    /// A suspicion's timer whose member is no longer suspect at that
    /// incarnation: it refuted (a higher incarnation), rejoined under a new
    /// identity, or is down already (a confirmed suspicion's earlier copy
    /// of the timer fired first). foca 2.0 leaves a refuted member alive
    /// but still sends it `TurnUndead` (it checks only that the member is
    /// known), and the member, told it is dead, renews its identity: a
    /// healthy member rejoining after every refuted suspicion, which the
    /// simulator found (BENCHMARKS.md, "Simulation"). Dropping the timer is
    /// exactly foca's handling minus that message.
    fn is_stale_suspicion(&self, timer: &Timer<NodeId>) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return false;
        };
        self.foca
            .iter_membership_state()
            .find(|m| m.id().gossip == member_id.gossip)
            .is_some_and(|m| {
                m.id() != member_id
                    || m.incarnation() != *incarnation
                    || m.state() != foca::State::Suspect
            })
    }

    /// The next datagram to send and where to (unsealed: the caller seals).
    pub fn next_send(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.runtime.next_send().map(|(to, data)| (to.gossip, data))
    }

    /// After sends are drained: schedules the timers foca asked for from
    /// `now`, takes in confirmations, takes note of renewals, retunes foca
    /// to the cluster's size, and hands back what happened, in order. A
    /// refutation may queue sends: drain them again after.
    pub fn settle(&mut self, now: Instant) -> Vec<OwnedNotification<NodeId>> {
        let bounds = self.suspicion_bounds();
        while let Some((delay, timer)) = self.runtime.next_timer() {
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
            {
                let suspect = Suspect::new(member_id, *incarnation);
                let sooner =
                    self.suspicions
                        .raised(suspect, timer.clone(), now + delay, now, bounds);
                self.schedule_sooner(sooner);
            }
            self.timers.push(now + delay, timer);
        }
        self.confirm_failed_probes();
        while let Ok(confirmation) = self.confirmations.try_recv() {
            self.lifeguard_events.confirmations_received += 1;
            if confirmation.suspect.gossip == self.identity.gossip {
                self.refute(&confirmation);
            } else if confirmation.from != self.identity.gossip {
                let sooner =
                    self.suspicions
                        .confirmed(confirmation.suspect, confirmation.from, now, bounds);
                self.schedule_sooner(sooner);
            }
        }
        self.sweep_suspicions(now, bounds);
        let mut notifications = Vec::new();
        while let Some(notification) = self.runtime.next_notification() {
            if let OwnedNotification::Rejoin(id) = &notification {
                self.identity = id.clone();
            }
            notifications.push(notification);
        }
        self.retune();
        notifications
    }

    /// How long a suspicion lasts at today's cluster size, by confirmations.
    fn suspicion_bounds(&self) -> Bounds {
        Bounds {
            max: suspicion(&self.swim, self.cluster_size),
            min: confirmed_suspicion(&self.swim, self.cluster_size),
            expected: self.swim.suspicion_confirmations,
        }
    }

    /// A confirmed suspicion's timer, again at its earlier deadline: the
    /// first copy to fire declares the member down, the other is stale.
    fn schedule_sooner(&mut self, sooner: Option<(Instant, Timer<NodeId>)>) {
        if let Some((due, timer)) = sooner {
            self.lifeguard_events.shortened += 1;
            self.timers.push(due, timer);
        }
    }

    /// What Lifeguard did since the last call.
    pub fn take_lifeguard_events(&mut self) -> lifeguard::Events {
        std::mem::take(&mut self.lifeguard_events)
    }

    /// Tells every member which suspects this one's probes found silent, so
    /// those that suspect them too can cut their suspicion short. Off when
    /// confirmations are (`suspicion_confirmations: 0`).
    fn confirm_failed_probes(&mut self) {
        for id in self.runtime.take_failed_probes() {
            if self.swim.suspicion_confirmations == 0 {
                continue;
            }
            let Some(incarnation) = self
                .foca
                .iter_membership_state()
                .find(|m| m.id() == &id && m.state() == foca::State::Suspect)
                .map(|m| m.incarnation())
            else {
                // Refuted, down or gone already: nothing to confirm.
                continue;
            };
            let confirmation = Confirmation {
                suspect: Suspect::new(&id, incarnation),
                from: self.identity.gossip,
            };
            match self.foca.add_broadcast(&confirmation.encode()) {
                Ok(_) => {
                    self.lifeguard_events.confirmations_sent += 1;
                    self.tell_suspect(&id);
                }
                Err(error) => {
                    tracing::debug!(%error, "could not broadcast a suspicion's confirmation");
                }
            }
        }
    }

    /// Sends the suspect the broadcasts just queued, the confirmation of its
    /// suspicion among them: gossip reaches any one member only by chance,
    /// and the simulator found suspects at 10 % loss that heard nothing of
    /// their suspicion for its whole length (BENCHMARKS.md, "Lifeguard").
    fn tell_suspect(&mut self, suspect: &NodeId) {
        self.broadcast_target.set(Some(suspect.gossip));
        let sent = self.foca.broadcast(&mut self.runtime);
        self.broadcast_target.set(None);
        if let Err(error) = sent {
            tracing::debug!(%error, "could not tell a suspect of its suspicion");
        }
    }

    /// Someone confirmed a suspicion of this member: it refutes it (if
    /// gossip has not told it yet) and tells the confirmer directly, since
    /// any packet's header carries the refuting incarnation. foca alone
    /// spreads a refutation only from the members this one happens to
    /// talk to next, and a suspecter that hears of it too late declares a
    /// healthy member down: what the simulator's false downs at 10 % loss
    /// were. This is Lifeguard's "buddy system" over confirmations.
    fn refute(&mut self, confirmation: &Confirmation) {
        if confirmation.suspect.generation != self.identity.generation {
            return;
        }
        let suspected = foca::Member::new(
            self.identity.clone(),
            confirmation.suspect.incarnation,
            foca::State::Suspect,
        );
        let confirmer = self
            .foca
            .iter_membership_state()
            .find(|m| m.id().gossip == confirmation.from && m.state() != foca::State::Down)
            .map(|m| m.id().clone());
        let refuted = self
            .foca
            .apply_many(std::iter::once(suspected), true, &mut self.runtime)
            .and_then(|()| match confirmer {
                Some(confirmer) => self.foca.announce(confirmer, &mut self.runtime),
                None => Ok(()),
            });
        match refuted {
            Ok(()) => self.lifeguard_events.refuted += 1,
            Err(error) => tracing::debug!(%error, "could not refute a suspicion of this member"),
        }
    }

    fn sweep_suspicions(&mut self, now: Instant, bounds: Bounds) {
        if self.suspicions.is_empty() || self.swept_at.is_some_and(|at| now - at < SWEEP_EVERY) {
            return;
        }
        self.swept_at = Some(now);
        self.suspicions
            .forget_older_than(bounds.max * FORGET_AFTER_TIMEOUTS, now);
    }

    /// True once this member has joined someone.
    pub fn joined(&self) -> bool {
        self.foca.num_members() > 0
    }

    /// Members alive or suspect, this one excluded (foca's count).
    #[cfg(feature = "sim")]
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Membership updates queued to be gossiped (foca's backlog).
    #[cfg(feature = "sim")]
    pub fn updates_backlog(&self) -> usize {
        self.foca.updates_backlog()
    }

    /// Gossip addresses of the members on the ring (alive or suspect),
    /// this one included: what the seed loop leaves out of its announces.
    #[cfg(feature = "sim")]
    pub fn on_ring_addrs(&self) -> std::collections::HashSet<SocketAddr> {
        self.foca
            .iter_membership_state()
            .filter(|m| !m.id().is_seed() && m.state() != foca::State::Down)
            .map(|m| m.id().gossip)
            .chain(std::iter::once(self.identity.gossip))
            .collect()
    }

    /// How many members this one sees alive, itself included (what a
    /// snapshot's alive count is, without building the snapshot).
    #[cfg(feature = "sim")]
    pub fn alive_count(&self) -> usize {
        1 + self
            .foca
            .iter_membership_state()
            .filter(|m| self.is_other(m.id()) && m.state() == foca::State::Alive)
            .count()
    }

    /// Retunes suspicion and retransmissions to the on-ring count.
    fn retune(&mut self) {
        let active = self.foca.num_members();
        if active == self.counted_at_active {
            return;
        }
        self.counted_at_active = active;
        let size = 1 + self
            .foca
            .iter_membership_state()
            .filter(|m| self.is_other(m.id()) && m.state() != foca::State::Down)
            .count();
        if size != self.cluster_size {
            self.cluster_size = size;
            let config = foca_config(&self.swim, size, self.max_packet);
            if let Err(error) = self.foca.set_config(config) {
                tracing::warn!(%error, "could not retune gossip to the cluster size");
            }
        }
    }

    /// A member of the snapshot: not a seed placeholder, not at this
    /// member's address.
    fn is_other(&self, id: &NodeId) -> bool {
        !id.is_seed() && id.gossip != self.identity.gossip
    }

    /// Members as foca knows them, seeds and this member's address left out.
    fn others(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.foca
            .iter_membership_state()
            .filter(|member| self.is_other(member.id()))
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
    }

    /// Membership as foca knows it, this member first, then by name.
    pub fn snapshot(&self) -> Members {
        let identity = &self.identity;
        let me = MemberInfo {
            name: identity.name.clone(),
            addr: identity.gossip.ip(),
            peer_port: identity.peer_port,
            gossip_port: identity.gossip.port(),
            state: MemberState::Alive,
            incarnation: 0,
            generation: identity.generation,
        };
        let mut others: Vec<MemberInfo> = self.others().collect();
        others.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        let mut members = vec![me];
        members.extend(others);
        Members {
            self_name: identity.name.clone(),
            members,
        }
    }
}

/// Why a received datagram was dropped. [`Dropped::reason`] is its metric
/// label.
#[derive(Debug)]
pub enum Dropped {
    Oversized,
    Unsealed(security::seal::OpenError),
    Undecoded(foca::Error),
}

impl Dropped {
    pub fn reason(&self) -> &'static str {
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
pub fn max_packet(sealed: bool) -> usize {
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
    runtime: impl Runtime<NodeId>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{AccumulatingRuntime, PostcardCodec};
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn foca() -> FocaInstance {
        let me = NodeId::new("me", "127.0.0.1:7946".parse().expect("addr"), 8000, 1);
        let swim = SwimConfig::profile(crate::config::SwimProfile::Lan);
        let (tx, _rx) = mpsc::unbounded_channel();
        Foca::with_custom_broadcast(
            me,
            foca_config(&swim, 1, MAX_DATAGRAM),
            StdRng::seed_from_u64(7),
            PostcardCodec,
            Broadcasts::new(tx, mpsc::unbounded_channel().0),
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
            Broadcasts::new(mpsc::unbounded_channel().0, mpsc::unbounded_channel().0),
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
