//! Group policy under paused time, with the demo loader as origin and an
//! in-memory stand-in for the other node.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;

use super::*;
use crate::config::{GroupConfig, LoaderConfig};
use crate::metrics::Metrics;

const ME: &str = "10.0.0.1:8000";
const OTHER: &str = "10.0.0.2:8000";
const DELAY: Duration = Duration::from_millis(100);

struct FakePeers {
    reply: Mutex<Result<PeerValue, PeerError>>,
    fetches: AtomicUsize,
    removed: Mutex<Vec<MemberId>>,
}

impl FakePeers {
    fn answering(reply: Result<PeerValue, PeerError>) -> Arc<Self> {
        Arc::new(Self {
            reply: Mutex::new(reply),
            fetches: AtomicUsize::new(0),
            removed: Mutex::new(Vec::new()),
        })
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Peers for FakePeers {
    fn fetch<'a>(
        &'a self,
        _: &'a Member,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<PeerValue, PeerError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let reply = self.reply.lock().expect("lock").clone();
        async move { reply }.boxed()
    }

    fn store<'a>(
        &'a self,
        _: &'a Member,
        _: &'a str,
        _: &'a str,
        _: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<(), PeerError>> {
        async { Ok(()) }.boxed()
    }

    fn remove<'a>(
        &'a self,
        member: &'a Member,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), PeerError>> {
        self.removed.lock().expect("lock").push(member.id);
        async { Ok(()) }.boxed()
    }
}

fn peer_value(text: &str, remaining_ttl: Option<Duration>) -> PeerValue {
    PeerValue {
        value: Value::new(text.to_owned(), None),
        remaining_ttl,
        no_store: false,
    }
}

fn config(capacity: u64, hot_ttl: Option<Duration>) -> GroupConfig {
    GroupConfig {
        capacity,
        hot_fraction: 0.5,
        ttl: None,
        hot_ttl,
        negative_ttl: None,
        read_only: false,
        max_value: 1 << 20,
        loader: LoaderConfig::Demo { delay: DELAY },
    }
}

fn group_with(config: GroupConfig, peers: Arc<FakePeers>) -> Arc<Group> {
    let me: SocketAddr = ME.parse().expect("addr");
    let other: SocketAddr = OTHER.parse().expect("addr");
    let ring = Ring::new([Member::new(me, "me"), Member::new(other, "other")]);
    let (_tx, rx) = watch::channel(Arc::new(ring));
    let loader = Loader::Demo { delay: DELAY };
    Arc::new(Group::new(
        "g",
        config,
        loader,
        peers,
        RingView::new(rx, me),
        CopyDrops::Fanout,
        Metrics::new().group("g"),
    ))
}

fn group(peers: Arc<FakePeers>) -> Arc<Group> {
    group_with(config(1 << 20, Some(Duration::from_secs(60))), peers)
}

/// Keys owned by `owner` on the two-member ring.
fn keys_owned_by(owner: &str, count: usize) -> Vec<String> {
    let me: SocketAddr = ME.parse().expect("addr");
    let other: SocketAddr = OTHER.parse().expect("addr");
    let ring = Ring::new([Member::new(me, "me"), Member::new(other, "other")]);
    let owner: SocketAddr = owner.parse().expect("addr");
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| ring.owner("g", k).map(|m| m.id) == Some(owner))
        .take(count)
        .collect()
}

async fn source(group: &Arc<Group>, key: &str) -> Source {
    group
        .get(key, Requester::Client)
        .await
        .expect("get succeeds")
        .source
}

#[tokio::test(start_paused = true)]
async fn concurrent_gets_of_an_owned_key_load_once() {
    let group = group(FakePeers::answering(Err(PeerError::Failed(
        "unused".into(),
    ))));
    let key = &keys_owned_by(ME, 1)[0];
    let gets = (0..20).map(|_| {
        let group = Arc::clone(&group);
        let key = key.clone();
        tokio::spawn(async move { group.get(&key, Requester::Client).await })
    });
    for result in futures::future::join_all(gets).await {
        let fetched = result.expect("no panic").expect("demo loads succeed");
        assert_eq!(fetched.value.bytes, format!("Value of {key}"));
        assert_eq!(fetched.source, Source::Origin);
    }
    let stats = group.stats();
    assert_eq!(
        (stats.loads, stats.loads_deduped, stats.local_loads),
        (20, 1, 1)
    );
    assert_eq!(source(&group, key).await, Source::Main);
}

#[tokio::test(start_paused = true)]
async fn a_peer_value_enters_the_hot_cache_on_its_second_read() {
    let peers = FakePeers::answering(Ok(peer_value("remote", None)));
    let group = group(Arc::clone(&peers));
    let key = &keys_owned_by(OTHER, 1)[0];
    assert_eq!(source(&group, key).await, Source::Peer);
    assert_eq!(source(&group, key).await, Source::Peer);
    assert_eq!(source(&group, key).await, Source::Hot);
    assert_eq!(peers.fetches(), 2);
    assert_eq!(group.stats().local_loads, 0);
}

#[tokio::test(start_paused = true)]
async fn keys_read_once_do_not_push_hot_keys_out() {
    let peers = FakePeers::answering(Ok(peer_value(&"v".repeat(1000), None)));
    // Room for about eight 1 KiB values in the hot cache.
    let group = group_with(
        config(16 * 1024, Some(Duration::from_secs(60))),
        Arc::clone(&peers),
    );
    let keys = keys_owned_by(OTHER, 1005);
    let (hot, scan) = keys.split_at(5);
    for key in hot {
        for _ in 0..3 {
            group.get(key, Requester::Client).await.expect("get");
        }
    }
    for key in scan {
        assert_eq!(source(&group, key).await, Source::Peer);
    }
    for key in hot {
        assert_eq!(
            source(&group, key).await,
            Source::Hot,
            "hot key {key} was pushed out"
        );
    }
}

/// A group, a key it owns, and a get of that key whose origin load is
/// halfway through (paused time: the midpoint is exact).
async fn owner_load_half_done() -> (
    Arc<Group>,
    String,
    tokio::task::JoinHandle<Result<Fetched, GroupError>>,
) {
    let group = group(FakePeers::answering(Err(PeerError::Failed(
        "unused".into(),
    ))));
    let key = keys_owned_by(ME, 1).remove(0);
    let in_flight = {
        let group = Arc::clone(&group);
        let key = key.clone();
        tokio::spawn(async move { group.get(&key, Requester::Client).await })
    };
    tokio::time::sleep(DELAY / 2).await;
    (group, key, in_flight)
}

#[tokio::test(start_paused = true)]
async fn a_delete_wins_over_a_load_in_flight() {
    let (group, key, in_flight) = owner_load_half_done().await;
    group.drop_local(&key);
    let fetched = in_flight.await.expect("no panic").expect("load succeeds");
    assert_eq!(fetched.source, Source::Origin);
    // The value loaded before the delete was not stored after it.
    assert_eq!(source(&group, &key).await, Source::Origin);
    assert_eq!(group.stats().local_loads, 2);
}

#[tokio::test(start_paused = true)]
async fn a_put_wins_over_a_load_in_flight() {
    let (group, key, in_flight) = owner_load_half_done().await;
    group.put(&key, Value::new("put", None)).await.expect("put");
    in_flight.await.expect("no panic").expect("load succeeds");
    let fetched = group.get(&key, Requester::Client).await.expect("get");
    assert_eq!(
        (fetched.source, &fetched.value.bytes[..]),
        (Source::Main, &b"put"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn a_hot_copy_lives_no_longer_than_the_owner_said() {
    let peers = FakePeers::answering(Ok(peer_value("remote", Some(Duration::from_secs(5)))));
    let group = group(Arc::clone(&peers));
    let key = &keys_owned_by(OTHER, 1)[0];
    source(&group, key).await;
    source(&group, key).await;
    assert_eq!(source(&group, key).await, Source::Hot);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(source(&group, key).await, Source::Peer);
}

#[tokio::test(start_paused = true)]
async fn a_hot_copy_lives_no_longer_than_hot_ttl() {
    let peers = FakePeers::answering(Ok(peer_value("remote", None)));
    let group = group_with(
        config(1 << 20, Some(Duration::from_secs(2))),
        Arc::clone(&peers),
    );
    let key = &keys_owned_by(OTHER, 1)[0];
    source(&group, key).await;
    source(&group, key).await;
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(source(&group, key).await, Source::Hot);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(source(&group, key).await, Source::Peer);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_owner_means_a_local_load_kept_only_as_hot() {
    let unreachable = PeerError::Unreachable {
        refused: true,
        detail: "connection refused".into(),
    };
    let peers = FakePeers::answering(Err(unreachable));
    let group = group(Arc::clone(&peers));
    let key = &keys_owned_by(OTHER, 1)[0];
    assert_eq!(source(&group, key).await, Source::Origin);
    assert_eq!(source(&group, key).await, Source::Hot);
    let stats = group.stats();
    assert_eq!(
        (stats.local_loads, stats.peer_errors, stats.main.items),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn origin_errors_at_the_owner_are_passed_on_not_retried() {
    let failure = PeerError::Origin(LoadError::Failure("the origin answered 500".into()));
    let group = group(FakePeers::answering(Err(failure)));
    let key = &keys_owned_by(OTHER, 1)[0];
    let error = group
        .get(key, Requester::Client)
        .await
        .expect_err("origin failed");
    assert_eq!(
        error,
        GroupError::OriginFailure("the origin answered 500".into())
    );
    assert_eq!(group.stats().local_loads, 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_owner_is_not_a_reason_to_load_locally() {
    let group = group(FakePeers::answering(Err(PeerError::Timeout(
        Duration::from_secs(3),
    ))));
    let key = &keys_owned_by(OTHER, 1)[0];
    let error = group
        .get(key, Requester::Client)
        .await
        .expect_err("peer timed out");
    assert_eq!(error.kind(), "peer-timeout");
    assert_eq!(group.stats().local_loads, 0);
}

#[tokio::test(start_paused = true)]
async fn a_peer_request_is_answered_here_even_for_a_key_owned_elsewhere() {
    let peers = FakePeers::answering(Ok(peer_value("remote", None)));
    let group = group(Arc::clone(&peers));
    let key = &keys_owned_by(OTHER, 1)[0];
    let fetched = group.get(key, Requester::Peer).await.expect("load");
    assert_eq!(fetched.source, Source::Origin);
    assert_eq!(peers.fetches(), 0, "a peer request was forwarded");
}

#[tokio::test(start_paused = true)]
async fn a_put_for_an_owned_key_drops_the_other_nodes_copies() {
    let peers = FakePeers::answering(Err(PeerError::Failed("unused".into())));
    let group = group(Arc::clone(&peers));
    let key = &keys_owned_by(ME, 1)[0];
    group.put(key, Value::new("new", None)).await.expect("put");
    assert_eq!(source(&group, key).await, Source::Main);
    let removed = peers.removed.lock().expect("lock").clone();
    assert_eq!(removed, vec![OTHER.parse::<SocketAddr>().expect("addr")]);
}
