//! What churn costs a shoal cluster: real `shoal` processes on 127.0.37.x
//! (standard ports), seeded through an in-process DNS server that answers
//! the headless name with the nodes that exist, a counting origin inside
//! this process (`/bench/{key}`: 1 KiB after 50 ms), and a steady,
//! rate-limited client load spread over the nodes "in service" (an endpoint
//! set this program controls, like an EndpointSlice behind a Service).
//!
//! Scenarios, each on a fresh cluster, once per mode ("on": no `churn:`
//! section, so issue 7's defaults; "off": every churn feature off, plain
//! groupcache), modes alternating so that drift hits both:
//!
//! - `rolling`: restart in place, one node at a time (DaemonSet/StatefulSet);
//!   afterwards, the cost of a cold miss (group `cold`, 0 ms origin);
//! - `replace`: new node on a new address, then the old one goes
//!   (Deployment, maxSurge 1);
//! - `scale-out`: 5 → 6; `scale-in`: 6 → 5;
//! - `sigkill`: one owner SIGKILLed, and each of its keys asked of every
//!   survivor at once, before failure detection: origin loads per key.
//!
//! ```text
//! bench/churn.sh [--scenarios rolling,replace,scale-out,scale-in,sigkill]
//!     [--modes on,off] [--keys 2000] [--rate 400] [--workers 16] [--tail 5]
//!     [--cold-keys 200] [--binary target/release/shoal] [--out DIR]
//!     [--no-churn-section]
//! ```
//!
//! `--no-churn-section` makes mode "off" write no `churn:` section either:
//! for a binary older than issue 7, which refuses the section and has no
//! churn features (both modes then run plain groupcache).
//!
//! # Layout
//!
//! - `args`: the flags, the scenarios and the modes;
//! - `config`: each mode's config file;
//! - `origin`: the counting origin;
//! - `client`: one client GET with its retry, and the [`client::Tally`] of
//!   many;
//! - `load`: the steady load over the nodes in service;
//! - `cluster`: the node processes, their DNS name and membership views;
//! - `scenarios`: one scenario on a fresh cluster, from start to teardown;
//! - `outcome`: what one scenario measured, and its `result.json`;
//! - `report`: the summary table (`summary.md`);
//! - `bench_common` (`examples/bench_common/`, shared with the other
//!   benches): progress lines, flags, the node process, `check-config`,
//!   the run's header facts, the retry rule, message counts, formatting;
//! - `dns` (`tests/common/dns.rs`, shared with the tests): the DNS server.
//!
//! This file holds the bench's fixed numbers and the run from start to
//! summary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use args::{Args, Mode, parse_args};
use bench_common::binary::check_config;
use bench_common::node_process::node_name;
use bench_common::progress::RunClock;
use bench_common::run_info::{git_commit, loadavg};
use config::config_yaml;
use report::{header, render};
use scenarios::run_scenario;

/// The headless Service name every node is seeded with.
const DNS_NAME: &str = "shoal-gossip.bench.svc.cluster.local";
const SERVICE_PORT: u16 = 3000;
const ADMIN_PORT: u16 = 9090;
/// Every value is this long (origin and check).
const VALUE_LEN: usize = 1024;
static VALUE: [u8; VALUE_LEN] = [b'v'; VALUE_LEN];
/// How long the origin takes for a `bench` key.
const ORIGIN_DELAY: Duration = Duration::from_millis(50);
/// The nodes' SIGTERM drain (config `node.drain`).
const DRAIN: &str = "2s";

/// Deadlines for conditions polled on a busy machine.
const READY_LIMIT: Duration = Duration::from_secs(60);
const SHAPE_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// A membership change slower than this is noted in the timeline.
const SLOW_SHAPE: Duration = Duration::from_secs(1);
/// Load before the first action, so the pool and rate are steady.
const PRE_ROLL: Duration = Duration::from_secs(2);
/// Load after a roll's last action.
const ROLL_TAIL: Duration = Duration::from_secs(2);
/// No load runs longer than this, whatever happens.
const MAX_LOAD: Duration = Duration::from_secs(600);
/// One client request's limit (a loader times out after 2 s, a peer
/// fetch after 3 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent requests while warming.
const WARM_CONCURRENCY: usize = 32;
/// Keys probed at once in `sigkill` (each asked of every survivor).
const PROBE_KEYS_AT_ONCE: usize = 32;

/// The clock of `progress!` lines.
static CLOCK: RunClock = RunClock::new(7);

// First: `progress!`, which the modules below use, is defined in it.
#[macro_use]
#[path = "../bench_common/mod.rs"]
mod bench_common;

#[path = "../../tests/common/dns.rs"]
mod dns;

mod args;
mod client;
mod cluster;
mod config;
mod load;
mod origin;
mod outcome;
mod report;
mod scenarios;

/// `127.0.37.host`: the block reserved for this benchmark.
fn addr(host: u8) -> IpAddr {
    assert!(
        (2..=30).contains(&host),
        "127.0.37.{host} is outside 2..=30"
    );
    IpAddr::V4(Ipv4Addr::new(127, 0, 37, host))
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let version = bench_common::binary::version(&args.binary)?;
    // Taken at the start: the tree may change while the bench runs.
    let commit = git_commit();
    let example: SocketAddr = (Ipv4Addr::LOCALHOST, 1).into();
    let checks = args.out.join("config-checks");
    std::fs::create_dir_all(&checks)?;
    if let Err(error) = check_config(
        &args.binary,
        &checks.join("on.yaml"),
        &config_yaml(Mode::On, example, false),
    )? {
        bail!("the binary refuses mode on's config: {error}");
    }
    let accepts_churn = check_config(
        &args.binary,
        &checks.join("off.yaml"),
        &config_yaml(Mode::Off, example, false),
    )?;
    if let Err(error) = &accepts_churn {
        if !args.no_churn_section && args.modes.contains(&Mode::Off) {
            bail!(
                "{} refuses the churn: section of mode off ({error}): it predates issue 7. \
                 Rerun with --no-churn-section to measure it anyway (both modes are then plain groupcache).",
                args.binary.display()
            );
        }
        progress!("the binary refuses the churn: section: both modes run plain groupcache");
    } else if args.no_churn_section {
        progress!(
            "warning: --no-churn-section with a binary that accepts the section: mode off runs the defaults"
        );
    }
    progress!(
        "{version}; results in {}; scenarios {:?}, modes {:?}",
        args.out.display(),
        args.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
        args.modes.iter().map(|m| m.name()).collect::<Vec<_>>()
    );

    let load_start = loadavg();
    let mut outcomes = Vec::new();
    for (i, &scenario) in args.scenarios.iter().enumerate() {
        // ABBA: on, off, off, on, … so drift falls on both modes alike.
        let mut modes = args.modes.clone();
        if i % 2 == 1 {
            modes.reverse();
        }
        for mode in modes {
            progress!(
                "== {} / mode {} (load average {})",
                scenario.title(),
                mode.name(),
                loadavg()
            );
            let outcome = run_scenario(&args, scenario, mode).await?;
            if let Some(error) = &outcome.error {
                progress!(
                    "{}/{} did not complete: {error}",
                    scenario.name(),
                    mode.name()
                );
            }
            outcomes.push(outcome);
        }
    }
    let head = header(&args, &version, &commit, accepts_churn.is_ok(), &load_start);
    let summary = render(&args, &head, &mut outcomes);
    println!("\n{summary}");
    std::fs::write(args.out.join("summary.md"), &summary)?;
    Ok(())
}

#[tokio::main]
async fn main() {
    CLOCK.start();
    bench_common::entry::run_main("churn_bench", async { run(parse_args()?).await }).await;
}
