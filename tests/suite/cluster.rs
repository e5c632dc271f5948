//! Three nodes with fixed membership (`--peer`) and a counting origin: loads
//! happen once cluster-wide, invalidations reach every node, origin errors are
//! passed on and never cached, a dead owner is loaded around, and keys reach
//! the origin as one encoded path segment.

use crate::common::{Addrs, Cluster, Config, Origin, WAIT, enc};
use futures::future::join_all;

/// This file's loopback block: nodes run on 127.0.31.2, 127.0.31.3, …
static ADDRS: Addrs = Addrs::new(31);

const SOURCES: [&str; 4] = ["main", "hot", "peer", "origin"];

async fn cluster(origin: &Origin) -> Cluster {
    Cluster::start(&ADDRS, 3, &Config::standard(origin)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_one_key_make_one_origin_load() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    let key = "slow-together";

    let gets = (0..60).map(|i| cluster.nodes[i % 3].get_key("data", key));
    let answers = join_all(gets).await;

    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "GET #{i}: {}", answer.text());
        assert_eq!(answer.text(), format!("origin:{key}"), "GET #{i}");
        let source = answer.source().unwrap_or("<none>");
        assert!(
            SOURCES.contains(&source),
            "GET #{i}: x-shoal-source {source:?}"
        );
    }
    assert_eq!(
        origin.count(key),
        1,
        "60 concurrent GETs over 3 nodes: one origin load"
    );
    assert!(
        answers.iter().any(|a| a.source() == Some("origin")),
        "the owner's answers say `origin`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_loaded_once_whichever_node_reads_it() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    let mut owned = [0usize; 3];

    for i in 0..50 {
        let key = format!("key-{i}");
        let owner = cluster.owner("data", &key).await;
        owned[owner] += 1;
        // Start with a different node each time, so some keys are first read
        // through their owner and some through another node.
        for step in 0..3 {
            let at = (i + step) % 3;
            let answer = cluster.nodes[at].get_key("data", &key).await;
            assert_eq!(answer.status, 200, "{key} via node {at}: {}", answer.text());
            assert_eq!(
                answer.text(),
                format!("origin:{key}"),
                "{key} via node {at}"
            );
            let source = answer.source();
            let expected: &[&str] = match (step, at == owner) {
                (0, true) => &["origin"],
                (0, false) => &["peer"],
                (_, true) => &["main"],
                (_, false) => &["peer", "hot"],
            };
            assert!(
                source.is_some_and(|s| expected.contains(&s)),
                "{key} read #{step} via node {at} (owner {owner}): x-shoal-source {source:?}, \
                 expected one of {expected:?}"
            );
        }
        assert_eq!(
            origin.count(&key),
            1,
            "{key} read through 3 nodes: one origin load"
        );
    }
    assert!(
        owned.iter().all(|&n| n > 0),
        "50 keys spread over all 3 owners: {owned:?}"
    );
    assert_eq!(origin.total(), 50, "no other origin requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_get_reloads_exactly_once() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    let key = "ver-deleted";
    let owner = cluster.owner("data", key).await;

    // Read often through every node, so non-owners may hold hot copies.
    for node in &cluster.nodes {
        for _ in 0..5 {
            let answer = node.get_key("data", key).await;
            assert_eq!(
                answer.text(),
                format!("origin:{key}:1"),
                "via {}",
                node.name
            );
        }
    }
    assert_eq!(origin.count(key), 1);

    // Delete through each node in turn; afterwards every node sees the reload.
    for (round, deleter) in (0..3).enumerate() {
        let version = round + 2;
        let deleted = cluster.nodes[deleter].delete(&format!("/data/{key}")).await;
        assert_eq!(
            deleted.status,
            204,
            "DELETE via node {deleter}: {}",
            deleted.text()
        );
        // Non-owners first: the first GET goes to the owner through a peer.
        let mut order = cluster.others(owner);
        order.push(owner);
        for &at in &order {
            for _ in 0..3 {
                let answer = cluster.nodes[at].get_key("data", key).await;
                assert_eq!(answer.status, 200);
                assert_eq!(
                    answer.text(),
                    format!("origin:{key}:{version}"),
                    "after DELETE #{round} (via node {deleter}), GET via node {at} \
                     (owner {owner}) must not see an old copy"
                );
            }
        }
        assert_eq!(
            origin.count(key),
            version,
            "DELETE #{round} then GETs through every node: exactly one reload"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_value_is_served_by_every_node() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;

    // A key never read: PUT through a non-owner, read through all.
    let fresh = "put-fresh";
    let owner = cluster.owner("data", fresh).await;
    let writer = cluster.others(owner)[0];
    let put = cluster.nodes[writer]
        .put(&format!("/data/{fresh}"), "put body 1")
        .await;
    assert_eq!(put.status, 204, "PUT via a non-owner: {}", put.text());
    for node in &cluster.nodes {
        let answer = node.get_key("data", fresh).await;
        assert_eq!(answer.status, 200, "via {}", node.name);
        assert_eq!(answer.text(), "put body 1", "via {}", node.name);
    }
    assert_eq!(
        origin.count(fresh),
        0,
        "a PUT value is never loaded from the origin"
    );

    // A key every node has read (hot copies possible): PUT replaces them all.
    let key = "ver-overwritten";
    for node in &cluster.nodes {
        for _ in 0..5 {
            let answer = node.get_key("data", key).await;
            assert_eq!(answer.text(), format!("origin:{key}:1"));
        }
    }
    for (round, writer) in (0..3).enumerate() {
        let value = format!("put value {round}");
        let put = cluster.nodes[writer]
            .put(&format!("/data/{key}"), value.clone())
            .await;
        assert_eq!(
            put.status,
            204,
            "PUT #{round} via node {writer}: {}",
            put.text()
        );
        for (at, node) in cluster.nodes.iter().enumerate() {
            let answer = node.get_key("data", key).await;
            assert_eq!(answer.status, 200);
            assert_eq!(
                answer.text(),
                value,
                "after PUT #{round} via node {writer}, GET via node {at}"
            );
        }
    }
    assert_eq!(
        origin.count(key),
        1,
        "PUT values are not loaded from the origin"
    );

    // DELETE of a PUT value: the next GET loads from the origin again, once.
    let deleted = cluster.nodes[0].delete(&format!("/data/{key}")).await;
    assert_eq!(deleted.status, 204);
    for node in &cluster.nodes {
        assert_eq!(
            node.get_key("data", key).await.text(),
            format!("origin:{key}:2")
        );
    }
    assert_eq!(origin.count(key), 2);
}

/// Sends `path` through a non-owner twice, then through the owner: each
/// request answers `status` with `kind` and costs exactly one origin load.
async fn assert_error_not_cached(
    cluster: &Cluster,
    origin: &Origin,
    group: &str,
    key: &str,
    status: u16,
    kind: &str,
) {
    let owner = cluster.owner(group, key).await;
    let non_owner = cluster.others(owner)[0];
    for (n, at) in [non_owner, non_owner, owner].into_iter().enumerate() {
        let answer = cluster.nodes[at].get_key(group, key).await;
        let json = answer.assert_error(status, Some(kind));
        assert_eq!(json["group"], group, "error body names the group: {json}");
        assert_eq!(json["key"], key, "error body names the key: {json}");
        assert_eq!(
            origin.count_in(group, key),
            n + 1,
            "request #{n} (via node {at}, owner {owner}): one origin load per request, \
             the error not cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_failure_is_502_and_not_cached() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    assert_error_not_cached(
        &cluster,
        &origin,
        "data",
        "500-broken",
        502,
        "origin-failure",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_timeout_is_504_and_not_cached() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    // Group `short` has a 1 s loader timeout; `hang-` keys never answer.
    assert_error_not_cached(
        &cluster,
        &origin,
        "short",
        "hang-forever",
        504,
        "origin-timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_404_is_404_and_not_cached_by_default() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    // negative_ttl defaults to 0: a 404 is not remembered.
    assert_error_not_cached(&cluster, &origin, "data", "404-missing", 404, "origin-404").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_killed_requests_still_answer_with_churn_off() {
    // Plain groupcache behaviour: every node that cannot reach the owner
    // loads the key itself.
    let origin = Origin::start().await;
    let config = Config::standard(&origin).extra(
        "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }",
    );
    let mut cluster = Cluster::start(&ADDRS, 3, &config).await;
    let key = "orphan";
    let owner = cluster.owner("data", key).await;
    let survivors = cluster.others(owner);
    // A key owned by a survivor, to check peer fetches between the survivors.
    let mut alive_key = None;
    for i in 0..100 {
        let candidate = format!("alive-{i}");
        if cluster.owner("data", &candidate).await == survivors[1] {
            alive_key = Some(candidate);
            break;
        }
    }
    let alive_key = alive_key.expect("some key of 100 is owned by the second survivor");

    cluster.nodes[owner].kill();

    for (n, &at) in survivors.iter().enumerate() {
        let answer = cluster.nodes[at].get_key("data", key).await;
        assert_eq!(
            answer.status,
            200,
            "GET via node {at} with owner {owner} dead: {}",
            answer.text()
        );
        assert_eq!(answer.text(), format!("origin:{key}"));
        assert_eq!(
            answer.source(),
            Some("origin"),
            "node {at} loaded the key itself (owner unreachable)"
        );
        assert_eq!(origin.count(key), n + 1, "one fallback load per node");
        let again = cluster.nodes[at].get_key("data", key).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.text(), format!("origin:{key}"));
    }

    let answer = cluster.nodes[survivors[0]]
        .get_key("data", &alive_key)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.source(), Some("peer"), "a live owner is still asked");
    assert_eq!(origin.count(&alive_key), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_successor_loads_its_keys_once_for_every_node() {
    let origin = Origin::start().await;
    let mut cluster = cluster(&origin).await;
    let key = "orphan-once";
    let owner = cluster.owner("data", key).await;
    cluster.nodes[owner].kill();
    let survivors = cluster.others(owner);
    for &at in &survivors {
        let answer = cluster.nodes[at].get_key("data", key).await;
        assert_eq!(answer.status, 200, "via node {at}: {}", answer.text());
        assert_eq!(answer.text(), format!("origin:{key}"));
    }
    assert_eq!(origin.count(key), 1, "the successor loaded it for both");
    let loads: u64 = {
        let mut loads = 0;
        for &at in &survivors {
            loads += cluster.nodes[at].stats("data").await["successor_loads"]
                .as_u64()
                .expect("successor_loads");
        }
        loads
    };
    assert_eq!(loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_keys_reach_the_origin_as_one_segment() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    // (the key, as written in the request path)
    let keys = [
        ("../admin", "..%2Fadmin"),
        ("a/b", "a%2Fb"),
        ("a?x=1", "a%3Fx=1"),
        ("a#b", "a%23b"),
        ("\r\ninjected: 1", "%0D%0Ainjected:%201"),
        ("../x", "%2E%2E%2Fx"),
        ("100%", "100%25"),
        ("%2F", "%252F"),
        ("a b", "a%20b"),
        ("é", "%C3%A9"),
    ];

    for (i, (key, written)) in keys.iter().enumerate() {
        for step in 0..3 {
            let at = (i + step) % 3;
            let answer = cluster.nodes[at].get(&format!("/data/{written}")).await;
            assert_eq!(
                answer.status,
                200,
                "/data/{written} via node {at}: {}",
                answer.text()
            );
            assert_eq!(
                answer.text(),
                format!("origin:{key}"),
                "/data/{written} via node {at}"
            );
        }
        assert_eq!(
            origin.count(key),
            1,
            "{key:?} loaded once (as one segment under /data/)"
        );
    }

    let requests = origin.requests();
    assert_eq!(
        requests.len(),
        keys.len(),
        "one origin request per key: {requests:#?}"
    );
    for seen in &requests {
        let raw = seen
            .path
            .strip_prefix("/data/")
            .unwrap_or_else(|| panic!("origin path outside /data/: {seen:?}"));
        assert!(!raw.is_empty(), "empty key segment: {seen:?}");
        for bad in ['/', '?', '#', '\r', '\n', ' '] {
            assert!(!raw.contains(bad), "{bad:?} in the key segment: {seen:?}");
        }
        assert!(raw != "." && raw != "..", "dot segment: {seen:?}");
        assert_eq!(seen.query, None, "the origin saw a query string: {seen:?}");
        assert!(
            seen.headers.iter().all(|(name, _)| name != "injected"),
            "a key added a header: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_travels_with_the_value() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    for key in ["ct-json", "plain-bytes"] {
        let expected = if key.starts_with("ct-") {
            "application/json"
        } else {
            "application/octet-stream"
        };
        for round in 0..2 {
            for node in &cluster.nodes {
                let answer = node.get_key("data", key).await;
                assert_eq!(answer.status, 200);
                assert_eq!(
                    answer.header("content-type"),
                    Some(expected),
                    "{key} via {} (round {round}, source {:?})",
                    node.name,
                    answer.source()
                );
            }
        }
        assert_eq!(origin.count(key), 1);
    }
    let json = cluster.nodes[1].get_key("data", "ct-json").await.json();
    assert_eq!(json["key"], "ct-json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_metrics_and_clean_shutdown() {
    let origin = Origin::start().await;
    let mut cluster = cluster(&origin).await;
    let ips: Vec<String> = cluster.ips().iter().map(ToString::to_string).collect();

    for node in &cluster.nodes {
        let answer = node.admin_get("/_members").await;
        assert_eq!(
            answer.status,
            200,
            "/_members on {}: {}",
            node.name,
            answer.text()
        );
        let json = answer.json();
        assert_eq!(json["self"], node.name.as_str(), "/_members self: {json}");
        let members = json["members"]
            .as_array()
            .unwrap_or_else(|| panic!("members: {json}"));
        assert_eq!(members.len(), 3, "three fixed peers: {json}");
        let mut addrs: Vec<&str> = members.iter().filter_map(|m| m["addr"].as_str()).collect();
        addrs.sort_unstable();
        let mut expected: Vec<&str> = ips.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(
            addrs, expected,
            "member addrs are the advertised IPs: {json}"
        );
        for member in members {
            assert_eq!(member["state"], "alive", "{json}");
            assert_eq!(member["peer_port"], 8000, "{json}");
        }
        let me = members
            .iter()
            .find(|m| m["name"] == node.name.as_str())
            .unwrap_or_else(|| panic!("self listed among members: {json}"));
        assert_eq!(me["addr"], node.ip.to_string(), "{json}");
    }

    for node in &cluster.nodes {
        assert_eq!(node.get_key("data", "metered").await.status, 200);
    }
    for node in &cluster.nodes {
        let metrics = node.admin_get("/metrics").await;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        let gets = text
            .lines()
            .find_map(|l| l.strip_prefix("shoal_gets_total{group=\"data\"} "))
            .unwrap_or_else(|| {
                panic!(
                    "shoal_gets_total{{group=\"data\"}} on {}:\n{text}",
                    node.name
                )
            });
        let gets: f64 = gets.trim().parse().expect("a number");
        assert!(gets >= 1.0, "gets_total counts the GET: {gets}");
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            text.lines()
                .any(|l| l.starts_with("shoal_build_info{") && l.contains(&version)),
            "shoal_build_info with {version}:\n{text}"
        );
    }
    assert_eq!(origin.count("metered"), 1);

    // Drain is 1 s: every node exits 0 well within the deadline.
    cluster.shutdown(WAIT).await;
}

/// Keys as written in the path are percent-decoded once: `enc` is the
/// inverse of the node's decoding, checked through a peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_slash_is_one_key_through_peers() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    let key = "dir/file";
    let owner = cluster.owner("data", key).await;
    let other = cluster.others(owner)[0];
    let literal = cluster.nodes[other].get("/data/dir/file").await;
    assert_eq!(literal.status, 200, "{}", literal.text());
    assert_eq!(literal.text(), "origin:dir/file");
    let encoded = cluster.nodes[other]
        .get(&format!("/data/{}", enc(key)))
        .await;
    assert_eq!(encoded.text(), "origin:dir/file");
    let at_owner = cluster.nodes[owner].get("/data/dir%2ffile").await;
    assert_eq!(at_owner.text(), "origin:dir/file");
    assert_eq!(
        at_owner.source(),
        Some("main"),
        "the owner loaded it for the peer"
    );
    assert_eq!(origin.count(key), 1);
}

/// A non-owner's peer fetch that was in flight when a DELETE dropped every
/// copy must not leave the old value in its hot cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_wins_over_an_in_flight_peer_fetch() {
    let origin = Origin::start().await;
    let cluster = cluster(&origin).await;
    let key = "slowver-peer";
    let path = format!("/data/{key}");
    let owner = cluster.owner("data", key).await;
    let others = cluster.others(owner);
    let (reader, deleter) = (&cluster.nodes[others[0]], &cluster.nodes[others[1]]);

    // Make the key popular at the reader, so it would keep a hot copy.
    for _ in 0..5 {
        assert_eq!(reader.get(&path).await.text(), format!("origin:{key}:1"));
    }
    assert_eq!(deleter.delete(&path).await.status, 204);

    let in_flight = reader.spawn_get(&path);
    origin.wait_count("data", key, 2).await;
    let deleted = deleter.delete(&path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let answer = in_flight.await.expect("in-flight task");
    assert_eq!(answer.status, 200, "{}", answer.text());

    for _ in 0..3 {
        let after = reader.get(&path).await;
        assert_eq!(
            after.text(),
            format!("origin:{key}:3"),
            "the reader kept a value fetched before the DELETE (source {:?})",
            after.source()
        );
    }
    assert_eq!(origin.count(key), 3);
}
