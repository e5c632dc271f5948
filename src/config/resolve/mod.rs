//! From the parsed file, the flags (their environment variables applied
//! by clap) and the [`HostFacts`] to a validated [`Config`], one section at
//! a time: `node` (name, addresses, ports; and `peer`), `membership` (lone,
//! fixed peers or gossip seeds; SWIM timings; the Kubernetes cross-check),
//! `security` (a keyring, or knowingly none), `limits`, `groups`, `churn`.
//! The sections run in that order, and the first error is the one
//! reported; each names its field. Last, [`super::check`]: what
//! start-up needs of the whole config (ports, entry sizes).

mod churn;
mod groups;
mod membership;
mod node;
mod security;

use super::file::FileConfig;
use super::{Cli, Config, ConfigError, FileConfigText, HostFacts};

/// Where a config comes from: what decides the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Flags and environment only: the built-in demo group.
    Flags,
    /// A config file: it must name its groups and their loaders.
    File,
    /// YAML from a program that embeds shoal: groups and loaders may be
    /// left to the program's `NodeBuilder::loader`.
    Embedded,
}

/// Builds the node's configuration from flags (with their environment
/// variables already applied by clap), an optional config file and host facts.
pub fn resolve(
    cli: &Cli,
    file: Option<&FileConfigText>,
    host: &HostFacts,
) -> Result<Config, ConfigError> {
    let source = if file.is_some() {
        Source::File
    } else {
        Source::Flags
    };
    resolve_from(cli, file, host, source)
}

/// A config for a program that embeds shoal, from YAML in the config
/// file's format: no flags, no environment variables; `groups` and each
/// group's `loader` may be left out, for the program to give.
pub(crate) fn resolve_embedded(yaml: &str, host: &HostFacts) -> Result<Config, ConfigError> {
    let file = FileConfigText {
        path: "<embedded config>".into(),
        text: yaml.to_owned(),
    };
    resolve_from(&Cli::default(), Some(&file), host, Source::Embedded)
}

fn resolve_from(
    cli: &Cli,
    file: Option<&FileConfigText>,
    host: &HostFacts,
    source: Source,
) -> Result<Config, ConfigError> {
    let path = file.map(|f| f.path.clone());
    let in_file = |mut error: ConfigError| {
        if error.file.is_none() && error.field.as_deref().is_some_and(|f| !f.starts_with('-')) {
            error.file.clone_from(&path);
            if let (Some(file), Some(field)) = (file, error.field.as_deref()) {
                error.line = super::lines::line_of(&file.text, field);
            }
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
    resolve_parsed(cli, parsed, host, source).map_err(in_file)
}

fn resolve_parsed(
    cli: &Cli,
    parsed: Option<FileConfig>,
    host: &HostFacts,
    source: Source,
) -> Result<Config, ConfigError> {
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
    let security = file.security.unwrap_or_default();
    let keyring_file = cli.keyring.clone().or(security.keyring_file);
    let insecure = cli.insecure || security.insecure.unwrap_or(false);
    security::require_keyring(&node, &membership, keyring_file.is_some(), insecure)?;
    let limits = super::limits::resolve(file.limits.unwrap_or_default())?;
    let (groups, default_group) =
        groups::resolve(source, file.groups, file.default_group, &peer, node.max_key)?;

    let config = Config {
        node,
        peer,
        membership,
        keyring_file,
        insecure,
        limits,
        default_group,
        groups,
        churn: churn::resolve(file.churn)?,
        log_format: cli.log_format,
    };
    super::check(&config)?;
    Ok(config)
}
