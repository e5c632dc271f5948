//! The chaos loop: one fault episode after another, from a seeded RNG,
//! until the chaos time is up. An episode is a main fault (SIGKILL and
//! restart, SIGTERM and restart, a partition of one or two nodes, 10 %
//! packet loss, or a slow origin), sometimes overlapped by packet loss or a
//! slow origin; then everything is healed, membership must converge, and a
//! short quiet gap follows, so the run has both faulty and quiet windows.
//! The kinds are dealt from a shuffled deck, so every kind comes up in
//! every six episodes.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};

use crate::fleet::{Convergence, Fleet};
use crate::network::{PacketLoss, Partition};
use crate::origin::FaultOrigin;
use crate::settings::{CONVERGE_DEADLINE, EXIT_DEADLINE};
use crate::timeline::Clock;

/// The share of packets dropped during packet loss.
pub const LOSS: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Term,
    Partition,
    PacketLoss,
    SlowOrigin,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "SIGKILL + restart",
            Kind::Term => "SIGTERM + restart",
            Kind::Partition => "partition + heal",
            Kind::PacketLoss => "10 % packet loss",
            Kind::SlowOrigin => "slow origin",
        }
    }

    /// Whether the fault can keep an invalidation from a node (so the
    /// checker allows the fault bound rather than the quiet one). A slow
    /// origin cannot: it only delays loads.
    pub fn disturbs_invalidation(self) -> bool {
        self != Kind::SlowOrigin
    }
}

/// One fault injected.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// Which nodes, how long, how slow.
    pub detail: String,
    pub start: Duration,
    /// When it was healed (the restarted node ready, the rules deleted).
    pub end: Duration,
    /// When membership had converged after it (or the deadline passed).
    pub settled: Duration,
    /// How long convergence took after the heal; `None`: it did not.
    pub convergence: Option<Convergence>,
}

/// One episode's main fault: (kind, number of nodes for a partition).
const DECK: [(Kind, usize); 6] = [
    (Kind::Kill, 1),
    (Kind::Term, 1),
    (Kind::Partition, 1),
    (Kind::Partition, 2),
    (Kind::PacketLoss, 0),
    (Kind::SlowOrigin, 0),
];

pub struct Chaos<'a> {
    pub fleet: &'a Fleet,
    pub origin: &'a FaultOrigin,
    pub clock: Clock,
    pub rng: StdRng,
    pub faults: Vec<Fault>,
}

impl<'a> Chaos<'a> {
    pub fn new(fleet: &'a Fleet, origin: &'a FaultOrigin, clock: Clock, seed: u64) -> Self {
        Self {
            fleet,
            origin,
            clock,
            rng: StdRng::seed_from_u64(seed),
            faults: Vec::new(),
        }
    }

    /// Runs episodes until `length` has passed since the call; returns the
    /// faults injected.
    pub async fn run(mut self, length: Duration) -> Vec<Fault> {
        let until = self.clock.now() + length;
        let mut deck = Vec::new();
        while self.clock.now() < until {
            if deck.is_empty() {
                deck = DECK.to_vec();
                deck.shuffle(&mut self.rng);
            }
            let (kind, size) = deck.pop().expect("refilled");
            self.episode(kind, size).await;
            let gap = self.millis(1000..3000);
            // A quiet window: the load runs against a healed cluster.
            tokio::time::sleep(gap).await;
        }
        self.faults
    }

    fn millis(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(range))
    }

    async fn episode(&mut self, kind: Kind, size: usize) {
        // Sometimes a background fault under the main one.
        let overlay = if self.rng.random_bool(0.4) {
            let under: Vec<Kind> = [Kind::PacketLoss, Kind::SlowOrigin]
                .into_iter()
                .filter(|&k| k != kind)
                .collect();
            under.choose(&mut self.rng).copied()
        } else {
            None
        };
        let hosts: Vec<_> = (0..self.fleet.len()).map(|i| self.fleet.host(i)).collect();
        let mut started = Vec::new();
        let mut loss = None;
        let mut slow = false;
        for k in overlay.into_iter().chain([kind]) {
            match k {
                Kind::PacketLoss => {
                    started.push((
                        k,
                        format!("{} % at every host", LOSS * 100.0),
                        self.clock.now(),
                    ));
                    loss = Some(PacketLoss::start(&hosts, LOSS));
                }
                Kind::SlowOrigin => {
                    let delay = self.millis(500..2500);
                    started.push((
                        k,
                        format!("origin answers after {delay:?}"),
                        self.clock.now(),
                    ));
                    self.origin.set_delay(delay);
                    slow = true;
                }
                _ => {}
            }
        }
        let main_start = self.clock.now();
        let main_detail = match kind {
            Kind::Kill | Kind::Term => Some(self.stop_and_restart(kind).await),
            Kind::Partition => Some(self.partition(&hosts, size).await),
            Kind::PacketLoss | Kind::SlowOrigin => {
                let hold = self.millis(4000..10_000);
                tokio::time::sleep(hold).await;
                None
            }
        };
        if let Some(loss) = loss {
            loss.end();
        }
        if slow {
            self.origin.set_delay(Duration::ZERO);
        }
        let end = self.clock.now();
        let names: Vec<&str> = started.iter().map(|(k, ..)| k.name()).collect();
        let after = format!("{} ({})", kind.name(), names.join(", "));
        let convergence = self.fleet.converge(&after, CONVERGE_DEADLINE).await;
        let settled = self.clock.now();
        let mut record = |kind, detail, start| {
            self.faults.push(Fault {
                kind,
                detail,
                start,
                end,
                settled,
                convergence,
            });
        };
        if let Some(detail) = main_detail {
            record(kind, detail, main_start);
        }
        for (k, detail, start) in started {
            record(k, detail, start);
        }
    }

    /// Stops a random running node with `kind`'s signal, leaves it down a
    /// moment, restarts it at the same address and waits until it is ready.
    async fn stop_and_restart(&mut self, kind: Kind) -> String {
        let running = self.fleet.running();
        let i = running[self.rng.random_range(0..running.len())];
        let down = self.millis(300..3000);
        match kind {
            Kind::Kill => self.fleet.kill(i),
            _ => self.fleet.terminate(i, EXIT_DEADLINE).await,
        }
        // Down for a while, as a pod between its death and its replacement.
        tokio::time::sleep(down).await;
        self.fleet.restart(i, CONVERGE_DEADLINE).await;
        format!("{}, down {down:?}", self.fleet.ip(i))
    }

    /// Cuts `size` random running nodes off from the rest, holds, heals.
    async fn partition(&mut self, hosts: &[crate::netns::Host], size: usize) -> String {
        let mut running = self.fleet.running();
        running.shuffle(&mut self.rng);
        running.truncate(size);
        let isolated: Vec<_> = running.iter().map(|&i| hosts[i].clone()).collect();
        let rest: Vec<_> = hosts
            .iter()
            .filter(|h| !isolated.iter().any(|x| x.ip == h.ip))
            .cloned()
            .collect();
        let hold = self.millis(3000..8000);
        let cut = Partition::cut(&isolated, &rest);
        // The partition's length: long enough, often, for failure detection.
        tokio::time::sleep(hold).await;
        cut.heal();
        let ips: Vec<String> = isolated.iter().map(|h| h.ip.to_string()).collect();
        format!("{} cut off for {hold:?}", ips.join(" + "))
    }
}
