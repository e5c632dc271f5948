//! The EndpointSlice cross-check end to end: real nodes on 127.0.36.x,
//! seeded by a DNS name that a DNS server inside the test answers, each
//! watching a fake Kubernetes API server inside the test through a
//! kubeconfig (`KUBECONFIG`).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Addrs, Config, Node, NodeSpec, Origin, WAIT, poll_until};
use crate::dns::DnsServer;
use crate::fake_kube::{FakeEndpoint, FakeKube};

static ADDRS: Addrs = Addrs::new(36);
const NAME: &str = "shoal-gossip.shoal-test.svc.cluster.local";
const NAMESPACE: &str = "shoal-test";
const SERVICE: &str = "shoal-gossip";
/// The Service's slice, named as the EndpointSlice controller names them.
const SLICE: &str = "shoal-gossip-x7k2p";
/// How long a watcher may take to come back after errors: kube's backoff
/// doubles from 0.8 s, with jitter, on a busy machine.
const RECOVERY: Duration = Duration::from_secs(40);

/// The test config with the cross-check on and quick DNS re-resolution.
fn cross_check_config(origin: &Origin) -> Config {
    Config::standard(origin).extra(&format!(
        "discovery: {{ resolve_interval: 2s, kubernetes: {{ enabled: true, namespace: {NAMESPACE}, service: {SERVICE} }} }}"
    ))
}

/// A gossiping node seeded by `seed`, with `KUBECONFIG` set.
fn node_spec(
    ip: IpAddr,
    config: &Config,
    dns: &DnsServer,
    seed: &str,
    kubeconfig: &Path,
) -> NodeSpec {
    let mut spec = NodeSpec::new(ip).config(config).seeded(seed, dns.addr());
    spec.env
        .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    spec
}

/// Starts one node per IP and waits until each is ready and sees all of
/// them alive.
async fn start_nodes(
    ips: &[IpAddr],
    config: &Config,
    dns: &DnsServer,
    kubeconfig: &Path,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| Node::spawn(node_spec(ip, config, dns, NAME, kubeconfig)))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive"], ips, WAIT).await;
    }
    nodes
}

fn disagreements(kind: &str) -> String {
    format!("shoal_membership_disagreements_total{{kind=\"{kind}\"}}")
}

/// Waits until `node`'s ring has `n` members.
async fn wait_for_ring(node: &Node, n: f64, timeout: Duration) {
    poll_until(
        &format!("{}'s ring to have {n} members", node.name),
        timeout,
        || async {
            match node.metric("shoal_ring_members").await {
                Some(members) if members == n => Ok(()),
                other => Err(format!("shoal_ring_members {other:?}")),
            }
        },
    )
    .await;
}

/// Waits until `node`'s log has a line containing `text`.
async fn wait_for_log(node: &Node, text: &str) {
    poll_until(
        &format!("{}'s log to say {text:?}", node.name),
        WAIT,
        || async {
            if node.log().contains(text) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    )
    .await;
}

/// SIGTERM to every node; each must exit 0.
async fn shut_down(nodes: &mut [Node]) {
    for node in nodes.iter() {
        node.terminate();
    }
    for node in nodes.iter_mut() {
        let status = node.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit status: {status}",
            node.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_endpoint_leaves_every_ring_while_swim_still_has_it() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kube.kubeconfig(dir.path(), NAMESPACE);
    let ips: Vec<IpAddr> = (0..3).map(|_| ADDRS.next()).collect();
    dns.set(NAME, ips.clone());
    let all_ready: Vec<FakeEndpoint> = ips.iter().map(|&ip| FakeEndpoint::ready(ip)).collect();
    kube.set_slice(NAMESPACE, SLICE, SERVICE, &all_ready);
    // Slices of another Service, and of this one's name in another
    // namespace, are none of the node's business.
    kube.set_slice(
        NAMESPACE,
        "other-q9w8e",
        "other",
        &[FakeEndpoint::terminating(ips[0])],
    );
    kube.set_slice(
        "elsewhere",
        "shoal-gossip-r4t5y",
        SERVICE,
        &[FakeEndpoint::terminating(ips[1])],
    );

    let config = cross_check_config(&origin);
    let mut nodes = start_nodes(&ips, &config, &dns, &kubeconfig).await;
    poll_until("every node to list and watch", WAIT, || async {
        match kube.open_watches() {
            n if n >= nodes.len() => Ok(()),
            n => Err(format!("{n} watches open")),
        }
    })
    .await;
    for node in &nodes {
        wait_for_ring(node, 3.0, WAIT).await;
        assert_eq!(
            node.metric(&disagreements("terminating-but-alive")).await,
            Some(0.0)
        );
    }
    let selector = format!("{}={SERVICE}", crate::fake_kube::SERVICE_LABEL);
    for seen in kube.seen() {
        assert!(
            seen.path.contains(&format!("/namespaces/{NAMESPACE}/")),
            "{seen:?}"
        );
        assert_eq!(seen.query.get("labelSelector"), Some(&selector), "{seen:?}");
        assert_eq!(
            seen.authorization.as_deref(),
            Some("Bearer fake-token"),
            "{seen:?}"
        );
        if seen.is_watch() {
            assert_eq!(
                seen.query.get("allowWatchBookmarks").map(String::as_str),
                Some("true")
            );
            assert!(seen.query.contains_key("resourceVersion"), "{seen:?}");
            assert!(seen.query.contains_key("timeoutSeconds"), "{seen:?}");
        }
    }
    // A change the nodes do not watch moves the resourceVersion on; a
    // bookmark tells them where the stream stands.
    kube.set_slice(
        "elsewhere",
        "shoal-gossip-r4t5y",
        SERVICE,
        &[FakeEndpoint::ready(ips[1])],
    );
    kube.bookmark();
    let bookmarked = kube.resource_version().to_string();

    // The API server ends every watch stream: each node watches again from
    // the bookmark's resourceVersion, without a new list.
    let lists = kube.list_requests();
    kube.close_watches();
    poll_until(
        "every node to watch again from the bookmark",
        WAIT,
        || async {
            let rewatches = kube
                .seen()
                .iter()
                .filter(|s| s.is_watch() && s.query.get("resourceVersion") == Some(&bookmarked))
                .count();
            let open = kube.open_watches();
            if rewatches >= nodes.len() && open >= nodes.len() {
                Ok(())
            } else {
                Err(format!(
                    "{rewatches} watch requests from resourceVersion {bookmarked}, {open} open"
                ))
            }
        },
    )
    .await;
    assert_eq!(
        kube.list_requests(),
        lists,
        "a closed stream is re-watched, not relisted"
    );

    // Kubernetes marks one pod terminating; its node keeps running, so SWIM
    // still has it alive.
    let victim = ips[2];
    let mut endpoints = all_ready.clone();
    endpoints[2] = FakeEndpoint::terminating(victim);
    let marked = Instant::now();
    kube.set_slice(NAMESPACE, SLICE, SERVICE, &endpoints);
    for node in &nodes {
        wait_for_ring(node, 2.0, WAIT).await;
    }
    eprintln!("terminating → off every ring in {:?}", marked.elapsed());
    for node in &nodes {
        assert!(
            node.members_in(&["alive"]).await.contains(&victim),
            "{} must still list {victim} alive in /_members",
            node.name
        );
        let counted = node.metric(&disagreements("terminating-but-alive")).await;
        assert!(counted >= Some(1.0), "{}: {counted:?}", node.name);
        for k in 0..200 {
            let owner = node.ring_owner("data", &format!("key-{k}")).await;
            assert_ne!(
                owner, victim,
                "{} still routes key-{k} to {victim}",
                node.name
            );
        }
    }
    // Still serving, the victim too (it forwards to the remaining owners).
    for node in &nodes {
        let resp = node.get("/data/after-terminating").await;
        assert_eq!(resp.status, 200, "{}: {}", node.name, resp.text());
    }

    // The slice goes away: nothing is terminating any more, and every
    // member is one that no endpoint lists.
    kube.delete_slice(NAMESPACE, SLICE);
    for node in &nodes {
        wait_for_ring(node, 3.0, WAIT).await;
        poll_until(
            &format!("{} to count members without endpoints", node.name),
            WAIT,
            || async {
                match node.metric(&disagreements("member-without-endpoint")).await {
                    Some(n) if n >= 3.0 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_answering_500_leaves_the_nodes_on_swim_alone() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let kube = FakeKube::start().await;
    kube.fail_with(Some(500));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kube.kubeconfig(dir.path(), NAMESPACE);
    let ips: Vec<IpAddr> = (0..2).map(|_| ADDRS.next()).collect();
    let name = "failing.shoal-test.svc.cluster.local";
    dns.set(name, ips.clone());
    let config = cross_check_config(&origin);
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| Node::spawn(node_spec(ip, &config, &dns, name, &kubeconfig)))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive"], &ips, WAIT).await;
        wait_for_ring(node, 2.0, WAIT).await;
        wait_for_log(node, "EndpointSlice watch failed").await;
    }
    // The watchers keep trying, with backoff.
    poll_until("the watchers to retry", WAIT, || async {
        match kube.list_requests() {
            n if n >= 2 * nodes.len() => Ok(()),
            n => Err(format!("{n} list requests")),
        }
    })
    .await;
    for node in &nodes {
        let resp = node.get("/data/while-kube-fails").await;
        assert_eq!(resp.status, 200, "{}: {}", node.name, resp.text());
        let ready = node.admin_get("/readyz").await;
        assert_eq!(ready.status, 200, "{}", node.name);
    }

    // The API server comes back: the watchers list, and the cross-check
    // takes effect.
    kube.set_slice(
        NAMESPACE,
        SLICE,
        SERVICE,
        &[
            FakeEndpoint::ready(ips[0]),
            FakeEndpoint::terminating(ips[1]),
        ],
    );
    kube.fail_with(None);
    for node in &nodes {
        wait_for_ring(node, 1.0, RECOVERY).await;
    }
    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_leaves_a_node_serving_and_ready() {
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    // A kubeconfig pointing at a port nobody listens on.
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kube.kubeconfig(dir.path(), NAMESPACE);
    drop(kube);
    let ip = ADDRS.next();
    let name = "alone.shoal-test.svc.cluster.local";
    dns.set(name, vec![ip]);
    let config = cross_check_config(&origin);
    let mut node = Node::start(node_spec(ip, &config, &dns, name, &kubeconfig)).await;
    wait_for_log(&node, "EndpointSlice watch failed").await;
    let resp = node.get("/data/without-kube").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_for_ring(&node, 1.0, WAIT).await;
    for kind in [
        "terminating-but-alive",
        "ready-but-unknown",
        "member-without-endpoint",
    ] {
        assert_eq!(node.metric(&disagreements(kind)).await, Some(0.0), "{kind}");
    }
    shut_down(std::slice::from_mut(&mut node)).await;
}
