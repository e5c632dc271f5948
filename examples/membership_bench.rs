//! Measures SWIM membership on real `shoal` processes on 127.0.34.x:
//! convergence of a fresh cluster, steady-state gossip traffic, how long a
//! SIGKILLed or SIGTERMed node takes to leave every ring, and false
//! positives under packet loss (iptables `-m statistic` on the nodes'
//! loopback addresses; needs root). Each profile (`lan`, `fast`) is
//! measured the same way in the same run.
//!
//! `cargo run --release --example membership_bench -- [--nodes 10]
//! [--trials 5] [--loss-seconds 300] [--profiles lan,fast]`
//! (bench/membership.sh builds the node and runs this.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

const SUBNET: &str = "127.0.34.0/24";
/// `/_members` requests in flight at once while polling every node.
const POLL_CONCURRENCY: usize = 16;
/// Between polling rounds: every round asks each node for its whole member
/// list, which at 200 nodes is work enough to slow the nodes being timed, so
/// the bench rests between rounds (its figures are good to this much).
const POLL_PAUSE: Duration = Duration::from_millis(250);
/// How long a cluster may take to agree that every running node is alive
/// (a fresh start, or a node restarted after a trial) before the run fails.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    nodes: usize,
    trials: usize,
    loss_seconds: u64,
    profiles: Vec<String>,
    binary: PathBuf,
    out: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        nodes: 10,
        trials: 5,
        loss_seconds: 300,
        profiles: vec!["lan".into(), "fast".into()],
        binary: PathBuf::from("target/release/shoal"),
        out: PathBuf::from("bench/results/membership"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => args.nodes = value.parse().expect("--nodes N"),
            "--trials" => args.trials = value.parse().expect("--trials N"),
            "--loss-seconds" => args.loss_seconds = value.parse().expect("--loss-seconds S"),
            "--profiles" => args.profiles = value.split(',').map(str::to_owned).collect(),
            "--binary" => args.binary = value.into(),
            "--out" => args.out = value.into(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

struct Node {
    ip: IpAddr,
    child: Option<Child>,
}

struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    profile: String,
    /// Written once: nodes starting while it is rewritten would read half a file.
    config: PathBuf,
    ips: Vec<IpAddr>,
    nodes: Vec<Node>,
    client: reqwest::Client,
}

impl Cluster {
    fn write_config(dir: &Path, profile: &str) -> PathBuf {
        let path = dir.join(format!("{profile}.yaml"));
        let yaml = format!(
            "node: {{ drain: 1s }}\nmembership: {{ profile: {profile} }}\ndiscovery: {{ resolve_interval: 5s }}\n\
             default_group: heavy\ngroups:\n  heavy: {{ loader: {{ demo: {{ delay: 10ms }} }} }}\n",
        );
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn spawn(&self, ip: IpAddr) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{}-{ip}.log", self.profile)))
            .expect("log file");
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", &ip.to_string(), "--node-name", &format!("n-{ip}")])
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .env("RUST_LOG", "warn");
        for seed in &self.ips {
            command.args(["--seed", &seed.to_string()]);
        }
        command.spawn().expect("start shoal")
    }

    async fn start(binary: &Path, dir: &Path, profile: &str, n: usize) -> (Self, Duration) {
        let ips: Vec<IpAddr> = (0..n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 34, 2 + i as u8)))
            .collect();
        let mut cluster = Self {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            profile: profile.to_owned(),
            config: Self::write_config(dir, profile),
            ips: ips.clone(),
            nodes: Vec::new(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("client"),
        };
        let started = Instant::now();
        for &ip in &ips {
            let child = cluster.spawn(ip);
            cluster.nodes.push(Node {
                ip,
                child: Some(child),
            });
        }
        cluster.wait_all_alive(CONVERGENCE_LIMIT).await;
        (cluster, started.elapsed())
    }

    /// The members `ip` lists, by state (one `/_members` request).
    async fn states(&self, ip: IpAddr) -> Option<BTreeMap<String, BTreeSet<IpAddr>>> {
        let url = format!("http://{ip}:9090/_members");
        let body = self.client.get(url).send().await.ok()?.bytes().await.ok()?;
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let mut states: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for member in json["members"].as_array()? {
            if let (Some(state), Some(addr)) = (
                member["state"].as_str(),
                member["addr"].as_str().and_then(|a| a.parse().ok()),
            ) {
                states.entry(state.to_owned()).or_default().insert(addr);
            }
        }
        Some(states)
    }

    async fn members(&self, ip: IpAddr, state: &str) -> Option<BTreeSet<IpAddr>> {
        let mut states = self.states(ip).await?;
        Some(states.remove(state).unwrap_or_default())
    }

    fn live(&self) -> Vec<IpAddr> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.ip)
            .collect()
    }

    async fn wait_all_alive(&self, limit: Duration) {
        let want: BTreeSet<IpAddr> = self.live().into_iter().collect();
        let deadline = Instant::now() + limit;
        loop {
            let views = futures::stream::iter(want.iter().copied())
                .map(|ip| self.members(ip, "alive"))
                .buffer_unordered(POLL_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            if views.iter().all(|alive| alive.as_ref() == Some(&want)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not converge within {limit:?}"
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Time until no survivor lists `gone` as alive or suspect.
    async fn time_until_gone(&self, gone: IpAddr, since: Instant) -> Duration {
        let survivors: Vec<IpAddr> = self.live().into_iter().filter(|&ip| ip != gone).collect();
        let mut pending: BTreeSet<IpAddr> = survivors.iter().copied().collect();
        while !pending.is_empty() {
            // Polled concurrently, so a round over 200 nodes stays short.
            let rounds = futures::stream::iter(pending.iter().copied())
                .map(|ip| async move { (ip, self.states(ip).await.unwrap_or_default()) })
                .buffer_unordered(POLL_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            pending = rounds
                .into_iter()
                .filter(|(_, states)| {
                    let lists = |state: &str| states.get(state).is_some_and(|s| s.contains(&gone));
                    lists("alive") || lists("suspect")
                })
                .map(|(ip, _)| ip)
                .collect();
            assert!(
                since.elapsed() < CONVERGENCE_LIMIT,
                "{gone} never left the rings"
            );
            if !pending.is_empty() {
                tokio::time::sleep(POLL_PAUSE).await;
            }
        }
        since.elapsed()
    }

    fn signal(&mut self, index: usize, signal: i32) -> Child {
        let mut child = self.nodes[index].child.take().expect("running");
        // SAFETY: a plain syscall on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        if signal == libc::SIGKILL {
            let _ = child.wait();
        }
        child
    }

    async fn restart(&mut self, index: usize) {
        let ip = self.nodes[index].ip;
        self.nodes[index].child = Some(self.spawn(ip));
        self.wait_all_alive(CONVERGENCE_LIMIT).await;
    }

    /// Gossip sent (bytes, packets) and datagrams refused as larger than
    /// 1,400 bytes, summed over the live nodes' `/metrics`.
    async fn gossip_counters(&self) -> GossipCounters {
        let mut counters = GossipCounters::default();
        for ip in self.live() {
            let url = format!("http://{ip}:9090/metrics");
            let Ok(response) = self.client.get(url).send().await else {
                continue;
            };
            let text = response.text().await.unwrap_or_default();
            for line in text.lines() {
                let value = || {
                    line.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                if line.starts_with("shoal_gossip_bytes_total{direction=\"out\"}") {
                    counters.bytes += value();
                } else if line.starts_with("shoal_gossip_packets_total{direction=\"out\"}") {
                    counters.packets += value();
                } else if line.starts_with("shoal_gossip_rejected_total{reason=\"oversized\"}") {
                    counters.oversized += value();
                }
            }
        }
        counters
    }

    /// CPU time (seconds) used so far and resident memory (bytes) now,
    /// summed over the running nodes, from /proc.
    fn usage(&self) -> (f64, u64) {
        let tick = 1.0 / clock_ticks_per_second();
        let mut cpu = 0.0;
        let mut rss = 0;
        for node in &self.nodes {
            let Some(child) = &node.child else { continue };
            let pid = child.id();
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or("", |(_, rest)| rest)
                    .split_whitespace()
                    .collect();
                let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
                cpu += (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) * tick;
            }
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                rss += status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024;
            }
        }
        (cpu, rss)
    }

    fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2
    } else {
        values[mid]
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn iptables(action: &str) -> bool {
    Command::new("iptables")
        .args([
            action,
            "INPUT",
            "-s",
            SUBNET,
            "-d",
            SUBNET,
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.1",
            "-j",
            "DROP",
        ])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct LossGuard;

impl Drop for LossGuard {
    fn drop(&mut self) {
        while iptables("-D") {}
    }
}

async fn measure(args: &Args, profile: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let dir = args.out.join(profile);
    std::fs::create_dir_all(&dir).expect("results dir");
    println!("== profile {profile}, N = {}", args.nodes);

    let (mut cluster, converged) = Cluster::start(&args.binary, &dir, profile, args.nodes).await;
    println!("converged in {}s", secs(converged));
    rows.push(("convergence of a fresh cluster (s)".into(), secs(converged)));

    let window = Duration::from_secs(30);
    let (g0, (cpu0, _)) = (cluster.gossip_counters().await, cluster.usage());
    tokio::time::sleep(window).await;
    let (g1, (cpu1, rss)) = (cluster.gossip_counters().await, cluster.usage());
    let n = args.nodes as f64;
    let per_node = |total: f64| total / n / window.as_secs_f64();
    let (bytes, packets) = (
        per_node(g1.bytes - g0.bytes),
        per_node(g1.packets - g0.packets),
    );
    println!("steady gossip per node: {bytes:.0} B/s, {packets:.1} packets/s (sent)");
    rows.push((
        "gossip sent per node (bytes/s)".into(),
        format!("{bytes:.0}"),
    ));
    rows.push((
        "gossip sent per node (packets/s)".into(),
        format!("{packets:.1}"),
    ));
    let idle_cpu = 100.0 * (cpu1 - cpu0) / n / window.as_secs_f64();
    let idle_rss = rss as f64 / n / (1024.0 * 1024.0);
    println!("idle per node: {idle_cpu:.2}% of a core, {idle_rss:.1} MiB RSS");
    rows.push((
        "idle CPU per node (% of a core)".into(),
        format!("{idle_cpu:.2}"),
    ));
    rows.push(("idle RSS per node (MiB)".into(), format!("{idle_rss:.1}")));

    for (label, signal) in [("SIGKILL", libc::SIGKILL), ("SIGTERM", libc::SIGTERM)] {
        let mut times = Vec::new();
        for trial in 0..args.trials {
            let index = 1 + trial % (args.nodes - 1);
            let gone = cluster.nodes[index].ip;
            let since = Instant::now();
            let mut child = cluster.signal(index, signal);
            let took = cluster.time_until_gone(gone, since).await;
            // Reaped here (SIGTERM) or already by `signal` (SIGKILL).
            let status = child.wait().expect("wait");
            if signal == libc::SIGTERM {
                assert!(status.success(), "{gone} exited with {status}");
            }
            println!(
                "{label} trial {trial}: {gone} gone from every ring in {}s",
                secs(took)
            );
            times.push(took);
            cluster.restart(index).await;
        }
        let max = *times.iter().max().expect("trials");
        let med = median(&mut times);
        rows.push((
            format!("{label} → gone from every ring, median (s)"),
            secs(med),
        ));
        rows.push((
            format!("{label} → gone from every ring, max (s)"),
            secs(max),
        ));
    }

    if args.loss_seconds > 0 {
        let guard = LossGuard;
        if !iptables("-I") {
            println!("iptables unavailable: skipping the packet-loss run");
            rows.push((
                "false positives at 10% loss".into(),
                "not measured (no iptables)".into(),
            ));
        } else {
            let until = Instant::now() + Duration::from_secs(args.loss_seconds);
            let mut marked_down = BTreeSet::new();
            let mut suspected = BTreeSet::new();
            let mut polls = 0u64;
            while Instant::now() < until {
                let views = futures::stream::iter(cluster.ips.iter().copied())
                    .map(|observer| cluster.states(observer))
                    .buffer_unordered(POLL_CONCURRENCY)
                    .collect::<Vec<_>>()
                    .await;
                for mut states in views.into_iter().flatten() {
                    marked_down.extend(states.remove("down").unwrap_or_default());
                    suspected.extend(states.remove("suspect").unwrap_or_default());
                }
                polls += 1;
                // A healthy node marked down stays listed as down (it is
                // remembered for minutes), so a poll a second misses none.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            drop(guard);
            println!(
                "10% loss for {}s: {} healthy nodes ever marked down {:?}; {} ever suspected; {polls} polls",
                args.loss_seconds,
                marked_down.len(),
                marked_down,
                suspected.len()
            );
            rows.push((
                format!(
                    "healthy nodes marked down, 10% loss, {} s",
                    args.loss_seconds
                ),
                marked_down.len().to_string(),
            ));
            rows.push((
                format!(
                    "healthy nodes ever suspected, 10% loss, {} s",
                    args.loss_seconds
                ),
                suspected.len().to_string(),
            ));
        }
    }
    let oversized = cluster.gossip_counters().await.oversized;
    println!("datagrams over 1,400 bytes received (refused): {oversized:.0}");
    rows.push((
        "datagrams over 1,400 B received, whole run".into(),
        format!("{oversized:.0}"),
    ));
    cluster.stop();
    rows
}

#[derive(Default)]
struct GossipCounters {
    bytes: f64,
    packets: f64,
    oversized: f64,
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    shoal::install_crypto_provider();
    assert!(
        args.nodes >= 3 && args.nodes <= 200,
        "--nodes between 3 and 200"
    );
    std::fs::create_dir_all(&args.out).expect("results dir");
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    for profile in &args.profiles {
        for (i, (name, value)) in measure(&args, profile).await.into_iter().enumerate() {
            if table.len() <= i {
                table.push((name, Vec::new()));
            }
            table[i].1.push(value);
        }
    }
    let mut summary = format!(
        "| measure (N = {}) | {} |\n|---|",
        args.nodes,
        args.profiles.join(" | ")
    );
    summary.push_str(&"---|".repeat(args.profiles.len()));
    summary.push('\n');
    for (name, values) in &table {
        summary.push_str(&format!("| {name} | {} |\n", values.join(" | ")));
    }
    println!("\n{summary}");
    std::fs::write(args.out.join("summary.md"), &summary).expect("write summary");
}
