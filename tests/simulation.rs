//! The membership simulator's own tests (feature `sim`): a seed replays a
//! run exactly; other seeds still converge; small clusters reproduce what
//! the real multi-process runs measure (BENCHMARKS.md, "Membership" and
//! "Simulation"); partitions heal; loss makes no false positives;
//! Lifeguard's confirmations cut a crash's detection short.
//!
//! Everything runs in virtual time, so a debug build on a busy machine
//! gives the same answers as a release build on an idle one.
//!
//! `cargo test --features sim --test simulation`

use std::time::Duration;

use shoal::sim::{SimConfig, Simulation, loss_run, standard_run};

const WINDOW: Duration = Duration::from_secs(10);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_seed_replays_the_same_run() {
    let first = standard_run(SimConfig::new(12, 7), WINDOW);
    let second = standard_run(SimConfig::new(12, 7), WINDOW);
    assert_eq!(first, second);
    // And the traffic byte for byte.
    let sent = |seed| {
        let mut sim = Simulation::new(SimConfig::new(12, seed));
        sim.run_until(secs(20));
        sim.sent()
    };
    assert_eq!(sent(7), sent(7));
    assert_ne!(sent(7), sent(8), "another seed is another run");
}

#[test]
fn every_seed_converges() {
    for seed in 1..=5 {
        let mut sim = Simulation::new(SimConfig::new(10, seed));
        let converged = sim.run_until_converged(secs(10));
        assert!(
            converged.is_some_and(|t| t < secs(3)),
            "seed {seed}: {converged:?}"
        );
        assert_eq!(sim.running(), 10);
        assert_eq!(sim.false_downs(), 0, "seed {seed}");
    }
}

/// A cluster of `nodes` without Lifeguard's confirmations: every suspicion
/// lasts its full length, as in the real runs measured before them.
fn unconfirmed(nodes: usize, seed: u64) -> SimConfig {
    let mut config = SimConfig::new(nodes, seed);
    config.swim.suspicion_confirmations = 0;
    config
}

/// The real 50-node run (BENCHMARKS.md, before confirmations): converged in
/// 1.0 s, SIGKILL gone from every ring in 9.5–9.9 s, SIGTERM in 0.2–0.5 s,
/// no false positives. The bounds are wide enough for noise, narrow enough
/// to catch a protocol that is off by a probe round or a suspicion period.
#[test]
fn fifty_members_behave_as_the_real_fifty_node_run() {
    for seed in [1, 2] {
        let report = standard_run(unconfirmed(50, seed), WINDOW);
        let converged = report.converged.expect("converges");
        assert!(
            converged < secs(3),
            "seed {seed}: converged in {converged:?}"
        );
        // Suspicion alone is 4 × log10(50) × 1 s = 6.8 s; a probe round
        // before it and a gossip round after.
        let crash = report.crash_gone.expect("crash detected");
        assert!(
            crash > Duration::from_millis(6_800) && crash < secs(12),
            "seed {seed}: crash gone in {crash:?}"
        );
        let leave = report.leave_gone.expect("leave seen");
        assert!(leave < secs(2), "seed {seed}: leave gone in {leave:?}");
        assert_eq!(report.false_downs, 0, "seed {seed}");
        assert_eq!(
            report.spread_5s, 1.0,
            "seed {seed}: invalidation reached everyone"
        );
        // The real run: 229 B/s and 2.2 packets/s per node.
        assert!(
            (100.0..400.0).contains(&report.bytes_per_member_s),
            "seed {seed}: {} B/s",
            report.bytes_per_member_s
        );
        assert!(
            (1.5..4.0).contains(&report.packets_per_member_s),
            "seed {seed}: {} packets/s",
            report.packets_per_member_s
        );
    }
}

#[test]
fn a_partition_heals_through_the_seed_loop() {
    let mut sim = Simulation::new(SimConfig::new(20, 3));
    sim.run_until_converged(secs(10)).expect("converges");
    let sides: Vec<u16> = (0..20).map(|i| u16::from(i >= 10)).collect();
    sim.network_mut().partition(sides);
    sim.run_until(sim.now() + secs(40));
    assert!(!sim.converged(), "each half dropped the other");
    // Each of the 20 members declared the 10 across the cut down.
    let across = sim
        .downs()
        .iter()
        .filter(|d| (d.observer < 10) != (d.subject < 10))
        .count();
    assert!(
        across >= 200,
        "{across} members declared down across the cut"
    );
    sim.network_mut().heal();
    let healed_at = sim.now();
    let converged = sim.run_until_converged(secs(60)).expect("heals");
    assert!(
        converged - healed_at < secs(15),
        "healed {:?} after the cut closed",
        converged - healed_at
    );
}

#[test]
fn ten_percent_loss_makes_no_false_positives() {
    let mut config = SimConfig::new(20, 11);
    config.network.jitter = Duration::from_millis(2);
    let report = loss_run(config, 0.1, secs(120));
    assert!(report.converged.is_some());
    assert_eq!(report.false_downs, 0);
    assert_eq!(report.renewals, 0);
    assert!(report.crash_gone.is_some_and(|t| t < secs(20)));
}

/// Lifeguard: the members that probe a crashed one each confirm the
/// suspicion, so it ends well before its unconfirmed length, but never
/// before its confirmed one (1 × log10(50) × 1 s = 1.7 s).
#[test]
fn confirmations_cut_a_crashs_detection_short() {
    for seed in [1, 2] {
        let full = standard_run(unconfirmed(50, seed), WINDOW)
            .crash_gone
            .expect("crash detected");
        let confirmed = standard_run(SimConfig::new(50, seed), WINDOW)
            .crash_gone
            .expect("crash detected");
        assert!(
            confirmed > Duration::from_millis(1_700) && confirmed + secs(2) < full,
            "seed {seed}: crash gone in {confirmed:?} confirmed, {full:?} not"
        );
    }
}

/// At 10 % loss a suspect may hear nothing of its suspicion for the whole
/// of it, and its one suspecter then declares a healthy member down. At
/// N = 50, seeds 1 and 8 do so without confirmations, and seeds 18 and 25
/// did with confirmations but before the suspecter sent the suspect its
/// confirmation straight away (the suspect refutes to the confirmer).
#[test]
fn a_suspect_hears_of_its_suspicion_and_refutes_in_time() {
    for seed in [1, 8] {
        let without = loss_run(unconfirmed(50, seed), 0.1, secs(600));
        assert!(
            without.false_downs > 0,
            "seed {seed}: the baseline no longer shows the false down"
        );
    }
    for seed in [1, 8, 18, 25] {
        let with = loss_run(SimConfig::new(50, seed), 0.1, secs(600));
        assert_eq!(
            (with.false_downs, with.renewals),
            (0, 0),
            "seed {seed}: {with:?}"
        );
    }
}

/// During a cold start every member has membership updates queued, which
/// foca puts in a packet before any broadcast: without broadcasts of their
/// own while updates are queued, an invalidation reached nobody in 5 s at
/// N = 5,000 (BENCHMARKS.md, "Simulation"). At N = 300 the backlog lasts
/// from about 0.7 s to 4.5 s after the first start.
#[test]
fn an_invalidation_spreads_past_a_backlog_of_membership_updates() {
    let mut sim = Simulation::new(SimConfig::new(300, 3));
    sim.run_until(secs(2));
    assert_eq!(sim.running(), 300);
    let queued = sim.updates_backlog();
    assert!(
        queued > 300 * 100,
        "a backlog to get past: {queued} updates queued"
    );
    let origin = sim.pick_member(&[]).unwrap_or(0);
    let id = sim.invalidate(origin);
    sim.run_until(sim.now() + secs(5));
    let (in_1s, in_5s) = (sim.spread(id, secs(1)), sim.spread(id, secs(5)));
    assert!(
        in_1s > 0.9,
        "reached {in_1s} in 1 s, past {queued} queued updates"
    );
    assert_eq!(
        in_5s, 1.0,
        "reached {in_5s} in 5 s, past {queued} queued updates"
    );
}
