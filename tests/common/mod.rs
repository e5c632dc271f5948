//! Test harness: real shoal nodes on loopback addresses, and a counting
//! HTTP origin inside the test.
//!
//! - [`Node`]: one node with its own temp dir (config file, log file). By
//!   default it runs in the test process, as mini-redis's tests run its
//!   server: the library's `shoal::Node` on listeners bound to the node's
//!   address, on a thread and a single-threaded runtime of its own, from
//!   the same flags and config file the binary would get. Where the process
//!   is the point (signals, exit codes, environment variables, network
//!   namespaces) [`NodeSpec::as_process`] starts the `shoal` binary instead.
//!   Either way: killed on drop (an in-process node by dropping its runtime,
//!   which closes every socket as SIGKILL would), its log printed when the
//!   test failed; [`Node::terminate`] and [`Node::wait_exit`] check clean
//!   shutdowns.
//! - [`Cluster`]: N nodes with fixed membership (`--peer` lists all of them).
//! - [`Origin`]: an axum server on `127.0.0.1:0` that records every request as
//!   it arrived (raw path, query, headers) and answers by key prefix.
//! - [`Config`]: the YAML config file the nodes get.
//! - [`Addrs`]: hands out loopback addresses `127.0.X.Y`, one `X` per test file
//!   (test files run one after another, tests within a file run in parallel),
//!   so every node uses the standard ports on an address of its own.
//! - [`poll_until`]: every wait is a poll for a condition with a deadline.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SERVICE_PORT: u16 = 3000;
pub const PEER_PORT: u16 = 8000;
pub const ADMIN_PORT: u16 = 9090;

/// How long a node may take to become ready on a busy machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A generous deadline for one condition to come true.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long the origin's `slow-` keys take to answer.
pub const SLOW: Duration = Duration::from_secs(1);
/// How long `hang-` keys take: longer than every loader timeout in [`Config`].
pub const HANG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Waiting

/// Polls `check` until it returns `Ok`, and panics after `timeout` with `what`
/// and the last `Err` it returned (the state that was not good enough).
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Addresses

/// Hands out `127.0.X.Y` addresses for one test file: `X` is the file's own
/// block, `Y` counts up from 2.
pub struct Addrs {
    block: u8,
    next: AtomicU8,
}

impl Addrs {
    pub const fn new(block: u8) -> Self {
        assert!(block != 0, "127.0.0.x is left to developers");
        Self {
            block,
            next: AtomicU8::new(2),
        }
    }

    pub fn next(&self) -> IpAddr {
        let y = self.next.fetch_add(1, Ordering::SeqCst);
        assert!(
            (2..=254).contains(&y),
            "127.0.{}.0/24 is used up: give the test file fewer nodes",
            self.block
        );
        IpAddr::V4(Ipv4Addr::new(127, 0, self.block, y))
    }
}

// ---------------------------------------------------------------------------
// HTTP helpers

/// A reqwest client for plain HTTP to the nodes: no proxy, a whole-request
/// timeout well above anything the tests wait for.
pub fn http_client() -> reqwest::Client {
    // The crate's reqwest is built with `rustls-no-provider`: a client needs a
    // process-wide crypto provider even if it only speaks plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build the test's HTTP client")
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    async fn read(what: &str, response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-shoal-source`: where the answering node got the bytes.
    pub fn source(&self) -> Option<&str> {
        self.header("x-shoal-source")
    }

    /// `x-shoal-error`: the kind of error.
    pub fn error_kind(&self) -> Option<&str> {
        self.header("x-shoal-error")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts a JSON error answer: the status, `{"error": "<non-empty string>"}`
    /// and, when given, the `x-shoal-error` kind.
    pub fn assert_error(&self, status: u16, kind: Option<&str>) -> serde_json::Value {
        assert_eq!(self.status, status, "status; body {:?}", self.text());
        let json = self.json();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "an error body has a non-empty \"error\" string: {json}"
        );
        if let Some(kind) = kind {
            assert_eq!(self.error_kind(), Some(kind), "x-shoal-error; body {json}");
        }
        json
    }
}

/// A raw HTTP/1.1 exchange over a fresh TCP connection, for request paths that
/// a URL library would normalise (`/data/..`). Returns the status code and the
/// rest of the answer (head and body) as text.
pub async fn raw_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("writing to {addr}: {e}"));
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP/1.1 answer: {answer:?}"));
    (status, answer)
}

/// Percent-encodes every byte of `key` except RFC 3986 unreserved characters,
/// so the key is one path segment that no URL library rewrites.
pub fn enc(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; anything else is kept as it is.
pub fn pct_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Config

/// The YAML config file given to every node of a test.
#[derive(Debug, Clone)]
pub struct Config {
    pub drain: String,
    pub peer_timeout: String,
    pub connect_timeout: String,
    pub default_group: Option<String>,
    /// (name, YAML flow mapping of the group).
    pub groups: Vec<(String, String)>,
    /// Whole top-level YAML lines, e.g. `discovery: { resolve_interval: 2s }`.
    pub extra: Vec<String>,
}

impl Config {
    /// Group `data` (default group; origin `/data/{key}`, loader timeout 5 s)
    /// and group `short` (origin `/short/{key}`, loader timeout 1 s, for
    /// timeouts); drain 1 s; peer timeout 10 s (above every loader timeout).
    pub fn standard(origin: &Origin) -> Self {
        Self {
            drain: "1s".into(),
            peer_timeout: "10s".into(),
            connect_timeout: "250ms".into(),
            default_group: Some("data".into()),
            groups: vec![
                (
                    "data".into(),
                    format!(
                        "{{ capacity: 16MiB, loader: {{ http: {{ url: \"{}\", timeout: 5s }} }} }}",
                        origin.url_template("data")
                    ),
                ),
                (
                    "short".into(),
                    format!(
                        "{{ capacity: 1MiB, loader: {{ http: {{ url: \"{}\", timeout: 1s }} }} }}",
                        origin.url_template("short")
                    ),
                ),
            ],
            extra: Vec::new(),
        }
    }

    /// Adds a top-level YAML line.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    pub fn drain(mut self, drain: &str) -> Self {
        self.drain = drain.into();
        self
    }

    /// Adds a group: `body` is a YAML flow mapping such as
    /// `{ read_only: true, loader: { demo: {} } }`.
    pub fn group(mut self, name: &str, body: &str) -> Self {
        self.groups.push((name.into(), body.into()));
        self
    }

    pub fn yaml(&self) -> String {
        let mut yaml = format!(
            "node: {{ drain: {} }}\npeer: {{ timeout: {}, connect_timeout: {} }}\n",
            self.drain, self.peer_timeout, self.connect_timeout
        );
        if let Some(default) = &self.default_group {
            yaml.push_str(&format!("default_group: {default}\n"));
        }
        for line in &self.extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str("groups:\n");
        for (name, body) in &self.groups {
            yaml.push_str(&format!("  {name}: {body}\n"));
        }
        yaml
    }
}

// ---------------------------------------------------------------------------
// Node

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub ip: IpAddr,
    /// Written to `config.yaml` in the node's dir and passed with `-c`.
    pub config: Option<String>,
    /// Fixed membership: every node's IP, this one included.
    pub peers: Vec<IpAddr>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Words run before the binary, e.g. `ip netns exec NS`; empty: none.
    pub wrapper: Vec<String>,
    /// Start the `shoal` binary rather than a node in the test process.
    pub process: bool,
}

impl NodeSpec {
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            config: None,
            peers: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
            process: false,
        }
    }

    /// Starts the `shoal` binary: for tests of the process itself.
    #[allow(
        clippy::wrong_self_convention,
        reason = "a builder step, named for what the node runs as"
    )]
    pub fn as_process(mut self) -> Self {
        self.process = true;
        self
    }

    /// Whether the node must be a process: asked to be, or given an
    /// environment or a wrapper, which only a process can have.
    fn needs_process(&self) -> bool {
        self.process || !self.env.is_empty() || !self.wrapper.is_empty()
    }

    /// The flags the node runs with, program name first, as the binary
    /// would get them.
    fn args(&self, name: &str, config_path: Option<&Path>) -> Vec<String> {
        let ip = self.ip.to_string();
        let mut args: Vec<String> = vec![
            "shoal".into(),
            "--bind".into(),
            ip.clone(),
            "--advertise".into(),
            ip,
            "--node-name".into(),
            name.into(),
        ];
        if let Some(path) = config_path {
            args.push("-c".into());
            args.push(path.display().to_string());
        }
        for peer in &self.peers {
            args.push("--peer".into());
            args.push(peer.to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn config(mut self, config: &Config) -> Self {
        self.config = Some(config.yaml());
        self
    }

    pub fn peers(mut self, peers: &[IpAddr]) -> Self {
        self.peers = peers.to_vec();
        self
    }

    /// Gossip membership seeded by `seed`, resolved through the DNS server
    /// at `dns`.
    pub fn seeded(self, seed: &str, dns: SocketAddr) -> Self {
        self.arg("--seed")
            .arg(seed)
            .arg("--dns-server")
            .arg(dns.to_string())
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Starts the binary through `wrapper` (`ip netns exec NS`, say), which
    /// must exec it in place so the node's pid is shoal's own.
    pub fn wrapped_in(mut self, wrapper: Vec<String>) -> Self {
        self.wrapper = wrapper;
        self
    }
}

/// A running node.
pub struct Node {
    pub ip: IpAddr,
    pub name: String,
    running: Running,
    exited: Option<ExitStatus>,
    log_path: PathBuf,
    client: reqwest::Client,
    dir: TempDir,
}

enum Running {
    Process(Child),
    InProcess(InProcess),
}

/// A node in the test process: `shoal::Node` on a thread of its own.
struct InProcess {
    stop: tokio::sync::mpsc::UnboundedSender<Stop>,
    /// Returns the exit status the binary would have had.
    thread: Option<std::thread::JoinHandle<ExitStatus>>,
}

/// What SIGTERM and SIGKILL are to a process.
enum Stop {
    /// The ordered shutdown; exit status 0.
    Terminate,
    /// Everything dropped at once: no leave, no handoff, no drain.
    Kill,
}

/// What the host says to an in-process node: its own address only, and
/// none of the test process's `POD_*` variables.
fn host_facts(ip: IpAddr, name: &str) -> shoal::config::HostFacts {
    shoal::config::HostFacts {
        hostname: name.to_owned(),
        addresses: vec![ip],
        ipv6: std::net::UdpSocket::bind("[::1]:0").is_ok(),
        ..Default::default()
    }
}

/// An exit status as `wait` reports one: `code` in the high byte.
fn exit_status(code: u8) -> ExitStatus {
    ExitStatus::from_raw(i32::from(code) << 8)
}

impl InProcess {
    fn start(spec: &NodeSpec, name: &str, args: Vec<String>, log_path: &Path) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::mpsc::unbounded_channel();
        let (ip, name, log_path) = (spec.ip, name.to_owned(), log_path.to_owned());
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run_in_process(ip, &name, &args, &log_path, stop_rx))
            .expect("start the node's thread");
        Self {
            stop: stop_tx,
            thread: Some(thread),
        }
    }
}

/// The binary's `main`, in a thread: flags and config file to a config,
/// the node on its own runtime until told to stop, its log to `log_path`.
fn run_in_process(
    ip: IpAddr,
    name: &str,
    args: &[String],
    log_path: &Path,
    mut stop: tokio::sync::mpsc::UnboundedReceiver<Stop>,
) -> ExitStatus {
    use clap::Parser;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(log_path)
        .expect("open the node's log file");
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,kube_client::client::builder=off",
        ))
        .with_writer(Mutex::new(log.try_clone().expect("clone the log file")))
        .with_ansi(false)
        .finish();
    // The runtime is single-threaded, so every task of the node logs here.
    let _logging = tracing::subscriber::set_default(subscriber);
    let fail = |code: u8, error: &dyn std::fmt::Display| {
        use std::io::Write;
        let _ = writeln!(&log, "shoal: {error}");
        exit_status(code)
    };
    let cli = match shoal::config::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return fail(2, &error),
    };
    let file = match cli
        .config
        .as_deref()
        .map(shoal::config::read_file)
        .transpose()
    {
        Ok(file) => file,
        Err(error) => return fail(2, &error),
    };
    let config = match shoal::config::resolve(&cli, file.as_ref(), &host_facts(ip, name)) {
        Ok(config) => config,
        Err(error) => return fail(2, &error),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the node's runtime");
    let status = runtime.block_on(async {
        let listeners = match shoal::Listeners::bind(&config) {
            Ok(listeners) => listeners,
            Err(error) => return fail(error.exit_code(), &error),
        };
        let node = match shoal::Node::builder(config).start(listeners).await {
            Ok(node) => node,
            Err(error) => return fail(error.exit_code(), &error),
        };
        match stop.recv().await {
            Some(Stop::Terminate) => {
                node.shutdown().await;
                exit_status(0)
            }
            Some(Stop::Kill) | None => {
                drop(node);
                ExitStatus::from_raw(libc::SIGKILL)
            }
        }
    });
    // Connections' tasks go with the runtime, and their sockets with them.
    runtime.shutdown_background();
    status
}

/// The environment a node starts from: the test's, less anything that could
/// configure shoal behind the test's back (its own variables, the downward
/// API's, a Kubernetes client's) or send its HTTP through a proxy.
fn clean_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("SHOAL_")
            || upper.starts_with("POD_")
            || upper.starts_with("KUBERNETES_SERVICE_")
            || upper == "KUBECONFIG"
            || upper.ends_with("_PROXY")
        {
            command.env_remove(&name);
        }
    }
}

/// A command for the shoal binary that dies with the test (PR_SET_PDEATHSIG),
/// so a killed test run leaves no node holding its ports.
pub fn shoal_command() -> Command {
    shoal_command_wrapped(&[])
}

/// [`shoal_command`] started through `wrapper` (nothing if it is empty).
pub fn shoal_command_wrapped(wrapper: &[String]) -> Command {
    let mut command = match wrapper.split_first() {
        None => Command::new(env!("CARGO_BIN_EXE_shoal")),
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(env!("CARGO_BIN_EXE_shoal"));
            command
        }
    };
    clean_env(&mut command);
    command.stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

impl Node {
    /// Starts a node (without waiting for it to be ready).
    pub fn spawn(spec: NodeSpec) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("shoal-{}-", spec.ip))
            .tempdir()
            .expect("create the node's temp dir");
        let name = format!("node-{}", spec.ip.to_string().replace('.', "-"));
        let log_path = dir.path().join("node.log");
        let log = std::fs::File::create(&log_path).expect("create the node's log file");
        let config_path = spec.config.as_ref().map(|config| {
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, config).expect("write the node's config file");
            path
        });
        let args = spec.args(&name, config_path.as_deref());
        let running = if spec.needs_process() {
            let mut command = shoal_command_wrapped(&spec.wrapper);
            command
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                .args(&args[1..])
                .envs(spec.env.iter().map(|(k, v)| (k, v)));
            Running::Process(
                command
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {}: {e}", env!("CARGO_BIN_EXE_shoal"))),
            )
        } else {
            Running::InProcess(InProcess::start(&spec, &name, args, &log_path))
        };
        Self {
            ip: spec.ip,
            name,
            running,
            exited: None,
            log_path,
            client: http_client(),
            dir,
        }
    }

    /// Starts a node and waits until it is ready.
    pub async fn start(spec: NodeSpec) -> Self {
        let mut node = Self::spawn(spec);
        node.wait_ready().await;
        node
    }

    /// A lone node (no `--peer`) with `config`.
    pub async fn start_lone(ip: IpAddr, config: &Config) -> Self {
        Self::start(NodeSpec::new(ip).config(config)).await
    }

    /// The process's pid; only a node started [`NodeSpec::as_process`] has one.
    pub fn pid(&self) -> i32 {
        match &self.running {
            Running::Process(child) => i32::try_from(child.id()).expect("pid fits i32"),
            Running::InProcess(_) => panic!("{} runs in the test process: no pid", self.name),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn service_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, SERVICE_PORT)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, ADMIN_PORT)
    }

    pub fn service_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.service_addr())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// Whether the process has exited (and its status, once it has).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = match &mut self.running {
                Running::Process(child) => child.try_wait().expect("query the child's state"),
                Running::InProcess(node) => match node.thread.take() {
                    Some(thread) if thread.is_finished() => {
                        Some(thread.join().unwrap_or_else(|_| exit_status(101)))
                    }
                    unfinished => {
                        node.thread = unfinished;
                        None
                    }
                },
            };
        }
        self.exited
    }

    /// Polls `/readyz` until it answers 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self) {
        let url = self.admin_url("/readyz");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit() {
                panic!("{} exited before it was ready: {status}", self.name);
            }
            if let Ok(response) = self.client.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {READY_TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(&self, what: String, request: reqwest::RequestBuilder) -> Resp {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        Resp::read(&what, response).await
    }

    /// `GET` on the service port; `path` is sent as written (e.g. `/data/key`).
    pub async fn get(&self, path: &str) -> Resp {
        let url = self.service_url(path);
        self.send(format!("GET {url}"), self.client.get(&url)).await
    }

    /// `GET` on a new connection (a fresh client with no pooled connections).
    pub async fn get_fresh(&self, path: &str) -> Resp {
        let url = self.service_url(path);
        self.send(
            format!("GET {url} (new connection)"),
            http_client().get(&url),
        )
        .await
    }

    /// Starts a `GET` in a task, to be awaited later (a request in flight).
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<Resp> {
        let client = self.client.clone();
        let url = self.service_url(path);
        tokio::spawn(async move {
            let what = format!("GET {url}");
            let response = client
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            Resp::read(&what, response).await
        })
    }

    /// `GET /{group}/{key}` with the key percent-encoded as one segment.
    pub async fn get_key(&self, group: &str, key: &str) -> Resp {
        self.get(&format!("/{group}/{}", enc(key))).await
    }

    pub async fn put(&self, path: &str, body: impl Into<Bytes>) -> Resp {
        let url = self.service_url(path);
        let body: Bytes = body.into();
        self.send(format!("PUT {url}"), self.client.put(&url).body(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        let url = self.service_url(path);
        self.send(format!("DELETE {url}"), self.client.delete(&url))
            .await
    }

    /// `GET` on the admin port.
    pub async fn admin_get(&self, path: &str) -> Resp {
        let url = self.admin_url(path);
        self.send(format!("GET {url}"), self.client.get(&url)).await
    }

    /// The owner of `key` in `group` according to this node's
    /// `/_ring/{group}/{key}`: the owner's IP.
    pub async fn ring_owner(&self, group: &str, key: &str) -> IpAddr {
        let resp = self
            .admin_get(&format!("/_ring/{group}/{}", enc(key)))
            .await;
        assert_eq!(resp.status, 200, "/_ring on {}: {}", self.name, resp.text());
        let json = resp.json();
        let addr = json["owner"]["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("/_ring has owner.addr: {json}"));
        parse_ip(addr).unwrap_or_else(|| panic!("owner.addr {addr:?} is not an address: {json}"))
    }

    /// The group's counters from the service port's `/_stats`.
    pub async fn stats(&self, group: &str) -> serde_json::Value {
        let resp = self.get("/_stats").await;
        assert_eq!(resp.status, 200, "/_stats: {}", resp.text());
        let json = resp.json();
        let stats = json["groups"][group].clone();
        assert!(stats.is_object(), "/_stats has groups.{group}: {json}");
        stats
    }

    /// The addresses of the members this node's `/_members` lists in any of
    /// `states` (`alive`, `suspect`, `down`).
    pub async fn members_in(&self, states: &[&str]) -> BTreeSet<IpAddr> {
        let members = self.admin_get("/_members").await.json();
        members["members"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|m| states.iter().any(|state| m["state"] == *state))
                    .filter_map(|m| m["addr"].as_str().and_then(|a| a.parse().ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until this node lists exactly `ips` in `states`.
    pub async fn wait_for_members(&self, states: &[&str], ips: &[IpAddr], timeout: Duration) {
        let want: BTreeSet<IpAddr> = ips.iter().copied().collect();
        let what = format!("{} to see {want:?} as {states:?}", self.name);
        poll_until(&what, timeout, || async {
            let seen = self.members_in(states).await;
            if seen == want {
                Ok(())
            } else {
                Err(format!("sees {seen:?}"))
            }
        })
        .await;
    }

    /// Starts the ordered shutdown: SIGTERM to a process.
    pub fn terminate(&self) {
        match &self.running {
            Running::Process(child) => {
                let pid = i32::try_from(child.id()).expect("pid fits i32");
                // SAFETY: plain syscall on our own child's pid.
                let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
                assert_eq!(rc, 0, "SIGTERM to {}", self.name);
            }
            Running::InProcess(node) => {
                let _ = node.stop.send(Stop::Terminate);
            }
        }
    }

    /// Stops the node at once, as SIGKILL does, and waits until it is gone.
    pub fn kill(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        self.exited = Some(match &mut self.running {
            Running::Process(child) => {
                // SAFETY: plain syscall on our own (unreaped) child's pid.
                unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGKILL) };
                child.wait().expect("reap the killed node")
            }
            Running::InProcess(node) => {
                let _ = node.stop.send(Stop::Kill);
                node.thread
                    .take()
                    .expect("a running node has its thread")
                    .join()
                    .unwrap_or_else(|_| exit_status(101))
            }
        });
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} ({}) -----\n{}\n----- end of log of {} -----",
                self.name,
                self.ip,
                self.log(),
                self.name
            );
        }
    }
}

/// Parses `1.2.3.4`, `1.2.3.4:8000`, `::1` or `[::1]:8000` to its IP.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Runs shoal with `args` to its exit (at most `timeout`) and returns its
/// exit status, stdout and stderr.
pub async fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir for output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = shoal_command()
        .args(args)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start shoal");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("query the child's state") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shoal {args:?} still running after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status, stdout, stderr)
}

// ---------------------------------------------------------------------------
// Cluster

/// N nodes with fixed membership, all ready.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes on fresh addresses from `addrs`, each with `config`
    /// and `--peer` listing all of them, and waits until all are ready.
    pub async fn start(addrs: &Addrs, n: usize, config: &Config) -> Self {
        let ips: Vec<IpAddr> = (0..n).map(|_| addrs.next()).collect();
        let mut nodes: Vec<Node> = ips
            .iter()
            .map(|ip| Node::spawn(NodeSpec::new(*ip).config(config).peers(&ips)))
            .collect();
        for node in &mut nodes {
            node.wait_ready().await;
        }
        Self { nodes }
    }

    pub fn ips(&self) -> Vec<IpAddr> {
        self.nodes.iter().map(|n| n.ip).collect()
    }

    pub fn index_of(&self, ip: IpAddr) -> usize {
        self.nodes
            .iter()
            .position(|n| n.ip == ip)
            .unwrap_or_else(|| panic!("{ip} is not a node of this cluster ({:?})", self.ips()))
    }

    /// The index of the node owning `key`, after checking that every live
    /// node's `/_ring` names the same owner.
    pub async fn owner(&self, group: &str, key: &str) -> usize {
        let mut owners = Vec::new();
        for node in &self.nodes {
            owners.push(node.ring_owner(group, key).await);
        }
        assert!(
            owners.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree on the owner of {group}/{key:?}: {owners:?}"
        );
        self.index_of(owners[0])
    }

    /// Indexes of every node but `index`.
    pub fn others(&self, index: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| i != index).collect()
    }

    /// SIGTERM to every node; each must exit 0 within `timeout`.
    pub async fn shutdown(&mut self, timeout: Duration) {
        for node in &self.nodes {
            node.terminate();
        }
        for node in &mut self.nodes {
            let status = node.wait_exit(timeout).await;
            assert_eq!(
                status.code(),
                Some(0),
                "{} exit status: {status}",
                node.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Origin

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request path exactly as it arrived (not decoded).
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// (first segment, the rest of the path raw) of `/group/rest`.
    pub fn split(&self) -> Option<(&str, &str)> {
        self.path.strip_prefix('/')?.split_once('/')
    }

    /// Whether this request asked for `key` under `/{prefix}/`.
    pub fn is_for(&self, prefix: &str, key: &str) -> bool {
        self.split()
            .is_some_and(|(p, raw)| p == prefix && pct_decode(raw) == key.as_bytes())
    }
}

#[derive(Default)]
struct OriginState {
    seen: Mutex<Vec<Seen>>,
}

/// A counting HTTP origin on `127.0.0.1:0` (or [`Origin::start_on`]'s
/// address). Behaviour by key prefix (on the decoded key):
///
/// | prefix | answer |
/// |---|---|
/// | `slow-` | 200 `origin:<key>` after [`SLOW`] |
/// | `404-` | 404 |
/// | `500-` | 500 |
/// | `hang-` | nothing for [`HANG`] (longer than every loader timeout) |
/// | `ct-` | 200 `{"key": <key>}` with `Content-Type: application/json` |
/// | `maxage-` | 200 `origin:<key>:<n>` with `Cache-Control: max-age=1` |
/// | `ver-` | 200 `origin:<key>:<n>`, `n` = how many loads of the key so far |
/// | `slowver-` | as `ver-`, after [`SLOW`] (`n` counted when the request arrived) |
/// | other | 200 `origin:<key>`, no `Content-Type` |
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// As [`Origin::start`], on `ip` (port 0): for nodes that cannot reach
    /// the test's loopback, such as ones in network namespaces.
    pub async fn start_on(ip: IpAddr) -> Self {
        let state = Arc::new(OriginState::default());
        let app = Router::new()
            .fallback(origin_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind the origin");
        let addr = listener.local_addr().expect("origin address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("origin server");
        });
        Self { addr, state, task }
    }

    /// The loader URL template for keys under `/{prefix}/`.
    pub fn url_template(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/{{key}}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("origin state").clone()
    }

    /// How many loads of `key` arrived under `/data/`.
    pub fn count(&self, key: &str) -> usize {
        self.count_in("data", key)
    }

    /// How many loads of `key` arrived under `/{prefix}/`.
    pub fn count_in(&self, prefix: &str, key: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| s.is_for(prefix, key))
            .count()
    }

    pub fn total(&self) -> usize {
        self.state.seen.lock().expect("origin state").len()
    }

    /// Waits until `key` has been requested `n` times under `/{prefix}/`.
    pub async fn wait_count(&self, prefix: &str, key: &str, n: usize) {
        poll_until(
            &format!("{n} origin loads of {prefix}/{key}"),
            WAIT,
            || async {
                let count = self.count_in(prefix, key);
                if count >= n {
                    Ok(())
                } else {
                    Err(format!("{count} loads"))
                }
            },
        )
        .await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            eprintln!("----- origin requests -----");
            for seen in self.requests() {
                eprintln!("{} {} query={:?}", seen.method, seen.path, seen.query);
            }
            eprintln!("----- end of origin requests -----");
        }
    }
}

async fn origin_handler(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let seen = Seen {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let (prefix, key) = match seen.split() {
        Some((prefix, raw)) => (
            prefix.to_owned(),
            String::from_utf8_lossy(&pct_decode(raw)).into_owned(),
        ),
        None => (String::new(), String::new()),
    };
    let loads = {
        let mut all = state.seen.lock().expect("origin state");
        all.push(seen);
        all.iter().filter(|s| s.is_for(&prefix, &key)).count()
    };

    let plain = |status: StatusCode, body: String| {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response
    };
    if key.starts_with("slow-") {
        tokio::time::sleep(SLOW).await;
        plain(StatusCode::OK, format!("origin:{key}"))
    } else if key.starts_with("404-") {
        plain(StatusCode::NOT_FOUND, "no such key".into())
    } else if key.starts_with("500-") {
        plain(StatusCode::INTERNAL_SERVER_ERROR, "origin broke".into())
    } else if key.starts_with("hang-") {
        tokio::time::sleep(HANG).await;
        plain(StatusCode::OK, format!("origin:{key}"))
    } else if key.starts_with("ct-") {
        let mut response = plain(
            StatusCode::OK,
            serde_json::json!({ "key": key }).to_string(),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else if key.starts_with("maxage-") {
        let mut response = plain(StatusCode::OK, format!("origin:{key}:{loads}"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        response
    } else if key.starts_with("slowver-") {
        tokio::time::sleep(SLOW).await;
        plain(StatusCode::OK, format!("origin:{key}:{loads}"))
    } else if key.starts_with("ver-") {
        plain(StatusCode::OK, format!("origin:{key}:{loads}"))
    } else {
        plain(StatusCode::OK, format!("origin:{key}"))
    }
}
