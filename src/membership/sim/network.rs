//! The simulated network: per-packet loss, delay (base + uniform jitter)
//! and partitions. Pure: the RNG is an input, so a seed replays a run.

use std::time::Duration;

use rand::{Rng, RngExt};

/// What happens to packets between members.
#[derive(Debug, Clone)]
pub struct Network {
    /// Probability that a packet is lost (each packet on its own).
    pub loss: f64,
    /// Every packet takes at least this long.
    pub delay: Duration,
    /// Plus up to this much more, uniformly.
    pub jitter: Duration,
    /// Each member's side when the network is split: packets cross only
    /// between members on the same side. Empty: no partition.
    sides: Vec<u16>,
}

impl Default for Network {
    /// Loopback-like: no loss, 0.1 ms plus up to 0.4 ms.
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::from_micros(100),
            jitter: Duration::from_micros(400),
            sides: Vec::new(),
        }
    }
}

impl Network {
    /// Splits the members: member `i` is on side `sides[i]` (members past
    /// the end are on side 0).
    pub fn partition(&mut self, sides: Vec<u16>) {
        self.sides = sides;
    }

    /// Joins every side again.
    pub fn heal(&mut self) {
        self.sides.clear();
    }

    fn side(&self, member: usize) -> u16 {
        self.sides.get(member).copied().unwrap_or(0)
    }

    /// How long a packet from `from` to `to` takes, or `None` if it is lost
    /// or cannot cross the partition.
    pub fn route<R: Rng + ?Sized>(&self, from: usize, to: usize, rng: &mut R) -> Option<Duration> {
        if self.side(from) != self.side(to) {
            return None;
        }
        if self.loss > 0.0 && rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            return None;
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.jitter.mul_f64(rng.random_range(0.0..1.0))
        };
        Some(self.delay + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_stay_in_bounds_and_loss_is_near_its_rate() {
        let network = Network {
            loss: 0.1,
            ..Network::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let routes: Vec<_> = (0..10_000).map(|_| network.route(0, 1, &mut rng)).collect();
        let lost = routes.iter().filter(|r| r.is_none()).count();
        assert!((800..1200).contains(&lost), "{lost} lost of 10,000");
        for delay in routes.into_iter().flatten() {
            assert!(delay >= network.delay && delay <= network.delay + network.jitter);
        }
    }

    #[test]
    fn partitions_cut_across_sides_only() {
        let mut network = Network::default();
        network.partition(vec![0, 0, 1]);
        let mut rng = StdRng::seed_from_u64(2);
        assert!(network.route(0, 1, &mut rng).is_some());
        assert!(network.route(1, 2, &mut rng).is_none());
        assert!(network.route(2, 1, &mut rng).is_none());
        network.heal();
        assert!(network.route(1, 2, &mut rng).is_some());
    }
}
