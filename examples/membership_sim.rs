//! The membership simulator from the command line: the real gossip code
//! (shoal's core over foca) on N simulated members in virtual time.
//!
//! `cargo run --release --features sim --example membership_sim --
//! [--nodes 50,200] [--seed 1] [--trials 3] [--scenario standard|loss]
//! [--loss 0.1] [--duration 600] [--window 30] [--profile lan|fast]
//! [--delay-us 100] [--jitter-us 400] [--start-interval-ms 2]
//! [--suspicion-multiplier M] [--confirmed-suspicion-multiplier m]
//! [--suspicion-confirmations K] [--csv FILE]`
//!
//! `standard`: cold start, gossip traffic over `--window` s, an
//! invalidation's spread after 1 s and 5 s, a crash and a graceful leave
//! (each until gone from every ring). `loss`: cold start, then
//! `--duration` s at `--loss` counting members declared down that never
//! crashed, then a crash under that loss. Each trial uses seed
//! `--seed + trial`. `--csv` appends one line per trial.

use std::io::Write;
use std::time::{Duration, Instant};

use shoal::config::{SwimConfig, SwimProfile};
use shoal::sim::{SimConfig, loss_run, standard_run};

struct Args {
    nodes: Vec<usize>,
    seed: u64,
    trials: u64,
    scenario: String,
    loss: f64,
    duration: u64,
    window: u64,
    profile: SwimProfile,
    delay_us: u64,
    jitter_us: u64,
    start_interval_ms: u64,
    /// Overrides the profile's (suspicion lasts M × max(1, log10 N) probe
    /// intervals): for measuring how much shorter suspicion could be.
    suspicion_multiplier: Option<f64>,
    /// Overrides the profile's Lifeguard confirmations (0: off), to compare
    /// detection with and without them in one build.
    suspicion_confirmations: Option<u8>,
    /// Overrides the profile's confirmed suspicion (m × max(1, log10 N)).
    confirmed_suspicion_multiplier: Option<f64>,
    csv: Option<std::path::PathBuf>,
}

fn usage(message: &str) -> ! {
    eprintln!("membership_sim: {message} (see the doc comment in examples/membership_sim.rs)");
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("{flag}: cannot read {value:?}")))
}

fn args() -> Args {
    let mut args = Args {
        nodes: vec![50],
        seed: 1,
        trials: 1,
        scenario: "standard".into(),
        loss: 0.1,
        duration: 600,
        window: 30,
        profile: SwimProfile::Lan,
        delay_us: 100,
        jitter_us: 400,
        start_interval_ms: 2,
        suspicion_multiplier: None,
        suspicion_confirmations: None,
        confirmed_suspicion_multiplier: None,
        csv: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--nodes" => args.nodes = value.split(',').map(|n| parse(&flag, n)).collect(),
            "--seed" => args.seed = parse(&flag, &value),
            "--trials" => args.trials = parse(&flag, &value),
            "--scenario" => args.scenario = value,
            "--loss" => args.loss = parse(&flag, &value),
            "--duration" => args.duration = parse(&flag, &value),
            "--window" => args.window = parse(&flag, &value),
            "--profile" => {
                args.profile = match value.as_str() {
                    "lan" => SwimProfile::Lan,
                    "fast" => SwimProfile::Fast,
                    _ => usage("--profile is lan or fast"),
                }
            }
            "--delay-us" => args.delay_us = parse(&flag, &value),
            "--jitter-us" => args.jitter_us = parse(&flag, &value),
            "--start-interval-ms" => args.start_interval_ms = parse(&flag, &value),
            "--suspicion-multiplier" => args.suspicion_multiplier = Some(parse(&flag, &value)),
            "--suspicion-confirmations" => {
                args.suspicion_confirmations = Some(parse(&flag, &value))
            }
            "--confirmed-suspicion-multiplier" => {
                args.confirmed_suspicion_multiplier = Some(parse(&flag, &value))
            }
            "--csv" => args.csv = Some(value.into()),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    args
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn append_csv(path: &std::path::Path, header: &str, line: &str) {
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| usage(&format!("--csv {}: {e}", path.display())));
    let written = if new {
        writeln!(file, "{header}\n{line}")
    } else {
        writeln!(file, "{line}")
    };
    written.unwrap_or_else(|e| usage(&format!("--csv {}: {e}", path.display())));
}

fn main() {
    let args = args();
    for &nodes in &args.nodes {
        for trial in 0..args.trials {
            let seed = args.seed + trial;
            let mut config = SimConfig::new(nodes, seed);
            config.swim = SwimConfig::profile(args.profile);
            if let Some(multiplier) = args.suspicion_multiplier {
                config.swim.suspicion_multiplier = multiplier;
            }
            if let Some(confirmations) = args.suspicion_confirmations {
                config.swim.suspicion_confirmations = confirmations;
            }
            if let Some(multiplier) = args.confirmed_suspicion_multiplier {
                config.swim.confirmed_suspicion_multiplier = multiplier;
            }
            config.network.delay = Duration::from_micros(args.delay_us);
            config.network.jitter = Duration::from_micros(args.jitter_us);
            config.start_interval = Duration::from_millis(args.start_interval_ms);
            let wall = Instant::now();
            match args.scenario.as_str() {
                "standard" => {
                    let r = standard_run(config, Duration::from_secs(args.window));
                    let wall = wall.elapsed().as_secs_f64();
                    println!(
                        "N={nodes} seed={seed}: converged {} s, {:.0} B/s and {:.1} packets/s per member, \
                         invalidation at 1 s {:.1} % and 5 s {:.1} %, crash gone in {} s, leave gone in {} s, \
                         false downs {} (wall {wall:.1} s)",
                        secs(r.converged),
                        r.bytes_per_member_s,
                        r.packets_per_member_s,
                        100.0 * r.spread_1s,
                        100.0 * r.spread_5s,
                        secs(r.crash_gone),
                        secs(r.leave_gone),
                        r.false_downs,
                    );
                    if let Some(path) = &args.csv {
                        append_csv(
                            path,
                            "nodes,seed,converged_s,bytes_per_s,packets_per_s,spread_1s,spread_5s,crash_gone_s,leave_gone_s,false_downs,wall_s",
                            &format!(
                                "{nodes},{seed},{},{:.1},{:.2},{:.4},{:.4},{},{},{},{wall:.1}",
                                secs(r.converged),
                                r.bytes_per_member_s,
                                r.packets_per_member_s,
                                r.spread_1s,
                                r.spread_5s,
                                secs(r.crash_gone),
                                secs(r.leave_gone),
                                r.false_downs,
                            ),
                        );
                    }
                }
                "loss" => {
                    let duration = Duration::from_secs(args.duration);
                    let r = loss_run(config, args.loss, duration);
                    let wall = wall.elapsed().as_secs_f64();
                    println!(
                        "N={nodes} seed={seed}: converged {} s; {} s at {:.0} % loss: {} false downs, \
                         {} renewals; crash under loss gone in {} s (wall {wall:.1} s)",
                        secs(r.converged),
                        args.duration,
                        100.0 * args.loss,
                        r.false_downs,
                        r.renewals,
                        secs(r.crash_gone),
                    );
                    if let Some(path) = &args.csv {
                        append_csv(
                            path,
                            "nodes,seed,loss,duration_s,converged_s,false_downs,renewals,crash_gone_s,wall_s",
                            &format!(
                                "{nodes},{seed},{},{},{},{},{},{},{wall:.1}",
                                args.loss,
                                args.duration,
                                secs(r.converged),
                                r.false_downs,
                                r.renewals,
                                secs(r.crash_gone),
                            ),
                        );
                    }
                }
                other => usage(&format!("unknown scenario {other}")),
            }
        }
    }
}
