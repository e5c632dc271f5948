//! The checker: after the run, every answer against what the origin
//! produced, what the clients wrote and when the faults were.
//!
//! For a GET answered 200, the value must be a stamp for the key asked
//! for, produced by the origin or by a PUT some client attempted, no later
//! than the read ended, and not superseded: no acknowledged PUT or DELETE
//! of the key that started after the value was made (the origin produced
//! it, or its PUT was acknowledged; an unacknowledged PUT may land as late
//! as its client and peer timeouts allow) and was acknowledged more than
//! the invalidation bound before the read started. The bound is
//! [`QUIET_BOUND`] unless a fault that can keep an invalidation from a
//! node (anything but a slow origin) overlapped the time from the write's
//! start to the read's start; then [`FAULT_BOUND`].
//!
//! Every error answer must be a JSON body with an `error` string, and a
//! GET never answers 404 (the origin has every key). What the fleet and
//! the chaos loop saw (crashes, SIGTERM exits, RSS, convergence, restarts
//! that never became ready) is a violation too.

use std::collections::HashMap;
use std::time::Duration;

use crate::chaos::Fault;
use crate::fleet::Problem;
use crate::load::{Op, Outcome, Record};
use crate::origin::Produced;
use crate::settings::{CLIENT_TIMEOUT, FAULT_BOUND, PEER_TIMEOUT, QUIET_BOUND};
use crate::timeline::secs;
use crate::value::{ORIGIN, Stamp, client};

#[derive(Debug, Clone)]
pub struct Violation {
    pub at: Duration,
    pub kind: &'static str,
    pub detail: String,
}

/// The checker's verdict and what it measured on the way.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// Reads answered with a superseded value within the bound, and the
    /// longest time from the superseding write's acknowledgement to such a
    /// read's start: (count, longest) in quiet windows and under faults.
    pub stale_quiet: (usize, Duration),
    pub stale_faulty: (usize, Duration),
    /// The longest-lagging such read of each kind, in full.
    pub worst_quiet: Option<String>,
    pub worst_faulty: Option<String>,
    pub reads_checked: usize,
}

/// A PUT some client attempted.
struct Put<'a> {
    record: &'a Record,
    /// By when it was stored, if ever: its acknowledgement, or for one
    /// not acknowledged, the latest a node could still store it.
    landed_by: Duration,
}

pub fn check(
    records: &[Record],
    produced: &HashMap<u64, Produced>,
    faults: &[Fault],
    problems: &[Problem],
) -> Verdict {
    let mut verdict = Verdict::default();
    for p in problems {
        verdict.violations.push(Violation {
            at: p.at,
            kind: p.kind,
            detail: p.detail.clone(),
        });
    }
    let puts: HashMap<u64, Put> = records
        .iter()
        .filter_map(|r| match r.op {
            Op::Put(seq) => Some((
                seq,
                Put {
                    record: r,
                    landed_by: if r.status() == Some(204) {
                        r.end
                    } else {
                        r.start + CLIENT_TIMEOUT + PEER_TIMEOUT
                    },
                },
            )),
            _ => None,
        })
        .collect();
    let mut writes: HashMap<&str, Vec<&Record>> = HashMap::new();
    for r in records {
        if r.op != Op::Get && r.status() == Some(204) {
            writes.entry(&r.key).or_default().push(r);
        }
    }
    for r in records {
        let Outcome::Answer { status, body, .. } = &r.outcome else {
            continue;
        };
        if *status >= 400 {
            check_error_body(r, *status, body, &mut verdict);
        }
        if r.op != Op::Get {
            continue;
        }
        if *status == 404 {
            verdict
                .violations
                .push(violation(r, "false-404", "a GET answered 404".into()));
        }
        if *status != 200 {
            continue;
        }
        verdict.reads_checked += 1;
        let Some(stamp) = Stamp::decode(body) else {
            let text = String::from_utf8_lossy(body);
            verdict
                .violations
                .push(violation(r, "not-a-value", format!("body {text:?}")));
            continue;
        };
        let Some(made) = provenance(r, &stamp, produced, &puts, &mut verdict) else {
            continue;
        };
        for w in writes.get(r.key.as_str()).into_iter().flatten() {
            if w.op == Op::Put(stamp.seq) || made >= w.start || w.end >= r.start {
                continue;
            }
            let lag = r.start - w.end;
            let faults_between: Vec<&Fault> = faults
                .iter()
                .filter(|f| f.kind.disturbs_invalidation())
                .filter(|f| f.start <= r.start && f.settled >= w.start)
                .collect();
            let quiet = faults_between.is_empty();
            let (bound, tally, worst) = if quiet {
                (
                    QUIET_BOUND,
                    &mut verdict.stale_quiet,
                    &mut verdict.worst_quiet,
                )
            } else {
                (
                    FAULT_BOUND,
                    &mut verdict.stale_faulty,
                    &mut verdict.worst_faulty,
                )
            };
            tally.0 += 1;
            let during: Vec<String> = faults_between
                .iter()
                .map(|f| {
                    format!(
                        "{} [{}..{}] {}",
                        f.kind.name(),
                        secs(f.start),
                        secs(f.settled),
                        f.detail
                    )
                })
                .collect();
            let detail = format!(
                "{} (made by {}) answered {lag:?} after {} {} via {} [{}..{}] \
                 was acknowledged; bound {bound:?}; faults between: {during:?}",
                stamp.encode(),
                secs(made),
                w.op.name(),
                r.key,
                w.node,
                secs(w.start),
                secs(w.end),
            );
            if lag > tally.1 {
                tally.1 = lag;
                *worst = Some(violation(r, "stale", detail.clone()).detail);
            }
            if lag > bound {
                verdict.violations.push(violation(r, "stale", detail));
                break;
            }
        }
    }
    verdict.violations.sort_by_key(|v| v.at);
    verdict
}

/// When the value in `stamp` was made (origin production, or when its PUT
/// had landed at the latest), after checking it is a value for `r`'s key
/// that existed before `r` ended; `None` after a violation.
fn provenance(
    r: &Record,
    stamp: &Stamp,
    produced: &HashMap<u64, Produced>,
    puts: &HashMap<u64, Put>,
    verdict: &mut Verdict,
) -> Option<Duration> {
    let fail = |verdict: &mut Verdict, kind, detail: String| {
        verdict
            .violations
            .push(violation(r, kind, format!("{}: {detail}", stamp.encode())));
        None
    };
    if stamp.key != r.key {
        return fail(verdict, "other-key", format!("asked for {}", r.key));
    }
    let (key, made, began) = if stamp.producer == ORIGIN {
        let Some(p) = produced.get(&stamp.seq) else {
            return fail(
                verdict,
                "unknown-value",
                "the origin never produced it".into(),
            );
        };
        (p.key.as_str(), p.at, p.at)
    } else {
        let Some(put) = puts.get(&stamp.seq) else {
            return fail(verdict, "unknown-value", "no client put it".into());
        };
        if client(put.record.client) != stamp.producer {
            return fail(
                verdict,
                "unknown-value",
                format!("put by client{}", put.record.client),
            );
        }
        (put.record.key.as_str(), put.landed_by, put.record.start)
    };
    if key != r.key {
        return fail(verdict, "other-key", format!("produced for {key}"));
    }
    if began > r.end {
        return fail(
            verdict,
            "from-the-future",
            format!("made at {}", secs(began)),
        );
    }
    Some(made)
}

fn check_error_body(r: &Record, status: u16, body: &[u8], verdict: &mut Verdict) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let good = json
        .as_ref()
        .and_then(|j| j["error"].as_str())
        .is_some_and(|e| !e.is_empty());
    if !good {
        let text = String::from_utf8_lossy(body);
        verdict.violations.push(violation(
            r,
            "error-not-json",
            format!("{status} with body {text:?}"),
        ));
    }
}

fn violation(r: &Record, kind: &'static str, detail: String) -> Violation {
    let source = match &r.outcome {
        Outcome::Answer { source, .. } => source.clone().unwrap_or_default(),
        Outcome::Failed(_) => String::new(),
    };
    Violation {
        at: r.start,
        kind,
        detail: format!(
            "{} /data/{} via {} [{}..{}] source {source:?} (client{}): {detail}",
            r.op.name(),
            r.key,
            r.node,
            secs(r.start),
            secs(r.end),
            r.client
        ),
    }
}
