//! One-shot runs of the `shoal` binary under test: its version, and
//! whether it accepts a config.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// What `binary --version` prints.
pub fn version(binary: &Path) -> Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", binary.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Writes `yaml` to `path` and asks the binary whether it accepts it
/// (`shoal check-config`): the error text if not.
pub fn check_config(
    binary: &Path,
    path: &Path,
    yaml: &str,
) -> Result<std::result::Result<(), String>> {
    std::fs::write(path, yaml).with_context(|| format!("write {}", path.display()))?;
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
