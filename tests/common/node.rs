//! One node: how to start it ([`NodeSpec`]), and the running [`Node`] with
//! its requests, its membership view and its shutdown.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tempfile::TempDir;

use super::in_process::{InProcess, Stop, exit_status};
use super::process::shoal_command_wrapped;
use super::{Config, Resp, enc, http_client, poll_until};

pub const SERVICE_PORT: u16 = 3000;
pub const PEER_PORT: u16 = 8000;
pub const ADMIN_PORT: u16 = 9090;

/// How long a node may take to become ready on a busy machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub fn in_own_process(mut self) -> Self {
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

    /// The process's pid; only a node started [`NodeSpec::in_own_process`] has one.
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

    /// The value of the metric line that starts with `series ` (name and
    /// labels exactly as rendered); `None` when there is no such line.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.admin_get("/metrics").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
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
