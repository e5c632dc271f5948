//! What issue 10's freshness settings buy: one key set read at a steady,
//! open-loop rate with TTL 2 s, against clusters that differ only in their
//! group's freshness settings, all in the same minute, through the same
//! origin outage in its middle.
//!
//! Each mode is its own cluster of 3 real `shoal` processes with static
//! peers on a loopback block of its own (127.0.51.x, 127.0.52.x, …; the
//! standard ports), loading from one counting origin inside this process
//! (`/{mode}/{key}`: 1 KiB with an `ETag` after `--origin-delay-ms`; `304`
//! to a matching `If-None-Match`; `503` at once during the outage):
//!
//! - `baseline`: `ttl: 2s` and nothing else (the behaviour before issue 10);
//! - `refresh-ahead`: plus `refresh_ahead: 0.8`;
//! - `full`: plus `stale_while_revalidate: 2s`, `stale_if_error: 30s`,
//!   `ttl_jitter: 0.1`, `max_concurrent_loads: 16`;
//! - `guarded`: full, plus `circuit_breaker: { failures: 5, cool_down: 2s }`.
//!
//! Every tick of the load sends one read to every mode: the same key (keys
//! in turn) on the same node index (nodes in turn, shifted each round of
//! keys so that every key is read on every node). A read "waited for the
//! origin" when it took at least half the origin's delay. The first
//! [`WARM_UP`] is reported apart (every key's first load falls in it).
//!
//! ```text
//! bench/freshness.sh [--duration 60] [--outage-start 20] [--outage-length 20]
//!     [--rate 600] [--keys 60] [--origin-delay-ms 100]
//!     [--modes baseline,refresh-ahead,full,guarded] [--binary target/release/shoal]
//!     [--out DIR]
//! ```
//!
//! # Layout
//!
//! - `args`: the flags and the modes;
//! - `config`: each mode's config file, checked by `shoal check-config`;
//! - `origin`: the counting, controllable origin and its outage clock;
//! - `cluster`: one mode's 3 node processes: start, watch, metrics, SIGTERM;
//! - `load`: the open-loop reads and what each one saw;
//! - `figures`: reads and origin requests summed by phase;
//! - `metrics`: the node counters this bench reads from `/metrics`;
//! - `report`: `result.json`, the CSV files and `summary.md`;
//! - `bench_common` (`examples/bench_common/`, shared with the other
//!   benches): progress lines, flags, the node process, `check-config`,
//!   the run's header facts, the retry rule, message counts, formatting.
//!
//! This file holds the bench's fixed numbers and the run from start to
//! summary.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use args::{Args, Mode, parse_args};
use bench_common::binary::check_config;
use bench_common::format::secs;
use bench_common::node_process::node_name;
use bench_common::progress::RunClock;
use bench_common::run_info::{git_commit, loadavg};
use cluster::Cluster;
use config::config_yaml;
use load::Load;
use origin::Origin;

const SERVICE_PORT: u16 = 3000;
const PEER_PORT: u16 = 8000;
const ADMIN_PORT: u16 = 9090;
/// Nodes per mode.
const NODES: usize = 3;
/// Every value is this long.
const VALUE_LEN: usize = 1024;
static VALUE: [u8; VALUE_LEN] = [b'v'; VALUE_LEN];
/// The group every mode reads.
const GROUP: &str = "bench";
/// Reads in the first this long after the load starts are warm-up.
const WARM_UP: Duration = Duration::from_secs(3);
/// The nodes' SIGTERM drain (config `node.drain`).
const DRAIN: &str = "1s";
/// Every group's loader timeout (below the default 3 s peer timeout, as
/// the config requires).
const LOADER_TIMEOUT: &str = "2s";

/// Deadlines for conditions polled on a busy machine.
const READY_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// One read's limit: above the loader's and the peer's timeouts, so a
/// node's own 504 arrives before the client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads of one mode in flight at once; past it a read is not sent and
/// counts as failed (the node is not keeping up with the rate).
const MAX_IN_FLIGHT: usize = 4096;
/// How often the run prints where it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Lines of a node's log printed when it failed.
const LOG_TAIL: usize = 40;

/// The clock of `progress!` lines.
static CLOCK: RunClock = RunClock::new(6);

// First: `progress!`, which the modules below use, is defined in it.
#[macro_use]
#[path = "../bench_common/mod.rs"]
mod bench_common;

mod args;
mod cluster;
mod config;
mod figures;
mod load;
mod metrics;
mod origin;
mod report;

/// A mode's node addresses: a block of its own, `127.0.51.2` and up for
/// baseline, `127.0.52.x` for refresh-ahead, `127.0.53.x` for full,
/// `127.0.54.x` for guarded (clear
/// of the test suites' blocks, 127.0.31–40 and the next few).
fn node_addrs(mode: Mode) -> Vec<IpAddr> {
    let block = match mode {
        Mode::Baseline => 51,
        Mode::RefreshAhead => 52,
        Mode::Full => 53,
        Mode::Guarded => 54,
    };
    (0..NODES)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, block, 2 + i as u8)))
        .collect()
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let version = bench_common::binary::version(&args.binary)?;
    // Taken at the start: the tree may change while the bench runs.
    let commit = git_commit();
    let load_start = loadavg();
    let origin = Origin::start(&args).await?;

    let mut clusters = Vec::new();
    for &mode in &args.modes {
        let dir = args.out.join(mode.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let ips = node_addrs(mode);
        let mut configs = Vec::new();
        for &ip in &ips {
            let path = dir.join(format!("{}.yaml", node_name(ip)));
            let yaml = config_yaml(mode, origin.addr, &ips, ip);
            if let Err(error) = check_config(&args.binary, &path, &yaml)? {
                bail!(
                    "{} check-config refuses mode {}'s config ({}): {error}\n\
                     (refresh-ahead and full need a binary with issue 10's settings; \
                     run --modes baseline on an older one)",
                    args.binary.display(),
                    mode.name(),
                    path.display()
                );
            }
            configs.push(path);
        }
        clusters.push(Cluster::new(mode, &args.binary, &dir, ips, configs));
    }
    progress!(
        "{version}; results in {}; modes {:?}; {} s at {} reads/s per mode over {} keys; \
         {}; origin {} ms",
        args.out.display(),
        args.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        args.duration.as_secs(),
        args.rate,
        args.keys,
        report::outage_text(&args),
        args.origin_delay.as_millis()
    );

    let result = measure(&args, &origin, &mut clusters).await;
    // Every node gets its SIGTERM whatever happened above.
    let mut failures = Vec::new();
    if let Err(error) = &result {
        failures.push(format!("{error:#}"));
    }
    for cluster in &mut clusters {
        failures.extend(cluster.terminate_all().await);
    }
    let (lateness, loads, snapshots) = match result {
        Ok(measured) => measured,
        Err(_) => {
            for cluster in &clusters {
                cluster.print_failed_logs();
            }
            bail!("the run failed:\n- {}", failures.join("\n- "));
        }
    };
    // A node that died mid-run is among `failures` (terminate_all reports
    // it): it fails the run, after the figures are out.
    let mut modes = Vec::new();
    for ((cluster, reads), snapshot) in clusters.iter().zip(loads).zip(snapshots) {
        modes.push(report::ModeResult::new(
            &args,
            cluster,
            reads,
            origin.requests(cluster.mode),
            snapshot,
        ));
    }
    let head = report::header(&args, &version, &commit, &load_start, lateness);
    let summary = report::write_all(&args, &head, &modes, &failures)?;
    println!("\n{summary}");
    if !failures.is_empty() {
        for cluster in &clusters {
            cluster.print_failed_logs();
        }
        bail!("the run failed:\n- {}", failures.join("\n- "));
    }
    Ok(())
}

/// What [`measure`] gives: each mode's reads and counters.
type Measured = (
    load::Lateness,
    Vec<Vec<load::Read>>,
    Vec<metrics::ModeSnapshots>,
);

/// Starts every cluster, runs the load through the outage, and takes each
/// node's counters at the end of the warm-up and at the end of the run.
async fn measure(args: &Args, origin: &Origin, clusters: &mut [Cluster]) -> Result<Measured> {
    for cluster in clusters.iter_mut() {
        cluster.spawn_all()?;
    }
    let started = Instant::now();
    for cluster in clusters.iter_mut() {
        cluster.wait_ready().await?;
    }
    progress!(
        "{} nodes ready in {}",
        clusters.len() * NODES,
        secs(started.elapsed())
    );

    let targets: Vec<Vec<IpAddr>> = clusters.iter().map(|c| c.ips.clone()).collect();
    let t0 = tokio::time::Instant::now();
    origin.start_clock(t0.into_std());
    let load = Load::start(args, &targets, t0);
    let end = t0 + args.duration;
    let warm_end = t0 + WARM_UP;
    let mut warm_snapshots = None;
    let mut next_progress = t0 + PROGRESS_EVERY;
    let mut dead_reported = vec![false; clusters.len()];
    loop {
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        if warm_snapshots.is_none() && now >= warm_end {
            let mut taken = Vec::new();
            for cluster in clusters.iter() {
                taken.push(cluster.snapshot("warm").await);
            }
            warm_snapshots = Some(taken);
        }
        if now >= next_progress {
            let at = now.duration_since(t0);
            for (i, cluster) in clusters.iter().enumerate() {
                progress!(
                    "{:>13} at {:>4.1} s: {}; origin {}",
                    cluster.mode.name(),
                    at.as_secs_f64(),
                    load.progress(i),
                    origin.progress(cluster.mode)
                );
            }
            next_progress += PROGRESS_EVERY;
        }
        for (i, cluster) in clusters.iter_mut().enumerate() {
            let dead = cluster.died();
            if !dead.is_empty() && !dead_reported[i] {
                progress!("{}: a node died: {}", cluster.mode.name(), dead.join("; "));
                dead_reported[i] = true;
            }
        }
        tokio::time::sleep_until((now + Duration::from_millis(200)).min(end)).await;
    }
    let (lateness, reads) = load.finish().await;
    progress!(
        "load stopped; {} reads answered",
        reads.iter().map(Vec::len).sum::<usize>()
    );
    let warm = warm_snapshots.unwrap_or_else(|| clusters.iter().map(|_| Vec::new()).collect());
    let mut snapshots = Vec::new();
    for (cluster, warm) in clusters.iter_mut().zip(warm) {
        for why in cluster.died() {
            progress!("{why}");
        }
        let end = cluster.snapshot("end").await;
        snapshots.push(metrics::ModeSnapshots { warm, end });
    }
    Ok((lateness, reads, snapshots))
}

#[tokio::main]
async fn main() {
    CLOCK.start();
    bench_common::entry::run_main("freshness_bench", async { run(parse_args()?).await }).await;
}
