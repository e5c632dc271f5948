//! Command-line flags. Every option also reads an environment variable;
//! clap applies "flag beats env", `super::resolve` then applies "env beats
//! file beats default".

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A distributed read-through cache node",
    long_about = None
)]
/// The binary's flags; each also reads its environment variable.
pub struct Cli {
    /// A subcommand instead of running the node.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Config file (YAML). Without one the node runs the built-in demo group.
    #[arg(short = 'c', long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This node's name [env: SHOAL_NODE_NAME, then POD_NAME; default: hostname]
    #[arg(long, env = "SHOAL_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Address the peer, gossip and admin listeners bind [default: ::, or 0.0.0.0 without IPv6]
    #[arg(long, env = "SHOAL_BIND", value_name = "IP", value_parser = parse_ip)]
    pub bind: Option<IpAddr>,

    /// Address the service listener binds [default: the --bind address]
    #[arg(long, env = "SHOAL_SERVICE_BIND", value_name = "IP", value_parser = parse_ip)]
    pub service_bind: Option<IpAddr>,

    /// Address other nodes reach this one at [env: SHOAL_ADVERTISE, then POD_IP]
    #[arg(long, env = "SHOAL_ADVERTISE", value_name = "IP", value_parser = parse_ip)]
    pub advertise: Option<IpAddr>,

    /// Service API port [default: 3000]
    #[arg(long, env = "SHOAL_SERVICE_PORT", value_name = "PORT")]
    pub service_port: Option<u16>,

    /// Peer API port [default: 8000]
    #[arg(long, env = "SHOAL_PEER_PORT", value_name = "PORT")]
    pub peer_port: Option<u16>,

    /// Gossip port (UDP) [default: 7946]
    #[arg(long, env = "SHOAL_GOSSIP_PORT", value_name = "PORT")]
    pub gossip_port: Option<u16>,

    /// Admin port: metrics, health, members [default: 9090]
    #[arg(long, env = "SHOAL_ADMIN_PORT", value_name = "PORT")]
    pub admin_port: Option<u16>,

    /// Fixed membership: every node's IP[:PORT], this node included (repeatable)
    // The doc comment is the flag's help text, so `[:PORT]` stays unescaped.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(
        long = "peer",
        env = "SHOAL_PEERS",
        value_name = "IP[:PORT]",
        value_delimiter = ','
    )]
    pub peers: Vec<String>,

    /// Gossip seed: a DNS name (every A/AAAA record; a headless Service) or an IP, with an optional gossip port (repeatable)
    #[arg(
        long = "seed",
        env = "SHOAL_SEEDS",
        value_name = "HOST[:PORT]",
        value_delimiter = ',',
        conflicts_with = "peers"
    )]
    pub seeds: Vec<String>,

    /// DNS server for seed lookups [default: the system resolver]
    #[arg(long, env = "SHOAL_DNS_SERVER", value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,

    /// Keyring file: one base64 32-byte key a line; the first seals and signs, every one opens
    #[arg(long, env = "SHOAL_KEYRING", value_name = "FILE")]
    pub keyring: Option<PathBuf>,

    /// Run without a keyring on non-loopback addresses: gossip and the peer API unauthenticated, for anyone who can reach them
    #[arg(long, env = "SHOAL_INSECURE")]
    pub insecure: bool,

    /// Log line format
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The binary's subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Validate a config file with every check start-up makes, the keyring file included: exit 0 if it is valid, 2 naming the field at fault. A port in use is found only by starting (exit 1).
    CheckConfig {
        /// The config file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// How the binary writes its log: `text`, one line per event, or `json`,
/// one object per event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
// Doc comments on the variants would turn `--help` into its long form.
#[allow(missing_docs)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// An IP address, with or without the brackets of the `[v6]` form.
fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map_err(|_| format!("`{text}` is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "shoal",
            "--bind",
            "[::1]",
            "--peer",
            "127.0.0.2,127.0.0.3:8001",
            "--peer",
            "[::1]:8000",
        ])
        .expect("valid flags");
        assert_eq!(cli.bind, Some("::1".parse().expect("ip")));
        assert_eq!(cli.peers, ["127.0.0.2", "127.0.0.3:8001", "[::1]:8000"]);
    }

    #[test]
    fn check_config_subcommand() {
        let cli = Cli::try_parse_from(["shoal", "check-config", "x.yaml"]).expect("valid");
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
    }
}
