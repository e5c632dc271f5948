//! The fault suite: a gossiping cluster under steady read/write load while
//! a chaos loop kills (SIGKILL and SIGTERM) and restarts nodes, partitions
//! one or two of them, drops 10 % of packets and slows the origin; then a
//! checker goes through every answer and the test fails on any violation.
//!
//! Each node is the `shoal` binary in a network namespace of its own on
//! the LAN `common/netns.rs` builds (10.231.36.0/24, tag `shoalft`, so it
//! can run beside `tests/partition.rs`), seeded by the test's DNS server
//! answering one name with every node's address, with a keyring. The
//! origin (root namespace) makes a fresh self-describing value for each
//! load (key, producer, sequence number), as the clients' PUTs do, and
//! remembers when it made each.
//!
//! What shoal promises, and the checker holds it to (`faults/checker.rs`):
//! - every 200 is a value for the key asked for, made by the origin or by
//!   a PUT a client attempted, never another key's, never one made after
//!   the read ended;
//! - the invalidation bound. While every node runs and reaches every
//!   other, a PUT or DELETE reaches every node's copies by gossip
//!   dissemination: a read that starts more than 3 s after the write was
//!   acknowledged never sees a value made before the write. Under a
//!   partition, packet loss or a stopped node, the invalidation may never
//!   reach some node (gossip does not replay it after a heal), so the
//!   bound is the copies' lifetime: a main-cache copy lives `ttl` from when
//!   it was stored, a hot copy `hot_ttl` and never past the owner's time
//!   left, peeks and handoffs carry the time left with them, and a value
//!   is stored at most the loader timeout after the origin made it: with
//!   `ttl` 3 s and a 2 s loader timeout, 6 s (one second of slack
//!   included). A slow origin does not widen the bound;
//! - error answers are JSON bodies, and a GET never answers 404;
//! - no node exits unless the chaos loop stopped it, and each SIGTERM
//!   (the chaos loop's and the final one) gives exit 0;
//! - every node's VmRSS stays under `RSS_LIMIT_KIB`;
//! - after each heal and restart, every running node's `/_members` lists
//!   every running node on its ring (alive, or suspect: suspect members
//!   keep their keys) and no other alive, within `CONVERGE_DEADLINE`. How
//!   long until all are listed alive is measured too; a suspect entry that
//!   outlives that by `SUSPECT_LINGER` is reported, not failed: a
//!   suspicion that reached a node only by gossip can linger there for
//!   tens of seconds, a membership issue this suite found.
//!
//! Errors (5xx, timeouts, refused connections) during faults are counted
//! in the report, not violations.
//!
//! `FAULTS_SECS` (75), `FAULTS_NODES` (5), `FAULTS_CLIENTS` (6) size a run,
//! `FAULTS_SEED` replays one (the seed is printed at the start), and
//! `FAULTS_REPORT` names a file for the report; `bench/faults.sh` is the
//! long run. Like the partition test it needs root, iproute2 and iptables:
//! elsewhere it is reported as ignored, with `CI` set it fails.

#[path = "faults/chaos.rs"]
mod chaos;
#[path = "faults/checker.rs"]
mod checker;
mod common;
#[path = "common/dns.rs"]
mod dns;
#[path = "faults/fleet.rs"]
mod fleet;
#[path = "faults/load.rs"]
mod load;
#[path = "common/netns.rs"]
mod netns;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/origin.rs"]
mod origin;
#[path = "faults/report.rs"]
mod report;
#[path = "faults/settings.rs"]
mod settings;
#[path = "faults/timeline.rs"]
mod timeline;
#[path = "faults/value.rs"]
mod value;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio_util::sync::CancellationToken;

use chaos::Chaos;
use dns::DnsServer;
use fleet::{Fleet, Recipe};
use load::Load;
use netns::Lan;
use origin::FaultOrigin;
use settings::{CONVERGE_DEADLINE, EXIT_DEADLINE, QUIET_EDGE, RSS_LIMIT_KIB, Settings};
use timeline::Clock;
use value::Sequence;

const TEST: &str = "nothing_is_lost_under_kills_partitions_loss_and_a_slow_origin";
/// Names the namespaces (`shoalft-…`), the root namespace's link and the
/// lock file: distinct from the partition test's.
const LAN_TAG: &str = "shoalft";
const SUBNET: [u8; 3] = [10, 231, 36];
const NAME: &str = "faults.shoal.test";
/// How often the fleet is checked for crashes and RSS.
const WATCH_EVERY: Duration = Duration::from_millis(200);

fn main() {
    netns::run_root_test(TEST, "fault suite", nothing_is_lost)
}

fn nothing_is_lost() {
    // The crate's reqwest has no crypto provider of its own, even for
    // plain HTTP clients.
    shoal::install_crypto_provider();
    let settings = Settings::from_env();
    eprintln!(
        "fault suite: seed {} (FAULTS_SEED={} replays it), {} nodes, {} s of chaos",
        settings.seed,
        settings.seed,
        settings.nodes,
        settings.chaos.as_secs()
    );
    // Built before the runtime and dropped after it (and after every node).
    let lan = Lan::create(LAN_TAG, SUBNET, settings.nodes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(failure) = runtime.block_on(run(&lan, &settings)) {
        panic!("{failure}");
    }
}

/// The whole run; `Err` with the report (and where the logs are) if the
/// checker found violations. Every node is stopped before it returns, so a
/// failure prints the report, not every node's whole log.
async fn run(lan: &Lan, settings: &Settings) -> Result<(), String> {
    let clock = Clock::start();
    let seq = Sequence::default();
    let origin = FaultOrigin::start(lan.gateway(), clock, seq.clone()).await;
    let dns = DnsServer::start_on(lan.gateway()).await;
    let ips: Vec<IpAddr> = lan.hosts().iter().map(|h| h.ip).collect();
    dns.set(NAME, ips);
    let dir = tempfile::tempdir().expect("temp dir for the keyring");
    let keyring = dir.path().join("keyring");
    let key: [u8; 32] = rand::random();
    let line = base64::engine::general_purpose::STANDARD.encode(key);
    std::fs::write(&keyring, format!("{line}\n")).expect("write the keyring");

    let recipe = Recipe {
        config: settings::node_config(origin.addr),
        seed: NAME.into(),
        dns: dns.addr(),
        keyring,
    };
    let fleet = Arc::new(Fleet::start(lan.hosts(), recipe, clock));
    let mut faults = Vec::new();
    let mut records = Vec::new();
    if fleet.converge("start", CONVERGE_DEADLINE).await.is_some() {
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch(fleet.clone(), stop.clone()));
        let load = Load::start(
            settings.clients,
            settings.seed,
            clock,
            seq,
            fleet.targets.clone(),
        );
        // Quiet load before the first fault and after the last.
        tokio::time::sleep(QUIET_EDGE).await;
        faults = Chaos::new(&fleet, &origin, clock, settings.seed)
            .run(settings.chaos)
            .await;
        tokio::time::sleep(QUIET_EDGE).await;
        records = load.stop().await;
        stop.cancel();
        watcher.await.expect("the fleet watcher panicked");
        fleet.watch(RSS_LIMIT_KIB);
        fleet.terminate_all(EXIT_DEADLINE).await;
    }

    let verdict = checker::check(&records, &origin.produced(), &faults, &fleet.problems());
    let max_rss: Vec<(IpAddr, u64)> = (0..fleet.len())
        .map(|i| fleet.ip(i))
        .zip(fleet.max_rss())
        .collect();
    let text = report::render(&report::Run {
        settings,
        records: &records,
        faults: &faults,
        max_rss: &max_rss,
        lingering: &fleet.lingering(),
        verdict: &verdict,
    });
    eprintln!("{text}");
    if let Some(path) = &settings.report {
        std::fs::write(path, &text).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    let failed = verdict.violations.len();
    if failed == 0 && !records.is_empty() {
        fleet.kill_all();
        return Ok(());
    }
    let logs = save_logs(&fleet, settings.seed);
    fleet.kill_all();
    Err(format!(
        "{failed} violations (the first {} above); every node's log is in {}",
        report::SHOWN,
        logs.display()
    ))
}

/// Checks the fleet for crashes and RSS until `stop`.
async fn watch(fleet: Arc<Fleet>, stop: CancellationToken) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => fleet.watch(RSS_LIMIT_KIB),
        }
    }
}

/// Writes every process's log under the target dir; returns the dir.
fn save_logs(fleet: &Fleet, seed: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("faults-{seed}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for (name, text) in fleet.logs() {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    dir
}
