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

#[path = "../tests/common/dns.rs"]
mod dns;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;

use dns::DnsServer;

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
/// Distinct error messages kept per tally; the rest are counted as "other".
const ERROR_KINDS: usize = 40;

static START: OnceLock<Instant> = OnceLock::new();

macro_rules! progress {
    ($($arg:tt)*) => {
        println!(
            "[{:>7.1}s] {}",
            START.get_or_init(Instant::now).elapsed().as_secs_f64(),
            format_args!($($arg)*)
        )
    };
}

/// `127.0.37.host`: the block reserved for this benchmark.
fn addr(host: u8) -> IpAddr {
    assert!(
        (2..=30).contains(&host),
        "127.0.37.{host} is outside 2..=30"
    );
    IpAddr::V4(Ipv4Addr::new(127, 0, 37, host))
}

fn node_name(ip: IpAddr) -> String {
    format!("n-{ip}")
}

// ---------------------------------------------------------------------------
// Arguments

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Rolling,
    Replace,
    ScaleOut,
    ScaleIn,
    Sigkill,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Rolling,
        Scenario::Replace,
        Scenario::ScaleOut,
        Scenario::ScaleIn,
        Scenario::Sigkill,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Rolling => "rolling",
            Scenario::Replace => "replace",
            Scenario::ScaleOut => "scale-out",
            Scenario::ScaleIn => "scale-in",
            Scenario::Sigkill => "sigkill",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Rolling => "rolling restart in place",
            Scenario::Replace => "replace roll (maxSurge 1)",
            Scenario::ScaleOut => "scale-out 5 → 6",
            Scenario::ScaleIn => "scale-in 6 → 5",
            Scenario::Sigkill => "owner SIGKILLed before detection",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "rolling" | "1" => Scenario::Rolling,
            "replace" | "2" => Scenario::Replace,
            "scale-out" | "3" => Scenario::ScaleOut,
            "scale-in" | "4" => Scenario::ScaleIn,
            "sigkill" | "5" => Scenario::Sigkill,
            other => bail!(
                "unknown scenario {other:?}: rolling, replace, scale-out, scale-in, sigkill (or 1-5)"
            ),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    On,
    Off,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
        }
    }
}

struct Args {
    scenarios: Vec<Scenario>,
    modes: Vec<Mode>,
    keys: usize,
    rate: u32,
    workers: usize,
    tail: Duration,
    cold_keys: usize,
    binary: PathBuf,
    out: PathBuf,
    no_churn_section: bool,
}

const USAGE: &str = "usage: churn_bench [--scenarios rolling,replace,scale-out,scale-in,sigkill] \
[--modes on,off] [--keys 2000] [--rate 400] [--workers 16] [--tail 5] [--cold-keys 200] \
[--binary target/release/shoal] [--out DIR] [--no-churn-section]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scenarios: Scenario::ALL.to_vec(),
        modes: vec![Mode::On, Mode::Off],
        keys: 2000,
        rate: 400,
        workers: 16,
        tail: Duration::from_secs(5),
        cold_keys: 200,
        binary: PathBuf::from("target/release/shoal"),
        out: PathBuf::from(format!("bench/results/churn-{}", utc_stamp(true))),
        no_churn_section: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-churn-section" {
            args.no_churn_section = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> Result<u64> {
            value
                .parse::<u64>()
                .with_context(|| format!("{what} takes a whole number, not {value:?}"))
        };
        match flag.as_str() {
            "--scenarios" => {
                args.scenarios = value
                    .split(',')
                    .map(Scenario::parse)
                    .collect::<Result<_>>()?;
            }
            "--modes" => {
                args.modes = value
                    .split(',')
                    .map(|m| match m {
                        "on" => Ok(Mode::On),
                        "off" => Ok(Mode::Off),
                        other => Err(anyhow!("unknown mode {other:?}: on, off")),
                    })
                    .collect::<Result<_>>()?;
            }
            "--keys" => args.keys = number("--keys")? as usize,
            "--rate" => args.rate = number("--rate")? as u32,
            "--workers" => args.workers = number("--workers")? as usize,
            "--tail" => args.tail = Duration::from_secs(number("--tail")?),
            "--cold-keys" => args.cold_keys = number("--cold-keys")? as usize,
            "--binary" => args.binary = value.into(),
            "--out" => args.out = value.into(),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if args.keys == 0 || args.rate == 0 || args.workers == 0 {
        bail!("--keys, --rate and --workers must be above 0");
    }
    if args.scenarios.is_empty() || args.modes.is_empty() {
        bail!("nothing to run: give at least one scenario and one mode");
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// Time and formatting

/// The UTC time now: `20261125T142632Z` (compact) or `2026-11-25 14:26 UTC`.
fn utc_stamp(compact: bool) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if compact {
        format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn key_name(i: usize) -> String {
    format!("k{i:04}")
}

/// The value at quantile `q` of sorted microseconds, in milliseconds.
fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// An error and its sources, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let _ = write!(text, ": {inner}");
        source = inner.source();
    }
    text
}

// ---------------------------------------------------------------------------
// Origin

#[derive(Default)]
struct OriginCounts {
    /// Loads per `bench` key.
    bench: Mutex<HashMap<String, u32>>,
    bench_total: AtomicU64,
    cold_total: AtomicU64,
    /// When each `bench` load arrived, and its key.
    log: Mutex<Vec<(Instant, String)>>,
}

/// The counting origin: `GET /bench/{key}` answers 1 KiB after 50 ms,
/// `GET /cold/{key}` at once. Every request is counted when it arrives.
struct Origin {
    addr: SocketAddr,
    counts: Arc<OriginCounts>,
    task: tokio::task::JoinHandle<()>,
}

async fn origin_bench(
    State(counts): State<Arc<OriginCounts>>,
    UrlPath(key): UrlPath<String>,
) -> impl IntoResponse {
    counts.bench_total.fetch_add(1, Ordering::SeqCst);
    *counts
        .bench
        .lock()
        .expect("origin counts")
        .entry(key.clone())
        .or_default() += 1;
    counts
        .log
        .lock()
        .expect("origin log")
        .push((Instant::now(), key));
    tokio::time::sleep(ORIGIN_DELAY).await;
    (
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from_static(&VALUE),
    )
}

async fn origin_cold(State(counts): State<Arc<OriginCounts>>) -> impl IntoResponse {
    counts.cold_total.fetch_add(1, Ordering::SeqCst);
    (
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from_static(&VALUE),
    )
}

impl Origin {
    async fn start() -> Result<Self> {
        let counts = Arc::new(OriginCounts::default());
        let app = Router::new()
            .route("/bench/{key}", get(origin_bench))
            .route("/cold/{key}", get(origin_cold))
            .with_state(counts.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the origin on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, counts, task })
    }

    fn bench_loads(&self) -> u64 {
        self.counts.bench_total.load(Ordering::SeqCst)
    }

    fn per_key(&self) -> HashMap<String, u32> {
        self.counts.bench.lock().expect("origin counts").clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config_yaml(mode: Mode, origin: SocketAddr, no_churn_section: bool) -> String {
    let mut yaml = format!(
        "node: {{ drain: {DRAIN} }}\ndiscovery: {{ resolve_interval: 2s }}\ndefault_group: bench\n"
    );
    if mode == Mode::Off && !no_churn_section {
        yaml.push_str(
            "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }\n",
        );
    }
    let _ = write!(
        yaml,
        "groups:\n  \
         bench: {{ capacity: 64MiB, loader: {{ http: {{ url: \"http://{origin}/bench/{{key}}\", timeout: 2s }} }} }}\n  \
         cold: {{ capacity: 16MiB, loader: {{ http: {{ url: \"http://{origin}/cold/{{key}}\", timeout: 2s }} }} }}\n"
    );
    yaml
}

// ---------------------------------------------------------------------------
// Client requests

/// A client like a Service's: pooled keep-alive connections.
fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .expect("build the load client")
}

fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build the admin client")
}

/// One attempt's result.
enum Attempt {
    Ok,
    /// Failed at the connection level: worth one retry.
    Retryable(String),
    Failed(String),
}

/// Failed before any answer because a connection was refused, reset or
/// closed (as on a reused keep-alive connection the server just closed):
/// what Go's net/http and urllib3 retry an idempotent request on. Timeouts
/// are not retried.
fn connection_level(error: &reqwest::Error) -> bool {
    if error.is_timeout() {
        return false;
    }
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | UnexpectedEof
                    | NotConnected
            ) {
                return true;
            }
        }
        source = inner.source();
    }
    let text = chain(error).to_ascii_lowercase();
    [
        "connection closed before message completed",
        "connection reset",
        "connection refused",
        "broken pipe",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

async fn get_once(client: &reqwest::Client, ip: IpAddr, path: &str) -> Attempt {
    let url = format!("http://{ip}:{SERVICE_PORT}{path}");
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(error) => {
            let retry = connection_level(&error);
            let message = format!("{ip}: {}", chain(&error.without_url()));
            return if retry {
                Attempt::Retryable(message)
            } else {
                Attempt::Failed(message)
            };
        }
    };
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("x-shoal-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    match response.bytes().await {
        Err(error) => Attempt::Failed(format!(
            "{ip}: reading the body: {}",
            chain(&error.without_url())
        )),
        Ok(_) if status != 200 => Attempt::Failed(format!("{ip}: status {status} ({kind})")),
        Ok(body) if body.len() != VALUE_LEN => {
            Attempt::Failed(format!("{ip}: a body of {} bytes", body.len()))
        }
        Ok(_) => Attempt::Ok,
    }
}

struct GetResult {
    error: Option<String>,
    /// Why the first attempt failed, when it was retried.
    retried: Option<String>,
}

/// A GET as a Go or urllib3 client does it: one retry after a
/// connection-level failure, on a node picked again (as a Service would).
async fn get_with_retry(
    client: &reqwest::Client,
    pick: impl Fn() -> Option<IpAddr>,
    path: &str,
) -> GetResult {
    let mut retried = None;
    loop {
        let Some(ip) = pick() else {
            return GetResult {
                error: Some("no node in service".into()),
                retried,
            };
        };
        match get_once(client, ip, path).await {
            Attempt::Ok => {
                return GetResult {
                    error: None,
                    retried,
                };
            }
            Attempt::Retryable(message) if retried.is_none() => retried = Some(message),
            Attempt::Retryable(message) | Attempt::Failed(message) => {
                return GetResult {
                    error: Some(message),
                    retried,
                };
            }
        }
    }
}

/// Counts `message`, keeping at most [`ERROR_KINDS`] distinct ones.
fn count_message(messages: &mut BTreeMap<String, u64>, message: &str) {
    let key = if messages.len() < ERROR_KINDS || messages.contains_key(message) {
        message.to_owned()
    } else {
        "(other messages)".to_owned()
    };
    *messages.entry(key).or_default() += 1;
}

/// Requests, failures and latencies of some client traffic.
#[derive(Default)]
struct Tally {
    requests: u64,
    failed: u64,
    retried: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// What the first attempt of each retried request failed with.
    retry_reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, result: &GetResult, latency: Duration) {
        self.requests += 1;
        self.latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        if let Some(reason) = &result.retried {
            self.retried += 1;
            count_message(&mut self.retry_reasons, reason);
        }
        if let Some(error) = &result.error {
            self.failed += 1;
            count_message(&mut self.errors, error);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.retried += other.retried;
        self.latencies_us.extend(other.latencies_us);
        for (message, count) in other.errors {
            *self.errors.entry(message).or_default() += count;
        }
        for (message, count) in other.retry_reasons {
            *self.retry_reasons.entry(message).or_default() += count;
        }
    }

    fn sorted(&mut self) -> &[u32] {
        self.latencies_us.sort_unstable();
        &self.latencies_us
    }

    fn messages_json(messages: &BTreeMap<String, u64>) -> serde_json::Value {
        serde_json::Value::Object(
            messages
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------
// The steady load

struct LoadShared {
    client: reqwest::Client,
    /// The endpoints new requests go to.
    in_service: RwLock<Vec<IpAddr>>,
    stop: AtomicBool,
    keys: usize,
}

impl LoadShared {
    fn pick(&self) -> Option<IpAddr> {
        let nodes = self.in_service.read().expect("in-service set");
        if nodes.is_empty() {
            None
        } else {
            Some(nodes[rand::random_range(0..nodes.len())])
        }
    }
}

/// Client workers, each sending at `rate / workers` requests a second to
/// a random key on a random node in service.
struct Load {
    shared: Arc<LoadShared>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    fn start(client: reqwest::Client, in_service: &[IpAddr], args: &Args) -> Self {
        let shared = Arc::new(LoadShared {
            client,
            in_service: RwLock::new(in_service.to_vec()),
            stop: AtomicBool::new(false),
            keys: args.keys,
        });
        let period = Duration::from_secs_f64(args.workers as f64 / f64::from(args.rate));
        let workers = (0..args.workers)
            .map(|index| {
                let shared = shared.clone();
                let offset = period.mul_f64(index as f64 / args.workers as f64);
                tokio::spawn(worker(shared, offset, period))
            })
            .collect();
        Self { shared, workers }
    }

    fn add(&self, ip: IpAddr) {
        let mut nodes = self.shared.in_service.write().expect("in-service set");
        if !nodes.contains(&ip) {
            nodes.push(ip);
        }
    }

    fn remove(&self, ip: IpAddr) {
        self.shared
            .in_service
            .write()
            .expect("in-service set")
            .retain(|&n| n != ip);
    }

    /// Stops the workers once their requests in flight are answered.
    async fn stop(self) -> Tally {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for worker in self.workers {
            match tokio::time::timeout(REQUEST_TIMEOUT * 3, worker).await {
                Ok(Ok(tally)) => total.merge(tally),
                Ok(Err(error)) => progress!("a load worker failed: {error}"),
                Err(_) => progress!("a load worker did not stop in time"),
            }
        }
        total
    }
}

async fn worker(shared: Arc<LoadShared>, offset: Duration, period: Duration) -> Tally {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let max_requests = (MAX_LOAD.as_secs_f64() / period.as_secs_f64()).ceil() as u64;
    let mut tally = Tally::default();
    while tally.requests < max_requests && started.elapsed() < MAX_LOAD {
        ticks.tick().await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let path = format!("/bench/{}", key_name(rand::random_range(0..shared.keys)));
        let sent = Instant::now();
        let result = get_with_retry(&shared.client, || shared.pick(), &path).await;
        tally.record(&result, sent.elapsed());
    }
    tally
}

// ---------------------------------------------------------------------------
// Nodes

/// One `shoal` process; SIGKILLed on drop if still running, and killed by
/// the kernel if this program dies first (PR_SET_PDEATHSIG).
struct Proc {
    ip: IpAddr,
    instance: u32,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Proc {
    fn label(&self) -> String {
        format!("{}.{}", node_name(self.ip), self.instance)
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    fn signal(&mut self, signal: i32) {
        if self.try_exit().is_none() {
            // SAFETY: a plain syscall on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
struct Member {
    addr: Option<IpAddr>,
    state: String,
    generation: serde_json::Value,
}

/// One node's `/_members`.
struct View {
    members: Vec<Member>,
    /// This node's own generation (`null` where the binary gives none).
    own_generation: serde_json::Value,
}

impl View {
    fn alive(&self) -> BTreeSet<IpAddr> {
        self.members
            .iter()
            .filter(|m| m.state == "alive")
            .filter_map(|m| m.addr)
            .collect()
    }

    fn lists(&self, ip: IpAddr, states: &[&str]) -> bool {
        self.members
            .iter()
            .any(|m| m.addr == Some(ip) && states.contains(&m.state.as_str()))
    }
}

/// The nodes of one scenario, their DNS name and where their files go.
struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    dns: DnsServer,
    dns_addrs: Vec<IpAddr>,
    procs: Vec<Proc>,
    instances: HashMap<IpAddr, u32>,
    admin: reqwest::Client,
    notes: Vec<String>,
    /// `scenario-mode`, the prefix of progress lines.
    label: String,
    origin: Arc<OriginCounts>,
    born: Instant,
    /// (time since `born`, origin loads so far, what happened).
    timeline: Vec<(Duration, u64, String)>,
}

impl Cluster {
    async fn new(
        binary: &Path,
        dir: &Path,
        config: &Path,
        label: &str,
        origin: Arc<OriginCounts>,
    ) -> Self {
        Self {
            label: label.to_owned(),
            origin,
            born: Instant::now(),
            timeline: Vec::new(),
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            config: config.to_owned(),
            dns: DnsServer::start().await,
            dns_addrs: Vec::new(),
            procs: Vec::new(),
            instances: HashMap::new(),
            admin: admin_client(),
            notes: Vec::new(),
        }
    }

    /// A progress line, also kept in the scenario's timeline with the
    /// origin's load count at that moment.
    fn mark(&mut self, what: String) {
        progress!("{}: {what}", self.label);
        let loads = self.origin.bench_total.load(Ordering::SeqCst);
        self.timeline.push((self.born.elapsed(), loads, what));
    }

    /// Writes `timeline.txt` and `origin-loads.txt` (seconds since the
    /// cluster was created).
    fn write_timeline(&self) -> Result<()> {
        let mut text = String::from("# seconds  origin-loads-so-far  event\n");
        for (at, loads, what) in &self.timeline {
            let _ = writeln!(text, "{:9.3}  {loads:6}  {what}", at.as_secs_f64());
        }
        std::fs::write(self.dir.join("timeline.txt"), text)?;
        let mut text = String::from("# seconds  key  (every bench load the origin saw)\n");
        for (at, key) in self.origin.log.lock().expect("origin log").iter() {
            let at = at.saturating_duration_since(self.born);
            let _ = writeln!(text, "{:9.3}  {key}", at.as_secs_f64());
        }
        std::fs::write(self.dir.join("origin-loads.txt"), text)?;
        Ok(())
    }

    fn note(&mut self, note: String) {
        progress!("note: {note}");
        self.notes.push(note);
    }

    fn dns_add(&mut self, ip: IpAddr) {
        if !self.dns_addrs.contains(&ip) {
            self.dns_addrs.push(ip);
        }
        self.dns.set(DNS_NAME, self.dns_addrs.clone());
    }

    fn dns_remove(&mut self, ip: IpAddr) {
        self.dns_addrs.retain(|&a| a != ip);
        self.dns.set(DNS_NAME, self.dns_addrs.clone());
    }

    fn spawn(&mut self, ip: IpAddr) -> Result<()> {
        let instance = {
            let n = self.instances.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        let name = node_name(ip);
        let log_path = self.dir.join(format!("{name}.{instance}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut command = Command::new(&self.binary);
        for (var, _) in std::env::vars_os() {
            let var = var.to_string_lossy().into_owned();
            let upper = var.to_ascii_uppercase();
            if upper.starts_with("SHOAL_")
                || upper.starts_with("POD_")
                || upper.starts_with("KUBERNETES_SERVICE_")
                || upper == "KUBECONFIG"
                || upper.ends_with("_PROXY")
            {
                command.env_remove(&var);
            }
        }
        command
            .args(["--bind", &ip.to_string(), "--advertise", &ip.to_string()])
            .args(["--node-name", &name])
            .arg("-c")
            .arg(&self.config)
            .args(["--seed", DNS_NAME])
            .args(["--dns-server", &self.dns.addr().to_string()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        self.procs.push(Proc {
            ip,
            instance,
            child,
            exited: None,
        });
        Ok(())
    }

    /// The running process on `ip`.
    fn index(&mut self, ip: IpAddr) -> Result<usize> {
        self.procs
            .iter_mut()
            .position(|p| p.ip == ip && p.try_exit().is_none())
            .ok_or_else(|| anyhow!("no running node on {ip}"))
    }

    async fn wait_ready(&mut self, ip: IpAddr) -> Result<()> {
        let i = self.index(ip)?;
        let url = format!("http://{ip}:{ADMIN_PORT}/readyz");
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = self.procs[i].try_exit() {
                bail!(
                    "{} exited before it was ready: {status} (see its log)",
                    self.procs[i].label()
                );
            }
            if let Ok(response) = self.admin.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} not ready within {READY_LIMIT:?}", self.procs[i].label());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn view(&self, ip: IpAddr) -> Result<View> {
        let url = format!("http://{ip}:{ADMIN_PORT}/_members");
        let body = self.admin.get(&url).send().await?.bytes().await?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let me = json["self"].as_str().unwrap_or_default().to_owned();
        let list = json["members"]
            .as_array()
            .ok_or_else(|| anyhow!("{url}: no members list: {json}"))?;
        let mut own_generation = serde_json::Value::Null;
        let members = list
            .iter()
            .map(|m| {
                if m["name"] == me.as_str() {
                    own_generation = m["generation"].clone();
                }
                Member {
                    addr: m["addr"].as_str().and_then(|a| a.parse().ok()),
                    state: m["state"].as_str().unwrap_or_default().to_owned(),
                    generation: m["generation"].clone(),
                }
            })
            .collect();
        Ok(View {
            members,
            own_generation,
        })
    }

    /// Waits until every node of `target` lists exactly `target` as alive,
    /// each in its current generation (a restarted node's, not its
    /// predecessor's).
    async fn wait_shape(&mut self, target: &[IpAddr]) -> Result<()> {
        let want: BTreeSet<IpAddr> = target.iter().copied().collect();
        let started = Instant::now();
        let deadline = started + SHAPE_LIMIT;
        let mut first_problem = None;
        loop {
            for &ip in target {
                self.index(ip)
                    .with_context(|| format!("waiting for {want:?} to be alive everywhere"))?;
            }
            let views = join_all(target.iter().map(|&ip| self.view(ip))).await;
            let problem = shape_problem(target, &want, &views);
            let Some(problem) = problem else {
                if let Some(first) = first_problem
                    && started.elapsed() >= SLOW_SHAPE
                {
                    self.mark(format!(
                        "(took {} to be alive everywhere; at first {first})",
                        secs(started.elapsed())
                    ));
                }
                return Ok(());
            };
            first_problem.get_or_insert_with(|| problem.clone());
            if Instant::now() >= deadline {
                bail!("{want:?} not alive everywhere within {SHAPE_LIMIT:?}: {problem}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves the node's `/_stats` (service port) and `/metrics` (admin);
    /// each file is overwritten by later snapshots.
    async fn save_stats(&self, ip: IpAddr, label: &str) -> bool {
        let fetch = |url: String| async move {
            let response = self.admin.get(url).send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            response.text().await.ok()
        };
        let stats = fetch(format!("http://{ip}:{SERVICE_PORT}/_stats")).await;
        let metrics = fetch(format!("http://{ip}:{ADMIN_PORT}/metrics")).await;
        if let Some(stats) = &stats {
            let _ = std::fs::write(self.dir.join(format!("{label}.stats.json")), stats);
        }
        if let Some(metrics) = &metrics {
            let _ = std::fs::write(self.dir.join(format!("{label}.metrics.txt")), metrics);
        }
        stats.is_some() && metrics.is_some()
    }

    /// SIGTERM, then waits for the exit (snapshotting stats while it
    /// drains); a status other than 0 is noted.
    async fn terminate(&mut self, ip: IpAddr) -> Result<ExitStatus> {
        let i = self.index(ip)?;
        let label = self.procs[i].label();
        self.save_stats(ip, &label).await;
        self.procs[i].signal(libc::SIGTERM);
        let sent = Instant::now();
        let mut snapshot = Instant::now();
        let status = loop {
            if let Some(status) = self.procs[i].try_exit() {
                break status;
            }
            if sent.elapsed() >= EXIT_LIMIT {
                self.procs[i].kill();
                bail!("{label} did not exit within {EXIT_LIMIT:?} of SIGTERM");
            }
            if snapshot.elapsed() >= Duration::from_millis(250) {
                self.save_stats(ip, &label).await;
                snapshot = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.mark(format!(
            "{label} exited ({status}) {} after SIGTERM",
            secs(sent.elapsed())
        ));
        if !status.success() {
            self.note(format!("{label} exited with {status} after SIGTERM"));
        }
        Ok(status)
    }

    fn kill(&mut self, ip: IpAddr) -> Result<()> {
        let i = self.index(ip)?;
        self.procs[i].signal(libc::SIGKILL);
        self.procs[i].kill();
        Ok(())
    }

    /// Starts the nodes together, as a new workload would.
    async fn start(&mut self, ips: &[IpAddr]) -> Result<()> {
        for &ip in ips {
            self.dns_add(ip);
        }
        for &ip in ips {
            self.spawn(ip)?;
        }
        for &ip in ips {
            self.wait_ready(ip).await?;
        }
        self.wait_shape(ips).await
    }

    /// A new node: into DNS, started, ready, alive everywhere.
    async fn add_node(&mut self, ip: IpAddr, target: &[IpAddr]) -> Result<()> {
        self.dns_add(ip);
        self.spawn(ip)?;
        self.wait_ready(ip).await?;
        self.wait_shape(target).await
    }

    /// Saves every running node's stats, then kills them all.
    async fn teardown(&mut self) {
        let running: Vec<(IpAddr, String)> = self
            .procs
            .iter_mut()
            .filter_map(|p| p.try_exit().is_none().then(|| (p.ip, p.label())))
            .collect();
        for (ip, label) in running {
            self.save_stats(ip, &label).await;
        }
        for proc in &mut self.procs {
            proc.kill();
        }
    }
}

/// What keeps the cluster from its target shape, if anything.
fn shape_problem(
    target: &[IpAddr],
    want: &BTreeSet<IpAddr>,
    views: &[Result<View>],
) -> Option<String> {
    let mut generations = HashMap::new();
    for (&ip, view) in target.iter().zip(views) {
        match view {
            Ok(view) => {
                generations.insert(ip, view.own_generation.clone());
            }
            Err(error) => return Some(format!("{ip}: /_members: {error:#}")),
        }
    }
    for (&observer, view) in target.iter().zip(views) {
        let view = view.as_ref().expect("checked above");
        let alive = view.alive();
        if &alive != want {
            return Some(format!("{observer} lists {alive:?} as alive"));
        }
        for member in view.members.iter().filter(|m| m.state == "alive") {
            let Some(ip) = member.addr else { continue };
            let current = &generations[&ip];
            if !current.is_null() && &member.generation != current {
                return Some(format!(
                    "{observer} lists {ip} alive in generation {} (current: {current})",
                    member.generation
                ));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Scenarios

struct SigkillFigures {
    owner: IpAddr,
    owned_keys: usize,
    /// Origin loads per key → how many of the owner's keys had that many.
    loads_per_key: BTreeMap<u32, usize>,
    probe: Duration,
    survivors: usize,
    /// Survivors still listing the owner alive or suspect after the probe.
    still_listed: usize,
}

impl SigkillFigures {
    fn mean(&self) -> f64 {
        let total: u64 = self
            .loads_per_key
            .iter()
            .map(|(&loads, &keys)| u64::from(loads) * keys as u64)
            .sum();
        total as f64 / self.owned_keys.max(1) as f64
    }

    fn distribution(&self) -> String {
        self.loads_per_key
            .iter()
            .rev()
            .map(|(loads, keys)| format!("{loads}: {keys}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct ColdFigures {
    requests: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
}

struct Outcome {
    scenario: Scenario,
    mode: Mode,
    /// The client requests of the scenario (the load, or the probe).
    tally: Tally,
    /// Origin loads of `bench` keys during the scenario (after warm-up).
    origin_loads: u64,
    roll: Option<Duration>,
    sigkill: Option<SigkillFigures>,
    cold: Option<ColdFigures>,
    notes: Vec<String>,
    error: Option<String>,
}

impl Outcome {
    fn new(scenario: Scenario, mode: Mode) -> Self {
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

    fn json(&mut self, keys: usize) -> serde_json::Value {
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

async fn run_scenario(args: &Args, scenario: Scenario, mode: Mode) -> Result<Outcome> {
    // A scenario named twice in --scenarios runs twice: -2, -3, … keep
    // the later runs' files apart.
    let base = format!("{}-{}", scenario.name(), mode.name());
    let mut label = base.clone();
    let mut round = 1;
    while args.out.join(&label).exists() {
        round += 1;
        label = format!("{base}-{round}");
    }
    let dir = args.out.join(&label);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let origin = Origin::start().await?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        config_yaml(mode, origin.addr, args.no_churn_section),
    )?;
    let mut cluster =
        Cluster::new(&args.binary, &dir, &config, &label, origin.counts.clone()).await;
    let mut outcome = Outcome::new(scenario, mode);
    let result = drive(args, &origin, &mut cluster, &mut outcome).await;
    cluster.mark("stopping every node".into());
    cluster.teardown().await;
    if let Err(error) = cluster.write_timeline() {
        cluster.note(format!("could not write the timeline: {error:#}"));
    }
    outcome.notes.append(&mut cluster.notes);
    if let Err(error) = result {
        outcome.error = Some(format!("{error:#}"));
    }
    let json = outcome.json(args.keys);
    std::fs::write(
        dir.join("result.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(outcome)
}

async fn drive(
    args: &Args,
    origin: &Origin,
    cluster: &mut Cluster,
    outcome: &mut Outcome,
) -> Result<()> {
    let scenario = outcome.scenario;
    let size = if scenario == Scenario::ScaleIn { 6 } else { 5 };
    let initial: Vec<IpAddr> = (0..size).map(|i| addr(2 + i)).collect();
    cluster.mark(format!("starting {size} nodes"));
    let started = Instant::now();
    cluster.start(&initial).await?;
    cluster.mark(format!(
        "{size} nodes ready and alive everywhere in {}",
        secs(started.elapsed())
    ));

    let client = load_client();
    warm(args, origin, cluster, &client, &initial).await;
    if scenario == Scenario::Sigkill {
        return sigkill(origin, cluster, &client, &initial, args.keys, outcome).await;
    }

    let before = origin.bench_loads();
    let load = Load::start(client.clone(), &initial, args);
    cluster.mark(format!(
        "load running ({} req/s over {} workers)",
        args.rate, args.workers
    ));
    tokio::time::sleep(PRE_ROLL).await;
    let first_action = Instant::now();
    let mut members = initial.clone();
    let result = roll(scenario, cluster, &load, &mut members).await;
    let roll = first_action.elapsed();
    if result.is_ok() {
        cluster.mark(format!(
            "back to {} nodes alive everywhere, {} after the first action",
            members.len(),
            secs(roll)
        ));
        outcome.roll = Some(roll);
        let tail = match scenario {
            Scenario::ScaleOut | Scenario::ScaleIn => args.tail,
            _ => ROLL_TAIL,
        };
        tokio::time::sleep(tail).await;
    }
    outcome.tally = load.stop().await;
    outcome.origin_loads = origin.bench_loads() - before;
    cluster.mark(format!(
        "load stopped: {} requests, {} failed, {} retried; {} origin loads",
        outcome.tally.requests, outcome.tally.failed, outcome.tally.retried, outcome.origin_loads
    ));
    result?;
    if scenario == Scenario::Rolling && args.cold_keys > 0 {
        outcome.cold = Some(cold_misses(cluster, &client, &members, args.cold_keys).await);
    }
    Ok(())
}

/// The scenario's actions, from the first to the target shape.
async fn roll(
    scenario: Scenario,
    cluster: &mut Cluster,
    load: &Load,
    members: &mut Vec<IpAddr>,
) -> Result<()> {
    match scenario {
        Scenario::Rolling => {
            for ip in members.clone() {
                load.remove(ip);
                cluster.mark(format!("{ip} out of service, SIGTERM"));
                cluster.terminate(ip).await?;
                cluster.dns_remove(ip);
                cluster.dns_add(ip);
                cluster.spawn(ip)?;
                cluster.wait_ready(ip).await?;
                cluster.mark(format!("{ip} restarted and ready"));
                cluster.wait_shape(members).await?;
                load.add(ip);
                cluster.mark(format!("{ip} alive everywhere, in service"));
            }
        }
        Scenario::Replace => {
            let olds = members.clone();
            for (i, old) in olds.into_iter().enumerate() {
                let new = addr(2 + 5 + i as u8);
                members.push(new);
                cluster.mark(format!("starting {new}"));
                cluster.add_node(new, members).await?;
                load.add(new);
                cluster.mark(format!("{new} ready, alive everywhere, in service"));
                load.remove(old);
                cluster.mark(format!("{old} out of service, SIGTERM"));
                cluster.terminate(old).await?;
                cluster.dns_remove(old);
                members.retain(|&m| m != old);
            }
            cluster.wait_shape(members).await?;
        }
        Scenario::ScaleOut => {
            let new = addr(2 + members.len() as u8);
            members.push(new);
            cluster.mark(format!("starting {new}"));
            cluster.add_node(new, members).await?;
            load.add(new);
            cluster.mark(format!("{new} ready, alive everywhere, in service"));
        }
        Scenario::ScaleIn => {
            let gone = *members.last().expect("six nodes");
            load.remove(gone);
            cluster.mark(format!("{gone} out of service, SIGTERM"));
            cluster.terminate(gone).await?;
            cluster.dns_remove(gone);
            members.retain(|&m| m != gone);
            cluster.wait_shape(members).await?;
        }
        Scenario::Sigkill => unreachable!("sigkill has no load"),
    }
    Ok(())
}

/// Every key once, spread over the nodes; the origin must see each once.
async fn warm(
    args: &Args,
    origin: &Origin,
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
) {
    let before = origin.bench_loads();
    let started = Instant::now();
    let results: Vec<GetResult> = futures::stream::iter(0..args.keys)
        .map(|i| {
            let ip = nodes[i % nodes.len()];
            let path = format!("/bench/{}", key_name(i));
            async move { get_with_retry(client, || Some(ip), &path).await }
        })
        .buffer_unordered(WARM_CONCURRENCY)
        .collect()
        .await;
    let loads = origin.bench_loads() - before;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.error.as_ref()).collect();
    cluster.mark(format!(
        "warmed {} keys in {} ({loads} origin loads, {} failed)",
        args.keys,
        secs(started.elapsed()),
        failed.len()
    ));
    if !failed.is_empty() {
        cluster.note(format!(
            "warm-up: {} of {} GETs failed, e.g. {}",
            failed.len(),
            args.keys,
            failed[0]
        ));
    }
    if loads != args.keys as u64 {
        cluster.note(format!(
            "warm-up: the origin saw {loads} loads for {} distinct keys",
            args.keys
        ));
    }
}

async fn sigkill(
    origin: &Origin,
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
    keys: usize,
    outcome: &mut Outcome,
) -> Result<()> {
    let owner = nodes[nodes.len() / 2];
    let survivors: Vec<IpAddr> = nodes.iter().copied().filter(|&n| n != owner).collect();
    let asked = survivors[0];
    let admin = cluster.admin.clone();
    let owners: Vec<Result<(String, IpAddr)>> = futures::stream::iter(0..keys)
        .map(|i| {
            let admin = admin.clone();
            async move {
                let key = key_name(i);
                let url = format!("http://{asked}:{ADMIN_PORT}/_ring/bench/{key}");
                let body = admin.get(&url).send().await?.bytes().await?;
                let json: serde_json::Value = serde_json::from_slice(&body)?;
                let ip = json["owner"]["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| anyhow!("{url}: no owner.addr in {json}"))?;
                Ok((key, ip))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut owned = Vec::new();
    for result in owners {
        let (key, ip) = result?;
        if ip == owner {
            owned.push(key);
        }
    }
    cluster.mark(format!(
        "{owner} owns {} of {keys} keys; SIGKILL, then each asked of the {} survivors at once",
        owned.len(),
        survivors.len()
    ));
    let before = origin.per_key();
    let killed = Instant::now();
    cluster.kill(owner)?;
    let results: Vec<Vec<(GetResult, Duration)>> = futures::stream::iter(owned.iter())
        .map(|key| {
            let survivors = &survivors;
            async move {
                let path = format!("/bench/{key}");
                join_all(survivors.iter().map(|&ip| {
                    let path = &path;
                    async move {
                        let sent = Instant::now();
                        let result = get_with_retry(client, || Some(ip), path).await;
                        (result, sent.elapsed())
                    }
                }))
                .await
            }
        })
        .buffer_unordered(PROBE_KEYS_AT_ONCE)
        .collect()
        .await;
    let probe = killed.elapsed();
    let views = join_all(survivors.iter().map(|&ip| cluster.view(ip))).await;
    let still_listed = views
        .iter()
        .filter(|v| {
            v.as_ref()
                .is_ok_and(|v| v.lists(owner, &["alive", "suspect"]))
        })
        .count();
    let after = origin.per_key();
    for (result, latency) in results.iter().flatten() {
        outcome.tally.record(result, *latency);
    }
    let mut loads_per_key = BTreeMap::new();
    for key in &owned {
        let loads = after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0);
        *loads_per_key.entry(loads).or_insert(0) += 1;
    }
    let before_total: u64 = before.values().map(|&v| u64::from(v)).sum();
    let after_total: u64 = after.values().map(|&v| u64::from(v)).sum();
    outcome.origin_loads = after_total - before_total;
    let figures = SigkillFigures {
        owner,
        owned_keys: owned.len(),
        loads_per_key,
        probe,
        survivors: survivors.len(),
        still_listed,
    };
    cluster.mark(format!(
        "probe done {} after SIGKILL: {:.2} origin loads per key ({}), {} of {} requests failed; {still_listed} of {} survivors still list {owner}",
        secs(probe),
        figures.mean(),
        figures.distribution(),
        outcome.tally.failed,
        outcome.tally.requests,
        survivors.len()
    ));
    if still_listed < survivors.len() {
        cluster.note(format!(
            "sigkill: only {still_listed} of {} survivors still listed {owner} alive or suspect when the probe finished ({}): failure detection was quicker than the probe",
            survivors.len(),
            secs(probe)
        ));
    }
    outcome.sigkill = Some(figures);
    Ok(())
}

/// Never-seen keys of group `cold`, one at a time, round the nodes.
async fn cold_misses(
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
    count: usize,
) -> ColdFigures {
    let mut tally = Tally::default();
    for i in 0..count {
        let ip = nodes[i % nodes.len()];
        let path = format!("/cold/c{i:04}");
        let sent = Instant::now();
        let result = get_with_retry(client, || Some(ip), &path).await;
        tally.record(&result, sent.elapsed());
    }
    let (requests, failed) = (tally.requests, tally.failed);
    let sorted = tally.sorted();
    let figures = ColdFigures {
        requests,
        failed,
        p50_ms: quantile_ms(sorted, 0.5),
        p99_ms: quantile_ms(sorted, 0.99),
    };
    cluster.mark(format!(
        "{count} cold misses: p50 {:.2} ms, p99 {:.2} ms, {} failed",
        figures.p50_ms, figures.p99_ms, figures.failed
    ));
    figures
}

// ---------------------------------------------------------------------------
// Summary

/// The 1-minute load average, as `/proc/loadavg` gives it.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// `git describe --always --dirty` of the working directory.
fn git_commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn header(
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
        "\nMachine: {} CPUs; 1-minute load average {load_start} at the start, {} at the end \
         (the bench itself needs about a quarter of a core).",
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
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

fn render(args: &Args, head: &str, outcomes: &mut [Outcome]) -> String {
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
            let sorted = o.tally.sorted();
            let latency = format!(
                "{:.1} / {:.1} / {:.0}",
                quantile_ms(sorted, 0.5),
                quantile_ms(sorted, 0.99),
                quantile_ms(sorted, 1.0)
            );
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

// ---------------------------------------------------------------------------

/// Whether `shoal check-config` accepts `yaml`; the error text if not.
fn check_config(binary: &Path, path: &Path, yaml: &str) -> Result<std::result::Result<(), String>> {
    std::fs::write(path, yaml)?;
    let output = Command::new(binary)
        .arg("check-config")
        .arg(path)
        .output()
        .with_context(|| format!("run {} check-config", binary.display()))?;
    if output.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_owned()))
    }
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let version = Command::new(&args.binary)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", args.binary.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
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
    START.get_or_init(Instant::now);
    shoal::node::install_crypto_provider();
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        eprintln!("churn_bench: {error:#}");
        std::process::exit(1);
    }
}
