//! One mode's `shoal` processes: started on their addresses with their
//! own config files, watched for an early death, their counters read from
//! `/metrics`, and stopped with SIGTERM, each expected to exit 0.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::args::Mode;
use crate::bench_common::node_process::{NodeProcess, shoal_command};
use crate::metrics::{NodeSnapshot, parse_counters};
use crate::{ADMIN_PORT, EXIT_LIMIT, LOG_TAIL, POLL, READY_LIMIT, node_name};

/// One `shoal` process and its log file.
struct Proc {
    ip: IpAddr,
    process: NodeProcess,
    log: PathBuf,
    /// Set once the bench has sent SIGTERM: an exit after it is expected.
    terminated: bool,
    /// Why this node counts as failed, once it does.
    failure: Option<String>,
}

/// The last `lines` lines of a file, or why it could not be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

pub struct Cluster {
    pub mode: Mode,
    pub ips: Vec<IpAddr>,
    binary: PathBuf,
    dir: PathBuf,
    configs: Vec<PathBuf>,
    procs: Vec<Proc>,
    admin: reqwest::Client,
}

impl Cluster {
    pub fn new(
        mode: Mode,
        binary: &Path,
        dir: &Path,
        ips: Vec<IpAddr>,
        configs: Vec<PathBuf>,
    ) -> Self {
        Self {
            mode,
            ips,
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            configs,
            procs: Vec::new(),
            admin: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("build the admin client"),
        }
    }

    pub fn spawn_all(&mut self) -> Result<()> {
        for (&ip, config) in self.ips.iter().zip(&self.configs) {
            let log = self.dir.join(format!("{}.log", node_name(ip)));
            let mut command = shoal_command(&self.binary, &log)?;
            command.arg("-c").arg(config);
            self.procs.push(Proc {
                ip,
                process: NodeProcess::spawn(command)?,
                log,
                terminated: false,
                failure: None,
            });
        }
        Ok(())
    }

    /// Waits until every node's `/readyz` answers 200.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        for i in 0..self.procs.len() {
            let ip = self.procs[i].ip;
            let url = format!("http://{ip}:{ADMIN_PORT}/readyz");
            loop {
                if let Some(status) = self.procs[i].process.try_exit() {
                    let why = format!("{} exited before it was ready: {status}", node_name(ip));
                    self.procs[i].failure = Some(why.clone());
                    bail!("{}: {why}", self.mode.name());
                }
                if let Ok(response) = self.admin.get(&url).send().await
                    && response.status() == 200
                {
                    break;
                }
                if Instant::now() >= deadline {
                    let why = format!("{} not ready within {READY_LIMIT:?}", node_name(ip));
                    self.procs[i].failure = Some(why.clone());
                    bail!("{}: {why}", self.mode.name());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// The nodes that exited without being asked to, each with its status.
    pub fn died(&mut self) -> Vec<String> {
        let mode = self.mode.name();
        let mut dead = Vec::new();
        for proc in &mut self.procs {
            if proc.terminated {
                continue;
            }
            if let Some(status) = proc.process.try_exit() {
                let why = format!(
                    "{mode}/{} exited during the run: {status}",
                    node_name(proc.ip)
                );
                proc.failure.get_or_insert(why.clone());
                dead.push(why);
            }
        }
        dead
    }

    /// Every node's counters now; the raw `/metrics` text goes to
    /// `<node>.metrics-<label>.txt`.
    pub async fn snapshot(&self, label: &str) -> Vec<NodeSnapshot> {
        let mut snapshots = Vec::new();
        for &ip in &self.ips {
            let node = node_name(ip);
            let url = format!("http://{ip}:{ADMIN_PORT}/metrics");
            let text = match self.admin.get(&url).send().await {
                Ok(response) if response.status() == 200 => response.text().await.ok(),
                _ => None,
            };
            if let Some(text) = &text {
                let path = self.dir.join(format!("{node}.metrics-{label}.txt"));
                if let Err(error) = std::fs::write(&path, text) {
                    progress!("could not write {}: {error}", path.display());
                }
            } else {
                progress!("{}/{node}: no /metrics at {label}", self.mode.name());
            }
            snapshots.push(NodeSnapshot {
                node,
                counters: text.as_deref().map(parse_counters),
            });
        }
        snapshots
    }

    /// SIGTERM to every node, then each must exit 0 within
    /// [`EXIT_LIMIT`]; what went wrong otherwise, one line a node.
    pub async fn terminate_all(&mut self) -> Vec<String> {
        let mode = self.mode.name();
        for proc in &mut self.procs {
            if proc.process.try_exit().is_none() {
                proc.terminated = true;
                proc.process.signal(libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + EXIT_LIMIT;
        let mut failures = Vec::new();
        for proc in &mut self.procs {
            let node = node_name(proc.ip);
            let status = loop {
                if let Some(status) = proc.process.try_exit() {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                tokio::time::sleep(POLL).await;
            };
            let why = match status {
                _ if proc.failure.is_some() => proc.failure.clone(),
                Some(status) if status.success() => None,
                Some(status) => Some(format!("{mode}/{node} exited with {status} after SIGTERM")),
                None => {
                    proc.process.kill();
                    Some(format!(
                        "{mode}/{node} did not exit within {EXIT_LIMIT:?} of SIGTERM (killed)"
                    ))
                }
            };
            if let Some(why) = why {
                proc.failure.get_or_insert(why.clone());
                failures.push(why);
            }
        }
        if failures.is_empty() {
            progress!("{mode}: every node exited 0 after SIGTERM");
        }
        failures
    }

    /// The log tail of every node that failed.
    pub fn print_failed_logs(&self) {
        for proc in &self.procs {
            if let Some(why) = &proc.failure {
                eprintln!(
                    "---- {why}; last {LOG_TAIL} lines of {}:\n{}\n----",
                    proc.log.display(),
                    tail(&proc.log, LOG_TAIL)
                );
            }
        }
    }
}
