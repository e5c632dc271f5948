//! The nodes: one `shoal` process per host namespace, started, stopped and
//! restarted by the chaos loop, watched for crashes and resident memory.
//!
//! Every node is the binary in its host's namespace, seeded by the DNS name
//! that answers with every host, and given the keyring. The slots sit
//! behind one mutex that is only ever held for a non-blocking step (a
//! signal, a `waitpid` with `WNOHANG`, a spawn), never across an await.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{ADMIN_PORT, Node, NodeSpec};
use crate::load::Targets;
use crate::netns::Host;
use crate::timeline::Clock;

/// Something a node did that it must not: the checker's input from the
/// fleet and the chaos loop.
#[derive(Debug, Clone)]
pub struct Problem {
    pub at: Duration,
    pub kind: &'static str,
    pub detail: String,
}

/// How nodes start: the config, the seed name and DNS server, the keyring.
pub struct Recipe {
    pub config: String,
    pub seed: String,
    pub dns: SocketAddr,
    pub keyring: PathBuf,
}

/// How long after a heal or restart membership converged.
#[derive(Debug, Clone, Copy)]
pub struct Convergence {
    /// Until every running node had every running node on its ring.
    pub ring: Duration,
    /// Until every one also listed every one alive, not suspect.
    pub alive: Option<Duration>,
}

/// What [`Fleet::converge`] waits for.
#[derive(Debug, Clone, Copy)]
enum View {
    Ring,
    Alive,
}

/// How long a suspect entry may outlive ring convergence before it is
/// noted: after a short partition a node can keep a member suspect for
/// tens of seconds, an issue this suite found (BENCHMARKS.md, "Faults").
pub const SUSPECT_LINGER: Duration = Duration::from_secs(10);

struct Slot {
    host: Host,
    node: Node,
    /// Which process this is at this address: 0 first, +1 per restart.
    incarnation: u32,
    /// Whether the node should be running: cleared before the chaos loop
    /// stops it, so that only an exit nobody asked for is a crash.
    expected: bool,
}

pub struct Fleet {
    recipe: Recipe,
    clock: Clock,
    slots: Mutex<Vec<Slot>>,
    /// Stopped processes, kept for their logs.
    retired: Mutex<Vec<(u32, Node)>>,
    /// Highest VmRSS seen per host, KiB.
    max_rss: Mutex<Vec<u64>>,
    problems: Mutex<Vec<Problem>>,
    lingering: Mutex<Vec<Problem>>,
    pub targets: Arc<Targets>,
    http: reqwest::Client,
}

impl Fleet {
    /// Starts a node on every host (without waiting for them).
    pub fn start(hosts: &[Host], recipe: Recipe, clock: Clock) -> Self {
        let targets = Targets::new(hosts.iter().map(|h| h.ip).collect());
        let fleet = Self {
            recipe,
            clock,
            slots: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            max_rss: Mutex::new(vec![0; hosts.len()]),
            problems: Mutex::new(Vec::new()),
            lingering: Mutex::new(Vec::new()),
            targets,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("the fleet's HTTP client"),
        };
        let slots = hosts
            .iter()
            .map(|host| Slot {
                host: host.clone(),
                node: fleet.spawn(host),
                incarnation: 0,
                expected: true,
            })
            .collect();
        *fleet.slots.lock().expect("slots") = slots;
        fleet
    }

    fn spawn(&self, host: &Host) -> Node {
        let mut spec = NodeSpec::new(host.ip)
            .seeded(&self.recipe.seed, self.recipe.dns)
            .arg("--keyring")
            .arg(self.recipe.keyring.display().to_string())
            .wrapped_in(host.exec_prefix());
        spec.config = Some(self.recipe.config.clone());
        Node::spawn(spec)
    }

    pub fn len(&self) -> usize {
        self.targets.ips.len()
    }

    pub fn ip(&self, i: usize) -> IpAddr {
        self.targets.ips[i]
    }

    pub fn host(&self, i: usize) -> Host {
        self.slots.lock().expect("slots")[i].host.clone()
    }

    /// The hosts whose node should be running.
    pub fn running(&self) -> Vec<usize> {
        let slots = self.slots.lock().expect("slots");
        (0..slots.len()).filter(|&i| slots[i].expected).collect()
    }

    fn problem(&self, kind: &'static str, detail: String) {
        let at = self.clock.now();
        self.problems
            .lock()
            .expect("problems")
            .push(Problem { at, kind, detail });
    }

    pub fn problems(&self) -> Vec<Problem> {
        self.problems.lock().expect("problems").clone()
    }

    /// SIGKILL to host `i`'s node; returns once it is reaped.
    pub fn kill(&self, i: usize) {
        self.targets.set_up(i, false);
        let mut slots = self.slots.lock().expect("slots");
        slots[i].expected = false;
        slots[i].node.kill();
    }

    /// SIGTERM to host `i`'s node, then waits for its exit: a problem
    /// unless it exits 0 within the deadline.
    pub async fn terminate(&self, i: usize, deadline: Duration) {
        self.targets.set_up(i, false);
        {
            let mut slots = self.slots.lock().expect("slots");
            slots[i].expected = false;
            slots[i].node.terminate();
        }
        let start = Instant::now();
        loop {
            let exited = self.slots.lock().expect("slots")[i].node.try_exit();
            match exited {
                Some(status) if status.success() => return,
                Some(status) => {
                    let name = self.name(i);
                    return self
                        .problem("term-exit", format!("{name} exited {status} after SIGTERM"));
                }
                None if start.elapsed() > deadline => {
                    let name = self.name(i);
                    self.problem(
                        "term-exit",
                        format!("{name} still running {deadline:?} after SIGTERM; killed"),
                    );
                    self.slots.lock().expect("slots")[i].node.kill();
                    return;
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn name(&self, i: usize) -> String {
        let slots = self.slots.lock().expect("slots");
        format!(
            "{} (incarnation {})",
            slots[i].node.name, slots[i].incarnation
        )
    }

    /// Starts a new process at host `i` (its predecessor must have exited)
    /// and waits until it is ready: a problem if it is not within
    /// `deadline`.
    pub async fn restart(&self, i: usize, deadline: Duration) {
        let host = self.host(i);
        let node = self.spawn(&host);
        {
            let mut slots = self.slots.lock().expect("slots");
            let slot = &mut slots[i];
            let old = std::mem::replace(&mut slot.node, node);
            self.retired
                .lock()
                .expect("retired")
                .push((slot.incarnation, old));
            slot.incarnation += 1;
            slot.expected = true;
        }
        let url = format!("http://{}:{ADMIN_PORT}/readyz", host.ip);
        let start = Instant::now();
        loop {
            if self.slots.lock().expect("slots")[i]
                .node
                .try_exit()
                .is_some()
            {
                // The crash watch reports it.
                return;
            }
            if let Ok(response) = self.http.get(&url).send().await
                && response.status() == 200
            {
                self.targets.set_up(i, true);
                return;
            }
            if start.elapsed() > deadline {
                let name = self.name(i);
                return self.problem("not-ready", format!("{name} not ready after {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One look at every node that should be running: an exit is a crash;
    /// VmRSS is recorded, and over `limit_kib` is a problem (once per
    /// process).
    pub fn watch(&self, limit_kib: u64) {
        let mut slots = self.slots.lock().expect("slots");
        let mut max_rss = self.max_rss.lock().expect("rss");
        for (i, slot) in slots.iter_mut().enumerate() {
            if !slot.expected {
                continue;
            }
            if let Some(status) = slot.node.try_exit() {
                slot.expected = false;
                self.targets.set_up(i, false);
                let detail = format!(
                    "{} (incarnation {}) exited on its own: {status}",
                    slot.node.name, slot.incarnation
                );
                self.problem("crash", detail);
                continue;
            }
            let Some(rss) = rss_kib(slot.node.pid()) else {
                continue;
            };
            if rss > limit_kib && max_rss[i] <= limit_kib {
                let detail = format!(
                    "{} (incarnation {}) VmRSS {rss} KiB, over {limit_kib} KiB",
                    slot.node.name, slot.incarnation
                );
                self.problem("rss", detail);
            }
            max_rss[i] = max_rss[i].max(rss);
        }
    }

    /// Highest VmRSS seen per host, KiB.
    pub fn max_rss(&self) -> Vec<u64> {
        self.max_rss.lock().expect("rss").clone()
    }

    /// Waits until membership converges: every running node lists every
    /// running node on its ring (alive or suspect) and no other alive.
    /// Returns how long that took, and how long until each also lists every
    /// one alive (`None` if a suspect entry lingered [`SUSPECT_LINGER`]
    /// longer: noted, see [`Fleet::lingering`]). At the deadline a problem,
    /// naming `after`, and `None`.
    pub async fn converge(&self, after: &str, deadline: Duration) -> Option<Convergence> {
        let ring = self.wait_view(after, View::Ring, deadline).await?;
        let alive = self
            .wait_view(after, View::Alive, ring + SUSPECT_LINGER)
            .await;
        Some(Convergence { ring, alive })
    }

    /// Suspect entries that outlived convergence by [`SUSPECT_LINGER`].
    pub fn lingering(&self) -> Vec<Problem> {
        self.lingering.lock().expect("lingering").clone()
    }

    async fn wait_view(&self, after: &str, view: View, deadline: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut last = String::new();
        let mut said = Duration::ZERO;
        while start.elapsed() < deadline {
            match self.view_once(view).await {
                Ok(()) => return Some(start.elapsed()),
                Err(seen) => last = seen,
            }
            // A slow convergence says what it is waiting for, as it waits.
            if start.elapsed() > said + Duration::from_secs(5) {
                said = start.elapsed();
                eprintln!("still converging ({view:?}) {said:.1?} after {after}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at = self.clock.now();
        match view {
            View::Ring => self.problem(
                "no-convergence",
                format!("membership did not converge within {deadline:?} after {after}: {last}"),
            ),
            View::Alive => self.lingering.lock().expect("lingering").push(Problem {
                at,
                kind: "suspect-lingers",
                detail: format!("{deadline:?} after {after}: {last}"),
            }),
        }
        None
    }

    /// `Ok` when every running node's `/_members` shows `view`; else what
    /// one of them lists.
    async fn view_once(&self, view: View) -> Result<(), String> {
        let running = self.running();
        let want: BTreeSet<IpAddr> = running.iter().map(|&i| self.ip(i)).collect();
        for &i in &running {
            let ip = self.ip(i);
            let (alive, suspect, others) = self.alive_at(ip).await?;
            let good = match view {
                View::Alive => alive == want,
                View::Ring => alive.is_subset(&want) && alive.union(&suspect).eq(want.iter()),
            };
            if !good {
                return Err(format!(
                    "{ip} lists {alive:?} alive, want {want:?}; not alive: {others}"
                ));
            }
        }
        Ok(())
    }

    /// The addresses `ip`'s `/_members` lists alive and suspect, and its
    /// entries in any state but alive.
    async fn alive_at(
        &self,
        ip: IpAddr,
    ) -> Result<(BTreeSet<IpAddr>, BTreeSet<IpAddr>, String), String> {
        let url = format!("http://{ip}:{ADMIN_PORT}/_members");
        let bytes = async {
            self.http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await
        }
        .await
        .map_err(|e| format!("{url}: {e}"))?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not JSON: {e}"))?;
        let members = body["members"]
            .as_array()
            .ok_or_else(|| format!("{url}: no members list: {body}"))?;
        let in_state = |state: &str| -> BTreeSet<IpAddr> {
            members
                .iter()
                .filter(|m| m["state"] == state)
                .filter_map(|m| m["addr"].as_str()?.parse().ok())
                .collect()
        };
        let (alive, suspect) = (in_state("alive"), in_state("suspect"));
        let others: Vec<String> = members
            .iter()
            .filter(|m| m["state"] != "alive")
            .map(ToString::to_string)
            .collect();
        Ok((alive, suspect, others.join(", ")))
    }

    /// SIGTERM to every running node, each checked for exit 0.
    pub async fn terminate_all(&self, deadline: Duration) {
        for i in self.running() {
            self.terminate(i, deadline).await;
        }
    }

    /// Every process's log, as (file name, text): `<ip>-<incarnation>.log`.
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut logs: Vec<(String, String)> = self
            .retired
            .lock()
            .expect("retired")
            .iter()
            .map(|(n, node)| (format!("{}-{n}.log", node.ip), node.log()))
            .collect();
        for slot in self.slots.lock().expect("slots").iter() {
            logs.push((
                format!("{}-{}.log", slot.node.ip, slot.incarnation),
                slot.node.log(),
            ));
        }
        logs.sort();
        logs
    }

    /// Stops every process at once (they are checked already).
    pub fn kill_all(&self) {
        for slot in self.slots.lock().expect("slots").iter_mut() {
            slot.expected = false;
            slot.node.kill();
        }
    }
}

/// VmRSS of process `pid` in KiB, from `/proc/PID/status`.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
