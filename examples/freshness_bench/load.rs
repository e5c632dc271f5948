//! The open-loop load: one ticker at `--rate` that, at every tick, sends
//! one read to every mode, whatever the earlier reads are still doing; and
//! what each read saw.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use crate::args::Args;
use crate::bench_common::format::{chain, key_name};
use crate::bench_common::retry::connection_level;
use crate::{MAX_IN_FLIGHT, NODES, REQUEST_TIMEOUT, SERVICE_PORT, VALUE_LEN};

/// What a read got.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 200 and the whole value.
    Value {
        /// `x-shoal-stale: 1`.
        stale: bool,
        /// `x-shoal-source`.
        source: Source,
        /// `age`, in seconds, where given.
        age: Option<u64>,
    },
    /// Anything else: the status and `x-shoal-error`, or the transport
    /// error.
    Failed(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Main,
    Hot,
    Peer,
    Origin,
    /// Missing or unknown.
    Other,
}

impl Source {
    fn parse(text: Option<&str>) -> Self {
        match text {
            Some("main") => Source::Main,
            Some("hot") => Source::Hot,
            Some("peer") => Source::Peer,
            Some("origin") => Source::Origin,
            _ => Source::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Main => "main",
            Source::Hot => "hot",
            Source::Peer => "peer",
            Source::Origin => "origin",
            Source::Other => "other",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Read {
    /// When it was due, since the load started.
    pub at: Duration,
    /// Index of the node it went to.
    pub node: usize,
    pub key: usize,
    /// From sending it to the last byte of the answer.
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Read {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }

    pub fn stale(&self) -> bool {
        matches!(self.outcome, Outcome::Value { stale: true, .. })
    }
}

/// One mode's side of the load.
struct ModeLoad {
    client: reqwest::Client,
    ips: Vec<IpAddr>,
    reads: Mutex<Vec<Read>>,
    in_flight: AtomicUsize,
}

pub struct Load {
    modes: Vec<Arc<ModeLoad>>,
    ticker: tokio::task::JoinHandle<Lateness>,
    tracker: TaskTracker,
    waited: Duration,
}

/// A keep-alive client, idle connections dropped well before a node's
/// 60 s idle timeout closes them under a request.
fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(256)
        .build()
        .expect("build the load client")
}

impl Load {
    /// Starts the ticker at `t0`: `targets[i]` are mode `i`'s nodes.
    pub fn start(args: &Args, targets: &[Vec<IpAddr>], t0: tokio::time::Instant) -> Self {
        let modes: Vec<Arc<ModeLoad>> = targets
            .iter()
            .map(|ips| {
                Arc::new(ModeLoad {
                    client: load_client(),
                    ips: ips.clone(),
                    reads: Mutex::new(Vec::new()),
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect();
        let tracker = TaskTracker::new();
        let ticks = (args.duration.as_secs_f64() * f64::from(args.rate)).round() as u64;
        let ticker = tokio::spawn(tick(
            modes.clone(),
            tracker.clone(),
            t0,
            f64::from(args.rate),
            ticks,
            args.keys,
        ));
        Self {
            modes,
            ticker,
            tracker,
            waited: args.waited_threshold(),
        }
    }

    /// `R reads, W waited, F failed, S stale` of mode `i` so far.
    pub fn progress(&self, i: usize) -> String {
        let reads = self.modes[i].reads.lock().expect("reads");
        let waited = reads.iter().filter(|r| r.latency >= self.waited).count();
        let failed = reads.iter().filter(|r| r.failed()).count();
        let stale = reads.iter().filter(|r| r.stale()).count();
        format!(
            "{} reads, {waited} waited, {failed} failed, {stale} stale",
            reads.len()
        )
    }

    /// Waits for the ticker's end and every read it sent: how late the
    /// ticks were, and each mode's reads in the order they were answered.
    pub async fn finish(mut self) -> (Lateness, Vec<Vec<Read>>) {
        let lateness = match (&mut self.ticker).await {
            Ok(lateness) => lateness,
            Err(error) => {
                progress!("the load's ticker failed: {error}");
                Lateness::default()
            }
        };
        self.tracker.close();
        if tokio::time::timeout(REQUEST_TIMEOUT * 2, self.tracker.wait())
            .await
            .is_err()
        {
            progress!("reads still unanswered {REQUEST_TIMEOUT:?} after their timeout");
        }
        let reads = self
            .modes
            .iter()
            .map(|m| std::mem::take(&mut *m.reads.lock().expect("reads")))
            .collect();
        (lateness, reads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// How far behind its schedule the ticker fell: a busy machine shows here,
/// not in the reads' latencies (timed from when each was sent).
#[derive(Default, Clone, Copy)]
pub struct Lateness {
    pub ticks: u64,
    /// Ticks sent 10 ms or more after they were due.
    pub late: u64,
    pub max: Duration,
}

/// A tick this late counts as late.
const LATE: Duration = Duration::from_millis(10);

/// Tick `n` is due at `t0 + n / rate`, computed from `n` so that lateness
/// never accumulates (a late tick is sent at once: the load stays open).
/// It reads key `n mod keys` on node `(n + n / keys) mod NODES`: every key
/// in turn, and each round of keys shifted by one node, so that every key
/// is read on every node.
async fn tick(
    modes: Vec<Arc<ModeLoad>>,
    tracker: TaskTracker,
    t0: tokio::time::Instant,
    rate: f64,
    ticks: u64,
    keys: usize,
) -> Lateness {
    let mut lateness = Lateness {
        ticks,
        ..Lateness::default()
    };
    for n in 0..ticks {
        let at = Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(t0 + at).await;
        let behind = tokio::time::Instant::now().saturating_duration_since(t0 + at);
        lateness.late += u64::from(behind >= LATE);
        lateness.max = lateness.max.max(behind);
        let key = (n % keys as u64) as usize;
        let node = ((n + n / keys as u64) % NODES as u64) as usize;
        for mode in &modes {
            tracker.spawn(read(mode.clone(), at, node, key));
        }
    }
    lateness
}

async fn read(mode: Arc<ModeLoad>, at: Duration, node: usize, key: usize) {
    let sent = Instant::now();
    let outcome = if mode.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
        Outcome::Failed(format!(
            "not sent: {MAX_IN_FLIGHT} reads of this mode already in flight"
        ))
    } else {
        get_with_retry(&mode.client, mode.ips[node], key).await
    };
    let latency = sent.elapsed();
    mode.in_flight.fetch_sub(1, Ordering::SeqCst);
    mode.reads.lock().expect("reads").push(Read {
        at,
        node,
        key,
        latency,
        outcome,
    });
}

/// One read as a Go or urllib3 client does it: one retry after a
/// connection-level failure.
async fn get_with_retry(client: &reqwest::Client, ip: IpAddr, key: usize) -> Outcome {
    let url = format!("http://{ip}:{SERVICE_PORT}/bench/{}", key_name(key));
    let mut retried = false;
    loop {
        match get_once(client, &url).await {
            Err(error) if !retried && connection_level(&error) => retried = true,
            Err(error) => return Outcome::Failed(chain(&error.without_url())),
            Ok(outcome) => return outcome,
        }
    }
}

async fn get_once(client: &reqwest::Client, url: &str) -> Result<Outcome, reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let stale = header("x-shoal-stale").as_deref() == Some("1");
    let source = Source::parse(header("x-shoal-source").as_deref());
    let age = header("age").and_then(|a| a.trim().parse().ok());
    let error_kind = header("x-shoal-error");
    let body = response.bytes().await?;
    Ok(if status != 200 {
        Outcome::Failed(format!(
            "status {status} ({})",
            error_kind.as_deref().unwrap_or("no x-shoal-error")
        ))
    } else if body.len() != VALUE_LEN {
        Outcome::Failed(format!("a body of {} bytes", body.len()))
    } else {
        Outcome::Value { stale, source, age }
    })
}
