//! The report: what the run did and what the checker found, as text,
//! printed and (with `FAULTS_REPORT`) written to a file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

use crate::chaos::Fault;
use crate::checker::Verdict;
use crate::fleet::{Problem, SUSPECT_LINGER};
use crate::load::Record;
use crate::settings::{
    FAULT_BOUND, HOT_TTL, LOADER_TIMEOUT, QUIET_BOUND, RSS_LIMIT_KIB, Settings, TTL,
};
use crate::timeline::secs;

/// How many violations the report shows in full.
pub const SHOWN: usize = 10;

pub struct Run<'a> {
    pub settings: &'a Settings,
    pub records: &'a [Record],
    pub faults: &'a [Fault],
    pub max_rss: &'a [(IpAddr, u64)],
    pub lingering: &'a [Problem],
    pub verdict: &'a Verdict,
}

pub fn render(run: &Run) -> String {
    let s = run.settings;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "shoal fault suite: seed {} (FAULTS_SEED={} replays the faults and the clients' choices), \
         {} nodes, {} s of chaos, {} clients",
        s.seed,
        s.seed,
        s.nodes,
        s.chaos.as_secs(),
        s.clients
    );
    let _ = writeln!(
        w,
        "invalidation bound: {QUIET_BOUND:?} quiet, {FAULT_BOUND:?} under faults \
         (ttl {TTL:?}, hot_ttl {HOT_TTL:?}, loader timeout {LOADER_TIMEOUT:?}, + 1 s)"
    );

    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    for r in run.records {
        *classes.entry(r.class()).or_default() += 1;
    }
    let _ = writeln!(w, "\nrequests: {}", run.records.len());
    for (class, n) in &classes {
        let _ = writeln!(w, "  {class:<24} {n}");
    }

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in run.faults {
        *kinds.entry(f.kind.name()).or_default() += 1;
    }
    let _ = writeln!(w, "\nfaults injected: {}", run.faults.len());
    for (kind, n) in &kinds {
        let _ = writeln!(w, "  {kind:<24} {n}");
    }
    for f in run.faults {
        let converged = f.convergence.map_or("did not converge".into(), |c| {
            let alive = c
                .alive
                .map_or("a suspect lingered".into(), |a| secs(c.ring + a));
            format!("on every ring in {}, all alive in {alive}", secs(c.ring))
        });
        let _ = writeln!(
            w,
            "    {}..{} {}: {}; {converged}",
            secs(f.start),
            secs(f.end),
            f.kind.name(),
            f.detail
        );
    }
    let rings: Vec<Duration> = run
        .faults
        .iter()
        .filter_map(|f| f.convergence)
        .map(|c| c.ring)
        .collect();
    let alive: Vec<Duration> = run
        .faults
        .iter()
        .filter_map(|f| f.convergence)
        .filter_map(|c| c.alive.map(|a| c.ring + a))
        .collect();
    if let (Some(ring), Some(all)) = (rings.iter().max(), alive.iter().max()) {
        let _ = writeln!(
            w,
            "membership convergence after a heal or restart: on every ring max {}, all alive max {}",
            secs(*ring),
            secs(*all)
        );
    }
    let _ = writeln!(
        w,
        "suspect entries that outlived convergence by {SUSPECT_LINGER:?} (not violations: a membership issue, see BENCHMARKS.md): {}",
        run.lingering.len()
    );
    for l in run.lingering.iter().take(SHOWN) {
        let _ = writeln!(w, "  at {}: {}", secs(l.at), l.detail);
    }

    let top = run.max_rss.iter().map(|(_, kib)| *kib).max().unwrap_or(0);
    let _ = writeln!(
        w,
        "\nmax RSS: {} MiB (limit {} MiB)",
        top / 1024,
        RSS_LIMIT_KIB / 1024
    );
    for (ip, kib) in run.max_rss {
        let _ = writeln!(w, "  {ip:<16} {:.1} MiB", *kib as f64 / 1024.0);
    }

    let v = run.verdict;
    let _ = writeln!(
        w,
        "\nreads checked: {}; superseded values served within the bound: {} quiet (latest {} after the write), {} under faults (latest {})",
        v.reads_checked,
        v.stale_quiet.0,
        secs(v.stale_quiet.1),
        v.stale_faulty.0,
        secs(v.stale_faulty.1),
    );
    for (what, worst) in [("quiet", &v.worst_quiet), ("under faults", &v.worst_faulty)] {
        if let Some(worst) = worst {
            let _ = writeln!(w, "  latest {what}: {worst}");
        }
    }
    let _ = writeln!(w, "violations: {}", v.violations.len());
    for x in v.violations.iter().take(SHOWN) {
        let _ = writeln!(w, "  at {} {}: {}", secs(x.at), x.kind, x.detail);
    }
    if v.violations.len() > SHOWN {
        let _ = writeln!(w, "  … and {} more", v.violations.len() - SHOWN);
    }
    out
}
