//! [`resolve`] end to end: flags, environment facts and file text in, a
//! [`Config`] or a [`ConfigError`] naming the field out. Unit tests of the
//! parts sit beside them (`seed`, `file`, `units`, `cli`, `types`,
//! `resolve::membership`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;

impl ChurnConfig {
    /// Everything off: plain groupcache behaviour.
    fn off() -> Self {
        Self {
            previous_rings_window: None,
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
            handoff_max_bytes: None,
            successor_failover: false,
        }
    }
}

fn host() -> HostFacts {
    HostFacts {
        hostname: "box".into(),
        addresses: vec![
            "127.0.0.1".parse().expect("ip"),
            "10.1.2.3".parse().expect("ip"),
        ],
        ipv6: true,
        pod_name: None,
        pod_ip: None,
        pod_namespace: None,
    }
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied())).expect("valid flags")
}

fn file(text: &str) -> FileConfigText {
    FileConfigText {
        path: "shoal.yaml".into(),
        text: text.into(),
    }
}

#[test]
fn no_config_is_the_demo() {
    let config = resolve(&cli(&[]), None, &host()).expect("demo config");
    assert_eq!(config.default_group.as_deref(), Some("heavy"));
    assert!(matches!(
        config.groups["heavy"].loader,
        LoaderConfig::Demo { delay } if delay == Duration::from_millis(400)
    ));
    assert_eq!(config.node.name, "box");
    assert_eq!(config.node.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert_eq!(
        config.node.advertise,
        "10.1.2.3".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(config.membership, MembershipConfig::Lone);
    assert_eq!(config.node.ports.service, 3000);
}

#[test]
fn flags_beat_env_facts_beat_file() {
    let text = "node: { name: from-file, advertise: 10.9.9.9, ports: { service: 3100 } }\ngroups: { g: { loader: { demo: {} } } }\n";
    let mut facts = host();
    facts.pod_name = Some("from-env".into());
    facts.pod_ip = Some("10.8.8.8".parse().expect("ip"));
    let config = resolve(&cli(&[]), Some(&file(text)), &facts).expect("valid");
    assert_eq!(config.node.name, "from-env");
    assert_eq!(
        config.node.advertise,
        "10.8.8.8".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(config.node.ports.service, 3100);
    let config = resolve(
        &cli(&["--node-name", "from-flag", "--service-port", "3200"]),
        Some(&file(text)),
        &facts,
    )
    .expect("valid");
    assert_eq!(config.node.name, "from-flag");
    assert_eq!(config.node.ports.service, 3200);
    assert_eq!(config.default_group, None);
}

#[test]
fn a_file_without_groups_is_refused() {
    let error =
        resolve(&cli(&[]), Some(&file("node: { name: a }\n")), &host()).expect_err("no groups");
    assert_eq!(error.field.as_deref(), Some("groups"));
    assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")));
}

#[test]
fn bad_groups_are_named() {
    let cases = [
        ("groups: { _x: { loader: { demo: {} } } }", "groups._x"),
        (
            "groups: { g: { loader: { http: { url: 'http://o/x' } } } }",
            "groups.g.loader.http.url",
        ),
        (
            "groups: { g: { hot_fraction: 2, loader: { demo: {} } } }",
            "groups.g.hot_fraction",
        ),
        (
            "groups: { g: { loader: { demo: {} } } }\ndefault_group: h",
            "default_group",
        ),
        (
            "groups: { g: { loader: { demo: { delay: 5s } } } }",
            "peer.timeout",
        ),
        (
            "groups: { g: { loader: { http: { url: 'http://o/{key}', headers: { 'a b': x } } } } }",
            "groups.g.loader.http.headers.a b",
        ),
    ];
    for (text, field) in cases {
        let error = resolve(&cli(&[]), Some(&file(text)), &host()).expect_err(text);
        assert_eq!(error.field.as_deref(), Some(field), "{text}: {error}");
    }
}

#[test]
fn peer_list_must_hold_this_node() {
    let args = ["--advertise", "127.0.0.2", "--peer", "127.0.0.3,127.0.0.4"];
    let error = resolve(&cli(&args), None, &host()).expect_err("self missing");
    assert_eq!(error.field.as_deref(), Some("--peer"));
    assert!(error.to_string().contains("127.0.0.2:8000"), "{error}");

    let args = [
        "--insecure",
        "--advertise",
        "127.0.0.2",
        "--peer",
        "127.0.0.2,127.0.0.3:8000,[::1]:8001",
    ];
    let config = resolve(&cli(&args), None, &host()).expect("self present");
    let MembershipConfig::Static(peers) = config.membership else {
        panic!("static membership expected");
    };
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[2], "[::1]:8001".parse::<SocketAddr>().expect("addr"));
}

/// Groups, and no keyring knowingly: these clusters bind `::`.
const GROUPS: &str = "groups: { g: { loader: { demo: {} } } }\nsecurity: { insecure: true }\n";

fn kubernetes_of(config: &Config) -> Option<&KubernetesConfig> {
    match &config.membership {
        MembershipConfig::Gossip(gossip) => gossip.kubernetes.as_ref(),
        other => panic!("gossip membership expected, got {other:?}"),
    }
}

#[test]
fn kubernetes_cross_check_namespace_defaults() {
    let text = format!(
        "discovery: {{ seeds: [shoal-gossip], kubernetes: {{ enabled: true, service: shoal-gossip }} }}\n{GROUPS}"
    );
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
    assert_eq!(
        kubernetes_of(&config),
        Some(&KubernetesConfig {
            namespace: "default".into(),
            service: "shoal-gossip".into(),
        })
    );

    let mut facts = host();
    facts.pod_namespace = Some("from-env".into());
    let config = resolve(&cli(&[]), Some(&file(&text)), &facts).expect("valid");
    assert_eq!(
        kubernetes_of(&config).map(|k| k.namespace.as_str()),
        Some("from-env")
    );

    let text = format!(
        "discovery: {{ seeds: [shoal-gossip], kubernetes: {{ enabled: true, namespace: from-file, service: shoal-gossip }} }}\n{GROUPS}"
    );
    let config = resolve(&cli(&[]), Some(&file(&text)), &facts).expect("valid");
    assert_eq!(
        kubernetes_of(&config).map(|k| k.namespace.as_str()),
        Some("from-file")
    );
}

#[test]
fn kubernetes_cross_check_off_unless_enabled() {
    for section in [
        "",
        ", kubernetes: { enabled: false, service: s }",
        ", kubernetes: {}",
    ] {
        let text = format!("discovery: {{ seeds: [shoal-gossip]{section} }}\n{GROUPS}");
        let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
        assert_eq!(kubernetes_of(&config), None, "{text}");
    }
    // Off, it is no error outside gossip mode either.
    let text = format!("discovery: {{ kubernetes: {{ enabled: false }} }}\n{GROUPS}");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
    assert_eq!(config.membership, MembershipConfig::Lone);
}

#[test]
fn kubernetes_cross_check_with_seeds_from_flags() {
    let text =
        format!("discovery: {{ kubernetes: {{ enabled: true, service: gossip }} }}\n{GROUPS}");
    let config = resolve(
        &cli(&["--seed", "gossip.ns.svc"]),
        Some(&file(&text)),
        &host(),
    )
    .expect("valid");
    assert_eq!(
        kubernetes_of(&config).map(|k| k.service.as_str()),
        Some("gossip")
    );
}

#[test]
fn kubernetes_cross_check_errors_name_the_field() {
    let enabled = "kubernetes: { enabled: true, service: shoal-gossip }";
    let cases: [(&[&str], String, &str); 7] = [
        (&[], format!("discovery: {{ {enabled} }}"), "discovery.kubernetes"),
        (
            &["--advertise", "127.0.0.2", "--peer", "127.0.0.2"],
            format!("discovery: {{ {enabled} }}"),
            "discovery.kubernetes",
        ),
        (
            &[],
            "discovery: { seeds: [s], kubernetes: { enabled: true } }".into(),
            "discovery.kubernetes.service",
        ),
        (
            &[],
            "discovery: { seeds: [s], kubernetes: { enabled: true, service: Shoal_Gossip } }"
                .into(),
            "discovery.kubernetes.service",
        ),
        (
            &[],
            "discovery: { seeds: [s], kubernetes: { enabled: true, service: 1shoal } }".into(),
            "discovery.kubernetes.service",
        ),
        (
            &[],
            "discovery: { seeds: [s], kubernetes: { enabled: true, service: s, namespace: 'a.b' } }"
                .into(),
            "discovery.kubernetes.namespace",
        ),
        (
            &[],
            "discovery: { seeds: [s], kubernetes: { enabled: true, service: s, labels: x } }"
                .into(),
            "discovery.kubernetes.labels",
        ),
    ];
    for (args, section, field) in cases {
        let text = format!("{section}\n{GROUPS}");
        let error = resolve(&cli(args), Some(&file(&text)), &host()).expect_err(&text);
        assert_eq!(error.field.as_deref(), Some(field), "{text}: {error}");
        assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")), "{text}");
    }
}

#[test]
fn churn_is_on_by_default_and_each_part_can_be_switched_off() {
    let config = resolve(&cli(&[]), Some(&file(GROUPS)), &host()).expect("valid");
    assert_eq!(config.churn, ChurnConfig::default());
    assert_eq!(
        config.churn.previous_rings_window,
        Some(DEFAULT_PREVIOUS_RINGS_WINDOW)
    );
    let off = "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }";
    let config =
        resolve(&cli(&[]), Some(&file(&format!("{off}\n{GROUPS}"))), &host()).expect("valid");
    assert_eq!(config.churn, ChurnConfig::off());
    let tuned = "churn: { previous_rings_window: 1m, peek_timeout: 50ms, handoff_max_bytes: 1MiB }";
    let config = resolve(
        &cli(&[]),
        Some(&file(&format!("{tuned}\n{GROUPS}"))),
        &host(),
    )
    .expect("valid");
    assert_eq!(
        config.churn,
        ChurnConfig {
            previous_rings_window: Some(Duration::from_secs(60)),
            peek_timeout: Duration::from_millis(50),
            handoff_max_bytes: Some(1 << 20),
            successor_failover: true,
        }
    );
    let zero_window = format!("churn: {{ previous_rings_window: 0s }}\n{GROUPS}");
    let config = resolve(&cli(&[]), Some(&file(&zero_window)), &host()).expect("valid");
    assert_eq!(config.churn.previous_rings_window, None);
}

#[test]
fn churn_errors_name_the_field() {
    for (section, field) in [
        ("churn: { peek_timeout: 0s }", "churn.peek_timeout"),
        ("churn: { handoff: maybe }", "churn.handoff"),
        (
            "churn: { handoff_max_bytes: lots }",
            "churn.handoff_max_bytes",
        ),
        ("churn: { warm: true }", "churn"),
    ] {
        let text = format!("{section}\n{GROUPS}");
        let error = resolve(&cli(&[]), Some(&file(&text)), &host()).expect_err(&text);
        assert!(
            error.field.as_deref().is_some_and(|f| f.starts_with(field)),
            "{text}: {error:?}"
        );
    }
}

#[test]
fn error_names_file_line_and_field() {
    let error = resolve(
        &cli(&[]),
        Some(&file(
            "groups:\n  g:\n    ttl: forever\n    loader: { demo: {} }\n",
        )),
        &host(),
    )
    .expect_err("bad duration");
    let text = error.to_string();
    assert!(
        text.starts_with("config file shoal.yaml, line 3, field `groups.g.ttl`"),
        "{text}"
    );
}

#[test]
fn seeds_are_parsed_once_and_bad_ones_name_the_field() {
    let text = format!("discovery: {{ seeds: ['shoal-gossip', '10.0.0.7:7000'] }}\n{GROUPS}");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
    let MembershipConfig::Gossip(gossip) = &config.membership else {
        panic!("gossip membership expected");
    };
    let seeds: Vec<String> = gossip.seeds.iter().map(Seed::to_string).collect();
    assert_eq!(seeds, ["shoal-gossip:7946", "10.0.0.7:7000"]);

    let error = resolve(&cli(&["--seed", "a.example,b:x"]), None, &host()).expect_err("bad seed");
    assert_eq!(error.field.as_deref(), Some("--seed"));
    assert_eq!(error.file, None);
    assert!(error.to_string().contains("seed \"b:x\": port"), "{error}");

    let text = format!("discovery: {{ seeds: ['[fd00::7'] }}\n{GROUPS}");
    let error = resolve(&cli(&[]), Some(&file(&text)), &host()).expect_err("bad seed");
    assert_eq!(error.field.as_deref(), Some("discovery.seeds"));
    assert_eq!(error.file, Some(PathBuf::from("shoal.yaml")));
}
