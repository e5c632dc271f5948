//! The `shoal` binary: parse flags, set up logging, run the node.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use shoal::Node;
use shoal::config::{self, Cli, Command, Config, ConfigError, HostFacts, LogFormat};
use tracing::error;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(&cli, file);
    }
    init_logging(cli.log_format);
    let config = match load(&cli, cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("shoal: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(shoal::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "node failed");
            eprintln!("shoal: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn load(cli: &Cli, file: Option<&Path>) -> Result<Config, ConfigError> {
    let file = file.map(config::read_file).transpose()?;
    config::resolve(cli, file.as_ref(), &HostFacts::detect())
}

/// Every check the node makes before it serves: the file and flags
/// resolved, then [`Node::check`] (the whole-config checks and the keyring
/// file), the same function start-up runs. Binding is left to start-up.
fn check_config(cli: &Cli, file: &Path) -> ExitCode {
    let checked = load(cli, Some(file))
        .map_err(|e| e.to_string())
        .and_then(|config| {
            Node::check(&config).map_err(|e| e.to_string())?;
            Ok(config)
        });
    match checked {
        Ok(config) => {
            let groups: Vec<&str> = config.groups.keys().map(String::as_str).collect();
            println!("{}: valid; groups: {}", file.display(), groups.join(", "));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("shoal: {error}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    // kube's client logs an ERROR of its own for every failed API request;
    // the cross-check already warns about each one, with context.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
