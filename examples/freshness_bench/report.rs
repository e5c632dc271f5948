//! What the run measured: per mode `reads.csv` and `origin.csv` (every
//! read and origin request), then `timeline.csv` (per second),
//! `result.json` and `summary.md` for the run.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::args::{Args, Mode};
use crate::bench_common::format::{thousands, utc_stamp};
use crate::bench_common::run_info::machine;
use crate::cluster::Cluster;
use crate::figures::{OriginFigures, Phase, ReadFigures, Second, timeline};
use crate::load::{Lateness, Outcome, Read};
use crate::metrics::{Counters, ModeSnapshots, delta, sum};
use crate::origin::{Answer, OriginRequest};
use crate::{LOADER_TIMEOUT, NODES, WARM_UP};

/// One node's counters: after the warm-up, and over the whole run.
pub struct NodeCounters {
    pub node: String,
    pub after_warm_up: Option<Counters>,
    pub total: Option<Counters>,
}

/// What one mode measured.
pub struct ModeResult {
    pub mode: Mode,
    reads: Vec<Read>,
    origin: Vec<OriginRequest>,
    /// Reads after the warm-up.
    pub after: ReadFigures,
    pub origin_after: OriginFigures,
    /// Per phase: reads, origin requests.
    pub phases: Vec<(Phase, ReadFigures, OriginFigures)>,
    pub nodes: Vec<NodeCounters>,
    pub seconds: Vec<Second>,
}

impl ModeResult {
    pub fn new(
        args: &Args,
        cluster: &Cluster,
        mut reads: Vec<Read>,
        origin: Vec<OriginRequest>,
        snapshots: ModeSnapshots,
    ) -> Self {
        reads.sort_by_key(|r| r.at);
        let waited = args.waited_threshold();
        let after = ReadFigures::of(reads.iter().filter(|r| r.at >= WARM_UP), waited);
        let origin_after = OriginFigures::of(origin.iter().filter(|r| r.at >= WARM_UP));
        let phases = Phase::ALL
            .iter()
            .map(|&phase| {
                let in_phase = |at| Phase::of(args, at) == phase;
                (
                    phase,
                    ReadFigures::of(reads.iter().filter(|r| in_phase(r.at)), waited),
                    OriginFigures::of(origin.iter().filter(|r| in_phase(r.at))),
                )
            })
            .collect();
        let nodes = snapshots
            .end
            .iter()
            .map(|end| {
                let warm = snapshots
                    .warm
                    .iter()
                    .find(|w| w.node == end.node)
                    .and_then(|w| w.counters.as_ref());
                NodeCounters {
                    node: end.node.clone(),
                    after_warm_up: end.counters.as_ref().map(|e| delta(warm, e)),
                    total: end.counters.clone(),
                }
            })
            .collect();
        let seconds = timeline(args, &reads, &origin, waited);
        Self {
            mode: cluster.mode,
            reads,
            origin,
            after,
            origin_after,
            phases,
            nodes,
            seconds,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode.name(),
            "after_warm_up": {
                "reads": self.after.json(),
                "origin": self.origin_after.json(),
            },
            "phases": self.phases.iter().map(|(phase, reads, origin)| serde_json::json!({
                "phase": phase.name(),
                "reads": reads.json(),
                "origin": origin.json(),
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| serde_json::json!({
                "node": n.node,
                "metrics_after_warm_up": n.after_warm_up,
                "metrics_total": n.total,
            })).collect::<Vec<_>>(),
        })
    }

    fn write_csv(&self, args: &Args) -> Result<()> {
        let dir = args.out.join(self.mode.name());
        let mut text = String::from("at_ms,node,key,latency_ms,status,stale,source,age,error\n");
        for read in &self.reads {
            let (status, stale, source, age, error) = match &read.outcome {
                Outcome::Value { stale, source, age } => (
                    "ok",
                    u8::from(*stale),
                    source.name(),
                    age.map(|a| a.to_string()).unwrap_or_default(),
                    String::new(),
                ),
                Outcome::Failed(message) => {
                    ("failed", 0, "", String::new(), message.replace(',', ";"))
                }
            };
            let _ = writeln!(
                text,
                "{},{},{},{:.3},{status},{stale},{source},{age},{error}",
                read.at.as_millis(),
                read.node,
                read.key,
                read.latency.as_secs_f64() * 1000.0
            );
        }
        std::fs::write(dir.join("reads.csv"), text)?;
        let mut text = String::from("at_ms,conditional,answer\n");
        for request in &self.origin {
            let answer = match request.answer {
                Answer::Value => 200,
                Answer::NotModified => 304,
                Answer::Unavailable => 503,
            };
            let _ = writeln!(
                text,
                "{},{},{answer}",
                request.at.as_millis(),
                u8::from(request.conditional)
            );
        }
        std::fs::write(dir.join("origin.csv"), text)?;
        Ok(())
    }
}

/// When the origin is down, as the header says it.
pub fn outage_text(args: &Args) -> String {
    if args.outage_length.is_zero() {
        "no outage".into()
    } else {
        format!(
            "503 at once during the outage {}–{} s",
            args.outage_start.as_secs(),
            args.outage_end().as_secs()
        )
    }
}

pub fn header(
    args: &Args,
    version: &str,
    commit: &str,
    load_start: &str,
    lateness: Lateness,
) -> String {
    let mut text = format!(
        "Freshness, {} — `{}` ({version}), tree {commit}. Per mode a cluster of {NODES} nodes \
         (static peers, loopback), group `ttl: 2s`, loader timeout {LOADER_TIMEOUT}; \
         {} keys of 1 KiB, origin {} ms (an `ETag`, 304 to a matching `If-None-Match`), \
         {}; {} s of open-loop load at {} reads/s per mode \
         (every key read every {:.0} ms, nodes in turn), every mode in the same run and the \
         same seconds.\n",
        utc_stamp(false),
        args.binary.display(),
        args.keys,
        args.origin_delay.as_millis(),
        outage_text(args),
        args.duration.as_secs(),
        args.rate,
        1000.0 * args.keys as f64 / f64::from(args.rate),
    );
    let _ = writeln!(
        text,
        "\n{}. The load's ticks: {} of {} sent 10 ms or more late, the latest {:.0} ms late.",
        machine(load_start),
        thousands(lateness.late),
        thousands(lateness.ticks),
        lateness.max.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        text,
        "A read *waited* when it took ≥ {} ms (half the origin's delay); it *failed* when it \
         got anything but 200 and the whole value (a connection-level failure is retried \
         once first); latencies run from sending a read to the last byte of its answer; \
         *stale* = `x-shoal-stale: 1`. The warm-up is the first {} s (every \
         key's first load). Origin requests are counted by arrival: all (200 / 304 / 503).",
        args.waited_threshold().as_millis(),
        WARM_UP.as_secs()
    );
    text
}

/// A counter of one node, after the warm-up: `a / b` for several labels.
fn node_cell(counters: &Option<Counters>, family: &str, label: &str, values: &[&str]) -> String {
    let Some(counters) = counters else {
        return "n/a".into();
    };
    if values.is_empty() {
        return format!("{:.0}", sum(counters, family, None));
    }
    values
        .iter()
        .map(|v| format!("{:.0}", sum(counters, family, Some((label, v)))))
        .collect::<Vec<_>>()
        .join(" / ")
}

pub fn render(args: &Args, head: &str, modes: &[ModeResult], failures: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{head}");
    let _ = writeln!(
        md,
        "After the warm-up ({}–{} s):\n\n\
         | mode | reads | waited | failed | failed in the outage | stale | p50 / p99 / max ms | origin requests |\n\
         |---|---|---|---|---|---|---|---|",
        WARM_UP.as_secs(),
        args.duration.as_secs()
    );
    for m in modes {
        let outage_failed = m
            .phases
            .iter()
            .find(|(p, _, _)| *p == Phase::Outage)
            .map_or(0, |(_, r, _)| r.failed);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.mode.name(),
            thousands(m.after.reads),
            thousands(m.after.waited),
            thousands(m.after.failed),
            thousands(outage_failed),
            thousands(m.after.stale),
            m.after.latency_text(),
            m.origin_after.text()
        );
    }
    md.push_str(
        "\nBy phase:\n\n\
         | mode | phase | reads | waited | failed | stale (oldest age) | p50 / p99 / max ms | origin requests |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for m in modes {
        for (phase, reads, origin) in &m.phases {
            if reads.reads == 0 && origin.requests == 0 {
                continue;
            }
            let (start, end) = phase.span(args);
            let stale = match reads.max_stale_age {
                Some(age) => format!("{} ({age} s)", thousands(reads.stale)),
                None => thousands(reads.stale),
            };
            let _ = writeln!(
                md,
                "| {} | {} ({start}–{end} s) | {} | {} | {} | {stale} | {} | {} |",
                m.mode.name(),
                phase.name(),
                thousands(reads.reads),
                thousands(reads.waited),
                thousands(reads.failed),
                reads.latency_text(),
                origin.text()
            );
        }
    }
    md.push_str(
        "\nPer node, after the warm-up (`/metrics`, group `bench`; 0 where the node rendered \
         no such series):\n\n\
         | mode | node | local loads | load errors | refreshes ahead / stale | stale served while-revalidate / if-error | revalidations not-modified / modified / failed | rejected overloaded / circuit-open |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for m in modes {
        for n in &m.nodes {
            let c = &n.after_warm_up;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                m.mode.name(),
                n.node,
                node_cell(c, "shoal_local_loads_total", "", &[]),
                node_cell(c, "shoal_local_load_errors_total", "", &[]),
                node_cell(c, "shoal_refreshes_total", "trigger", &["ahead", "stale"]),
                node_cell(
                    c,
                    "shoal_stale_served_total",
                    "reason",
                    &["while-revalidate", "if-error"]
                ),
                node_cell(
                    c,
                    "shoal_origin_revalidations_total",
                    "result",
                    &["not-modified", "modified", "failed"]
                ),
                node_cell(
                    c,
                    "shoal_origin_rejected_total",
                    "reason",
                    &["overloaded", "circuit-open"]
                ),
            );
        }
    }
    let mut notes = String::new();
    for failure in failures {
        let _ = writeln!(notes, "- **run failed**: {failure}");
    }
    for m in modes {
        for (message, count) in &m.after.errors {
            let _ = writeln!(notes, "- {}: {count} × {message}", m.mode.name());
        }
    }
    if !notes.is_empty() {
        md.push_str("\nFailures, and failed reads after the warm-up by error:\n\n");
        md.push_str(&notes);
    }
    md
}

/// Writes every file of the run; the summary's text.
pub fn write_all(
    args: &Args,
    head: &str,
    modes: &[ModeResult],
    failures: &[String],
) -> Result<String> {
    for m in modes {
        m.write_csv(args)
            .with_context(|| format!("write {}'s CSV files", m.mode.name()))?;
    }
    let mut text =
        String::from("second,mode,reads,waited,failed,stale,origin_requests,origin_503\n");
    for m in modes {
        for (i, s) in m.seconds.iter().enumerate() {
            let _ = writeln!(
                text,
                "{i},{},{},{},{},{},{},{}",
                m.mode.name(),
                s.reads,
                s.waited,
                s.failed,
                s.stale,
                s.origin_requests,
                s.origin_503
            );
        }
    }
    std::fs::write(args.out.join("timeline.csv"), text)?;
    let json = serde_json::json!({
        "duration_seconds": args.duration.as_secs(),
        "outage": { "start_seconds": args.outage_start.as_secs(), "length_seconds": args.outage_length.as_secs() },
        "rate_per_mode": args.rate,
        "keys": args.keys,
        "origin_delay_ms": args.origin_delay.as_millis() as u64,
        "waited_threshold_ms": args.waited_threshold().as_millis() as u64,
        "warm_up_seconds": WARM_UP.as_secs(),
        "binary": args.binary.display().to_string(),
        "modes": modes.iter().map(ModeResult::json).collect::<Vec<_>>(),
        "failures": failures,
    });
    std::fs::write(
        args.out.join("result.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let summary = render(args, head, modes, failures);
    std::fs::write(args.out.join("summary.md"), &summary)?;
    Ok(summary)
}
