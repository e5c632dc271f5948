//! A gossip seed as written on the command line or in the config file:
//! `HOST[:PORT]`, where HOST is an IP address or a DNS name. Pure.
//!
//! IPv6 addresses take a port only in brackets (`[fd00::7]:7946`); a bare
//! IPv6 address (`fd00::7`) is allowed and gets the default port, which is
//! this node's gossip port.
//!
//! Config parses the seeds once, into [`Seed`]s in
//! [`GossipConfig::seeds`](super::GossipConfig::seeds); discovery resolves
//! those and never sees the text.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Longest DNS name in its text form, without the trailing dot (RFC 1035).
const MAX_NAME: usize = 253;
/// Longest label of a DNS name (RFC 1035).
const MAX_LABEL: usize = 63;

/// A seed that is not `HOST[:PORT]`: the text as given, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {input:?}: {reason}")]
pub struct SeedError {
    /// The seed as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where a seed points: an address, or a name that stands for every address
/// it resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SeedHost {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name as written (a trailing dot makes it fully qualified).
    Name(String),
}

/// A parsed seed: a host and the gossip port to reach it on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Seed {
    /// The address or name.
    pub host: SeedHost,
    /// The gossip port every address of this seed is reached on.
    pub port: u16,
}

impl Seed {
    /// Parses `HOST[:PORT]`; a missing port is `default_port`.
    pub fn parse(text: &str, default_port: u16) -> Result<Seed, SeedError> {
        parse(text.trim(), default_port).map_err(|reason| SeedError {
            input: text.to_owned(),
            reason,
        })
    }

    /// Parses every seed; the first bad one is the error.
    pub fn parse_all<S: AsRef<str>>(
        texts: &[S],
        default_port: u16,
    ) -> Result<Vec<Seed>, SeedError> {
        texts
            .iter()
            .map(|text| Seed::parse(text.as_ref(), default_port))
            .collect()
    }

    /// The address of a literal IP seed; `None` for a name.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self.host {
            SeedHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            SeedHost::Name(_) => None,
        }
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            SeedHost::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            SeedHost::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn parse(text: &str, default_port: u16) -> Result<Seed, String> {
    if text.is_empty() {
        return Err("empty: expected HOST or HOST:PORT".into());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("'[' without its ']': write IPv6 as [v6]:port".into());
        };
        let ip: std::net::Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{inside:?} in brackets is not an IPv6 address"))?;
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(port) => parse_port(port)?,
                None => return Err("expected :PORT after ']'".into()),
            },
        };
        return Ok(Seed {
            host: SeedHost::Ip(IpAddr::V6(ip)),
            port,
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Seed {
            host: SeedHost::Ip(ip),
            port: default_port,
        });
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            return Err("not an address: an IPv6 address with a port is written [v6]:port".into());
        }
        Some((host, port)) => (host, parse_port(port)?),
        None => (text, default_port),
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Seed {
            host: SeedHost::Ip(IpAddr::V4(ip)),
            port,
        });
    }
    check_name(host)?;
    Ok(Seed {
        host: SeedHost::Name(host.to_owned()),
        port,
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`, no
/// label empty, longer than 63 or starting or ending with `-`; not all
/// digits in the last label (that is a mistyped IPv4 address).
fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("the host is empty".into());
    }
    if bare.len() > MAX_NAME {
        return Err(format!("host name longer than {MAX_NAME} characters"));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(format!("{name:?} has an empty label"));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "label {label:?} is longer than {MAX_LABEL} characters"
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{bad:?} is not allowed in a host name (letters, digits, '-', '_' and '.')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    let last = bare.rsplit('.').next().unwrap_or(bare);
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{name:?} is neither an IP address nor a host name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 7946;

    fn ok(text: &str) -> Seed {
        Seed::parse(text, PORT).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> String {
        match Seed::parse(text, PORT) {
            Ok(seed) => panic!("{text:?} should not parse, got {seed:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn name(name: &str, port: u16) -> Seed {
        Seed {
            host: SeedHost::Name(name.into()),
            port,
        }
    }

    fn ip(ip: &str, port: u16) -> Seed {
        Seed {
            host: SeedHost::Ip(ip.parse().expect("test ip")),
            port,
        }
    }

    #[test]
    fn names_take_the_default_port_unless_given() {
        assert_eq!(
            ok("shoal-gossip.default.svc.cluster.local"),
            name("shoal-gossip.default.svc.cluster.local", PORT)
        );
        assert_eq!(ok("shoal-gossip:7000"), name("shoal-gossip", 7000));
        assert_eq!(ok("fqdn.example.:53"), name("fqdn.example.", 53));
        assert_eq!(ok("  spaced.example  "), name("spaced.example", PORT));
        assert_eq!(
            ok("_gossip._udp.example"),
            name("_gossip._udp.example", PORT)
        );
    }

    #[test]
    fn literal_addresses_with_and_without_port() {
        assert_eq!(ok("10.0.0.7"), ip("10.0.0.7", PORT));
        assert_eq!(ok("10.0.0.7:7000"), ip("10.0.0.7", 7000));
        assert_eq!(ok("[fd00::7]:7000"), ip("fd00::7", 7000));
        assert_eq!(ok("[fd00::7]"), ip("fd00::7", PORT));
        assert_eq!(ok("fd00::7"), ip("fd00::7", PORT));
        assert_eq!(ok("::1"), ip("::1", PORT));
        assert_eq!(
            ok("10.0.0.7").addr(),
            Some("10.0.0.7:7946".parse().expect("addr"))
        );
        assert_eq!(ok("example.com").addr(), None);
    }

    #[test]
    fn display_round_trips() {
        for text in ["10.0.0.7:7000", "[fd00::7]:7000", "shoal.example:7946"] {
            assert_eq!(ok(text).to_string(), text);
            assert_eq!(ok(&ok(text).to_string()), ok(text));
        }
        assert_eq!(ok("fd00::7").to_string(), "[fd00::7]:7946");
    }

    #[test]
    fn errors_name_the_input_and_the_fault() {
        let cases = [
            ("", "empty"),
            ("host:", "port \"\""),
            ("host:0", "port \"0\""),
            ("host:65536", "port \"65536\""),
            ("host:http", "port \"http\""),
            ("fd00::7:7000:x", "[v6]:port"),
            ("[fd00::7", "without its ']'"),
            ("[10.0.0.7]:7000", "not an IPv6 address"),
            ("[fd00::7]7000", "expected :PORT"),
            ("a..b", "empty label"),
            ("bad_host!", "'!' is not allowed"),
            ("-lead.example", "starts or ends with '-'"),
            ("10.0.0.256", "neither an IP address nor a host name"),
            (".", "host is empty"),
        ];
        for (text, fault) in cases {
            let message = err(text);
            assert!(
                message.contains(&format!("{text:?}")),
                "{message:?} should name the input {text:?}"
            );
            assert!(message.contains(fault), "{message:?} should say {fault:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(err(&long_label).contains("longer than 63"));
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(err(&long_name).contains("longer than 253"));
    }

    #[test]
    fn parse_all_stops_at_the_first_bad_seed() {
        let seeds = Seed::parse_all(&["a.example", "10.0.0.1:7000"], PORT).expect("good seeds");
        assert_eq!(seeds, vec![name("a.example", PORT), ip("10.0.0.1", 7000)]);
        let error = Seed::parse_all(&["a.example", "b:x"], PORT).expect_err("a bad seed");
        assert!(error.to_string().contains("\"b:x\""), "{error}");
    }
}
