//! One node on its own: routing, error answers, limits, stats, TTL from the
//! origin, clean shutdown, and the exit status of configuration errors.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::common::{
    ADMIN_PORT, Addrs, Config, Node, NodeSpec, Origin, SERVICE_PORT, WAIT, http_client, poll_until,
    raw_request, run_to_exit,
};

/// This file's loopback block: nodes run on 127.0.32.2, 127.0.32.3, …
static ADDRS: Addrs = Addrs::new(32);

/// How long a process that must refuse its configuration may take to exit.
const EXIT: Duration = Duration::from_secs(20);

async fn lone(origin: &Origin) -> Node {
    Node::start_lone(ADDRS.next(), &Config::standard(origin)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_segment_paths_use_the_default_group() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    let first = node.get("/plain-a").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "origin:plain-a");
    assert_eq!(first.source(), Some("origin"));
    assert_eq!(
        first.header("content-type"),
        Some("application/octet-stream"),
        "the origin gave no Content-Type"
    );

    let again = node.get("/data/plain-a").await;
    assert_eq!(again.text(), "origin:plain-a");
    assert_eq!(
        again.source(),
        Some("main"),
        "/plain-a and /data/plain-a are one key"
    );
    assert_eq!(origin.count("plain-a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_may_hold_slashes_literal_or_encoded() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    let literal = node.get("/data/a/b").await;
    assert_eq!(literal.status, 200, "{}", literal.text());
    assert_eq!(literal.text(), "origin:a/b");
    assert_eq!(literal.source(), Some("origin"));

    let encoded = node.get("/data/a%2Fb").await;
    assert_eq!(encoded.text(), "origin:a/b");
    assert_eq!(
        encoded.source(),
        Some("main"),
        "/data/a/b and /data/a%2Fb are one key"
    );
    assert_eq!(origin.count("a/b"), 1);
    let requests = origin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path.to_ascii_uppercase(),
        "/DATA/A%2FB",
        "{:?}",
        requests[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_and_reserved_paths() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    let unknown = node.get("/nosuch/x").await;
    let json = unknown.assert_error(404, None);
    assert_eq!(json["group"], "nosuch", "{json}");

    let stats = node.get("/_stats").await;
    assert_eq!(
        stats.status,
        200,
        "/_stats is reserved, not a key: {}",
        stats.text()
    );
    assert!(
        stats.json()["groups"]["data"].is_object(),
        "{}",
        stats.text()
    );
    assert_eq!(origin.total(), 0, "neither request reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_keys_are_rejected() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;
    // Raw requests: a URL library would normalise these paths away.
    for path in [
        "/data/.",
        "/data/..",
        "/data/%2E",
        "/data/%2E%2E",
        "/data/%2e%2e",
        "/.",
        "/..",
        "/%2E%2E",
    ] {
        let (status, answer) = raw_request(node.service_addr(), "GET", path).await;
        assert_eq!(status, 400, "GET {path}: {answer}");
        assert!(
            answer.contains("\"error\""),
            "GET {path}: a JSON error: {answer}"
        );
    }
    assert_eq!(origin.total(), 0, "no dot key reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_over_4_kib_are_refused_with_414() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    let longest = "k".repeat(4096);
    let answer = node.get(&format!("/data/{longest}")).await;
    assert_eq!(
        answer.status,
        200,
        "a 4096-byte key is allowed: {}",
        answer.text()
    );
    assert_eq!(origin.count(&longest), 1);

    let too_long = "k".repeat(4097);
    node.get(&format!("/data/{too_long}"))
        .await
        .assert_error(414, None);
    let way_too_long = "k".repeat(10_000);
    node.get(&format!("/{way_too_long}"))
        .await
        .assert_error(414, None);
    assert_eq!(origin.total(), 1, "long keys never reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_gets_hits_and_loads() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    let before = node.stats("data").await;
    for name in [
        "gets",
        "cache_hits",
        "peer_loads",
        "peer_errors",
        "loads",
        "loads_deduped",
        "local_loads",
        "local_load_errs",
        "server_requests",
    ] {
        assert!(
            before[name].is_u64(),
            "/_stats groups.data.{name}: {before}"
        );
    }
    for cache in ["main", "hot"] {
        for name in ["bytes", "items", "gets", "hits", "evictions"] {
            assert!(
                before[cache][name].is_u64(),
                "/_stats groups.data.{cache}.{name}: {before}"
            );
        }
    }

    for _ in 0..3 {
        assert_eq!(node.get("/data/counted").await.status, 200);
    }
    let after = node.stats("data").await;
    let delta = |name: &str| {
        after[name].as_u64().expect("counter") - before[name].as_u64().expect("counter")
    };
    assert_eq!(delta("gets"), 3, "{before} -> {after}");
    assert_eq!(delta("cache_hits"), 2, "{before} -> {after}");
    assert_eq!(delta("local_loads"), 1, "{before} -> {after}");
    assert_eq!(delta("peer_loads"), 0, "a lone node has no peers: {after}");
    // Cache sizes may be counted lazily: poll for them.
    poll_until(
        "main cache items and bytes to count the value",
        WAIT,
        || async {
            let stats = node.stats("data").await;
            let main = &stats["main"];
            if main["items"].as_u64() >= Some(1) && main["bytes"].as_u64() > Some(0) {
                Ok(())
            } else {
                Err(stats.to_string())
            }
        },
    )
    .await;

    let admin = node.admin_get("/_stats").await;
    assert_eq!(admin.status, 200);
    assert_eq!(
        admin.json()["groups"]["data"]["gets"],
        after["gets"],
        "admin /_stats shows the same counters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_groups_and_value_limits() {
    let origin = Origin::start().await;
    let mut config = Config::standard(&origin);
    config.groups = vec![
        (
            "data".into(),
            format!(
                "{{ max_value: 1KiB, loader: {{ http: {{ url: \"{}\" }} }} }}",
                origin.url_template("data")
            ),
        ),
        (
            "ro".into(),
            format!(
                "{{ read_only: true, loader: {{ http: {{ url: \"{}\" }} }} }}",
                origin.url_template("ro")
            ),
        ),
        // The largest max_value an 8 KiB cache takes: a 4 KiB key, the
        // value and 136 bytes of overhead (ENTRY_OVERHEAD) make exactly
        // 8 KiB.
        (
            "small".into(),
            format!(
                "{{ capacity: 8KiB, max_value: 3960, loader: {{ http: {{ url: \"{}\" }} }} }}",
                origin.url_template("small")
            ),
        ),
    ];
    let node = Node::start_lone(ADDRS.next(), &config).await;

    node.put("/ro/x", "value").await.assert_error(405, None);
    node.delete("/ro/x").await.assert_error(405, None);
    let read = node.get("/ro/x").await;
    assert_eq!(
        read.status,
        200,
        "a read-only group still reads: {}",
        read.text()
    );
    assert_eq!(read.text(), "origin:x", "the 405 PUT stored nothing");

    let fits = vec![b'v'; 1024];
    let put = node.put("/data/fits", fits.clone()).await;
    assert_eq!(
        put.status,
        204,
        "a value of max_value bytes: {}",
        put.text()
    );
    let got = node.get("/data/fits").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_ref(), fits.as_slice());

    node.put("/data/too-big", vec![b'v'; 1025])
        .await
        .assert_error(413, None);
    let got = node.get("/data/too-big").await;
    assert_eq!(
        got.text(),
        "origin:too-big",
        "the refused PUT stored nothing"
    );

    // Within max_value, but with its Content-Type the entry outweighs the
    // whole cache: once a 204 that stored nothing, now a 413 saying why.
    // (An uncommon type: a common one is kept as a static copy and weighs
    // nothing.)
    let long_key = "k".repeat(4096);
    let path = format!("/small/{long_key}");
    let heavy = http_client()
        .put(node.service_url(&path))
        .header("content-type", "text/x-log")
        .body(vec![b'v'; 3960])
        .send()
        .await
        .expect("PUT");
    assert_eq!(heavy.status(), 413);
    assert_eq!(heavy.headers()["x-shoal-error"], "value-too-large");
    let body: serde_json::Value =
        serde_json::from_slice(&heavy.bytes().await.expect("body")).expect("a JSON error");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("weighs 8202 bytes") && message.contains("capacity of 8192 bytes"),
        "names the sizes and the limit: {body}"
    );
    let got = node.get(&path).await;
    assert_eq!(
        got.source(),
        Some("origin"),
        "the refused PUT stored nothing"
    );
    let exact = node.put(&path, vec![b'v'; 3960]).await;
    assert_eq!(
        exact.status,
        204,
        "an entry of exactly the capacity: {}",
        exact.text()
    );
    let got = node.get(&path).await;
    assert_eq!(
        (got.source(), got.body.len()),
        (Some("main"), 3960),
        "and it is held"
    );
    assert_eq!(origin.count("fits"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_max_age_caps_the_ttl() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;
    let key = "maxage-a";

    let started = Instant::now();
    let first = node.get_key("data", key).await;
    assert_eq!(first.text(), format!("origin:{key}:1"));
    let second = poll_until("the value to expire after max-age=1", WAIT, || async {
        let answer = node.get_key("data", key).await;
        if answer.text() == format!("origin:{key}:2") {
            Ok(answer)
        } else {
            Err(answer.text())
        }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "reloaded after {:?}: the value was not cached for its max-age",
        started.elapsed()
    );
    assert_eq!(second.source(), Some("origin"));
    assert_eq!(origin.count(key), 2, "cached between the two loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_wins_over_an_in_flight_load() {
    let origin = Origin::start().await;
    let node = lone(&origin).await;

    // DELETE while the first load is at the origin: that load's value must
    // not be stored after the DELETE.
    let key = "slowver-deleted";
    let in_flight = node.spawn_get(&format!("/data/{key}"));
    origin.wait_count("data", key, 1).await;
    let deleted = node.delete(&format!("/data/{key}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let answer = in_flight.await.expect("in-flight task");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let after = node.get_key("data", key).await;
    assert_eq!(
        after.text(),
        format!("origin:{key}:2"),
        "a load begun before the DELETE was stored after it"
    );
    assert_eq!(origin.count(key), 2);

    // PUT while a load is at the origin: the PUT value wins.
    let key = "slowver-put";
    let in_flight = node.spawn_get(&format!("/data/{key}"));
    origin.wait_count("data", key, 1).await;
    let put = node.put(&format!("/data/{key}"), "put wins").await;
    assert_eq!(put.status, 204, "{}", put.text());
    assert_eq!(in_flight.await.expect("in-flight task").status, 200);
    let after = node.get_key("data", key).await;
    assert_eq!(
        after.text(),
        "put wins",
        "a load begun before the PUT overwrote it"
    );
    assert_eq!(origin.count(key), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_config_without_a_file() {
    // The binary, as the README's quick start runs it: no file, no flags
    // but the address.
    let node = Node::start(NodeSpec::new(ADDRS.next()).in_own_process()).await;
    let first = node.get("/foo").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "Value of foo");
    assert_eq!(first.source(), Some("origin"));
    let second = node.get("/heavy/foo").await;
    assert_eq!(second.text(), "Value of foo");
    assert_eq!(second.source(), Some("main"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let origin = Origin::start().await;
    let spec = NodeSpec::new(ADDRS.next())
        .config(&Config::standard(&origin).drain("3s"))
        .in_own_process();
    let mut node = Node::start(spec).await;
    let before = node.get("/data/warm").await;
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("connection"),
        None,
        "keep-alive while serving"
    );

    let in_flight = node.spawn_get("/data/slow-inflight");
    origin.wait_count("data", "slow-inflight", 1).await;

    node.terminate();
    let admin = http_client();
    let readyz = node.admin_url("/readyz");
    poll_until("/readyz to answer 503 while draining", WAIT, || async {
        match admin.get(&readyz).send().await {
            Ok(r) if r.status() == 503 => Ok(()),
            Ok(r) => Err(format!("status {}", r.status())),
            Err(e) => Err(format!("{e:?}")),
        }
    })
    .await;

    let answer = in_flight.await.expect("in-flight task");
    assert_eq!(
        answer.status,
        200,
        "the in-flight request finishes: {}",
        answer.text()
    );
    assert_eq!(answer.text(), "origin:slow-inflight");

    let during = node.get_fresh("/data/warm").await;
    assert_eq!(
        during.status, 200,
        "requests arriving during the drain are served"
    );
    assert_eq!(during.source(), Some("main"));
    assert_eq!(
        during.header("connection"),
        Some("close"),
        "answers during the drain move keep-alive clients off this node"
    );

    let status = node.wait_exit(WAIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(
        node.log().contains(&node.ip.to_string()),
        "the start line names the address"
    );
}

// ---------------------------------------------------------------------------
// Configuration errors and exit status

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write a config file");
    path.to_str().expect("utf-8 temp path").to_owned()
}

fn names_line(stderr: &str, line: u32) -> bool {
    stderr.contains(&format!("line {line}")) || stderr.contains(&format!(":{line}:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_config_field_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        &dir,
        "typo.yaml",
        "node: { drain: 1s }\ngroups:\n  data:\n    capacty: 1MiB\n    loader: { demo: {} }\n",
    );
    let ip = ADDRS.next().to_string();
    let (status, _, stderr) =
        run_to_exit(&["-c", &file, "--bind", &ip, "--advertise", &ip], EXIT).await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("capacty"), "names the field: {stderr}");
    assert!(stderr.contains(&file), "names the file: {stderr}");
    assert!(names_line(&stderr, 4), "names the line: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_without_groups_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(&dir, "nogroups.yaml", "node: { drain: 1s }\n");
    let ip = ADDRS.next().to_string();
    let (status, _, stderr) =
        run_to_exit(&["-c", &file, "--bind", &ip, "--advertise", &ip], EXIT).await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("groups"), "names the field: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_list_without_this_node_exits_2() {
    let ip = ADDRS.next().to_string();
    let other = ADDRS.next().to_string();
    let (status, _, stderr) = run_to_exit(
        &[
            "--bind",
            &ip,
            "--advertise",
            &ip,
            "--peer",
            &other,
            "--peer",
            "127.0.32.254:8001",
        ],
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--peer"), "names the flag: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_validates_only() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(&dir, "good.yaml", &Config::standard(&origin).yaml());
    let (status, stdout, stderr) = run_to_exit(&["check-config", &good], EXIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "valid file; stdout {stdout} stderr {stderr}"
    );

    let bad = write(
        &dir,
        "bad.yaml",
        "groups:\n  data:\n    loader: { http: { url: \"http://127.0.0.1:1/no-placeholder\" } }\n",
    );
    let (status, stdout, stderr) = run_to_exit(&["check-config", &bad], EXIT).await;
    assert_eq!(status.code(), Some(2), "stdout {stdout} stderr {stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("url"),
        "names the field: {stdout} {stderr}"
    );

    let (status, stdout, _) = run_to_exit(&["--version"], EXIT).await;
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    assert_eq!(origin.total(), 0, "check-config loads nothing");
}

/// Configs that `check-config` used to pass and the node then refused at
/// start: check-config now runs the same checks, and exits 2 naming the
/// file, the line or the field; the node refuses them with 2 before it binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_runs_every_check_start_up_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let group = "groups:\n  data:\n    loader: { demo: {} }\n";
    let missing = dir.path().join("no-such-keyring");
    let malformed = write(&dir, "keyring", "# rotated 2024\nc2hvcnQ=\n");
    let cases = [
        (
            "ports.yaml",
            format!("node: {{ ports: {{ service: 8000, peer: 8000 }} }}\n{group}"),
            vec!["line 1", "node.ports.peer", "node.ports.service", "8000"],
        ),
        (
            "missing-keyring.yaml",
            format!(
                "security: {{ keyring_file: {} }}\n{group}",
                missing.display()
            ),
            vec!["no-such-keyring"],
        ),
        (
            "bad-keyring.yaml",
            format!("security: {{ keyring_file: {malformed} }}\n{group}"),
            vec!["keyring", "line 2", "32 bytes"],
        ),
        (
            "max-value.yaml",
            "groups:\n  data:\n    capacity: 1MiB\n    max_value: 2MiB\n    loader: { demo: {} }\n"
                .to_owned(),
            vec!["line 4", "groups.data.max_value", "2097152", "1048576"],
        ),
        (
            "quoted-bool.yaml",
            format!("{group}    read_only: \"yes\"\n"),
            vec!["groups.data.read_only", "line 4", "not a boolean"],
        ),
    ];
    for (name, text, says) in cases {
        let file = write(&dir, name, &text);
        let (status, stdout, stderr) = run_to_exit(&["check-config", &file], EXIT).await;
        assert_eq!(
            status.code(),
            Some(2),
            "{name}: stdout {stdout} stderr {stderr}"
        );
        for part in &says {
            assert!(stderr.contains(part), "{name}: names {part}: {stderr}");
        }
    }

    // The node itself refuses the colliding ports with 2, before it binds
    // anything (a port in use would be 1).
    let ip = ADDRS.next().to_string();
    let (status, _, stderr) = run_to_exit(
        &["--bind", &ip, "--advertise", &ip, "--admin-port", "8000"],
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--admin-port"), "names the flag: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_exits_1_naming_the_address() {
    for port in [SERVICE_PORT, ADMIN_PORT] {
        let ip = ADDRS.next();
        let taken = SocketAddr::new(ip, port);
        let _holder = TcpListener::bind(taken).expect("hold the port");
        let ip = ip.to_string();
        let (status, _, stderr) = run_to_exit(&["--bind", &ip, "--advertise", &ip], EXIT).await;
        assert_eq!(status.code(), Some(1), "{taken} in use; stderr: {stderr}");
        assert!(
            stderr.contains(&taken.to_string()),
            "names {taken}: {stderr}"
        );
    }
}
