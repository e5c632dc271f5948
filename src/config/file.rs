//! The config file: read whole by [`read_file`], then parsed as written,
//! every field optional, unknown fields refused. `super::resolve` merges it
//! with flags and environment and validates it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::boolean;
use super::units::{Size, duration};

/// Reads a config file whole; [`resolve`](super::resolve) parses it.
pub fn read_file(path: &Path) -> Result<FileConfigText, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_owned()),
        line: None,
        field: None,
        message: format!("cannot read it: {e}"),
    })?;
    Ok(FileConfigText {
        path: path.to_owned(),
        text,
    })
}

/// A config file's path and contents.
#[derive(Debug, Clone)]
pub struct FileConfigText {
    /// Where it was read from, for error messages.
    pub path: PathBuf,
    /// Its YAML.
    pub text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node: Option<FileNode>,
    pub peer: Option<FilePeer>,
    pub discovery: Option<FileDiscovery>,
    pub membership: Option<FileMembership>,
    pub security: Option<FileSecurity>,
    pub limits: Option<super::limits::FileLimits>,
    pub churn: Option<FileChurn>,
    pub default_group: Option<String>,
    pub groups: Option<BTreeMap<String, FileGroup>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    pub name: Option<String>,
    pub bind: Option<IpAddr>,
    pub service_bind: Option<IpAddr>,
    pub advertise: Option<IpAddr>,
    #[serde(default, with = "duration")]
    pub drain: Option<Duration>,
    pub max_key: Option<Size>,
    pub ports: Option<FilePorts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePorts {
    pub service: Option<u16>,
    pub peer: Option<u16>,
    pub gossip: Option<u16>,
    pub admin: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePeer {
    #[serde(default, with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub connect_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscovery {
    pub seeds: Option<Vec<String>>,
    #[serde(default, with = "duration")]
    pub resolve_interval: Option<Duration>,
    pub kubernetes: Option<FileKubernetes>,
}

/// `discovery.kubernetes`: the EndpointSlice cross-check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKubernetes {
    #[serde(default, deserialize_with = "boolean::strict")]
    pub enabled: Option<bool>,
    pub namespace: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMembership {
    pub static_peers: Option<Vec<String>>,
    pub profile: Option<SwimProfile>,
    #[serde(default, with = "duration")]
    pub probe_interval: Option<Duration>,
    #[serde(default, with = "duration")]
    pub probe_timeout: Option<Duration>,
    pub indirect_probes: Option<u8>,
    pub suspicion_multiplier: Option<f64>,
    pub confirmed_suspicion_multiplier: Option<f64>,
    pub suspicion_confirmations: Option<u8>,
    #[serde(default, with = "duration")]
    pub gossip_interval: Option<Duration>,
    pub gossip_nodes: Option<u8>,
    pub retransmit_multiplier: Option<u8>,
}

/// Named sets of SWIM timings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwimProfile {
    /// memberlist's LAN defaults.
    #[default]
    Lan,
    /// Faster failure detection for a quiet network.
    Fast,
}

/// `churn`: what keeps the cache warm while membership changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChurn {
    #[serde(default, deserialize_with = "boolean::strict")]
    pub previous_owner_lookup: Option<bool>,
    #[serde(default, with = "duration")]
    pub previous_rings_window: Option<Duration>,
    #[serde(default, with = "duration")]
    pub peek_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "boolean::strict")]
    pub handoff: Option<bool>,
    pub handoff_max_bytes: Option<Size>,
    #[serde(default, deserialize_with = "boolean::strict")]
    pub successor_failover: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecurity {
    pub keyring_file: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "boolean::strict")]
    pub insecure: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    pub capacity: Option<Size>,
    pub hot_fraction: Option<f64>,
    #[serde(default, with = "duration")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "duration")]
    pub hot_ttl: Option<Duration>,
    #[serde(default, with = "duration")]
    pub negative_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "boolean::strict")]
    pub read_only: Option<bool>,
    pub max_value: Option<Size>,
    pub refresh_ahead: Option<f64>,
    #[serde(default, with = "duration")]
    pub stale_while_revalidate: Option<Duration>,
    #[serde(default, with = "duration")]
    pub stale_if_error: Option<Duration>,
    pub ttl_jitter: Option<f64>,
    pub max_concurrent_loads: Option<u32>,
    pub max_queued_loads: Option<u32>,
    pub circuit_breaker: Option<FileCircuitBreaker>,
    /// Required but where a program embedding shoal gives the loader.
    pub loader: Option<FileLoader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCircuitBreaker {
    pub failures: Option<u32>,
    #[serde(default, with = "duration")]
    pub cool_down: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FileLoader {
    Demo(FileDemoLoader),
    Http(FileHttpLoader),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDemoLoader {
    #[serde(default, with = "duration")]
    pub delay: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttpLoader {
    pub url: String,
    #[serde(default, with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A parse failure: where it is and what is wrong.
#[derive(Debug)]
pub struct ParseFailure {
    /// Dotted path of the field at fault, when known (`groups.users.ttl`).
    pub field: Option<String>,
    pub line: Option<u64>,
    pub message: String,
}

/// Parses YAML text into a [`FileConfig`], naming the field and line of the
/// first error.
pub fn parse(text: &str) -> Result<FileConfig, ParseFailure> {
    let mut field = None;
    // YAML 1.2 booleans only: `yes` and `on` are words, not `true`.
    let options = serde_saphyr::options! { strict_booleans: true };
    let parsed =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                if path != "." && !path.is_empty() {
                    field = Some(path);
                }
                error.into_inner()
            })
        });
    parsed.map_err(|error| {
        let line = error.location().map(|location| location.line());
        ParseFailure {
            field,
            line,
            message: strip_location(&error.without_snippet().to_string()).to_owned(),
        }
    })
}

/// The parser appends " at line L, column C"; the caller reports the line itself.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => &message[..at],
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
node:       { name: pod-a, bind: "::", advertise: 10.0.0.7, drain: 5s, max_key: 4KiB,
              ports: { service: 3000, peer: 8000, gossip: 7946, admin: 9090 } }
peer:       { timeout: 3s, connect_timeout: 250ms }
default_group: heavy
groups:
  heavy:
    capacity: 64MiB
    hot_fraction: 0.125
    ttl: 0s
    hot_ttl: 60s
    negative_ttl: 0s
    read_only: false
    max_value: 1MiB
    loader: { demo: { delay: 400ms } }
  users:
    capacity: 256MiB
    ttl: 5m
    loader:
      http: { url: "http://127.0.0.1:8080/users/{key}", timeout: 2s, headers: { x-api-key: "..." } }
"#;
        let config = parse(text).expect("valid example");
        let node = config.node.expect("node");
        assert_eq!(node.max_key, Some(Size(4096)));
        assert_eq!(node.drain, Some(Duration::from_secs(5)));
        let groups = config.groups.expect("groups");
        assert_eq!(groups["users"].ttl, Some(Duration::from_secs(300)));
        match &groups["users"].loader {
            Some(FileLoader::Http(http)) => assert_eq!(http.headers["x-api-key"], "..."),
            _ => panic!("users has an http loader"),
        }
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let failure = parse("groups:\n  g:\n    capacty: 1MiB\n    loader: { demo: {} }\n")
            .expect_err("typo must fail");
        assert_eq!(failure.line, Some(3), "{failure:?}");
        assert!(failure.message.contains("capacty"), "{failure:?}");
        assert_eq!(
            failure.field.as_deref(),
            Some("groups.g.capacty"),
            "{failure:?}"
        );
        assert!(
            !failure.message.contains("line 3"),
            "location is reported once: {failure:?}"
        );
    }

    #[test]
    fn bad_size_is_named() {
        let failure = parse("groups:\n  g:\n    capacity: lots\n    loader: { demo: {} }\n")
            .expect_err("bad size must fail");
        assert_eq!(failure.field.as_deref(), Some("groups.g.capacity"));
        assert_eq!(failure.line, Some(3));
    }

    #[test]
    fn kubernetes_section_parses_and_refuses_unknown_fields() {
        let text = "discovery:\n  seeds: [shoal-gossip]\n  kubernetes: { enabled: true, namespace: cache, service: shoal-gossip }\n";
        let discovery = parse(text).expect("valid").discovery.expect("discovery");
        let kubernetes = discovery.kubernetes.expect("kubernetes");
        assert_eq!(kubernetes.enabled, Some(true));
        assert_eq!(kubernetes.namespace.as_deref(), Some("cache"));
        assert_eq!(kubernetes.service.as_deref(), Some("shoal-gossip"));

        let failure = parse("discovery:\n  kubernetes:\n    enabled: true\n    servce: x\n")
            .expect_err("a typo must fail");
        assert_eq!(
            failure.field.as_deref(),
            Some("discovery.kubernetes.servce"),
            "{failure:?}"
        );
        assert_eq!(failure.line, Some(4), "{failure:?}");
    }

    #[test]
    fn duplicate_group_is_refused() {
        let failure =
            parse("groups:\n  g: { loader: { demo: {} } }\n  g: { loader: { demo: {} } }\n")
                .expect_err("duplicate keys must fail");
        assert_eq!(failure.line, Some(3), "{failure:?}");
    }
}
