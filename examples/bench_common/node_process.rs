//! A `shoal` node as a child process of a bench: started from a clean
//! environment with its output in a log file, and never outliving the
//! bench.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// A node's `--node-name` (and its files' names): `n-<address>`.
pub fn node_name(ip: IpAddr) -> String {
    format!("n-{ip}")
}

/// A command for `binary` that logs to a new file at `log` (stdout and
/// stderr, `RUST_LOG=info`, no colour) and is killed by the kernel if the
/// bench dies first (PR_SET_PDEATHSIG). The caller adds the node's
/// arguments.
pub fn shoal_command(binary: &Path, log: &Path) -> Result<Command> {
    let file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut command = Command::new(binary);
    // Nothing from this environment may configure the node behind the
    // bench's back (its own variables, the downward API's, a Kubernetes
    // client's), nor proxy its origin requests.
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
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(command)
}

/// One running node; SIGKILLed on drop if still running.
pub struct NodeProcess {
    child: Child,
    exited: Option<ExitStatus>,
}

impl NodeProcess {
    /// Starts `command` (one from [`shoal_command`]).
    pub fn spawn(mut command: Command) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("start {}", Path::new(command.get_program()).display()))?;
        Ok(Self {
            child,
            exited: None,
        })
    }

    /// Its process id (for reading `/proc/PID/status`).
    #[allow(
        dead_code,
        reason = "memory_bench reads it; the other benches include this file too"
    )]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, once it has (reaped on the first call that sees it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `signal` unless it has exited.
    pub fn signal(&mut self, signal: i32) {
        if self.try_exit().is_none() {
            // SAFETY: a plain syscall on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// SIGKILL and reap, unless it has exited.
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
