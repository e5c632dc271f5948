//! Churn end to end: real gossiping nodes on 127.0.38.x seeded by a real DNS
//! server, and a counting origin. A ring change must not send cached keys
//! back to the origin: a leaving owner hands its keys off, a returning or
//! new node pulls them from their previous owners, and the successor of a
//! dead owner loads each key once for everyone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::common::{Addrs, Config, Node, NodeSpec, Origin, WAIT, enc, poll_until};
use crate::dns::DnsServer;

static ADDRS: Addrs = Addrs::new(38);
const NAME: &str = "shoal-gossip.churn.svc.cluster.local";

fn gossip_spec(ip: IpAddr, config: &Config, dns: &DnsServer) -> NodeSpec {
    NodeSpec::new(ip).config(config).seeded(NAME, dns.addr())
}

/// Drain 3 s: time for a handoff and for the tests' requests during it.
/// Group `ttl` expires its entries after 20 s.
fn churn_config(origin: &Origin) -> Config {
    Config::standard(origin)
        .drain("3s")
        .extra("discovery: { resolve_interval: 2s }")
        .group(
            "ttl",
            &format!(
                "{{ ttl: 20s, loader: {{ http: {{ url: \"{}\", timeout: 5s }} }} }}",
                origin.url_template("data")
            ),
        )
}

struct Cluster {
    origin: Origin,
    dns: DnsServer,
    config: Config,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(n: usize) -> Self {
        let origin = Origin::start().await;
        let dns = DnsServer::start().await;
        let config = churn_config(&origin);
        let ips: Vec<IpAddr> = (0..n).map(|_| ADDRS.next()).collect();
        dns.set(NAME, ips.clone());
        let mut nodes: Vec<Node> = ips
            .iter()
            .map(|&ip| Node::spawn(gossip_spec(ip, &config, &dns)))
            .collect();
        for node in &mut nodes {
            node.wait_ready().await;
        }
        let cluster = Self {
            origin,
            dns,
            config,
            nodes,
        };
        cluster.wait_converged().await;
        cluster
    }

    fn ips(&self) -> Vec<IpAddr> {
        self.nodes.iter().map(|n| n.ip).collect()
    }

    /// Every node sees every node alive.
    async fn wait_converged(&self) {
        let ips = self.ips();
        for node in &self.nodes {
            node.wait_for_members(&["alive"], &ips, WAIT).await;
        }
    }

    fn index_of(&self, ip: IpAddr) -> usize {
        self.nodes
            .iter()
            .position(|n| n.ip == ip)
            .unwrap_or_else(|| panic!("{ip} is not a node"))
    }

    /// Keys of `group` grouped by their owner (as the first node's ring says).
    async fn owners(&self, group: &str, keys: &[String]) -> BTreeMap<IpAddr, Vec<String>> {
        let mut owners: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for key in keys {
            let owner = self.nodes[0].ring_owner(group, key).await;
            owners.entry(owner).or_default().push(key.clone());
        }
        owners
    }

    /// GETs every key once, spread over the nodes, and checks each loaded
    /// exactly once.
    async fn warm(&self, group: &str, keys: &[String]) {
        for (i, key) in keys.iter().enumerate() {
            let resp = self.nodes[i % self.nodes.len()].get_key(group, key).await;
            assert_eq!(resp.status, 200, "{key}: {}", resp.text());
        }
        self.assert_loaded_once(keys, "after warming");
    }

    fn assert_loaded_once(&self, keys: &[String], when: &str) {
        let reloaded: Vec<(&String, usize)> = keys
            .iter()
            .map(|key| (key, self.origin.count(key)))
            .filter(|&(_, count)| count != 1)
            .collect();
        assert!(
            reloaded.is_empty(),
            "{when}: keys not loaded exactly once (key, loads): {reloaded:?}"
        );
    }

    /// SIGTERMs node `index` and waits for a clean exit.
    async fn stop(&mut self, index: usize) -> Node {
        let mut node = self.nodes.remove(index);
        node.terminate();
        let status = node.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{} exit: {}", node.name, node.log());
        node
    }

    /// Starts a node on `ip` (a restart if it ran there before) and waits
    /// until everyone sees it.
    async fn add(&mut self, ip: IpAddr) {
        if !self.dns_has(ip) {
            let mut ips = self.ips();
            ips.push(ip);
            self.dns.set(NAME, ips);
        }
        let node = Node::start(gossip_spec(ip, &self.config, &self.dns)).await;
        self.nodes.push(node);
        self.wait_converged().await;
    }

    fn dns_has(&self, ip: IpAddr) -> bool {
        self.ips().contains(&ip)
    }
}

/// A stats counter of one group at one node.
async fn stat(node: &Node, group: &str, name: &str) -> u64 {
    node.stats(group).await[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/_stats has groups.{group}.{name}"))
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_restarted_in_place_costs_no_origin_load() {
    let mut cluster = Cluster::start(3).await;
    let keys = keys("roll", 60);
    cluster.warm("data", &keys).await;
    let owners = cluster.owners("data", &keys).await;
    let (&owner_ip, owned) = owners.iter().next().expect("an owner");
    assert!(!owned.is_empty());

    // It leaves: its successors got its keys by handoff.
    let leaver = cluster.stop(cluster.index_of(owner_ip)).await;
    assert!(
        leaver.log().contains("handoff finished"),
        "no handoff line in the log:\n{}",
        leaver.log()
    );
    for node in &cluster.nodes {
        node.wait_for_members(&["alive"], &cluster.ips(), WAIT)
            .await;
    }
    let mut received = 0;
    for node in &cluster.nodes {
        received += stat(node, "data", "handoff_entries_received").await;
    }
    assert!(
        received >= owned.len() as u64,
        "received {received} of {}",
        owned.len()
    );
    for (i, key) in owned.iter().enumerate() {
        let resp = cluster.nodes[i % 2].get_key("data", key).await;
        assert_eq!(resp.status, 200, "{key}: {}", resp.text());
        assert_eq!(resp.text(), format!("origin:{key}"));
    }
    cluster.assert_loaded_once(&keys, "while the owner is away");

    // It comes back empty, at the same address, and pulls its keys back.
    cluster.add(owner_ip).await;
    let back = &cluster.nodes[cluster.index_of(owner_ip)];
    for key in owned {
        assert_eq!(back.ring_owner("data", key).await, owner_ip);
        let resp = back.get_key("data", key).await;
        assert_eq!(resp.status, 200, "{key}: {}", resp.text());
        assert_eq!(resp.text(), format!("origin:{key}"));
    }
    for node in &cluster.nodes {
        for key in &keys {
            assert_eq!(node.get_key("data", key).await.status, 200);
        }
    }
    cluster.assert_loaded_once(&keys, "after the owner came back");
    assert_eq!(
        stat(back, "data", "previous_owner_hits").await,
        owned.len() as u64,
        "every key it owns came from a previous owner"
    );
    assert_eq!(stat(back, "data", "local_loads").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_to_a_warm_cluster_pulls_its_keys_instead_of_loading_them() {
    let mut cluster = Cluster::start(3).await;
    let keys = keys("scale", 90);
    cluster.warm("data", &keys).await;
    let newcomer = ADDRS.next();
    cluster.add(newcomer).await;
    let owners = cluster.owners("data", &keys).await;
    let taken = owners.get(&newcomer).cloned().unwrap_or_default();
    assert!(
        !taken.is_empty(),
        "the new node owns none of {} keys",
        keys.len()
    );
    for node in &cluster.nodes {
        for key in &keys {
            let resp = node.get_key("data", key).await;
            assert_eq!(resp.status, 200, "{key} at {}: {}", node.name, resp.text());
        }
    }
    cluster.assert_loaded_once(&keys, "after scale-out");
    let new = &cluster.nodes[cluster.index_of(newcomer)];
    assert_eq!(
        stat(new, "data", "previous_owner_hits").await,
        taken.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_costs_one_origin_load_per_key_before_detection() {
    let mut cluster = Cluster::start(4).await;
    let keys = keys("dead", 80);
    let owners = cluster.owners("data", &keys).await;
    let (&victim_ip, victims_keys) = owners
        .iter()
        .max_by_key(|(_, keys)| keys.len())
        .expect("an owner");
    let victims_keys = victims_keys.clone();
    let index = cluster.index_of(victim_ip);
    cluster.nodes[index].kill();
    let victim = cluster.nodes.remove(index);

    // Every survivor asks for every one of the victim's keys at once.
    let gets: Vec<_> = cluster
        .nodes
        .iter()
        .flat_map(|node| {
            victims_keys
                .iter()
                .map(|key| node.spawn_get(&format!("/data/{}", enc(key))))
        })
        .collect();
    for get in gets {
        let resp = get.await.expect("request task");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // Still before failure detection: the victim is on the survivors' rings.
    let still_listed = cluster.nodes[0].members_in(&["alive", "suspect"]).await;
    assert!(
        still_listed.contains(&victim_ip),
        "failure detection ran before the test finished: {still_listed:?}"
    );
    cluster.assert_loaded_once(&victims_keys, "after the owner was killed");
    let mut successor_loads = 0;
    for node in &cluster.nodes {
        successor_loads += stat(node, "data", "successor_loads").await;
        assert_eq!(
            stat(node, "data", "local_loads").await,
            stat(node, "data", "successor_loads").await,
            "{} loaded something other than as a successor",
            node.name
        );
    }
    assert_eq!(successor_loads, victims_keys.len() as u64);
    drop(victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_acknowledged_during_a_handoff_is_not_undone() {
    let mut cluster = Cluster::start(3).await;
    // `ver-` keys answer with how many times they were loaded.
    let keys = keys("ver-handoff", 200);
    cluster.warm("data", &keys).await;
    let owners = cluster.owners("data", &keys).await;
    let (&owner_ip, owned) = owners.iter().next().expect("an owner");
    let owned = owned.clone();
    let index = cluster.index_of(owner_ip);
    let survivor = cluster
        .nodes
        .iter()
        .position(|n| n.ip != owner_ip)
        .expect("a survivor");

    cluster.nodes[index].terminate();
    // DELETEs while the owner leaves and hands off, through a survivor
    // whose ring may or may not have dropped it yet.
    for key in &owned {
        let resp = cluster.nodes[survivor]
            .delete(&format!("/data/{}", enc(key)))
            .await;
        assert_eq!(resp.status, 204, "DELETE {key}: {}", resp.text());
    }
    let leaver = cluster.stop(index).await;
    assert!(
        leaver.log().contains("handoff finished"),
        "{}",
        leaver.log()
    );
    for node in &cluster.nodes {
        for key in &owned {
            let text = node.get_key("data", key).await.text();
            assert_ne!(
                text,
                format!("origin:{key}:1"),
                "{} serves {key} as it was before the acknowledged DELETE",
                node.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_off_entry_keeps_its_remaining_ttl() {
    let mut cluster = Cluster::start(3).await;
    let key = "ttl-handoff";
    let resp = cluster.nodes[0].get_key("ttl", key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let owner_ip = cluster.nodes[0].ring_owner("ttl", key).await;
    let index = cluster.index_of(owner_ip);
    // The peer API's path for a key: its unpadded base64url.
    let path = format!(
        "/_shoal/v1/ttl/{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key)
    );
    let peer_url = |ip: IpAddr| format!("http://{ip}:{}{path}", crate::common::PEER_PORT);
    let client = crate::common::http_client();
    let ttl_at = |ip: IpAddr| {
        let client = client.clone();
        let url = peer_url(ip);
        async move {
            let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
            resp.headers()
                .get("x-shoal-ttl-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("no TTL header: {:?}", resp.headers()))
        }
    };
    // Let a few seconds of the 20 s pass at the owner.
    let left_before = poll_until("the owner's copy to age 3 s", WAIT, || async {
        let left = ttl_at(owner_ip).await?;
        if left <= 17_000 {
            Ok(left)
        } else {
            Err(format!("{left} ms left"))
        }
    })
    .await;
    cluster.stop(index).await;
    let new_owner = cluster.nodes[0].ring_owner("ttl", key).await;
    let left_after = ttl_at(new_owner).await.expect("the new owner has it");
    assert!(
        left_after <= left_before && left_after > 0,
        "handed off with {left_before} ms left, the new owner has {left_after} ms left"
    );
    assert_eq!(cluster.origin.count(key), 1, "it was not loaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_style_roll_costs_no_origin_load() {
    // A Deployment with maxSurge 1: a new pod on a new address joins, then
    // an old one leaves; twice over.
    let mut cluster = Cluster::start(3).await;
    let keys = keys("replace", 90);
    cluster.warm("data", &keys).await;
    for _ in 0..2 {
        cluster.add(ADDRS.next()).await;
        let old = cluster.stop(0).await;
        assert!(old.log().contains("handoff finished"), "{}", old.log());
        cluster.dns.set(NAME, cluster.ips());
        cluster.wait_converged().await;
        for node in &cluster.nodes {
            for key in &keys {
                let resp = node.get_key("data", key).await;
                assert_eq!(resp.status, 200, "{key} at {}: {}", node.name, resp.text());
            }
        }
        cluster.assert_loaded_once(&keys, "after a replace step");
    }
}
