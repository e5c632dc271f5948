//! shoal as a library: nodes built with `shoal::Node::builder`, Rust
//! loaders, listeners the test binds itself (port 0 included), and the
//! handles a program reads the cache through. Block 127.0.39.x.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::{
    Config, Fresh, GroupError, Listeners, LoadError, Loader, MemberState, Node, NodeError, Source,
    Value,
};
use tokio::net::TcpListener;

use crate::common::{Addrs, WAIT, http_client, poll_until};

static ADDRS: Addrs = Addrs::new(39);

/// A loader in Rust that counts its loads per key and answers by prefix:
/// `missing-` is an origin 404, `broken-` a failure, `slow-` a timeout,
/// `short-` a value good for 50 ms, anything else `v:<key>`.
#[derive(Clone, Default)]
struct Counting {
    loads: Arc<Mutex<HashMap<String, usize>>>,
}

impl Counting {
    fn loads(&self, key: &str) -> usize {
        self.loads
            .lock()
            .expect("counter")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Loader for Counting {
    async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
        *self
            .loads
            .lock()
            .expect("counter")
            .entry(key.to_owned())
            .or_default() += 1;
        if key.starts_with("missing-") {
            return Err(LoadError::NotFound);
        }
        if key.starts_with("broken-") {
            return Err(LoadError::Failure("the origin is broken".into()));
        }
        if key.starts_with("slow-") {
            return Err(LoadError::Timeout(Duration::from_millis(5)));
        }
        // Long enough for several nodes' gets to join one load.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let fresh = Fresh::new(Value::new(format!("v:{key}"), None));
        if key.starts_with("short-") {
            return Ok(fresh.with_ttl(Duration::from_millis(50)));
        }
        Ok(fresh)
    }
}

/// Listeners on `ip`, every port chosen by the OS.
async fn listeners_on(ip: IpAddr) -> Listeners {
    let bind = || async move {
        TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind port 0")
    };
    Listeners {
        service: bind().await,
        peer: bind().await,
        admin: bind().await,
    }
}

/// Two nodes with fixed membership, on ports the OS chose, sharing one
/// counting loader for group `g`.
async fn two_nodes(loader: &Counting) -> Vec<shoal::NodeHandle> {
    let ips = [ADDRS.next(), ADDRS.next()];
    let mut listeners = Vec::new();
    for ip in ips {
        listeners.push(listeners_on(ip).await);
    }
    let peers: Vec<String> = listeners
        .iter()
        .map(|l| format!("\"{}\"", l.peer.local_addr().expect("addr")))
        .collect();
    let mut nodes = Vec::new();
    for (ip, listeners) in ips.into_iter().zip(listeners) {
        let peer_port = listeners.peer.local_addr().expect("addr").port();
        let config = Config::from_yaml(&format!(
            "node: {{ bind: {ip}, advertise: {ip}, drain: 0s, ports: {{ peer: {peer_port} }} }}
membership: {{ static_peers: [{}] }}",
            peers.join(", ")
        ))
        .expect("config");
        let node = Node::builder(config)
            .loader("g", loader.clone())
            .start(listeners)
            .await
            .expect("start");
        assert!(node.ready(WAIT).await, "ready");
        nodes.push(node);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_nodes_share_keys_through_a_rust_loader() {
    let loader = Counting::default();
    let nodes = two_nodes(&loader).await;
    assert_eq!(nodes[0].members().len(), 2);
    assert!(
        nodes[0]
            .members()
            .iter()
            .all(|m| m.state == MemberState::Alive)
    );
    assert_eq!(nodes[0].ring_len(), 2);
    assert_eq!(nodes[1].group_names(), vec!["g".to_owned()]);
    let groups: Vec<_> = nodes
        .iter()
        .map(|n| n.group("g").expect("group g"))
        .collect();
    assert!(nodes[0].group("other").is_none());

    // Both nodes at once, several keys: one load per key for the cluster.
    let keys: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    let gets = keys.iter().flat_map(|key| {
        groups.iter().map(move |group| {
            let group = group.clone();
            let key = key.clone();
            async move { (key.clone(), group.get(&key).await) }
        })
    });
    for (key, got) in futures::future::join_all(gets).await {
        let fetched = got.unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(fetched.fresh.value.bytes, format!("v:{key}"));
    }
    for key in &keys {
        assert_eq!(loader.loads(key), 1, "loads of {key}");
    }
    // Answered again from the owner's main cache, or fetched from it.
    let again = groups[0].get("k0").await.expect("get");
    assert!(
        matches!(again.source, Source::Main | Source::Peer | Source::Hot),
        "{:?}",
        again.source
    );
    assert_eq!(loader.loads("k0"), 1);
    let stats: u64 = groups.iter().map(|g| g.stats().local_loads).sum();
    assert_eq!(stats, keys.len() as u64, "local loads across the cluster");

    // PUT through one node is what the other serves; DELETE reloads once.
    groups[1]
        .put("k0", Value::new("put", None))
        .await
        .expect("put");
    for group in &groups {
        assert_eq!(group.get("k0").await.expect("get").fresh.value.bytes, "put");
    }
    groups[0].delete("k0").await.expect("delete");
    for group in &groups {
        assert_eq!(
            group.get("k0").await.expect("get").fresh.value.bytes,
            "v:k0"
        );
    }
    assert_eq!(loader.loads("k0"), 2, "one reload after the delete");

    // The HTTP faces run beside the handles.
    let url = format!("http://{}/g/k1", nodes[1].service_addr());
    let response = http_client().get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "v:k1");
    assert_eq!(loader.loads("k1"), 1);

    let service = nodes[0].service_addr();
    for node in nodes {
        node.shutdown().await;
    }
    assert!(
        tokio::net::TcpStream::connect(service).await.is_err(),
        "nothing listens once the node is shut down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_say_what_went_wrong_and_a_404_is_remembered_if_asked() {
    let ip = ADDRS.next();
    let loader = Counting::default();
    let config = Config::from_yaml(&format!(
        "node: {{ bind: {ip}, advertise: {ip}, drain: 0s }}
groups: {{ g: {{ negative_ttl: 1m }} }}"
    ))
    .expect("config");
    let node = Node::builder(config)
        .loader("g", loader.clone())
        .start(listeners_on(ip).await)
        .await
        .expect("start");
    let group = node.group("g").expect("group");
    for _ in 0..2 {
        assert_eq!(
            group.get("missing-a").await.err(),
            Some(GroupError::OriginNotFound)
        );
    }
    assert_eq!(loader.loads("missing-a"), 1, "the 404 is remembered");
    for _ in 0..2 {
        match group.get("broken-a").await {
            Err(GroupError::OriginFailure(message)) => {
                assert_eq!(&*message, "the origin is broken");
            }
            other => panic!("broken-a: {other:?}"),
        }
    }
    assert_eq!(loader.loads("broken-a"), 2, "failures are not remembered");
    assert_eq!(
        group.get("slow-a").await.err(),
        Some(GroupError::OriginTimeout(Duration::from_millis(5)))
    );

    // The loader's TTL caps how long the value is kept.
    group.get("short-a").await.expect("get");
    poll_until("short-a to expire and load again", WAIT, || async {
        group.get("short-a").await.expect("get");
        match loader.loads("short-a") {
            2 => Ok(()),
            n => Err(format!("{n} loads")),
        }
    })
    .await;

    // Over HTTP the same errors are JSON with their kind.
    let url = format!("http://{}/g/missing-a", node.service_addr());
    let response = http_client().get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response
            .headers()
            .get("x-shoal-error")
            .and_then(|v| v.to_str().ok()),
        Some("origin-404")
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_group_with_no_loader_anywhere_is_refused() {
    let ip = ADDRS.next();
    let config = Config::from_yaml(&format!(
        "node: {{ bind: {ip}, advertise: {ip} }}\ngroups: {{ g: {{ capacity: 1MiB }} }}"
    ))
    .expect("config");
    match Node::builder(config).start(listeners_on(ip).await).await {
        Err(NodeError::NoLoader(group)) => assert_eq!(group, "g"),
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("a group without a loader started"),
    }
    // And a config error names the field, as the binary's do.
    let error =
        Config::from_yaml("groups: { g: { capacty: 1MiB } }").expect_err("a typo is refused");
    assert!(error.to_string().contains("groups.g.capacty"), "{error}");
}

#[tokio::test]
async fn a_lone_node_on_port_zero_reports_where_it_listens() {
    let ip = ADDRS.next();
    let config = Config::from_yaml(&format!(
        "node: {{ bind: {ip}, advertise: {ip}, drain: 0s }}"
    ))
    .expect("config");
    let node = Node::builder(config)
        .loader("g", Counting::default())
        .start(listeners_on(ip).await)
        .await
        .expect("start");
    assert!(node.is_ready());
    assert_ne!(node.service_addr().port(), 0);
    let members = node.members();
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].id(),
        node.peer_addr(),
        "the node's id on the ring is the peer port it listens on"
    );
    let url = format!("http://{}/readyz", node.admin_addr());
    let response = http_client().get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    node.shutdown().await;
}

/// The embedding API's writes are as honest as the service port's: a value
/// the group cannot store is an error, and a config built in code gets the
/// checks a config file gets, when the node starts.
#[tokio::test]
async fn a_put_the_group_cannot_store_is_an_error_and_so_is_a_config_that_allows_one() {
    let ip = ADDRS.next();
    let yaml = format!(
        "node: {{ bind: {ip}, advertise: {ip}, drain: 0s }}\ngroups: {{ g: {{ capacity: 1MiB, max_value: 4KiB }} }}"
    );
    let config = Config::from_yaml(&yaml).expect("config");
    let node = Node::builder(config.clone())
        .loader("g", Counting::default())
        .start(listeners_on(ip).await)
        .await
        .expect("start");
    let group = node.group("g").expect("configured");
    match group.put("k", Value::new(vec![b'x'; 4097], None)).await {
        Err(GroupError::ValueTooLarge(message)) => {
            assert!(message.contains("4097 bytes"), "{message}")
        }
        other => panic!("expected value-too-large, got {other:?}"),
    }
    let got = group.get("k").await.expect("get");
    assert_eq!(got.source, Source::Origin, "the refused put stored nothing");
    group
        .put("k", Value::new(vec![b'x'; 4096], None))
        .await
        .expect("a value of max_value bytes");
    assert_eq!(group.get("k").await.expect("get").source, Source::Main);
    node.shutdown().await;

    let mut allows_too_much = config;
    if let Some(g) = allows_too_much.groups.get_mut("g") {
        g.max_value = 2 << 20;
    }
    match Node::builder(allows_too_much)
        .loader("g", Counting::default())
        .start(listeners_on(ADDRS.next()).await)
        .await
    {
        Err(NodeError::Config(error)) => {
            assert_eq!(
                error.field.as_deref(),
                Some("groups.g.max_value"),
                "{error}"
            )
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("a node started with a max_value over its capacity"),
    }
}
