//! What one scenario in one mode measured, and its `result.json`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::args::{Mode, Scenario};
use crate::bench_common::format::quantile_ms;
use crate::client::Tally;

pub struct SigkillFigures {
    pub owner: IpAddr,
    pub owned_keys: usize,
    /// Origin loads per key → how many of the owner's keys had that many.
    pub loads_per_key: BTreeMap<u32, usize>,
    pub probe: Duration,
    pub survivors: usize,
    /// Survivors still listing the owner alive or suspect after the probe.
    pub still_listed: usize,
}

impl SigkillFigures {
    pub fn mean(&self) -> f64 {
        let total: u64 = self
            .loads_per_key
            .iter()
            .map(|(&loads, &keys)| u64::from(loads) * keys as u64)
            .sum();
        total as f64 / self.owned_keys.max(1) as f64
    }

    pub fn distribution(&self) -> String {
        self.loads_per_key
            .iter()
            .rev()
            .map(|(loads, keys)| format!("{loads}: {keys}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct ColdFigures {
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub struct Outcome {
    pub scenario: Scenario,
    pub mode: Mode,
    /// The client requests of the scenario (the load, or the probe).
    pub tally: Tally,
    /// Origin loads of `bench` keys during the scenario (after warm-up).
    pub origin_loads: u64,
    pub roll: Option<Duration>,
    pub sigkill: Option<SigkillFigures>,
    pub cold: Option<ColdFigures>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(scenario: Scenario, mode: Mode) -> Self {
        Self {
            scenario,
            mode,
            tally: Tally::default(),
            origin_loads: 0,
            roll: None,
            sigkill: None,
            cold: None,
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn json(&mut self, keys: usize) -> serde_json::Value {
        let latencies = self.tally.sorted().to_vec();
        serde_json::json!({
            "scenario": self.scenario.name(),
            "mode": self.mode.name(),
            "requests": self.tally.requests,
            "failed": self.tally.failed,
            "retried": self.tally.retried,
            "latency_ms": {
                "p50": quantile_ms(&latencies, 0.5),
                "p99": quantile_ms(&latencies, 0.99),
                "max": quantile_ms(&latencies, 1.0),
            },
            "errors": Tally::messages_json(&self.tally.errors),
            "retried_after": Tally::messages_json(&self.tally.retry_reasons),
            "keys": keys,
            "origin_loads": self.origin_loads,
            "roll_seconds": self.roll.map(|d| d.as_secs_f64()),
            "sigkill": self.sigkill.as_ref().map(|s| serde_json::json!({
                "owner": s.owner.to_string(),
                "owned_keys": s.owned_keys,
                "loads_per_key": s.loads_per_key.iter()
                    .map(|(l, k)| (l.to_string(), serde_json::Value::from(*k)))
                    .collect::<serde_json::Map<_, _>>(),
                "mean_loads_per_key": s.mean(),
                "probe_seconds": s.probe.as_secs_f64(),
                "survivors": s.survivors,
                "still_listed": s.still_listed,
            })),
            "cold": self.cold.as_ref().map(|c| serde_json::json!({
                "requests": c.requests, "failed": c.failed,
                "p50_ms": c.p50_ms, "p99_ms": c.p99_ms,
            })),
            "notes": self.notes,
            "error": self.error,
        })
    }
}
