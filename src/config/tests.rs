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

/// The error for `text` as a config file: it must name `field`, the line
/// (`None` where the file does not write the field), and say `says`.
fn refused(text: &str, field: &str, line: Option<u64>, says: &str) -> ConfigError {
    let error = resolve(&cli(&[]), Some(&file(text)), &host()).expect_err(text);
    assert_eq!(error.field.as_deref(), Some(field), "{text}: {error}");
    assert_eq!(
        error.file,
        Some(PathBuf::from("shoal.yaml")),
        "{text}: {error}"
    );
    assert_eq!(error.line, line, "{text}: {error}");
    assert!(error.message.contains(says), "{text}: {error}");
    error
}

fn group_with(setting: &str) -> String {
    format!("groups:\n  g:\n    loader: {{ demo: {{}} }}\n    {setting}\n")
}

#[test]
fn booleans_are_true_or_false_and_nothing_else() {
    for written in [
        "\"yes\"", "\"true\"", "'false'", "yes", "on", "off", "no", "y", "1",
    ] {
        refused(
            &group_with(&format!("read_only: {written}")),
            "groups.g.read_only",
            Some(4),
            "is not a boolean",
        );
    }
    for (written, meant) in [("true", true), ("false", false), ("True", true)] {
        let text = group_with(&format!("read_only: {written}"));
        let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
        assert_eq!(config.groups["g"].read_only, meant, "{text}");
    }
    let every_other_bool = [
        (
            "discovery: { seeds: [a], kubernetes: { enabled: \"true\" } }",
            "discovery.kubernetes.enabled",
        ),
        ("churn: { handoff: on }", "churn.handoff"),
        (
            "churn: { previous_owner_lookup: 'no' }",
            "churn.previous_owner_lookup",
        ),
        (
            "churn: { successor_failover: yes }",
            "churn.successor_failover",
        ),
    ];
    for (section, field) in every_other_bool {
        let text = format!("{section}\n{}", group_with(""));
        refused(&text, field, Some(1), "is not a boolean");
    }
}

#[test]
fn sizes_and_durations_that_overflow_are_named_not_clamped() {
    let cases = [
        (
            "capacity: 99999999999999999999TiB",
            "groups.g.capacity",
            "larger than any size",
        ),
        (
            "max_value: 18446744073709551616",
            "groups.g.max_value",
            "larger than any size",
        ),
        (
            "capacity: 99999999999999999999",
            "groups.g.capacity",
            "larger than any size",
        ),
        (
            "ttl: 18446744073709551616ms",
            "groups.g.ttl",
            "longer than any duration",
        ),
        (
            "hot_ttl: 99999999999999999999999s",
            "groups.g.hot_ttl",
            "longer than any duration",
        ),
        (
            "negative_ttl: 99999999999999999999",
            "groups.g.negative_ttl",
            "has no unit",
        ),
    ];
    for (setting, field, says) in cases {
        refused(&group_with(setting), field, Some(4), says);
    }
    refused(
        &format!("node: {{ drain: 600000000000000h }}\n{}", group_with("")),
        "node.drain",
        Some(1),
        "longer than any duration",
    );
}

#[test]
fn tcp_ports_that_collide_are_named_both() {
    let error = refused(
        &format!("node: {{ ports: {{ service: 8000 }} }}\n{}", group_with("")),
        "node.ports.peer",
        None,
        "`node.ports.service` (--service-port) and `node.ports.peer` (--peer-port) are both 8000",
    );
    assert!(error.message.contains(":: and ::"), "{error}");
    refused(
        &format!(
            "node: {{ ports: {{ admin: 8001, peer: 8001 }} }}\n{}",
            group_with("")
        ),
        "node.ports.admin",
        Some(1),
        "are both 8001",
    );
    // A flag collides as a file setting does.
    let error = resolve(&cli(&["--admin-port", "3000"]), None, &host()).expect_err("collision");
    assert_eq!(error.field.as_deref(), Some("node.ports.admin"), "{error}");
    // A wildcard bind covers a specific service address.
    let args = [
        "--bind",
        "0.0.0.0",
        "--service-bind",
        "127.0.0.1",
        "--service-port",
        "9090",
    ];
    let error = resolve(&cli(&args), None, &host()).expect_err("0.0.0.0 covers 127.0.0.1");
    assert!(error.message.contains("127.0.0.1 and 0.0.0.0"), "{error}");
}

#[test]
fn ports_that_do_not_collide_pass() {
    let cases: [&[&str]; 4] = [
        // Gossip is UDP: it may share a TCP listener's number.
        &["--gossip-port", "3000"],
        // Port 0 asks the OS for a free port each time.
        &["--service-port", "0", "--admin-port", "0"],
        // Distinct addresses, distinct port spaces.
        &[
            "--bind",
            "127.0.0.2",
            "--service-bind",
            "127.0.0.1",
            "--service-port",
            "8000",
        ],
        &[
            "--bind",
            "::1",
            "--service-bind",
            "127.0.0.1",
            "--service-port",
            "9090",
        ],
    ];
    for args in cases {
        resolve(&cli(args), None, &host()).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

#[test]
fn max_value_must_fit_capacity_with_key_and_overhead() {
    let error = refused(
        &group_with("capacity: 1MiB\n    max_value: 2MiB"),
        "groups.g.max_value",
        Some(5),
        "2097152 bytes does not fit this group's capacity of 1048576 bytes",
    );
    let room = (1 << 20) - DEFAULT_MAX_KEY as u64 - ENTRY_OVERHEAD;
    assert!(
        error.message.contains(&format!("at most {room} bytes")),
        "{error}"
    );
    // Equal to the capacity leaves no room for the key and the overhead.
    refused(
        &group_with("capacity: 1MiB\n    max_value: 1MiB"),
        "groups.g.max_value",
        Some(5),
        "does not fit",
    );
    let text = group_with(&format!("capacity: 1MiB\n    max_value: {room}"));
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("fits exactly");
    assert_eq!(config.groups["g"].max_value, room);
    // A longer node.max_key leaves less room.
    refused(
        &format!("node: {{ max_key: 64KiB }}\n{text}"),
        "groups.g.max_value",
        Some(6),
        "node.max_key, 65536 bytes",
    );
}

#[test]
fn an_unwritten_max_value_is_what_one_entry_can_hold() {
    let config = resolve(
        &cli(&[]),
        Some(&file(&group_with("capacity: 1MiB"))),
        &host(),
    )
    .expect("default max_value");
    assert_eq!(
        config.groups["g"].max_value,
        (1 << 20) - DEFAULT_MAX_KEY as u64 - ENTRY_OVERHEAD
    );
    let config = resolve(
        &cli(&[]),
        Some(&file(&group_with("capacity: 64MiB"))),
        &host(),
    )
    .expect("default max_value");
    assert_eq!(config.groups["g"].max_value, DEFAULT_MAX_VALUE);
    refused(
        &group_with("capacity: 4KiB"),
        "groups.g.capacity",
        Some(4),
        "cannot hold one entry",
    );
}

#[test]
fn freshness_fractions_must_be_below_one_and_not_negative() {
    for (setting, field) in [
        ("refresh_ahead: 1.0", "groups.g.refresh_ahead"),
        ("refresh_ahead: -0.1", "groups.g.refresh_ahead"),
        ("ttl_jitter: 1.5", "groups.g.ttl_jitter"),
        ("ttl_jitter: -1", "groups.g.ttl_jitter"),
    ] {
        refused(
            &group_with(setting),
            field,
            Some(4),
            "is not a fraction of the TTL",
        );
    }
    let text = group_with("refresh_ahead: 0.8\n    ttl_jitter: 0.1");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    let freshness = config.groups["g"].freshness;
    assert_eq!(freshness.refresh_ahead, 0.8);
    assert_eq!(freshness.ttl_jitter, 0.1);
}

#[test]
fn freshness_and_origin_protection_are_off_unless_written() {
    let config = resolve(&cli(&[]), Some(&file(&group_with(""))), &host()).expect("valid");
    assert_eq!(config.groups["g"].freshness, Freshness::default());
    let origin = config.groups["g"].origin;
    assert_eq!(origin.max_concurrent_loads, None);
    assert_eq!(origin.circuit_breaker, None);
    // The demo group too.
    let demo = resolve(&cli(&[]), None, &host()).expect("demo config");
    assert_eq!(demo.groups["heavy"].freshness, Freshness::default());
    assert_eq!(demo.groups["heavy"].origin.max_concurrent_loads, None);
    assert_eq!(demo.groups["heavy"].origin.circuit_breaker, None);
    // Written as 0, each is off.
    let zeros = group_with(
        "refresh_ahead: 0\n    stale_while_revalidate: 0s\n    stale_if_error: 0s\n    ttl_jitter: 0\n    max_concurrent_loads: 0",
    );
    let config = resolve(&cli(&[]), Some(&file(&zeros)), &host()).expect(&zeros);
    assert_eq!(config.groups["g"].freshness, Freshness::default());
    assert_eq!(config.groups["g"].origin.max_concurrent_loads, None);
}

#[test]
fn stale_windows_are_durations() {
    let text = group_with("stale_while_revalidate: 2s\n    stale_if_error: 10m");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    let freshness = config.groups["g"].freshness;
    assert_eq!(
        freshness.stale_while_revalidate,
        Some(Duration::from_secs(2))
    );
    assert_eq!(freshness.stale_if_error, Some(Duration::from_secs(600)));
    refused(
        &group_with("stale_if_error: 30"),
        "groups.g.stale_if_error",
        Some(4),
        "has no unit",
    );
}

#[test]
fn the_load_queue_defaults_to_four_per_slot_and_needs_slots() {
    let text = group_with("max_concurrent_loads: 8");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    let origin = config.groups["g"].origin;
    assert_eq!(origin.max_concurrent_loads, Some(8));
    assert_eq!(origin.max_queued_loads, 32);
    let text = group_with("max_concurrent_loads: 8\n    max_queued_loads: 0");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    assert_eq!(config.groups["g"].origin.max_queued_loads, 0, "no queue");
    refused(
        &group_with("max_queued_loads: 64"),
        "groups.g.max_queued_loads",
        Some(4),
        "set max_concurrent_loads too",
    );
}

#[test]
fn a_loads_queue_waits_half_what_the_peer_timeout_leaves_the_loader() {
    let text = "peer: { timeout: 5s }\ngroups:\n  g:\n    max_concurrent_loads: 2\n    loader: { http: { url: 'http://o/{key}', timeout: 2s } }\n  d:\n    loader: { demo: { delay: 1s } }\n";
    let config = resolve(&cli(&[]), Some(&file(text)), &host()).expect(text);
    assert_eq!(
        config.groups["g"].origin.queue_wait,
        Duration::from_millis(1500)
    );
    assert_eq!(config.groups["d"].origin.queue_wait, Duration::from_secs(2));
}

#[test]
fn circuit_breaker_defaults_and_its_off_switch() {
    let text = group_with("circuit_breaker: {}");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    assert_eq!(
        config.groups["g"].origin.circuit_breaker,
        Some(CircuitBreaker {
            failures: 5,
            cool_down: Duration::from_secs(10),
        })
    );
    let text = group_with("circuit_breaker: { failures: 3, cool_down: 2s }");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    assert_eq!(
        config.groups["g"].origin.circuit_breaker,
        Some(CircuitBreaker {
            failures: 3,
            cool_down: Duration::from_secs(2),
        })
    );
    let text = group_with("circuit_breaker: { failures: 0 }");
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect(&text);
    assert_eq!(config.groups["g"].origin.circuit_breaker, None, "0 is off");
    refused(
        &group_with("circuit_breaker: { cool_down: 0s }"),
        "groups.g.circuit_breaker.cool_down",
        Some(4),
        "must be above 0",
    );
    refused(
        &group_with("circuit_breaker: { failures: 3, cooldown: 2s }"),
        "groups.g.circuit_breaker.cooldown",
        Some(4),
        "unknown field",
    );
}

#[test]
fn confirmed_suspicion_fits_under_the_unconfirmed_one() {
    let gossip = |membership: &str| {
        format!("discovery: {{ seeds: [shoal-gossip] }}\nmembership: {{ {membership} }}\n{GROUPS}")
    };
    let text = gossip(
        "suspicion_multiplier: 2, confirmed_suspicion_multiplier: 0.5, suspicion_confirmations: 3",
    );
    let config = resolve(&cli(&[]), Some(&file(&text)), &host()).expect("valid");
    let MembershipConfig::Gossip(gossip_config) = &config.membership else {
        panic!("gossip membership expected");
    };
    assert_eq!(gossip_config.swim.confirmed_suspicion_multiplier, 0.5);
    assert_eq!(gossip_config.swim.suspicion_confirmations, 3);
    for bad in [
        "suspicion_multiplier: 2, confirmed_suspicion_multiplier: 3",
        "confirmed_suspicion_multiplier: 0.1",
    ] {
        let error = resolve(&cli(&[]), Some(&file(&gossip(bad))), &host()).expect_err(bad);
        assert_eq!(
            error.field.as_deref(),
            Some("membership.confirmed_suspicion_multiplier"),
            "{bad}: {error}"
        );
    }
}
