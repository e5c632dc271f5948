//! SWIM timings → foca's configuration for a cluster of a given size. Pure.
//!
//! Suspicion lasts `suspicion_multiplier × max(1, log10 N)` probe intervals
//! (down to `confirmed_suspicion_multiplier ×` as other members confirm it:
//! `lifeguard`) and updates are sent `retransmit_multiplier × ceil(log10(N + 1))` times,
//! as memberlist does (foca's own preset rounds the latter down). The node
//! recomputes both as the cluster grows or shrinks.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::PeriodicParams;

use crate::config::SwimConfig;

/// Largest datagram gossip sends, sealing included: fits any usual MTU.
pub const MAX_DATAGRAM: usize = 1400;
/// How long a member declared down is remembered (and announced to, so
/// split halves find each other again) before it is forgotten.
const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(600);

/// An unconfirmed suspicion: foca's `suspect_to_down_after`.
pub fn suspicion(swim: &SwimConfig, cluster_size: usize) -> Duration {
    suspicion_of(swim, swim.suspicion_multiplier, cluster_size)
}

/// A suspicion confirmed by `suspicion_confirmations` other members.
pub fn confirmed_suspicion(swim: &SwimConfig, cluster_size: usize) -> Duration {
    suspicion_of(swim, swim.confirmed_suspicion_multiplier, cluster_size)
}

fn suspicion_of(swim: &SwimConfig, multiplier: f64, cluster_size: usize) -> Duration {
    let n = cluster_size.max(1) as f64;
    swim.probe_interval.mul_f64(multiplier * n.log10().max(1.0))
}

pub fn retransmissions(swim: &SwimConfig, cluster_size: usize) -> u8 {
    let n = cluster_size.max(1) as f64;
    let times = f64::from(swim.retransmit_multiplier) * (n + 1.0).log10().ceil();
    times.clamp(1.0, 255.0) as u8
}

/// foca's configuration for `cluster_size` members (this node included),
/// with packets of at most `max_packet` bytes before sealing.
pub fn foca_config(swim: &SwimConfig, cluster_size: usize, max_packet: usize) -> foca::Config {
    let nonzero = |n: u8| NonZeroUsize::new(usize::from(n.max(1))).unwrap_or(NonZeroUsize::MIN);
    foca::Config {
        probe_period: swim.probe_interval,
        probe_rtt: swim.probe_timeout,
        num_indirect_probes: nonzero(swim.indirect_probes),
        max_transmissions: NonZeroU8::new(retransmissions(swim, cluster_size))
            .unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: suspicion(swim, cluster_size),
        remove_down_after: Some(REMOVE_DOWN_AFTER),
        max_packet_size: NonZeroUsize::new(max_packet).unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            frequency: Duration::from_secs(30),
            num_members: NonZeroUsize::MIN,
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: Duration::from_secs(65),
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: swim.gossip_interval,
            num_members: nonzero(swim.gossip_nodes),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SwimProfile;

    #[test]
    fn lan_profile_matches_memberlist() {
        let lan = SwimConfig::profile(SwimProfile::Lan);
        assert_eq!(suspicion(&lan, 3), Duration::from_secs(4));
        assert_eq!(suspicion(&lan, 10), Duration::from_secs(4));
        assert_eq!(suspicion(&lan, 100), Duration::from_secs(8));
        assert_eq!(confirmed_suspicion(&lan, 100), Duration::from_secs(2));
        // 4 × ceil(log10(N + 1)): 4 up to N = 9, 8 from N = 10.
        assert_eq!(retransmissions(&lan, 5), 4);
        assert_eq!(retransmissions(&lan, 10), 8);
        let config = foca_config(&lan, 10, MAX_DATAGRAM);
        assert_eq!(config.probe_period, Duration::from_secs(1));
        assert_eq!(config.probe_rtt, Duration::from_millis(500));
        assert_eq!(config.num_indirect_probes.get(), 3);
        let gossip = config.periodic_gossip.expect("gossip on");
        assert_eq!(
            (gossip.frequency, gossip.num_members.get()),
            (Duration::from_millis(200), 3)
        );
    }

    #[test]
    fn probe_timings_do_not_change_with_size() {
        let lan = SwimConfig::profile(SwimProfile::Lan);
        let small = foca_config(&lan, 2, MAX_DATAGRAM);
        let large = foca_config(&lan, 500, MAX_DATAGRAM);
        // foca refuses a new config whose probe timings differ.
        assert_eq!(small.probe_period, large.probe_period);
        assert_eq!(small.probe_rtt, large.probe_rtt);
        assert!(large.suspect_to_down_after > small.suspect_to_down_after);
    }
}
