//! The `shoal` binary as a child process of the test.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
