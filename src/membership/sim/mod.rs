//! The membership simulator (feature `sim`, not for use in a node): N
//! gossip [`Core`]s, each the very code a node runs (foca's sans-I/O core
//! with our timers, retuning, invalidation broadcasts and the real postcard
//! codec; unsealed, as a cluster without a keyring runs), wired to a
//! simulated [`Network`] with a virtual clock. Everything random comes from
//! one seed, so a seed replays a run exactly.
//!
//! Members find each other as the real nodes in `examples/membership_bench.rs`
//! do: every member has every address as a seed and runs the seed loop's
//! schedule (announce to at most 3 addresses not on its ring at once, then
//! after 1, 2, 4 … s until it has joined, then every resolve interval).
//! Start-up is staggered by `start_interval`, as the bench spawns its
//! processes one after another.
//!
//! [`Simulation`] is the engine; [`standard_run`] and [`loss_run`] are the
//! scenarios `examples/membership_sim.rs` reports.

mod network;
mod queue;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use foca::OwnedNotification;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use network::Network;

use super::core::{Core, max_packet};
use super::identity::NodeId;
use super::invalidation::Invalidation;
use crate::config::{SwimConfig, SwimProfile};
use queue::EventQueue;

/// Announce targets per seed round, as `discovery::schedule::DEFAULT_FANOUT`.
const SEED_FANOUT: usize = 3;
/// The seed loop's first quick retry, as `discovery::schedule::FIRST_RETRY`.
const SEED_FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often the scenarios look at the members' views (virtual time): the
/// real bench polls every 20 ms.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Every member's gossip port.
const GOSSIP_PORT: u16 = 7946;
/// Generations as a node picks them (milliseconds since the epoch, here
/// 2025-11-25).
const GENERATION: u64 = 1_764_000_000_000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Members.
    pub nodes: usize,
    /// Seeds every random choice: the network's, foca's, the seed loops'.
    pub seed: u64,
    /// SWIM timings (a profile, as `membership.profile` picks).
    pub swim: SwimConfig,
    /// Loss, delay and partitions.
    pub network: Network,
    /// Member `i` starts at `i × start_interval`.
    pub start_interval: Duration,
    /// The seed loop's interval once joined (`discovery.resolve_interval`;
    /// the real bench sets 5 s).
    pub resolve_interval: Duration,
}

impl SimConfig {
    /// The LAN profile over a loopback-like network, members started 2 ms
    /// apart, seeds re-resolved every 5 s: the real bench's setting.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            swim: SwimConfig::profile(SwimProfile::Lan),
            network: Network::default(),
            start_interval: Duration::from_millis(2),
            resolve_interval: Duration::from_secs(5),
        }
    }
}

/// One member declaring another down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down {
    /// Virtual time.
    pub at: Duration,
    /// The member that declared it.
    pub observer: usize,
    /// The member declared down.
    pub subject: usize,
}

enum Event {
    Start(usize),
    Deliver { to: usize, data: Bytes },
    Timer(usize),
    SeedRound(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    NotStarted,
    Running,
    Stopped,
}

struct Member {
    core: Core,
    invalidations: mpsc::UnboundedReceiver<Invalidation>,
    life: Life,
    /// The Timer event in the queue for this member's earliest deadline.
    timer_at: Option<Duration>,
    /// The seed loop's next quick retry.
    seed_step: Duration,
    sent_bytes: u64,
    sent_packets: u64,
}

/// Whose view of one member is being watched (for "gone from every ring").
struct Watch {
    subject: usize,
    /// Per observer: true once it has the subject down.
    down: Vec<bool>,
    /// When the last observer's view changed.
    last_change: Duration,
}

/// N members on a simulated network, in virtual time.
pub struct Simulation {
    swim: SwimConfig,
    resolve_interval: Duration,
    network: Network,
    /// Virtual time zero as the cores see it.
    epoch: Instant,
    now: Duration,
    queue: EventQueue<Event>,
    members: Vec<Member>,
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    rng: StdRng,
    downs: Vec<Down>,
    stopped_at: Vec<Option<Duration>>,
    renewals: usize,
    rejected: usize,
    watch: Option<Watch>,
    /// Invalidations received: (id, member, when).
    received: Vec<(u64, usize, Duration)>,
    /// Invalidations made: id → (origin, when).
    made: HashMap<u64, (usize, Duration)>,
}

impl Simulation {
    /// Members waiting to start on their stagger; nothing runs yet.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let addrs: Vec<SocketAddr> = (0..config.nodes).map(address).collect();
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let (tx, rx) = mpsc::unbounded_channel();
                // Named and numbered as the bench's nodes are (`n-<ip>`, a
                // start time in milliseconds): identities ride in every
                // packet, so their size is part of the bandwidth.
                let identity = NodeId::new(
                    &format!("n-{}", addr.ip()),
                    addr,
                    8000,
                    GENERATION + i as u64,
                );
                let core = Core::new(
                    identity,
                    config.swim.clone(),
                    max_packet(false),
                    StdRng::seed_from_u64(rng.random()),
                    tx,
                );
                Member {
                    core,
                    invalidations: rx,
                    life: Life::NotStarted,
                    timer_at: None,
                    seed_step: SEED_FIRST_RETRY.min(config.resolve_interval),
                    sent_bytes: 0,
                    sent_packets: 0,
                }
            })
            .collect();
        let mut queue = EventQueue::default();
        for i in 0..config.nodes {
            let at = config
                .start_interval
                .saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            queue.push(at, Event::Start(i));
        }
        Self {
            swim: config.swim,
            resolve_interval: config.resolve_interval,
            network: config.network,
            epoch: Instant::now(),
            now: Duration::ZERO,
            queue,
            index: addrs.iter().enumerate().map(|(i, &a)| (a, i)).collect(),
            addrs,
            members,
            rng,
            downs: Vec::new(),
            stopped_at: vec![None; config.nodes],
            renewals: 0,
            rejected: 0,
            watch: None,
            received: Vec::new(),
            made: HashMap::new(),
        }
    }

    /// Virtual time since the first member started.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The SWIM timings the members run.
    pub fn swim(&self) -> &SwimConfig {
        &self.swim
    }

    /// The network, to change loss or split it from now on.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Membership updates queued at the running members, in all.
    pub fn updates_backlog(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.life == Life::Running)
            .map(|m| m.core.updates_backlog())
            .sum()
    }

    /// Members started and not stopped.
    pub fn running(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.life == Life::Running)
            .count()
    }

    /// Runs every event due by `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Duration) {
        while let Some((at, event)) = self.queue.pop_due_with_time(until) {
            self.now = at;
            self.handle(event);
        }
        self.now = self.now.max(until);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Start(i) => {
                self.members[i].life = Life::Running;
                self.seed_round(i);
            }
            Event::Deliver { to, data } => {
                if self.members[to].life != Life::Running {
                    return;
                }
                if self.members[to].core.receive(None, &data).is_err() {
                    self.rejected += 1;
                }
                self.settle(to);
            }
            Event::Timer(i) => {
                if self.members[i].timer_at == Some(self.now) {
                    self.members[i].timer_at = None;
                }
                if self.members[i].life != Life::Running {
                    return;
                }
                let now = self.epoch + self.now;
                // Errors are foca's to log; the driver only logs them too.
                while self.members[i].core.fire_due_timer(now).is_some() {}
                self.settle(i);
            }
            Event::SeedRound(i) => {
                if self.members[i].life == Life::Running {
                    self.seed_round(i);
                }
            }
        }
    }

    /// One round of the seed loop (`discovery::run_seed_loop`), every
    /// member's address being a seed.
    fn seed_round(&mut self, i: usize) {
        let joined = self.members[i].core.joined();
        let targets: Vec<SocketAddr> =
            if self.members[i].core.active_members() + 1 >= self.addrs.len() {
                Vec::new()
            } else {
                let known = self.members[i].core.on_ring_addrs();
                let candidates: Vec<SocketAddr> = self
                    .addrs
                    .iter()
                    .copied()
                    .filter(|a| !known.contains(a))
                    .collect();
                candidates
                    .sample(&mut self.rng, SEED_FANOUT)
                    .copied()
                    .collect()
            };
        for addr in targets {
            // An announce fails only on foca's own limits; the node logs it.
            let _ = self.members[i].core.announce(addr);
        }
        self.settle(i);
        let member = &mut self.members[i];
        let delay = if joined {
            member.seed_step = SEED_FIRST_RETRY.min(self.resolve_interval);
            self.resolve_interval
        } else {
            let delay = member.seed_step;
            member.seed_step = (member.seed_step * 2).min(self.resolve_interval);
            delay
        };
        self.queue.push(self.now + delay, Event::SeedRound(i));
    }

    /// Member `i`'s queued packets, onto the network.
    fn send_queued(&mut self, i: usize) {
        while let Some((to, data)) = self.members[i].core.next_send() {
            let member = &mut self.members[i];
            member.sent_bytes += data.len() as u64;
            member.sent_packets += 1;
            let Some(&dest) = self.index.get(&to) else {
                continue;
            };
            if let Some(delay) = self.network.route(i, dest, &mut self.rng) {
                self.queue
                    .push(self.now + delay, Event::Deliver { to: dest, data });
            }
        }
    }

    /// After a call into member `i`'s core, as the driver's `drain`: its
    /// sends onto the network, then timers, confirmations and
    /// notifications, then what they sent.
    fn settle(&mut self, i: usize) {
        self.send_queued(i);
        let notifications = self.members[i].core.settle(self.epoch + self.now);
        // A refutation in `settle` may have queued packets.
        self.send_queued(i);
        for notification in notifications {
            match notification {
                OwnedNotification::MemberDown(id) => {
                    if let Some(&subject) = self.index.get(&id.gossip) {
                        self.downs.push(Down {
                            at: self.now,
                            observer: i,
                            subject,
                        });
                        self.watched(i, subject, true);
                    }
                }
                OwnedNotification::MemberUp(id) => {
                    if let Some(&subject) = self.index.get(&id.gossip) {
                        self.watched(i, subject, false);
                    }
                }
                OwnedNotification::Rejoin(_) => self.renewals += 1,
                _ => {}
            }
        }
        let member = &mut self.members[i];
        if let Some(deadline) = member.core.next_deadline() {
            let at = deadline.saturating_duration_since(self.epoch);
            if member.timer_at.is_none_or(|scheduled| at < scheduled) {
                member.timer_at = Some(at);
                self.queue.push(at, Event::Timer(i));
            }
        }
        while let Ok(invalidation) = self.members[i].invalidations.try_recv() {
            self.received.push((invalidation.id, i, self.now));
        }
    }

    fn watched(&mut self, observer: usize, subject: usize, down: bool) {
        if let Some(watch) = &mut self.watch
            && watch.subject == subject
            && watch.down[observer] != down
        {
            watch.down[observer] = down;
            watch.last_change = self.now;
        }
    }

    /// True when every running member sees every running member alive,
    /// and nothing else on its ring.
    pub fn converged(&self) -> bool {
        let running = self.running();
        let running_members = || self.members.iter().filter(|m| m.life == Life::Running);
        running_members().all(|m| m.core.active_members() + 1 == running)
            && running_members().all(|m| m.core.alive_count() == running)
    }

    /// Runs until converged: when it was, or `None` past `limit`.
    pub fn run_until_converged(&mut self, limit: Duration) -> Option<Duration> {
        let deadline = self.now + limit;
        while self.now < deadline {
            if self.running() == self.members.len() && self.converged() {
                return Some(self.now);
            }
            self.run_until(self.now + CHECK_EVERY);
        }
        None
    }

    /// Stops member `i` dead: nothing more to or from it.
    pub fn crash(&mut self, i: usize) {
        self.watch_member(i);
        self.members[i].life = Life::Stopped;
        self.stopped_at[i] = Some(self.now);
    }

    /// Member `i` leaves the cluster (its leave packets go out), then stops.
    pub fn leave(&mut self, i: usize) {
        self.watch_member(i);
        // Fails only if foca cannot encode; the node logs it too.
        let _ = self.members[i].core.leave();
        self.settle(i);
        self.members[i].life = Life::Stopped;
        self.stopped_at[i] = Some(self.now);
    }

    fn watch_member(&mut self, subject: usize) {
        self.watch = Some(Watch {
            subject,
            down: vec![false; self.members.len()],
            last_change: self.now,
        });
    }

    /// After [`crash`](Self::crash) or [`leave`](Self::leave): runs until
    /// no running member has the stopped one on its ring, and says how
    /// long that took from the stop; `None` past `limit`.
    pub fn run_until_gone(&mut self, limit: Duration) -> Option<Duration> {
        let watch = self.watch.as_ref()?;
        let since = self.stopped_at[watch.subject]?;
        let deadline = self.now + limit;
        loop {
            if let Some(watch) = &self.watch {
                let gone = self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.life == Life::Running)
                    .all(|(i, _)| watch.down[i]);
                if gone {
                    return Some(watch.last_change.saturating_sub(since));
                }
            }
            if self.now >= deadline {
                return None;
            }
            self.run_until(self.now + CHECK_EVERY);
        }
    }

    /// Member `from` invalidates a key: the broadcast's id.
    pub fn invalidate(&mut self, from: usize) -> u64 {
        let id = self.rng.random();
        let invalidation = Invalidation {
            id,
            group: "sim".into(),
            digest: u128::from(id),
            owner: None,
            superseded: 0,
        };
        // Fails only if foca cannot encode; the node logs it too.
        let _ = self.members[from].core.invalidate(&invalidation);
        self.made.insert(id, (from, self.now));
        self.settle(from);
        id
    }

    /// Of the running members other than its origin, the share that had
    /// invalidation `id` within `within` of its making.
    pub fn spread(&self, id: u64, within: Duration) -> f64 {
        let Some(&(origin, made)) = self.made.get(&id) else {
            return 0.0;
        };
        let others = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != origin && m.life == Life::Running)
            .count();
        let reached = self
            .received
            .iter()
            .filter(|&&(got, member, at)| {
                got == id
                    && member != origin
                    && self.members[member].life == Life::Running
                    && at <= made + within
            })
            .count();
        if others == 0 {
            1.0
        } else {
            reached as f64 / others as f64
        }
    }

    /// Bytes and datagrams sent so far, over every member.
    pub fn sent(&self) -> (u64, u64) {
        self.members.iter().fold((0, 0), |(bytes, packets), m| {
            (bytes + m.sent_bytes, packets + m.sent_packets)
        })
    }

    /// Every "member down" so far.
    pub fn downs(&self) -> &[Down] {
        &self.downs
    }

    /// Members declared down while they were running: SWIM's false
    /// positives.
    pub fn false_downs(&self) -> usize {
        self.downs
            .iter()
            .filter(|d| self.stopped_at[d.subject].is_none_or(|stopped| d.at < stopped))
            .count()
    }

    /// Times a member found itself declared down and rejoined renewed.
    pub fn renewals(&self) -> usize {
        self.renewals
    }

    /// Datagrams a member refused (malformed, or its own).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// A random member other than those in `except`.
    pub fn pick_member(&mut self, except: &[usize]) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.members.len())
            .filter(|i| !except.contains(i) && self.members[*i].life == Life::Running)
            .collect();
        candidates.choose(&mut self.rng).copied()
    }
}

/// Member `i`'s gossip address: 10.0.0.1 upwards.
fn address(i: usize) -> SocketAddr {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (n & 0x00ff_ffff));
    SocketAddr::new(IpAddr::V4(ip), GOSSIP_PORT)
}

/// The figures of one [`standard_run`]. Times are virtual.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// From the first member's start until every member saw every member
    /// alive.
    pub converged: Option<Duration>,
    /// Gossip sent per member per second over the window after
    /// convergence (datagram payload bytes, what `shoal_gossip_bytes_total`
    /// counts on an unsealed cluster).
    pub bytes_per_member_s: f64,
    /// Datagrams sent per member per second over the same window.
    pub packets_per_member_s: f64,
    /// Share of the other members an invalidation reached within 1 s.
    pub spread_1s: f64,
    /// And within 5 s.
    pub spread_5s: f64,
    /// From a crash until no member has the crashed one on its ring.
    pub crash_gone: Option<Duration>,
    /// From a graceful leave until no member has it on its ring.
    pub leave_gone: Option<Duration>,
    /// Members declared down while running, over the whole run.
    pub false_downs: usize,
}

/// Cold start, then a traffic window of `window`, an invalidation's
/// spread, a crash and a graceful leave, in that order (as the real bench
/// measures them).
pub fn standard_run(config: SimConfig, window: Duration) -> Report {
    let mut sim = Simulation::new(config);
    let converged = sim.run_until_converged(Duration::from_secs(600));
    let (bytes0, packets0) = sim.sent();
    let running = sim.running().max(1) as f64;
    sim.run_until(sim.now() + window);
    let (bytes1, packets1) = sim.sent();
    let per_member = |total: u64| total as f64 / running / window.as_secs_f64().max(1e-9);
    let origin = sim.pick_member(&[]).unwrap_or(0);
    let id = sim.invalidate(origin);
    sim.run_until(sim.now() + Duration::from_secs(5));
    let (spread_1s, spread_5s) = (
        sim.spread(id, Duration::from_secs(1)),
        sim.spread(id, Duration::from_secs(5)),
    );
    let crashed = sim.pick_member(&[]).unwrap_or(0);
    sim.crash(crashed);
    let crash_gone = sim.run_until_gone(Duration::from_secs(300));
    let leaving = sim.pick_member(&[crashed]).unwrap_or(0);
    sim.leave(leaving);
    let leave_gone = sim.run_until_gone(Duration::from_secs(300));
    Report {
        converged,
        bytes_per_member_s: per_member(bytes1 - bytes0),
        packets_per_member_s: per_member(packets1 - packets0),
        spread_1s,
        spread_5s,
        crash_gone,
        leave_gone,
        false_downs: sim.false_downs(),
    }
}

/// The figures of one [`loss_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct LossReport {
    /// From the first member's start until converged (no loss yet).
    pub converged: Option<Duration>,
    /// Members declared down while running, under loss.
    pub false_downs: usize,
    /// Members that found themselves declared down and rejoined.
    pub renewals: usize,
    /// From a crash (under the same loss, after the run) until gone.
    pub crash_gone: Option<Duration>,
}

/// Cold start without loss, then `duration` at `loss` counting members
/// declared down that never crashed, then a crash under that loss.
pub fn loss_run(config: SimConfig, loss: f64, duration: Duration) -> LossReport {
    let mut sim = Simulation::new(config);
    let converged = sim.run_until_converged(Duration::from_secs(600));
    let (downs_before, renewals_before) = (sim.false_downs(), sim.renewals());
    sim.network_mut().loss = loss;
    sim.run_until(sim.now() + duration);
    let false_downs = sim.false_downs() - downs_before;
    let renewals = sim.renewals() - renewals_before;
    let crashed = sim.pick_member(&[]).unwrap_or(0);
    sim.crash(crashed);
    let crash_gone = sim.run_until_gone(Duration::from_secs(300));
    LossReport {
        converged,
        false_downs,
        renewals,
        crash_gone,
    }
}
