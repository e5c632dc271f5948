//! The `groups` and `default_group` sections. Without a config file the
//! node runs the built-in demo group; a file replaces it entirely.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Source;
use crate::config::file::{FileCircuitBreaker, FileGroup, FileLoader};
use crate::config::{
    CircuitBreaker, ConfigError, DEFAULT_CAPACITY, DEFAULT_DEMO_DELAY, DEFAULT_HOT_FRACTION,
    DEFAULT_HOT_TTL, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_VALUE, DEMO_GROUP, ENTRY_OVERHEAD,
    Freshness, GroupConfig, LoaderConfig, MAX_VALUE_LIMIT, OriginLimits, PeerConfig, UrlTemplate,
};

/// Unwritten, `max_queued_loads` is this many times `max_concurrent_loads`.
const DEFAULT_QUEUED_PER_LOAD: usize = 4;
/// A `circuit_breaker:` section's defaults.
const DEFAULT_BREAKER_FAILURES: u32 = 5;
const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(10);

/// The groups and the default group. Every loader must finish within
/// `peer.timeout`, or a peer would give up on an owner still loading.
pub(super) fn resolve(
    from: Source,
    groups: Option<BTreeMap<String, FileGroup>>,
    default_group: Option<String>,
    peer: &PeerConfig,
    max_key: usize,
) -> Result<(BTreeMap<String, GroupConfig>, Option<String>), ConfigError> {
    let (groups, default_group) = match (from, groups) {
        (Source::Flags, _) => (demo_groups(), Some(DEMO_GROUP.to_owned())),
        (Source::File, None) => {
            return Err(ConfigError::field(
                "groups",
                "the config file has no groups; a config file replaces the built-in demo, so it must define at least one group",
            ));
        }
        (Source::Embedded, None) => (BTreeMap::new(), default_group),
        (from, Some(groups)) => (resolve_groups(groups, from, max_key)?, default_group),
    };
    if groups.is_empty() && from != Source::Embedded {
        return Err(ConfigError::field("groups", "define at least one group"));
    }
    if let Some(default) = &default_group
        && !groups.contains_key(default)
    {
        return Err(ConfigError::field(
            "default_group",
            format!(
                "`{default}` is not one of the groups ({})",
                group_names(&groups)
            ),
        ));
    }
    let mut groups = groups;
    for (group_name, group) in &mut groups {
        let slowest = group.loader.max_duration();
        // A queued load may wait only as long as leaves the loader its
        // time, and the network some, before a peer waiting on it gives up.
        group.origin.queue_wait = peer.timeout.saturating_sub(slowest) / 2;
        if peer.timeout <= slowest {
            return Err(ConfigError::field(
                "peer.timeout",
                format!(
                    "{} must exceed every loader timeout, and group `{group_name}` may take {}",
                    humantime::format_duration(peer.timeout),
                    humantime::format_duration(slowest)
                ),
            ));
        }
    }
    Ok((groups, default_group))
}

fn demo_groups() -> BTreeMap<String, GroupConfig> {
    let heavy = GroupConfig {
        loader: LoaderConfig::Demo {
            delay: DEFAULT_DEMO_DELAY,
        },
        ..GroupConfig::default()
    };
    BTreeMap::from([(DEMO_GROUP.to_owned(), heavy)])
}

fn group_names(groups: &BTreeMap<String, GroupConfig>) -> String {
    groups
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Group names travel unescaped in URLs, metric labels and log lines.
fn validate_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group name cannot be empty".into());
    }
    if name.starts_with('_') {
        return Err(format!(
            "`{name}`: group names may not start with `_` (reserved for /_stats and other built-in paths)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a usable group name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "`{name}`: group names may use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

fn resolve_groups(
    groups: BTreeMap<String, FileGroup>,
    from: Source,
    max_key: usize,
) -> Result<BTreeMap<String, GroupConfig>, ConfigError> {
    let mut resolved = BTreeMap::new();
    for (name, group) in groups {
        validate_group_name(&name).map_err(|m| ConfigError::field(format!("groups.{name}"), m))?;
        let config = resolve_group(&name, group, from, max_key)?;
        resolved.insert(name, config);
    }
    Ok(resolved)
}

fn nonzero(duration: Option<Duration>) -> Option<Duration> {
    duration.filter(|d| !d.is_zero())
}

fn resolve_group(
    name: &str,
    group: FileGroup,
    from: Source,
    max_key: usize,
) -> Result<GroupConfig, ConfigError> {
    let field = |suffix: &str| format!("groups.{name}.{suffix}");
    let capacity = group.capacity.map_or(DEFAULT_CAPACITY, |s| s.0);
    if capacity == 0 {
        return Err(ConfigError::field(field("capacity"), "must be above 0"));
    }
    let hot_fraction = group.hot_fraction.unwrap_or(DEFAULT_HOT_FRACTION);
    if !(0.0..=1.0).contains(&hot_fraction) {
        return Err(ConfigError::field(
            field("hot_fraction"),
            format!("{hot_fraction} is not between 0 and 1"),
        ));
    }
    // Unwritten, max_value is 1MiB, or what one entry can hold in a
    // smaller cache: its key and overhead come off the capacity.
    // `config::check` refuses a written one that does not fit.
    let room = capacity.saturating_sub(max_key as u64 + ENTRY_OVERHEAD);
    if group.max_value.is_none() && room == 0 {
        return Err(ConfigError::field(
            field("capacity"),
            format!(
                "{capacity} bytes cannot hold one entry: a key (up to node.max_key, {max_key} bytes) and {ENTRY_OVERHEAD} bytes of overhead come before the value"
            ),
        ));
    }
    let max_value = group.max_value.map_or(DEFAULT_MAX_VALUE.min(room), |s| s.0);
    if max_value == 0 || max_value > MAX_VALUE_LIMIT {
        return Err(ConfigError::field(
            field("max_value"),
            "must be between 1 byte and 1GiB",
        ));
    }
    let loader = match group.loader {
        None if from == Source::Embedded => LoaderConfig::Embedded,
        None => {
            return Err(ConfigError::field(
                field("loader"),
                "missing: say where values come from (`demo: {}` or `http: { url: ... }`)",
            ));
        }
        Some(FileLoader::Demo(demo)) => LoaderConfig::Demo {
            delay: demo.delay.unwrap_or(DEFAULT_DEMO_DELAY),
        },
        Some(FileLoader::Http(http)) => {
            let url = UrlTemplate::parse(&http.url)
                .map_err(|m| ConfigError::field(field("loader.http.url"), m))?;
            let timeout = http.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT);
            if timeout.is_zero() {
                return Err(ConfigError::field(
                    field("loader.http.timeout"),
                    "must be above 0",
                ));
            }
            let mut headers = HeaderMap::new();
            for (header, value) in http.headers {
                let header_field = || field(&format!("loader.http.headers.{header}"));
                let header_name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| ConfigError::field(header_field(), "not a valid header name"))?;
                let header_value = HeaderValue::from_str(&value).map_err(|_| {
                    ConfigError::field(
                        header_field(),
                        "not a valid header value (no control characters)",
                    )
                })?;
                headers.insert(header_name, header_value);
            }
            LoaderConfig::Http {
                url,
                timeout,
                headers,
            }
        }
    };
    let freshness = Freshness {
        refresh_ahead: fraction(group.refresh_ahead, &field("refresh_ahead"))?,
        stale_while_revalidate: nonzero(group.stale_while_revalidate),
        stale_if_error: nonzero(group.stale_if_error),
        ttl_jitter: fraction(group.ttl_jitter, &field("ttl_jitter"))?,
    };
    let origin = origin_limits(
        group.max_concurrent_loads,
        group.max_queued_loads,
        group.circuit_breaker,
        &field,
    )?;
    Ok(GroupConfig {
        capacity,
        hot_fraction,
        ttl: nonzero(group.ttl),
        hot_ttl: nonzero(group.hot_ttl.or(Some(DEFAULT_HOT_TTL))),
        negative_ttl: nonzero(group.negative_ttl),
        read_only: group.read_only.unwrap_or(false),
        max_value,
        freshness,
        origin,
        loader,
    })
}

/// A fraction of a TTL: at least 0 (off) and below 1.
fn fraction(value: Option<f64>, field: &str) -> Result<f64, ConfigError> {
    let value = value.unwrap_or(0.0);
    if !(0.0..1.0).contains(&value) {
        return Err(ConfigError::field(
            field,
            format!(
                "{value} is not a fraction of the TTL: use at least 0 (off) and below 1, e.g. 0.8"
            ),
        ));
    }
    Ok(value)
}

/// `max_concurrent_loads`, `max_queued_loads` and `circuit_breaker`. The
/// queue's wait is set once `peer.timeout` is known.
fn origin_limits(
    max_concurrent: Option<u32>,
    max_queued: Option<u32>,
    breaker: Option<FileCircuitBreaker>,
    field: &dyn Fn(&str) -> String,
) -> Result<OriginLimits, ConfigError> {
    let max_concurrent_loads = max_concurrent.filter(|&n| n > 0).map(|n| n as usize);
    let max_queued_loads = match (max_concurrent_loads, max_queued) {
        (None, Some(_)) => {
            return Err(ConfigError::field(
                field("max_queued_loads"),
                "bounds the wait for one of max_concurrent_loads' slots: set max_concurrent_loads too",
            ));
        }
        (Some(_), Some(queued)) => queued as usize,
        (Some(concurrent), None) => concurrent.saturating_mul(DEFAULT_QUEUED_PER_LOAD),
        (None, None) => 0,
    };
    let circuit_breaker = match breaker {
        None => None,
        Some(breaker) => {
            let failures = breaker.failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
            let cool_down = breaker.cool_down.unwrap_or(DEFAULT_BREAKER_COOL_DOWN);
            if cool_down.is_zero() {
                return Err(ConfigError::field(
                    field("circuit_breaker.cool_down"),
                    "must be above 0: it is how long the circuit stays open before a probe",
                ));
            }
            // `failures: 0` turns the breaker off.
            (failures > 0).then_some(CircuitBreaker {
                failures,
                cool_down,
            })
        }
    };
    Ok(OriginLimits {
        max_concurrent_loads,
        max_queued_loads,
        queue_wait: Duration::ZERO,
        circuit_breaker,
    })
}
