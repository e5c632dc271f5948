//! The `security` rule: a node that talks to other nodes on addresses
//! others can reach needs a keyring, or must be told, knowingly, to run
//! without one.
//!
//! Without a keyring, anyone who can reach the peer port can read,
//! overwrite and delete any value, and anyone who can reach the gossip port
//! can join the cluster and take ownership of keys. On loopback only this
//! host's processes can, which is what a demo or a test on one machine
//! wants; anywhere else it is refused unless `--insecure` says so.

use crate::config::{ConfigError, MembershipConfig, NodeConfig};

/// Refuses a clustered node without a keyring on a non-loopback bind or
/// advertise address, unless `insecure`.
pub(super) fn require_keyring(
    node: &NodeConfig,
    membership: &MembershipConfig,
    has_keyring: bool,
    insecure: bool,
) -> Result<(), ConfigError> {
    let clustered = match membership {
        MembershipConfig::Lone => false,
        MembershipConfig::Static(_) => true,
        MembershipConfig::Gossip(_) => true,
    };
    if has_keyring || insecure || !clustered {
        return Ok(());
    }
    let exposed = [("node.bind", node.bind), ("node.advertise", node.advertise)]
        .into_iter()
        .find(|(_, ip)| !ip.is_loopback());
    let Some((field, ip)) = exposed else {
        return Ok(());
    };
    // The file's field, so that an error from a config file names the file
    // (the fuzz target `config` found it named none).
    Err(ConfigError::field(
        "security.keyring_file",
        format!(
            "no keyring, and `{field}` is {ip}, not a loopback address: anyone who can reach \
             this node's peer and gossip ports could read, overwrite and delete any value and \
             join the cluster. Make a keyring (`head -c 32 /dev/urandom | base64 > keyring`, the \
             same file on every node) and pass it with --keyring FILE (SHOAL_KEYRING, \
             security.keyring_file); or, to run unauthenticated knowingly (a network only \
             trusted clients reach), pass --insecure (SHOAL_INSECURE=true, security.insecure: \
             true)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Cli, ConfigError, HostFacts, resolve};

    fn host() -> HostFacts {
        HostFacts {
            hostname: "box".into(),
            addresses: vec!["10.1.2.3".parse().expect("ip")],
            ipv6: true,
            pod_name: None,
            pod_ip: None,
            pod_namespace: None,
        }
    }

    fn run(args: &[&str]) -> Result<crate::config::Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
            .expect("valid flags");
        resolve(&cli, None, &host())
    }

    #[test]
    fn a_cluster_on_a_reachable_address_needs_a_keyring() {
        for args in [
            &["--seed", "shoal-gossip"][..],
            &["--bind", "10.1.2.3", "--peer", "10.1.2.3,10.1.2.4"][..],
            &[
                "--bind",
                "127.0.0.1",
                "--advertise",
                "10.1.2.3",
                "--seed",
                "s",
            ][..],
        ] {
            let error = run(args).expect_err("no keyring");
            assert_eq!(
                error.field.as_deref(),
                Some("security.keyring_file"),
                "{args:?}"
            );
            let text = error.to_string();
            assert!(text.contains("--insecure"), "{text}");
            assert!(text.contains("head -c 32 /dev/urandom | base64"), "{text}");
        }
    }

    #[test]
    fn from_a_config_file_the_refusal_names_the_file() {
        let cli = Cli::try_parse_from(["shoal"]).expect("valid flags");
        let file = crate::config::FileConfigText {
            path: "shoal.yaml".into(),
            text: "discovery: { seeds: [s] }\ngroups: { g: { loader: { demo: {} } } }\n".into(),
        };
        let error = resolve(&cli, Some(&file), &host()).expect_err("no keyring");
        assert!(
            error.to_string().starts_with("config file shoal.yaml"),
            "{error}"
        );
    }

    #[test]
    fn a_keyring_or_insecure_lets_it_start() {
        let config = run(&["--seed", "s", "--keyring", "/etc/shoal/keyring"]).expect("keyring");
        assert!(!config.insecure);
        let config = run(&["--seed", "s", "--insecure"]).expect("insecure");
        assert!(config.insecure);
    }

    #[test]
    fn loopback_clusters_and_lone_nodes_need_none() {
        run(&[
            "--bind",
            "127.0.0.2",
            "--advertise",
            "127.0.0.2",
            "--seed",
            "s",
        ])
        .expect("loopback");
        run(&[
            "--bind",
            "127.0.0.2",
            "--advertise",
            "127.0.0.2",
            "--peer",
            "127.0.0.2,127.0.0.3",
        ])
        .expect("loopback fixed peers");
        // The demo: alone on every address.
        run(&[]).expect("lone");
    }
}
