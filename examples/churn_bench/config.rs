//! Each mode's config file, and whether the binary accepts it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::DRAIN;
use crate::args::Mode;

pub fn config_yaml(mode: Mode, origin: SocketAddr, no_churn_section: bool) -> String {
    let mut yaml = format!(
        "node: {{ drain: {DRAIN} }}\ndiscovery: {{ resolve_interval: 2s }}\ndefault_group: bench\n"
    );
    if mode == Mode::Off && !no_churn_section {
        yaml.push_str(
            "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }\n",
        );
    }
    let _ = write!(
        yaml,
        "groups:\n  \
         bench: {{ capacity: 64MiB, loader: {{ http: {{ url: \"http://{origin}/bench/{{key}}\", timeout: 2s }} }} }}\n  \
         cold: {{ capacity: 16MiB, loader: {{ http: {{ url: \"http://{origin}/cold/{{key}}\", timeout: 2s }} }} }}\n"
    );
    yaml
}

/// Whether `shoal check-config` accepts `yaml`; the error text if not.
pub fn check_config(
    binary: &Path,
    path: &Path,
    yaml: &str,
) -> Result<std::result::Result<(), String>> {
    std::fs::write(path, yaml)?;
    let output = Command::new(binary)
        .arg("check-config")
        .arg(path)
        .output()
        .with_context(|| format!("run {} check-config", binary.display()))?;
    if output.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_owned()))
    }
}
