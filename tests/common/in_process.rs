//! A node in the test process, as mini-redis's tests run its server: the
//! library's `shoal::Node` on a thread and a single-threaded runtime of its
//! own, from the flags and config file the binary would get.

use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Mutex;

use super::NodeSpec;

/// A node in the test process: `shoal::Node` on a thread of its own.
pub(super) struct InProcess {
    pub(super) stop: tokio::sync::mpsc::UnboundedSender<Stop>,
    /// Returns the exit status the binary would have had.
    pub(super) thread: Option<std::thread::JoinHandle<ExitStatus>>,
}

/// What SIGTERM and SIGKILL are to a process.
pub(super) enum Stop {
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
pub(super) fn exit_status(code: u8) -> ExitStatus {
    ExitStatus::from_raw(i32::from(code) << 8)
}

impl InProcess {
    pub(super) fn start(spec: &NodeSpec, name: &str, args: Vec<String>, log_path: &Path) -> Self {
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
