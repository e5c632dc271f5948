//! SWIM membership end to end: real nodes on 127.0.33.x seeded by a DNS name
//! that a real DNS server inside the test answers with several A records.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::{Addrs, Config, Node, NodeSpec, Origin, WAIT, keyring_file, poll_until};
use crate::dns::DnsServer;

static ADDRS: Addrs = Addrs::new(33);
const NAME: &str = "shoal-gossip.test.svc.cluster.local";

/// How long failure detection may take on a busy machine (defaults: ~5 s).
const DETECTION: Duration = Duration::from_secs(30);

/// A gossiping node seeded by `seed`, resolving through `dns`.
fn gossip_spec(ip: IpAddr, config: &Config, dns: &DnsServer, seed: &str) -> NodeSpec {
    NodeSpec::new(ip).config(config).seeded(seed, dns.addr())
}

/// A config with a short DNS re-resolve interval, so healing is quick.
fn gossip_config(origin: &Origin) -> Config {
    Config::standard(origin).extra("discovery: { resolve_interval: 2s }")
}

async fn start_cluster(n: usize, origin: &Origin, dns: &DnsServer) -> Vec<Node> {
    let ips: Vec<IpAddr> = (0..n).map(|_| ADDRS.next()).collect();
    dns.set(NAME, ips.clone());
    let config = gossip_config(origin);
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| Node::spawn(gossip_spec(ip, &config, dns, NAME)))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive"], &ips, WAIT).await;
    }
    nodes
}

async fn ring_members(node: &Node) -> i64 {
    let metrics = node.admin_get("/metrics").await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("shoal_ring_members "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_seeded_by_one_name_converge_and_agree_on_owners() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let nodes = start_cluster(5, &origin, &dns).await;
    for node in &nodes {
        assert_eq!(ring_members(node).await, 5, "{}", node.name);
    }
    for k in 0..1000 {
        let key = format!("key-{k}");
        let mut owners = BTreeSet::new();
        for node in &nodes {
            owners.insert(node.ring_owner("data", &key).await);
        }
        assert_eq!(
            owners.len(),
            1,
            "nodes disagree on the owner of {key}: {owners:?}"
        );
    }
    assert!(dns.queries() >= 5, "the nodes never asked the DNS server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_singleflight_holds_on_a_gossip_cluster() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let nodes = start_cluster(3, &origin, &dns).await;
    let gets: Vec<_> = (0..30)
        .map(|i| nodes[i % nodes.len()].spawn_get("/data/slow-gossip-one"))
        .collect();
    for get in gets {
        let resp = get.await.expect("request task");
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), "origin:slow-gossip-one");
    }
    assert_eq!(origin.count("slow-gossip-one"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_every_ring() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let mut nodes = start_cluster(4, &origin, &dns).await;
    let mut victim = nodes.pop().expect("four nodes");
    let victim_ip = victim.ip;
    let killed_at = Instant::now();
    victim.kill();
    for node in &nodes {
        poll_until(
            &format!("{} to drop {victim_ip}", node.name),
            DETECTION,
            || async {
                let alive = node.members_in(&["alive"]).await;
                let suspect = node.members_in(&["suspect"]).await;
                if alive.contains(&victim_ip) || suspect.contains(&victim_ip) {
                    Err(format!("alive {alive:?}, suspect {suspect:?}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(ring_members(node).await, 3);
    }
    eprintln!(
        "SIGKILL → gone from every ring in {:?}",
        killed_at.elapsed()
    );
    // Whoever found it silent told the others so (Lifeguard's confirmation).
    let mut confirmations = 0.0;
    for node in &nodes {
        confirmations += node
            .metric(r#"shoal_gossip_suspicion_events_total{event="confirmation_sent"}"#)
            .await
            .unwrap_or(0.0);
    }
    assert!(confirmations >= 1.0, "no survivor confirmed the suspicion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_node_leaves_at_once_without_suspicion() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    // Suspicion here lasts 100 probe intervals (100 s or more): a member
    // gone from every ring within WAIT was taken off by its leave, not by
    // failure detection. (A probe that times out on a starved machine may
    // still make it suspect for a moment; that is not what is tested.)
    let config = gossip_config(&origin)
        .extra("membership: { suspicion_multiplier: 100, suspicion_confirmations: 0 }");
    let ips: Vec<IpAddr> = (0..4).map(|_| ADDRS.next()).collect();
    dns.set(NAME, ips.clone());
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| Node::spawn(gossip_spec(ip, &config, &dns, NAME)))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive"], &ips, WAIT).await;
    }
    let mut leaver = nodes.pop().expect("four nodes");
    let leaver_ip = leaver.ip;
    let terminated_at = Instant::now();
    leaver.terminate();
    assert!(
        WAIT < Duration::from_secs(100),
        "WAIT is below any suspicion"
    );
    for node in &nodes {
        poll_until(
            &format!("{} to take {leaver_ip} off its ring", node.name),
            WAIT,
            || async {
                let on_ring = node.members_in(&["alive", "suspect"]).await;
                let down = node.members_in(&["down"]).await;
                if on_ring.contains(&leaver_ip) || !down.contains(&leaver_ip) {
                    Err(format!("on the ring: {on_ring:?}, down: {down:?}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(ring_members(node).await, 3, "{}", node.name);
    }
    eprintln!(
        "SIGTERM → gone from every ring in {:?}",
        terminated_at.elapsed()
    );
    let status = leaver.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", leaver.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_as_a_new_generation() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let mut nodes = start_cluster(3, &origin, &dns).await;
    let generation_of = |node: &Node, ip: IpAddr| {
        let client = crate::common::http_client();
        let url = node.admin_url("/_members");
        async move {
            let members: serde_json::Value =
                serde_json::from_slice(&client.get(url).send().await.ok()?.bytes().await.ok()?)
                    .ok()?;
            members["members"].as_array()?.iter().find_map(|m| {
                (m["addr"].as_str()?.parse::<IpAddr>().ok()? == ip && m["state"] == "alive")
                    .then(|| m["generation"].as_u64())
                    .flatten()
            })
        }
    };
    let ip = nodes[2].ip;
    let before = generation_of(&nodes[0], ip)
        .await
        .expect("the node is alive");
    nodes[2].kill();
    let config = gossip_config(&origin);
    let restarted = Node::start(gossip_spec(ip, &config, &dns, NAME)).await;
    poll_until(
        "the restarted node to be alive with a new generation",
        WAIT,
        || async {
            match generation_of(&nodes[0], ip).await {
                Some(generation) if generation > before => Ok(()),
                other => Err(format!("generation {other:?}, before {before}")),
            }
        },
    )
    .await;
    restarted
        .wait_for_members(&["alive"], &[nodes[0].ip, nodes[1].ip, ip], WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_clusters_merge_once_the_name_answers_all_of_them() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let config = gossip_config(&origin);
    let (one, two) = ("one.shoal.test", "two.shoal.test");
    let left: Vec<IpAddr> = (0..2).map(|_| ADDRS.next()).collect();
    let right: Vec<IpAddr> = (0..2).map(|_| ADDRS.next()).collect();
    dns.set(one, left.clone());
    dns.set(two, right.clone());
    let mut nodes: Vec<Node> = Vec::new();
    for &ip in &left {
        nodes.push(Node::spawn(gossip_spec(ip, &config, &dns, one)));
    }
    for &ip in &right {
        nodes.push(Node::spawn(gossip_spec(ip, &config, &dns, two)));
    }
    for node in &mut nodes {
        node.wait_ready().await;
    }
    nodes[0].wait_for_members(&["alive"], &left, WAIT).await;
    nodes[2].wait_for_members(&["alive"], &right, WAIT).await;
    assert!(
        nodes[0]
            .members_in(&["alive"])
            .await
            .is_disjoint(&right.iter().copied().collect())
    );

    let all: Vec<IpAddr> = left.iter().chain(&right).copied().collect();
    dns.set(one, all.clone());
    dns.set(two, all.clone());
    for node in &nodes {
        node.wait_for_members(&["alive"], &all, WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_put_reach_other_nodes_copies_through_gossip() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let nodes = start_cluster(3, &origin, &dns).await;
    let key = "ver-gossip-invalidate";
    let owner_ip = nodes[0].ring_owner("data", key).await;
    let reader = nodes
        .iter()
        .find(|n| n.ip != owner_ip)
        .expect("a non-owner");
    let writer = nodes
        .iter()
        .find(|n| n.ip != owner_ip && n.ip != reader.ip)
        .expect("another non-owner");
    // Read until the reader keeps a hot copy.
    poll_until("a hot copy at the reader", WAIT, || async {
        let resp = reader.get(&format!("/data/{key}")).await;
        if resp.source() == Some("hot") {
            Ok(())
        } else {
            Err(format!("{:?}", resp.source()))
        }
    })
    .await;
    let first = reader.get(&format!("/data/{key}")).await.text();

    let resp = writer.delete(&format!("/data/{key}")).await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    poll_until("the reader to drop its hot copy", WAIT, || async {
        let resp = reader.get(&format!("/data/{key}")).await;
        if resp.source() != Some("hot") && resp.text() != first {
            Ok(())
        } else {
            Err(format!("{:?} {}", resp.source(), resp.text()))
        }
    })
    .await;

    let resp = writer.put(&format!("/data/{key}"), "written").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    for node in &nodes {
        poll_until(
            &format!("{} to serve the PUT value", node.name),
            WAIT,
            || async {
                let text = node.get(&format!("/data/{key}")).await.text();
                if text == "written" { Ok(()) } else { Err(text) }
            },
        )
        .await;
    }
}

async fn metric_sum(node: &Node, prefix: &str) -> f64 {
    node.admin_get("/metrics")
        .await
        .text()
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_keyring_never_joins() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let ours = keyring_file(keys.path(), "ours", &[1, 2]);
    let theirs = keyring_file(keys.path(), "theirs", &[9]);
    let config = gossip_config(&origin);
    let name = "keyring.shoal.test";
    let ips: Vec<IpAddr> = (0..3).map(|_| ADDRS.next()).collect();
    dns.set(name, ips.clone());
    let spec = |ip, keyring: &std::path::Path| {
        gossip_spec(ip, &config, &dns, name)
            .arg("--keyring")
            .arg(keyring.display().to_string())
    };
    let mut a = Node::spawn(spec(ips[0], &ours));
    let mut b = Node::spawn(spec(ips[1], &ours));
    // Never ready: its seeds name others, and it can join none of them.
    let outsider = Node::spawn(spec(ips[2], &theirs));
    a.wait_ready().await;
    b.wait_ready().await;
    a.wait_for_members(&["alive"], &ips[..2], WAIT).await;
    b.wait_for_members(&["alive"], &ips[..2], WAIT).await;
    // The outsider's announces reached them and were refused.
    poll_until("the outsider's packets to be refused", WAIT, || async {
        let refused = metric_sum(&a, "shoal_gossip_rejected_total{reason=\"no-key-opens\"}").await
            + metric_sum(&b, "shoal_gossip_rejected_total{reason=\"no-key-opens\"}").await;
        if refused > 0.0 {
            Ok(())
        } else {
            Err("nothing refused yet".into())
        }
    })
    .await;
    for node in [&a, &b] {
        let all = node.members_in(&["alive", "suspect", "down"]).await;
        assert!(
            !all.contains(&ips[2]),
            "{} lists the outsider: {all:?}",
            node.name
        );
    }
    let outsider_sees = outsider.members_in(&["alive"]).await;
    assert_eq!(outsider_sees, BTreeSet::from([ips[2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_without_a_signature_are_refused() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let keyring = keyring_file(keys.path(), "keyring", &[7]);
    let config = gossip_config(&origin);
    let name = "signed.shoal.test";
    let ips: Vec<IpAddr> = (0..2).map(|_| ADDRS.next()).collect();
    dns.set(name, ips.clone());
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| {
            Node::spawn(
                gossip_spec(ip, &config, &dns, name)
                    .arg("--keyring")
                    .arg(keyring.display().to_string()),
            )
        })
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive"], &ips, WAIT).await;
    }
    // Signed traffic between members works: a key owned by the other node.
    let mut key = String::new();
    for i in 0.. {
        key = format!("signed-{i}");
        if nodes[0].ring_owner("data", &key).await == ips[1] {
            break;
        }
    }
    let resp = nodes[0].get(&format!("/data/{key}")).await;
    assert_eq!(
        (resp.status, resp.source()),
        (200, Some("peer")),
        "{}",
        resp.text()
    );

    // An unsigned request straight to the peer port is refused.
    use base64::Engine;
    let segment = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key);
    let url = format!("http://{}:8000/_shoal/v1/data/{segment}", ips[1]);
    let resp = crate::common::http_client()
        .get(url)
        .send()
        .await
        .expect("peer port answers");
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("a JSON error");
    assert!(body["error"].is_string(), "{body}");
    let refused = metric_sum(
        &nodes[1],
        "shoal_peer_rejected_total{reason=\"missing-signature\"}",
    )
    .await;
    assert!(refused >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_are_dropped_and_counted() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let nodes = start_cluster(2, &origin, &dns).await;
    let target = std::net::SocketAddr::new(nodes[0].ip, 7946);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // xorshift: reproducible junk without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Small batches, each counted before the next, so no datagram is lost
    // to a full socket buffer and every one must show up in the counter.
    const BATCHES: usize = 50;
    const BATCH: usize = 40;
    let before = metric_sum(&nodes[0], "shoal_gossip_rejected_total").await;
    for batch in 1..=BATCHES {
        for _ in 0..BATCH {
            let len = (next() % 1600) as usize;
            let datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            socket.send_to(&datagram, target).await.expect("send");
        }
        let want = before + (batch * BATCH) as f64;
        poll_until("the junk to be counted as rejected", WAIT, || async {
            let rejected = metric_sum(&nodes[0], "shoal_gossip_rejected_total").await;
            if rejected >= want {
                Ok(())
            } else {
                Err(format!("{rejected} of {want} counted"))
            }
        })
        .await;
    }
    // Still a member, still serving.
    nodes[1]
        .wait_for_members(&["alive"], &[nodes[0].ip, nodes[1].ip], WAIT)
        .await;
    let resp = nodes[0].get("/data/after-junk").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}
