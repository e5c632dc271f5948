//! From the parsed file, the flags (their environment variables applied
//! by clap) and the [`HostFacts`] to a validated [`Config`], one section at
//! a time: `node` (name, addresses, ports; and `peer`), `membership` (lone,
//! fixed peers or gossip seeds; SWIM timings; the Kubernetes cross-check),
//! `groups`, `churn`. The sections run in that order, and the first error
//! is the one reported; each names its field.

mod churn;
mod groups;
mod membership;
mod node;

use super::file::FileConfig;
use super::{Cli, Config, ConfigError, FileConfigText, HostFacts};

/// Builds the node's configuration from flags (with their environment
/// variables already applied by clap), an optional config file and host facts.
pub fn resolve(
    cli: &Cli,
    file: Option<&FileConfigText>,
    host: &HostFacts,
) -> Result<Config, ConfigError> {
    let path = file.map(|f| f.path.clone());
    let in_file = |mut error: ConfigError| {
        if error.file.is_none() && error.field.as_deref().is_some_and(|f| !f.starts_with('-')) {
            error.file.clone_from(&path);
        }
        error
    };
    let parsed = match file {
        Some(file) => Some(
            super::file::parse(&file.text).map_err(|failure| ConfigError {
                file: Some(file.path.clone()),
                line: failure.line,
                field: failure.field,
                message: failure.message,
            })?,
        ),
        None => None,
    };
    resolve_parsed(cli, parsed, host).map_err(in_file)
}

fn resolve_parsed(
    cli: &Cli,
    parsed: Option<FileConfig>,
    host: &HostFacts,
) -> Result<Config, ConfigError> {
    let from_file = parsed.is_some();
    let file = parsed.unwrap_or_default();
    let node = node::resolve(cli, file.node.unwrap_or_default(), host)?;
    let peer = node::peer(file.peer.unwrap_or_default())?;
    let membership = membership::resolve(
        cli,
        file.membership.unwrap_or_default(),
        file.discovery.unwrap_or_default(),
        &node,
        host,
    )?;
    let keyring_file = cli
        .keyring
        .clone()
        .or(file.security.and_then(|s| s.keyring_file));
    let (groups, default_group) =
        groups::resolve(from_file, file.groups, file.default_group, &peer)?;

    Ok(Config {
        node,
        peer,
        membership,
        keyring_file,
        default_group,
        groups,
        churn: churn::resolve(file.churn)?,
        log_format: cli.log_format,
    })
}
