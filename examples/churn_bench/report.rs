//! The summary: a header on the run and the machine, then one table per
//! kind of figure, then the notes (`summary.md`, and stdout).

use std::fmt::Write as _;

use crate::args::{Args, Mode, Scenario};
use crate::bench_common::format::{p50_p99_max, secs, thousands, utc_stamp};
use crate::bench_common::run_info::machine;
use crate::outcome::{ColdFigures, Outcome};
use crate::{DRAIN, PRE_ROLL, ROLL_TAIL};

pub fn header(
    args: &Args,
    version: &str,
    commit: &str,
    accepts_churn: bool,
    load_start: &str,
) -> String {
    let mut text = format!(
        "Churn, {} — `{}` ({version}), tree {commit}; {} keys of 1 KiB (origin 50 ms); \
         5 nodes (6 for scale-in), drain {DRAIN}, resolve_interval 2s; load {} req/s over {} \
         keep-alive workers, one retry on a connection-level failure.\n",
        utc_stamp(false),
        args.binary.display(),
        thousands(args.keys as u64),
        args.rate,
        args.workers,
    );
    let _ = writeln!(
        text,
        "\n{} (the bench itself needs about a quarter of a core).",
        machine(load_start)
    );
    let _ = writeln!(
        text,
        "Requests and origin loads count from the load's start ({} s before the first \
         action) to its stop ({} s after the last one; {} s after a scale step); extra origin \
         loads are a share of the {} keys; hit ratio = (requests − origin loads) ÷ requests; \
         roll duration: first action → target shape, every node listing every other alive. \
         A request fails if it still fails after its one retry, or answers other than 200.",
        PRE_ROLL.as_secs(),
        ROLL_TAIL.as_secs(),
        args.tail.as_secs(),
        thousands(args.keys as u64),
    );
    if !accepts_churn {
        text.push_str(
            "\nThis binary refuses the `churn:` section: it has no churn features, so modes \
             `on` and `off` ran the same plain-groupcache configuration.\n",
        );
    } else if args.no_churn_section {
        text.push_str(
            "\n`--no-churn-section`: mode `off` wrote no `churn:` section, so it ran the \
             binary's defaults too.\n",
        );
    }
    text
}

pub fn render(args: &Args, head: &str, outcomes: &mut [Outcome]) -> String {
    let keys = args.keys as f64;
    let mut md = String::new();
    let _ = writeln!(md, "{head}");
    let rolls: Vec<&mut Outcome> = outcomes
        .iter_mut()
        .filter(|o| o.scenario != Scenario::Sigkill)
        .collect();
    if !rolls.is_empty() {
        md.push_str(
            "| scenario | mode | requests | failed | extra origin loads | hit ratio | roll duration | p50 / p99 / max ms |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for o in rolls {
            let requests = o.tally.requests;
            let hit = if requests == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.2} %",
                    100.0 * (requests as f64 - o.origin_loads as f64) / requests as f64
                )
            };
            let roll = o.roll.map_or_else(|| "**failed**".to_owned(), secs);
            let failed = if o.tally.retried > 0 {
                format!(
                    "{} ({} retried)",
                    thousands(o.tally.failed),
                    thousands(o.tally.retried)
                )
            } else {
                thousands(o.tally.failed)
            };
            let latency = p50_p99_max(o.tally.sorted());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {failed} | {} ({:.1} %) | {hit} | {roll} | {latency} |",
                o.scenario.title(),
                o.mode.name(),
                thousands(requests),
                thousands(o.origin_loads),
                100.0 * o.origin_loads as f64 / keys,
            );
        }
        md.push('\n');
    }
    let kills: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.scenario == Scenario::Sigkill)
        .collect();
    if !kills.is_empty() {
        md.push_str(
            "| owner SIGKILLed, its keys asked of every survivor at once | mode | owner's keys | origin loads per key (mean) | keys by loads | requests | failed | probe took | survivors still listing the owner |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for o in kills {
            match &o.sigkill {
                Some(s) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} of {} |",
                        s.owner,
                        o.mode.name(),
                        s.owned_keys,
                        s.mean(),
                        s.distribution(),
                        thousands(o.tally.requests),
                        thousands(o.tally.failed),
                        secs(s.probe),
                        s.still_listed,
                        s.survivors
                    );
                }
                None => {
                    let _ = writeln!(md, "| - | {} | **failed** | | | | | | |", o.mode.name());
                }
            }
        }
        md.push('\n');
    }
    let colds: Vec<(Mode, &ColdFigures)> = outcomes
        .iter()
        .filter_map(|o| o.cold.as_ref().map(|c| (o.mode, c)))
        .collect();
    if !colds.is_empty() {
        let _ = writeln!(
            md,
            "| cold miss right after the rolling restart ({} new keys, one at a time) | p50 ms | p99 ms | failed |\n|---|---|---|---|",
            args.cold_keys
        );
        for (mode, c) in &colds {
            let _ = writeln!(
                md,
                "| mode {} | {:.2} | {:.2} | {} of {} |",
                mode.name(),
                c.p50_ms,
                c.p99_ms,
                c.failed,
                c.requests
            );
        }
        let on = colds.iter().find(|(m, _)| *m == Mode::On);
        let off = colds.iter().find(|(m, _)| *m == Mode::Off);
        if let (Some((_, on)), Some((_, off))) = (on, off) {
            let _ = writeln!(
                md,
                "| on − off | {:+.2} | {:+.2} | |",
                on.p50_ms - off.p50_ms,
                on.p99_ms - off.p99_ms
            );
        }
        md.push('\n');
    }
    let mut notes = String::new();
    for o in outcomes.iter() {
        let label = format!("{}/{}", o.scenario.name(), o.mode.name());
        if let Some(error) = &o.error {
            let _ = writeln!(notes, "- {label}: **did not complete**: {error}");
        }
        for note in &o.notes {
            let _ = writeln!(notes, "- {label}: {note}");
        }
        for (message, count) in &o.tally.errors {
            let _ = writeln!(notes, "- {label}: {count} × failed: {message}");
        }
        for (message, count) in &o.tally.retry_reasons {
            let _ = writeln!(notes, "- {label}: {count} × retried after: {message}");
        }
    }
    if !notes.is_empty() {
        md.push_str("Notes:\n\n");
        md.push_str(&notes);
    }
    md
}
