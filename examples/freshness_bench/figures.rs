//! Reads and origin requests summed by phase of the run: the warm-up,
//! before the outage, the outage, after it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::WARM_UP;
use crate::args::Args;
use crate::bench_common::format::{micros, p50_p99_max, quantile_ms, thousands};
use crate::bench_common::messages::count_message;
use crate::load::{Outcome, Read};
use crate::origin::{Answer, OriginRequest};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    WarmUp,
    Before,
    Outage,
    After,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::WarmUp, Phase::Before, Phase::Outage, Phase::After];

    pub fn of(args: &Args, at: Duration) -> Self {
        if at < WARM_UP {
            Phase::WarmUp
        } else if at < args.outage_start || args.outage_length.is_zero() {
            Phase::Before
        } else if at < args.outage_end() {
            Phase::Outage
        } else {
            Phase::After
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::WarmUp => "warm-up",
            Phase::Before => "before the outage",
            Phase::Outage => "outage",
            Phase::After => "after the outage",
        }
    }

    /// `[start, end)` in whole seconds of the run.
    pub fn span(self, args: &Args) -> (u64, u64) {
        let s = |d: Duration| d.as_secs();
        match self {
            Phase::WarmUp => (0, s(WARM_UP)),
            Phase::Before if args.outage_length.is_zero() => (s(WARM_UP), s(args.duration)),
            Phase::Before => (s(WARM_UP), s(args.outage_start)),
            Phase::Outage => (s(args.outage_start), s(args.outage_end())),
            Phase::After => (s(args.outage_end()), s(args.duration)),
        }
    }
}

/// Some reads, summed.
#[derive(Default)]
pub struct ReadFigures {
    pub reads: u64,
    /// Took at least half the origin's delay.
    pub waited: u64,
    pub failed: u64,
    pub stale: u64,
    /// The oldest `age` a stale answer gave, in seconds.
    pub max_stale_age: Option<u64>,
    /// Answers by `x-shoal-source`.
    pub sources: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Sorted, in microseconds.
    latencies_us: Vec<u32>,
}

impl ReadFigures {
    pub fn of<'a>(reads: impl Iterator<Item = &'a Read>, waited: Duration) -> Self {
        let mut figures = Self::default();
        for read in reads {
            figures.reads += 1;
            figures.latencies_us.push(micros(read.latency));
            if read.latency >= waited {
                figures.waited += 1;
            }
            match &read.outcome {
                Outcome::Failed(message) => {
                    figures.failed += 1;
                    count_message(&mut figures.errors, message);
                }
                Outcome::Value { stale, source, age } => {
                    *figures.sources.entry(source.name()).or_default() += 1;
                    if *stale {
                        figures.stale += 1;
                        if let Some(age) = age {
                            figures.max_stale_age = figures.max_stale_age.max(Some(*age));
                        }
                    }
                }
            }
        }
        figures.latencies_us.sort_unstable();
        figures
    }

    /// The latency at quantile `q`, in milliseconds (NaN for no reads).
    pub fn ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    /// `p50 / p99 / max` in milliseconds, as the summary's tables give it.
    pub fn latency_text(&self) -> String {
        p50_p99_max(&self.latencies_us)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "reads": self.reads,
            "waited": self.waited,
            "failed": self.failed,
            "stale": self.stale,
            "max_stale_age_seconds": self.max_stale_age,
            "latency_ms": { "p50": self.ms(0.5), "p99": self.ms(0.99), "max": self.ms(1.0) },
            "sources": self.sources,
            "errors": self.errors,
        })
    }
}

/// Some origin requests, by answer.
#[derive(Default)]
pub struct OriginFigures {
    pub requests: u64,
    pub values: u64,
    pub not_modified: u64,
    pub unavailable: u64,
    /// With `If-None-Match`.
    pub conditional: u64,
}

impl OriginFigures {
    pub fn of<'a>(requests: impl Iterator<Item = &'a OriginRequest>) -> Self {
        let mut figures = Self::default();
        for request in requests {
            figures.requests += 1;
            figures.conditional += u64::from(request.conditional);
            match request.answer {
                Answer::Value => figures.values += 1,
                Answer::NotModified => figures.not_modified += 1,
                Answer::Unavailable => figures.unavailable += 1,
            }
        }
        figures
    }

    /// `N (V / M / U)`: requests, and 200 / 304 / 503 among them.
    pub fn text(&self) -> String {
        format!(
            "{} ({} / {} / {})",
            thousands(self.requests),
            thousands(self.values),
            thousands(self.not_modified),
            thousands(self.unavailable)
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "answered_200": self.values,
            "answered_304": self.not_modified,
            "answered_503": self.unavailable,
            "conditional": self.conditional,
        })
    }
}

/// One second of the run, for `timeline.csv`.
#[derive(Default, Clone)]
pub struct Second {
    pub reads: u64,
    pub waited: u64,
    pub failed: u64,
    pub stale: u64,
    pub origin_requests: u64,
    pub origin_503: u64,
}

/// Per second of the run: reads by when they were due, origin requests
/// by when they arrived.
pub fn timeline(
    args: &Args,
    reads: &[Read],
    origin: &[OriginRequest],
    waited: Duration,
) -> Vec<Second> {
    let mut seconds = vec![Second::default(); args.duration.as_secs() as usize + 1];
    let slot = |at: Duration| (at.as_secs() as usize).min(seconds.len() - 1);
    let slots: Vec<usize> = reads.iter().map(|r| slot(r.at)).collect();
    let origin_slots: Vec<usize> = origin.iter().map(|r| slot(r.at)).collect();
    for (read, i) in reads.iter().zip(slots) {
        let second = &mut seconds[i];
        second.reads += 1;
        second.waited += u64::from(read.latency >= waited);
        second.failed += u64::from(read.failed());
        second.stale += u64::from(read.stale());
    }
    for (request, i) in origin.iter().zip(origin_slots) {
        seconds[i].origin_requests += 1;
        seconds[i].origin_503 += u64::from(request.answer == Answer::Unavailable);
    }
    seconds
}
