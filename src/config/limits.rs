//! What bounds a connection on the three TCP ports (`limits:`): how long a
//! client may take over a request's head, its body and the quiet between
//! requests, how many header bytes it may send, and how many connections
//! each port holds at once. Pure: the file's section in, [`LimitsConfig`]
//! out.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::units::{Size, duration};

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MIN_BODY_RATE: u64 = 64 * 1024;
const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
const DEFAULT_SERVICE_CONNECTIONS: usize = 4096;
const DEFAULT_PEER_CONNECTIONS: usize = 4096;
const DEFAULT_ADMIN_CONNECTIONS: usize = 128;
/// hyper refuses a read buffer smaller than this.
const MIN_HEADER_BYTES: u64 = 8 * 1024;
/// More header bytes than any request of shoal's needs (a 4 KiB key,
/// percent-encoded, is 12 KiB); more would only let a client hold memory.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Past this a cap means nothing: the fd limit bounds it first.
const MAX_CONNECTIONS: usize = 1 << 20;

/// Bounds on every connection (`limits:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// The longest a client may take to send a request's head (request
    /// line and headers), from the connection's accept or from its first
    /// byte after a response.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may stay quiet between requests
    /// before the node closes it.
    pub idle_timeout: Duration,
    /// How long a request body may take beyond what `min_body_rate` allows
    /// for its bytes: a body of `n` bytes has `body_read_timeout + n /
    /// min_body_rate`, so a large value on a fair link passes and a trickle
    /// is cut.
    pub body_read_timeout: Duration,
    /// Bytes a second a body must average past `body_read_timeout`.
    pub min_body_rate: u64,
    /// The most bytes of request line and headers a request may carry:
    /// past it, 431.
    pub max_header_bytes: usize,
    /// The most connections each port holds at once; past it, a new
    /// connection is answered 503 and closed.
    pub max_connections: ConnectionCaps,
}

/// Connection caps per port. The admin port has its own, so health checks
/// and metrics get through when the service or peer port is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// The service port (apps).
    pub service: usize,
    /// The peer port (other nodes).
    pub peer: usize,
    /// The admin port (probes, Prometheus).
    pub admin: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES as usize,
            max_connections: ConnectionCaps {
                service: DEFAULT_SERVICE_CONNECTIONS,
                peer: DEFAULT_PEER_CONNECTIONS,
                admin: DEFAULT_ADMIN_CONNECTIONS,
            },
        }
    }
}

/// `limits:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    #[serde(default, with = "duration")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "duration")]
    pub body_read_timeout: Option<Duration>,
    /// Written as a size: bytes a second.
    pub min_body_rate: Option<Size>,
    pub max_header_bytes: Option<Size>,
    pub max_connections: Option<FileConnectionCaps>,
}

/// `limits.max_connections` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnectionCaps {
    pub service: Option<usize>,
    pub peer: Option<usize>,
    pub admin: Option<usize>,
}

/// Validates `limits:`, every field optional.
pub(super) fn resolve(file: FileLimits) -> Result<LimitsConfig, ConfigError> {
    let defaults = LimitsConfig::default();
    let positive = |field: &str, value: Option<Duration>, default: Duration| match value {
        Some(Duration::ZERO) => Err(ConfigError::field(
            field,
            "must be more than 0: a connection without this bound can be held open forever",
        )),
        Some(value) => Ok(value),
        None => Ok(default),
    };
    let header_read_timeout = positive(
        "limits.header_read_timeout",
        file.header_read_timeout,
        defaults.header_read_timeout,
    )?;
    let idle_timeout = positive(
        "limits.idle_timeout",
        file.idle_timeout,
        defaults.idle_timeout,
    )?;
    let body_read_timeout = positive(
        "limits.body_read_timeout",
        file.body_read_timeout,
        defaults.body_read_timeout,
    )?;
    let min_body_rate = match file.min_body_rate {
        Some(Size(0)) => {
            return Err(ConfigError::field(
                "limits.min_body_rate",
                "must be more than 0 bytes a second",
            ));
        }
        Some(Size(rate)) => rate,
        None => defaults.min_body_rate,
    };
    let max_header_bytes = match file.max_header_bytes {
        Some(Size(bytes)) if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&bytes) => {
            return Err(ConfigError::field(
                "limits.max_header_bytes",
                format!(
                    "must be from {MIN_HEADER_BYTES} (8KiB) to {MAX_HEADER_BYTES} (1MiB), not {bytes}"
                ),
            ));
        }
        Some(Size(bytes)) => usize::try_from(bytes).unwrap_or(usize::MAX),
        None => defaults.max_header_bytes,
    };
    let caps = file.max_connections.unwrap_or_default();
    let cap = |port: &str, value: Option<usize>, default: usize| match value {
        Some(value) if value == 0 || value > MAX_CONNECTIONS => Err(ConfigError::field(
            format!("limits.max_connections.{port}"),
            format!("must be from 1 to {MAX_CONNECTIONS}, not {value}"),
        )),
        Some(value) => Ok(value),
        None => Ok(default),
    };
    let max_connections = ConnectionCaps {
        service: cap("service", caps.service, defaults.max_connections.service)?,
        peer: cap("peer", caps.peer, defaults.max_connections.peer)?,
        admin: cap("admin", caps.admin, defaults.max_connections.admin)?,
    };
    Ok(LimitsConfig {
        header_read_timeout,
        idle_timeout,
        body_read_timeout,
        min_body_rate,
        max_header_bytes,
        max_connections,
    })
}

impl LimitsConfig {
    /// The longest a body of `received` bytes may have taken so far.
    pub fn body_allowance(&self, received: u64) -> Duration {
        let per_rate = Duration::from_secs_f64(received as f64 / self.min_body_rate as f64);
        self.body_read_timeout.saturating_add(per_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<LimitsConfig, ConfigError> {
        resolve(serde_saphyr::from_str(yaml).expect("valid YAML"))
    }

    #[test]
    fn defaults_bound_everything() {
        let limits = parse("{}").expect("valid");
        assert_eq!(limits, LimitsConfig::default());
        assert!(limits.header_read_timeout > Duration::ZERO);
        assert!(limits.max_connections.admin < limits.max_connections.service);
    }

    #[test]
    fn every_field_is_settable() {
        let limits = parse(
            "header_read_timeout: 3s\nidle_timeout: 20s\nbody_read_timeout: 4s\n\
             min_body_rate: 1KiB\nmax_header_bytes: 16KiB\n\
             max_connections: { service: 10, peer: 20, admin: 5 }\n",
        )
        .expect("valid");
        assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(limits.idle_timeout, Duration::from_secs(20));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(4));
        assert_eq!(limits.min_body_rate, 1024);
        assert_eq!(limits.max_header_bytes, 16 * 1024);
        assert_eq!(
            limits.max_connections,
            ConnectionCaps {
                service: 10,
                peer: 20,
                admin: 5
            }
        );
    }

    #[test]
    fn unbounded_values_are_refused_naming_the_field() {
        for (yaml, field) in [
            ("header_read_timeout: 0", "limits.header_read_timeout"),
            ("idle_timeout: 0s", "limits.idle_timeout"),
            ("body_read_timeout: 0", "limits.body_read_timeout"),
            ("min_body_rate: 0", "limits.min_body_rate"),
            ("max_header_bytes: 1KiB", "limits.max_header_bytes"),
            ("max_header_bytes: 2MiB", "limits.max_header_bytes"),
            (
                "max_connections: { admin: 0 }",
                "limits.max_connections.admin",
            ),
        ] {
            let error = parse(yaml).expect_err(yaml);
            assert_eq!(error.field.as_deref(), Some(field), "{yaml}: {error}");
        }
    }

    #[test]
    fn a_body_earns_time_by_its_bytes() {
        let limits = LimitsConfig::default();
        assert_eq!(limits.body_allowance(0), limits.body_read_timeout);
        assert_eq!(
            limits.body_allowance(limits.min_body_rate * 5),
            limits.body_read_timeout + Duration::from_secs(5)
        );
    }
}
