//! The `shoal` processes of one scenario: started and stopped on their
//! addresses, seeded through an in-process DNS server whose headless name
//! answers with the nodes that exist, and watched through `/_members` until
//! the membership has the shape asked for.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::future::join_all;

use crate::bench_common::format::secs;
use crate::bench_common::node_process::{NodeProcess, shoal_command};
use crate::client::admin_client;
use crate::dns::DnsServer;
use crate::origin::OriginCounts;
use crate::{
    ADMIN_PORT, DNS_NAME, EXIT_LIMIT, POLL, READY_LIMIT, SERVICE_PORT, SHAPE_LIMIT, SLOW_SHAPE,
    node_name,
};

/// One `shoal` process: the `instance`th on its address.
struct Proc {
    ip: IpAddr,
    instance: u32,
    process: NodeProcess,
}

impl Proc {
    fn label(&self) -> String {
        format!("{}.{}", node_name(self.ip), self.instance)
    }
}

#[derive(Debug)]
struct Member {
    addr: Option<IpAddr>,
    state: String,
    generation: serde_json::Value,
}

/// One node's `/_members`.
pub struct View {
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

    pub fn lists(&self, ip: IpAddr, states: &[&str]) -> bool {
        self.members
            .iter()
            .any(|m| m.addr == Some(ip) && states.contains(&m.state.as_str()))
    }
}

/// The nodes of one scenario, their DNS name and where their files go.
pub struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    dns: DnsServer,
    dns_addrs: Vec<IpAddr>,
    procs: Vec<Proc>,
    instances: HashMap<IpAddr, u32>,
    pub admin: reqwest::Client,
    pub notes: Vec<String>,
    /// `scenario-mode`, the prefix of progress lines.
    label: String,
    origin: Arc<OriginCounts>,
    born: Instant,
    /// (time since `born`, origin loads so far, what happened).
    timeline: Vec<(Duration, u64, String)>,
}

impl Cluster {
    pub async fn new(
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
    pub fn mark(&mut self, what: String) {
        progress!("{}: {what}", self.label);
        let loads = self.origin.bench_total.load(Ordering::SeqCst);
        self.timeline.push((self.born.elapsed(), loads, what));
    }

    /// Writes `timeline.txt` and `origin-loads.txt` (seconds since the
    /// cluster was created).
    pub fn write_timeline(&self) -> Result<()> {
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

    pub fn note(&mut self, note: String) {
        progress!("note: {note}");
        self.notes.push(note);
    }

    pub fn dns_add(&mut self, ip: IpAddr) {
        if !self.dns_addrs.contains(&ip) {
            self.dns_addrs.push(ip);
        }
        self.dns.set(DNS_NAME, self.dns_addrs.clone());
    }

    pub fn dns_remove(&mut self, ip: IpAddr) {
        self.dns_addrs.retain(|&a| a != ip);
        self.dns.set(DNS_NAME, self.dns_addrs.clone());
    }

    pub fn spawn(&mut self, ip: IpAddr) -> Result<()> {
        let instance = {
            let n = self.instances.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        let name = node_name(ip);
        let log = self.dir.join(format!("{name}.{instance}.log"));
        let mut command = shoal_command(&self.binary, &log)?;
        command
            .args(["--bind", &ip.to_string(), "--advertise", &ip.to_string()])
            .args(["--node-name", &name])
            .arg("-c")
            .arg(&self.config)
            .args(["--seed", DNS_NAME])
            .args(["--dns-server", &self.dns.addr().to_string()]);
        self.procs.push(Proc {
            ip,
            instance,
            process: NodeProcess::spawn(command)?,
        });
        Ok(())
    }

    /// The running process on `ip`.
    fn index(&mut self, ip: IpAddr) -> Result<usize> {
        self.procs
            .iter_mut()
            .position(|p| p.ip == ip && p.process.try_exit().is_none())
            .ok_or_else(|| anyhow!("no running node on {ip}"))
    }

    pub async fn wait_ready(&mut self, ip: IpAddr) -> Result<()> {
        let i = self.index(ip)?;
        let url = format!("http://{ip}:{ADMIN_PORT}/readyz");
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = self.procs[i].process.try_exit() {
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

    pub async fn view(&self, ip: IpAddr) -> Result<View> {
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
    pub async fn wait_shape(&mut self, target: &[IpAddr]) -> Result<()> {
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
    pub async fn terminate(&mut self, ip: IpAddr) -> Result<ExitStatus> {
        let i = self.index(ip)?;
        let label = self.procs[i].label();
        self.save_stats(ip, &label).await;
        self.procs[i].process.signal(libc::SIGTERM);
        let sent = Instant::now();
        let mut snapshot = Instant::now();
        let status = loop {
            if let Some(status) = self.procs[i].process.try_exit() {
                break status;
            }
            if sent.elapsed() >= EXIT_LIMIT {
                self.procs[i].process.kill();
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

    pub fn kill(&mut self, ip: IpAddr) -> Result<()> {
        let i = self.index(ip)?;
        self.procs[i].process.signal(libc::SIGKILL);
        self.procs[i].process.kill();
        Ok(())
    }

    /// Starts the nodes together, as a new workload would.
    pub async fn start(&mut self, ips: &[IpAddr]) -> Result<()> {
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
    pub async fn add_node(&mut self, ip: IpAddr, target: &[IpAddr]) -> Result<()> {
        self.dns_add(ip);
        self.spawn(ip)?;
        self.wait_ready(ip).await?;
        self.wait_shape(target).await
    }

    /// Saves every running node's stats, then kills them all.
    pub async fn teardown(&mut self) {
        let running: Vec<(IpAddr, String)> = self
            .procs
            .iter_mut()
            .filter_map(|p| p.process.try_exit().is_none().then(|| (p.ip, p.label())))
            .collect();
        for (ip, label) in running {
            self.save_stats(ip, &label).await;
        }
        for proc in &mut self.procs {
            proc.process.kill();
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
