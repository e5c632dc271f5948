//! Network namespaces for tests that cut the network between nodes: a small
//! LAN of hosts, each a namespace of its own, that the test process (in the
//! root namespace) reaches through one uplink.
//!
//! ```text
//!  root namespace            switch namespace           host namespaces
//!  <tag>0 10.X.Y.1 ──veth── uplink ┐
//!                                  ├ br0 (bridge)
//!                           h0 ────┤ ──veth── eth0 10.X.Y.2   <tag>-h0
//!                           h1 ────┘ ──veth── eth0 10.X.Y.3   <tag>-h1 …
//! ```
//!
//! The bridge lives in a namespace of its own, not in the root one, so the
//! root namespace's firewall (its FORWARD chain sees bridged traffic when
//! `br_netfilter` is loaded) never touches the traffic between hosts.
//! A partition is iptables rules inside the host namespaces
//! ([`Host::iptables`]), which start empty.
//!
//! - [`missing`]: what this machine lacks to build a LAN (not root, no `ip`,
//!   no `iptables`, namespaces or veth or bridges or iptables unusable), so a
//!   test can say it was skipped and why. It leaves nothing behind: the
//!   checks run in an anonymous namespace that dies with the check.
//! - [`Lan::create`]: builds the LAN; dropping it deletes every namespace and
//!   link it made, after a panic too. It holds a lock file for its `tag`, so
//!   two runs on one machine take turns, and it first deletes what a run
//!   that was killed left behind.
//! - [`Host::exec_prefix`]: `ip netns exec <ns>`, to start a program inside.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`Lan::create`] waits for another run holding the same tag.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// What is missing here to build a [`Lan`], in words; `None` if nothing is.
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("not root (euid {euid})"));
    }
    for (program, package) in [("ip", "iproute2"), ("iptables", "iptables")] {
        let found = Command::new(program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("no `{program}` command (install {package})"));
        }
    }
    // Everything the LAN needs, in a fresh namespace that vanishes when the
    // shell exits.
    let script = "ip link add p0 type veth peer name p1 \
        && ip link add b0 type bridge \
        && ip link set dev p0 master b0 \
        && iptables -w -I INPUT -s 192.0.2.1 -j DROP";
    let mut check = Command::new("sh");
    check
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: unshare is a plain syscall, safe between fork and exec.
    unsafe {
        check.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    match check.output() {
        Err(error) => Some(format!("cannot create a network namespace: {error}")),
        Ok(out) if !out.status.success() => Some(format!(
            "veth, bridge or iptables do not work in a network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Runs `program args`; panics with its stderr if it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` for cleanup: failures are expected (already gone).
fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One host of a [`Lan`]: a network namespace with `eth0` at `ip`.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: IpAddr,
}

impl Host {
    /// The words that run a command inside this host: `ip netns exec <ns>`.
    pub fn exec_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Runs `iptables -w args` in this host's namespace; panics if it fails.
    pub fn iptables(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.ns, "iptables", "-w"];
        all.extend_from_slice(args);
        run("ip", &all);
    }
}

/// A LAN of network namespaces; see the module docs. Deleted on drop.
pub struct Lan {
    tag: String,
    /// The root namespace's end of the uplink, `<tag>0`.
    uplink: String,
    switch: String,
    gateway: IpAddr,
    hosts: Vec<Host>,
    /// Held (flock) while the LAN exists.
    _lock: File,
}

impl Lan {
    /// Builds a LAN named by `tag` (at most 10 characters; it prefixes every
    /// namespace and the root namespace's link) on `subnet`.0/24: the test
    /// process's side is `.1`, the hosts `.2` onwards. Panics, saying which
    /// command failed, if the machine refuses.
    pub fn create(tag: &str, subnet: [u8; 3], hosts: usize) -> Self {
        assert!(
            !tag.is_empty() && tag.len() <= 10,
            "a LAN tag has 1 to 10 characters (interface names are short): {tag:?}"
        );
        assert!((1..=250).contains(&hosts), "1 to 250 hosts: {hosts}");
        let lock = lock(tag);
        remove_leftovers(tag);
        let [a, b, c] = subnet;
        let cidr = format!("{a}.{b}.{c}.0/24");
        let taken = run("ip", &["-o", "-4", "addr", "show", "to", &cidr]);
        assert!(
            taken.trim().is_empty(),
            "{cidr} is already in use on this machine:\n{taken}"
        );

        // From here on, dropping `lan` deletes whatever exists so far.
        let mut lan = Self {
            tag: tag.to_owned(),
            uplink: format!("{tag}0"),
            switch: format!("{tag}-sw"),
            gateway: IpAddr::V4(Ipv4Addr::new(a, b, c, 1)),
            hosts: Vec::new(),
            _lock: lock,
        };
        let sw = lan.switch.clone();
        let uplink = lan.uplink.clone();
        run("ip", &["netns", "add", &sw]);
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "dev", "br0", "up"]);
        run(
            "ip",
            &[
                "link", "add", &uplink, "type", "veth", "peer", "name", "uplink", "netns", &sw,
            ],
        );
        run(
            "ip",
            &[
                "-n", &sw, "link", "set", "dev", "uplink", "master", "br0", "up",
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", lan.gateway),
                "dev",
                &uplink,
            ],
        );
        run("ip", &["link", "set", "dev", &uplink, "up"]);

        for i in 0..hosts {
            let last = u8::try_from(i + 2).expect("at most 250 hosts");
            let host = Host {
                ns: format!("{tag}-h{i}"),
                ip: IpAddr::V4(Ipv4Addr::new(a, b, c, last)),
            };
            let port = format!("h{i}");
            run("ip", &["netns", "add", &host.ns]);
            lan.hosts.push(host.clone());
            run(
                "ip",
                &[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &host.ns,
                ],
            );
            run(
                "ip",
                &[
                    "-n", &sw, "link", "set", "dev", &port, "master", "br0", "up",
                ],
            );
            run("ip", &["-n", &host.ns, "link", "set", "dev", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n",
                    &host.ns,
                    "addr",
                    "add",
                    &format!("{}/24", host.ip),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &host.ns, "link", "set", "dev", "eth0", "up"]);
        }
        lan
    }

    /// The test process's address on the LAN (root namespace): bind servers
    /// the hosts must reach here.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // The uplink first and explicitly: a deleted namespace's links go
        // away asynchronously, and the next run wants the name at once.
        run_quietly("ip", &["link", "del", &self.uplink]);
        for host in &self.hosts {
            run_quietly("ip", &["netns", "del", &host.ns]);
        }
        run_quietly("ip", &["netns", "del", &self.switch]);
        if std::thread::panicking() {
            eprintln!("network namespaces of {:?} deleted", self.tag);
        }
    }
}

/// Takes the machine-wide lock for `tag`, waiting for another run to finish.
fn lock(tag: &str) -> File {
    let path = format!("/run/{tag}-netns.lock");
    let file = File::create(&path).unwrap_or_else(|e| panic!("create {path}: {e}"));
    let deadline = Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return file;
        }
        assert!(
            Instant::now() < deadline,
            "another run held {path} for {LOCK_WAIT:?}"
        );
        if !said {
            let _ = writeln!(
                std::io::stderr(),
                "waiting for another run that holds {path}"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes what a killed run with `tag` left: its root-namespace link and
/// every namespace named `<tag>-…`. Only called with the lock held, so
/// nothing of a live run is touched.
fn remove_leftovers(tag: &str) {
    run_quietly("ip", &["link", "del", &format!("{tag}0")]);
    let prefix = format!("{tag}-");
    for line in run("ip", &["netns", "list"]).lines() {
        // `name` or `name (id: 3)`.
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(&prefix) {
            run_quietly("ip", &["netns", "del", name]);
        }
    }
}

/// Runs one test that needs root, iproute2 and iptables as a libtest-mimic
/// binary's whole `main`: where they are missing it is reported as ignored,
/// saying what is missing, unless `CI` is set, where that is a failure (CI,
/// as root, installs both). `what` names the test in those messages.
pub fn run_root_test(name: &'static str, what: &'static str, test: fn()) -> ! {
    use libtest_mimic::{Arguments, Completion, Trial};

    let args = Arguments::from_args();
    let missing = missing();
    let required = ci();
    let skipped = missing.is_some() && !required;
    if skipped && !args.list {
        eprintln!(
            "{what} skipped: {}; it needs root, iproute2 and iptables \
             (with CI set, this is a failure)",
            missing.as_deref().unwrap_or_default()
        );
    }
    let trial = Trial::ignorable_test(name, move || match missing {
        None => {
            test();
            Ok(Completion::Completed)
        }
        Some(missing) if required => Err(format!(
            "CI must run the {what}, but {missing}: \
             .ci/run installs iproute2 and iptables and runs as root"
        )
        .into()),
        Some(missing) => Ok(Completion::ignored_with(format!("skipped: {missing}"))),
    })
    // A listing (`--list`, as cargo-nextest asks) shows the skip too.
    .with_ignored_flag(args.list && skipped);
    libtest_mimic::run(&args, vec![trial]).exit()
}

/// Whether this is a CI run (`CI` set, and not to `false` or `0`).
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Every packet between two sets of hosts dropped, by rules in each host's
/// own INPUT and OUTPUT chains; [`Partition::heal`] deletes them. Not
/// healed on drop: after a panic the namespaces, rules and all, are
/// deleted with the [`Lan`].
pub struct Partition {
    rules: Vec<(Host, [String; 5])>,
}

impl Partition {
    pub fn cut(left: &[Host], right: &[Host]) -> Self {
        let mut rules = Vec::new();
        for (side, other) in [(left, right), (right, left)] {
            for host in side {
                for peer in other {
                    let ip = peer.ip.to_string();
                    for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                        let rule = [chain, flag, &ip, "-j", "DROP"].map(str::to_owned);
                        rules.push((host.clone(), rule));
                    }
                }
            }
        }
        let partition = Self { rules };
        partition.apply("-I");
        partition
    }

    /// Deletes every rule `cut` added.
    pub fn heal(self) {
        self.apply("-D");
    }

    /// Runs `iptables <op> <rule>` for every rule.
    fn apply(&self, op: &str) {
        for (host, rule) in &self.rules {
            let mut args = vec![op];
            args.extend(rule.iter().map(String::as_str));
            host.iptables(&args);
        }
    }
}
