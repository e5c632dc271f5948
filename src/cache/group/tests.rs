//! Group policy under paused time, with the demo loader as origin and an
//! in-memory stand-in for the other node; `freshness` has a scripted
//! origin for refreshes, stale answers and revalidation.

mod freshness;

use crate::cache::{HandedOff, HandoffReceipt};
use crate::ring::RingHistory;
use std::collections::HashMap;
use std::sync::Mutex;

use futures::FutureExt;

use super::*;
use crate::config::{GroupConfig, LoaderConfig};
use crate::error_kind::ErrorKind;
use crate::metrics::Metrics;

const ME: &str = "10.0.0.1:8000";
const OTHER: &str = "10.0.0.2:8000";
const THIRD: &str = "10.0.0.3:8000";
const DELAY: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_secs(300);

fn id(addr: &str) -> MemberId {
    addr.parse().expect("addr")
}

fn member(addr: &str) -> Member {
    Member::new(id(addr), addr)
}

/// The other nodes, in memory: answers fetches and peeks as told, and
/// records what was asked.
struct FakePeers {
    /// What every fetch answers, unless `replies` names the node.
    reply: Mutex<Result<Fresh, PeerError>>,
    replies: Mutex<HashMap<MemberId, Result<Fresh, PeerError>>>,
    fetched: Mutex<Vec<(MemberId, Ask)>>,
    /// What each node holds for a peek (absent: a miss).
    held: Mutex<HashMap<MemberId, Fresh>>,
    peeked: Mutex<Vec<MemberId>>,
    /// When set, a peek waits until it reads true before answering.
    peek_gate: Mutex<Option<watch::Receiver<bool>>>,
    removed: Mutex<Vec<(MemberId, Option<Version>)>>,
    handed: Mutex<Vec<(MemberId, Vec<HandedOff>)>>,
}

impl FakePeers {
    fn answering(reply: Result<Fresh, PeerError>) -> Arc<Self> {
        Arc::new(Self {
            reply: Mutex::new(reply),
            replies: Mutex::new(HashMap::new()),
            fetched: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            peeked: Mutex::new(Vec::new()),
            peek_gate: Mutex::new(None),
            removed: Mutex::new(Vec::new()),
            handed: Mutex::new(Vec::new()),
        })
    }

    fn unused() -> Arc<Self> {
        Self::answering(Err(PeerError::Failed("unused".into())))
    }

    fn reply_from(&self, node: &str, reply: Result<Fresh, PeerError>) {
        self.replies.lock().expect("lock").insert(id(node), reply);
    }

    fn hold(&self, node: &str, copy: Fresh) {
        self.held.lock().expect("lock").insert(id(node), copy);
    }

    fn fetches(&self) -> usize {
        self.fetched.lock().expect("lock").len()
    }

    fn fetched(&self) -> Vec<(MemberId, Ask)> {
        self.fetched.lock().expect("lock").clone()
    }

    fn peeked(&self) -> Vec<MemberId> {
        self.peeked.lock().expect("lock").clone()
    }

    fn removed(&self) -> Vec<MemberId> {
        self.removed
            .lock()
            .expect("lock")
            .iter()
            .map(|(m, _)| *m)
            .collect()
    }
}

fn unreachable() -> PeerError {
    PeerError::Unreachable {
        refused: true,
        detail: "connection refused".into(),
    }
}

impl Peers for FakePeers {
    fn fetch<'a>(
        &'a self,
        node: &'a Member,
        ask: Ask,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Fresh, PeerError>> {
        self.fetched.lock().expect("lock").push((node.id, ask));
        let reply = match self.replies.lock().expect("lock").get(&node.id) {
            Some(reply) => reply.clone(),
            None => self.reply.lock().expect("lock").clone(),
        };
        async move { reply }.boxed()
    }

    fn peek<'a>(
        &'a self,
        node: &'a Member,
        _: &'a str,
        _: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<Fresh>, PeerError>> {
        self.peeked.lock().expect("lock").push(node.id);
        let held = self.held.lock().expect("lock").get(&node.id).cloned();
        let gate = self.peek_gate.lock().expect("lock").clone();
        async move {
            if let Some(mut gate) = gate {
                let _ = gate.wait_for(|open| *open).await;
            }
            Ok(held)
        }
        .boxed()
    }

    fn store<'a>(
        &'a self,
        _: &'a Member,
        _: &'a str,
        _: &'a str,
        _: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<Version, PeerError>> {
        async { Ok(Version(1 << 40)) }.boxed()
    }

    fn remove<'a>(
        &'a self,
        node: &'a Member,
        _: &'a str,
        _: &'a str,
        superseded: Option<Version>,
    ) -> futures::future::BoxFuture<'a, Result<Version, PeerError>> {
        self.removed
            .lock()
            .expect("lock")
            .push((node.id, superseded));
        async move { Ok(superseded.unwrap_or(Version(1 << 40))) }.boxed()
    }

    fn hand_off<'a>(
        &'a self,
        node: &'a Member,
        _: &'a str,
        entries: &'a [HandedOff],
    ) -> futures::future::BoxFuture<'a, Result<HandoffReceipt, PeerError>> {
        self.handed
            .lock()
            .expect("lock")
            .push((node.id, entries.to_vec()));
        let accepted = entries.len() as u64;
        async move {
            Ok(HandoffReceipt {
                accepted,
                refused: 0,
            })
        }
        .boxed()
    }
}

fn peer_value(text: &str, ttl: Option<Duration>) -> Fresh {
    Fresh {
        ttl,
        ..Fresh::new(Value::new(text.to_owned(), None)).versioned(Version(1))
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
        ..GroupConfig::default()
    }
}

/// How a test group sees the cluster.
struct Setup {
    members: Vec<&'static str>,
    window: Duration,
    successor_failover: bool,
}

impl Setup {
    /// Two members, churn off: plain groupcache behaviour.
    fn plain() -> Self {
        Self {
            members: vec![ME, OTHER],
            window: Duration::ZERO,
            successor_failover: false,
        }
    }

    /// Three members, churn on.
    fn churn() -> Self {
        Self {
            members: vec![ME, OTHER, THIRD],
            window: WINDOW,
            successor_failover: true,
        }
    }

    fn ring(&self) -> Ring {
        Ring::new(self.members.iter().map(|m| member(m)))
    }

    /// A group, and the sender that moves its ring on.
    fn build(
        &self,
        config: GroupConfig,
        peers: Arc<FakePeers>,
    ) -> (Arc<Group>, RingHistory, watch::Sender<Arc<Rings>>) {
        self.build_loading(
            config,
            peers,
            Arc::new(crate::loader::DemoLoader::new(DELAY)),
        )
    }

    /// As [`Setup::build`], with `loader` as the origin.
    fn build_loading(
        &self,
        config: GroupConfig,
        peers: Arc<FakePeers>,
        loader: Arc<dyn DynLoader>,
    ) -> (Arc<Group>, RingHistory, watch::Sender<Arc<Rings>>) {
        // As a node starts: alone, then with the others.
        let mut history = RingHistory::new(Rings::new(
            id(ME),
            Ring::new([member(ME)]),
            self.window,
            Duration::from_secs(6),
            Instant::now(),
        ));
        history.advance(self.ring(), Instant::now());
        let (tx, rx) = watch::channel(Arc::new(history.rings().clone()));
        let cluster = Cluster {
            peers,
            ring: RingView::new(rx),
            copy_drops: CopyDrops::Fanout,
            clock: Arc::new(Clock::default()),
            successor_failover: self.successor_failover,
            remember_writes: self.window,
        };
        let group = Arc::new(Group::new(
            "g",
            config,
            loader,
            cluster,
            Metrics::new().group("g"),
        ));
        (group, history, tx)
    }
}

fn group_with(config: GroupConfig, peers: Arc<FakePeers>) -> Arc<Group> {
    Setup::plain().build(config, peers).0
}

fn group(peers: Arc<FakePeers>) -> Arc<Group> {
    group_with(config(1 << 20, Some(Duration::from_secs(60))), peers)
}

/// Keys owned by `owner` on `ring`.
fn keys_owned_on(ring: &Ring, owner: &str, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| ring.owner("g", k).map(|m| m.id) == Some(id(owner)))
        .take(count)
        .collect()
}

/// Keys owned by `owner` on the two-member ring.
fn keys_owned_by(owner: &str, count: usize) -> Vec<String> {
    keys_owned_on(&Setup::plain().ring(), owner, count)
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
        assert_eq!(fetched.fresh.value.bytes, format!("Value of {key}"));
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
    group.drop_local(&key, None);
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
        (fetched.source, &fetched.fresh.value.bytes[..]),
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
    let peers = FakePeers::answering(Err(unreachable.clone()));
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
async fn a_local_load_for_an_unreachable_owner_outlives_its_caller() {
    let peers = FakePeers::answering(Err(unreachable()));
    let group = group(Arc::clone(&peers));
    let key = keys_owned_by(OTHER, 1).remove(0);
    let get = {
        let group = Arc::clone(&group);
        let key = key.clone();
        tokio::spawn(async move { group.get(&key, Requester::Client).await })
    };
    tokio::time::sleep(DELAY / 2).await;
    // The fetch its caller drove is given up; the origin load it started
    // is not.
    get.abort();
    assert!(get.await.is_err_and(|e| e.is_cancelled()));
    tokio::time::sleep(DELAY).await;
    assert_eq!(source(&group, &key).await, Source::Hot);
    assert_eq!(group.stats().local_loads, 1);
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
    assert_eq!(error.kind(), crate::error_kind::ErrorKind::PeerTimeout);
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
    assert_eq!(peers.removed(), vec![id(OTHER)]);
}

/// A put the group cannot store is an error naming the sizes and the limit,
/// never an `Ok` that keeps nothing; nothing is stored and no copies dropped.
#[tokio::test(start_paused = true)]
async fn a_put_that_cannot_be_stored_is_refused() {
    // Built in code, so no config check stands between: a max_value above
    // the capacity, as the config file used to allow.
    let config = GroupConfig {
        capacity: 10_000,
        max_value: 20_000,
        ..config(10_000, None)
    };
    let peers = FakePeers::unused();
    let group = group_with(config, Arc::clone(&peers));
    let key = keys_owned_by(ME, 1).remove(0);

    let heavier_than_the_cache = Value::new(vec![b'x'; 15_000], None);
    let error = group
        .put(&key, heavier_than_the_cache.clone())
        .await
        .expect_err("heavier than the cache");
    assert_eq!(error.kind(), ErrorKind::ValueTooLarge);
    let message = error.to_string();
    assert!(
        message.contains("15000") && message.contains("capacity of 10000 bytes"),
        "{message}"
    );
    assert!(
        group.store_as_owner(&key, heavier_than_the_cache).is_err(),
        "the owner's own path refuses it too"
    );

    let over_max_value = Value::new(vec![b'x'; 20_001], None);
    let error = group
        .put(&key, over_max_value)
        .await
        .expect_err("over max_value");
    assert!(
        error
            .to_string()
            .contains("20001 bytes, larger than group `g`'s max_value of 20000 bytes"),
        "{error}"
    );

    // Refused before it travels: for a key another node owns too.
    let theirs = keys_owned_by(OTHER, 1).remove(0);
    let error = group
        .put(&theirs, Value::new(vec![b'x'; 15_000], None))
        .await
        .expect_err("refused before it travels");
    assert_eq!(error.kind(), ErrorKind::ValueTooLarge);

    assert_eq!(group.stats().main.items, 0, "nothing was stored");
    assert!(peers.removed().is_empty(), "no copies were dropped");

    // What fits is stored.
    group
        .put(&key, Value::new(vec![b'x'; 9_000], None))
        .await
        .expect("fits");
    assert_eq!(source(&group, &key).await, Source::Main);
}

/// The owner's refusal of a PUT comes back as the same error, not as a
/// failure of the owner.
#[tokio::test(start_paused = true)]
async fn an_owners_refusal_is_a_value_too_large() {
    let peers = FakePeers::unused();
    let group = group(Arc::clone(&peers));
    let error = group.owner_error(
        &member(OTHER),
        PeerError::ValueTooLarge("the entry weighs 9 bytes".into()),
    );
    assert_eq!(
        error,
        GroupError::ValueTooLarge("the entry weighs 9 bytes".into())
    );
    assert_eq!(
        group.stats().peer_errors,
        0,
        "a client's error, not a peer's"
    );
}

// ---------------------------------------------------------------------------
// Churn: previous owners, successors, versions, handoff

/// A key that `owner` owns on `ring` and that `successor` takes over when
/// the owner is gone.
fn key_with_successor(ring: &Ring, owner: &str, successor: &str) -> String {
    keys_owned_on(ring, owner, 100)
        .into_iter()
        .find(|k| {
            ring.owner_excluding(key_hash("g", k), |m| *m == id(owner))
                .map(|m| m.id)
                == Some(id(successor))
        })
        .expect("some key")
}

/// A churn-on group (three members, this node just joined) and a key it
/// owns, with the member its previous-owner lookup asks (the successor).
fn churn_group(peers: Arc<FakePeers>) -> (Arc<Group>, String, Member) {
    let setup = Setup::churn();
    let ring = setup.ring();
    let key = keys_owned_on(&ring, ME, 1).remove(0);
    let successor = ring
        .owner_excluding(key_hash("g", &key), |m| *m == id(ME))
        .cloned()
        .expect("others");
    let (group, _, _) = setup.build(config(1 << 20, Some(Duration::from_secs(60))), peers);
    (group, key, successor)
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_misses_takes_the_previous_owners_copy_with_its_ttl() {
    let peers = FakePeers::unused();
    let (group, key, successor) = churn_group(Arc::clone(&peers));
    let copy = Fresh {
        version: Version(7),
        ..peer_value("held", Some(Duration::from_secs(30)))
    };
    peers.hold(&successor.id.to_string(), copy);
    let fetched = group.get(&key, Requester::Client).await.expect("get");
    assert_eq!(
        (fetched.source, &fetched.fresh.value.bytes[..]),
        (Source::Peer, &b"held"[..])
    );
    assert_eq!(fetched.fresh.version, Version(7));
    assert_eq!(peers.peeked().first(), Some(&successor.id));
    assert_eq!(source(&group, &key).await, Source::Main);
    let stats = group.stats();
    assert_eq!((stats.local_loads, stats.previous_owner_hits), (0, 1));
    // Kept with the time it had left, not the group's TTL (none).
    tokio::time::advance(Duration::from_secs(30)).await;
    peers.held.lock().expect("lock").clear();
    assert_eq!(source(&group, &key).await, Source::Origin);
}

#[tokio::test(start_paused = true)]
async fn a_miss_everywhere_is_one_peek_and_one_origin_load() {
    let peers = FakePeers::unused();
    let (group, key, _) = churn_group(Arc::clone(&peers));
    let gets = (0..20).map(|_| {
        let group = Arc::clone(&group);
        let key = key.clone();
        tokio::spawn(async move { group.get(&key, Requester::Client).await })
    });
    for result in futures::future::join_all(gets).await {
        let fetched = result.expect("no panic").expect("load");
        assert_eq!(fetched.source, Source::Origin);
    }
    // One round of peeks (the successor and the one after it), not one per
    // caller: the peek runs inside the singleflight.
    let mut asked = peers.peeked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    asked.dedup();
    assert_eq!(asked.len(), 2, "a member was asked twice");
    let stats = group.stats();
    assert_eq!((stats.local_loads, stats.previous_owner_misses), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_copy_older_than_an_acknowledged_delete_is_refused() {
    let peers = FakePeers::unused();
    let (group, key, successor) = churn_group(Arc::clone(&peers));
    peers.hold(&successor.id.to_string(), peer_value("stale", None));
    group.delete(&key).await.expect("delete");
    let fetched = group.get(&key, Requester::Client).await.expect("get");
    assert_eq!(
        (fetched.source, &fetched.fresh.value.bytes[..]),
        (Source::Origin, format!("Value of {key}").as_bytes())
    );
    assert_eq!(group.stats().previous_owner_hits, 0);
}

#[tokio::test(start_paused = true)]
async fn a_put_during_a_peek_is_not_undone() {
    let peers = FakePeers::unused();
    let (group, key, successor) = churn_group(Arc::clone(&peers));
    peers.hold(&successor.id.to_string(), peer_value("old", None));
    let (gate, closed) = watch::channel(false);
    *peers.peek_gate.lock().expect("lock") = Some(closed);
    let in_flight = {
        let group = Arc::clone(&group);
        let key = key.clone();
        tokio::spawn(async move { group.get(&key, Requester::Client).await })
    };
    while peers.peeked().is_empty() {
        tokio::task::yield_now().await;
    }
    group.put(&key, Value::new("put", None)).await.expect("put");
    gate.send_replace(true);
    in_flight.await.expect("no panic").expect("get");
    let fetched = group.get(&key, Requester::Client).await.expect("get");
    assert_eq!(
        (fetched.source, &fetched.fresh.value.bytes[..]),
        (Source::Main, &b"put"[..])
    );
}

fn handed(key: &str, text: &str, version: u64, ttl: Option<Duration>) -> HandedOff {
    HandedOff {
        key: key.to_owned(),
        value: Value::new(text.to_owned(), None),
        ttl,
        version: Version(version),
    }
}

#[tokio::test(start_paused = true)]
async fn a_handoff_never_undoes_a_delete_or_a_newer_copy() {
    let group = group(FakePeers::unused());
    let keys = keys_owned_by(ME, 3);
    // Deleted before the handoff arrives.
    group.delete(&keys[0]).await.expect("delete");
    // Stored here by a PUT (a newer version than the handed-off copy).
    group
        .store_as_owner(&keys[1], Value::new("put", None))
        .expect("stored");
    let receipt = group.accept_handoff(vec![
        handed(&keys[0], "old", 1, None),
        handed(&keys[1], "old", 1, None),
        handed(&keys[2], "handed", 1, Some(Duration::from_secs(10))),
    ]);
    assert_eq!((receipt.accepted, receipt.refused), (1, 2));
    assert_eq!(source(&group, &keys[0]).await, Source::Origin);
    let put = group.get(&keys[1], Requester::Client).await.expect("get");
    assert_eq!(&put.fresh.value.bytes[..], b"put");
    let taken = group.get(&keys[2], Requester::Client).await.expect("get");
    assert_eq!(
        (taken.source, &taken.fresh.value.bytes[..]),
        (Source::Main, &b"handed"[..])
    );
    // It kept the time it had left (less the origin load above), not none.
    let ttl = taken.fresh.ttl.expect("handed off with a TTL");
    assert!(
        ttl <= Duration::from_secs(10) && ttl >= Duration::from_secs(9),
        "{ttl:?}"
    );
    // A newer handed-off copy replaces an older one.
    let newer = group.accept_handoff(vec![handed(&keys[2], "newer", u64::MAX >> 1, None)]);
    assert_eq!(newer.accepted, 1);
    let stats = group.stats();
    assert_eq!(
        (stats.handoff_entries_received, stats.handoff_refused),
        (2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_owner_is_replaced_by_its_successor() {
    let setup = Setup::churn();
    let ring = setup.ring();
    // A key of OTHER's whose successor is THIRD.
    let key = key_with_successor(&ring, OTHER, THIRD);
    let peers = FakePeers::unused();
    peers.reply_from(OTHER, Err(unreachable()));
    peers.reply_from(THIRD, Ok(peer_value("from the successor", None)));
    let (group, _, _) = setup.build(config(1 << 20, None), Arc::clone(&peers));
    let fetched = group.get(&key, Requester::Client).await.expect("get");
    assert_eq!(
        (fetched.source, &fetched.fresh.value.bytes[..]),
        (Source::Peer, &b"from the successor"[..])
    );
    assert_eq!(
        peers.fetched(),
        vec![(id(OTHER), Ask::Owner), (id(THIRD), Ask::Successor)]
    );
    assert_eq!(group.stats().local_loads, 0);
}

#[tokio::test(start_paused = true)]
async fn the_successor_of_an_unreachable_owner_loads_once_and_keeps_it() {
    let setup = Setup::churn();
    let ring = setup.ring();
    let key = key_with_successor(&ring, OTHER, ME);
    let peers = FakePeers::unused();
    peers.reply_from(OTHER, Err(unreachable()));
    let (group, _, _) = setup.build(config(1 << 20, None), Arc::clone(&peers));
    // Its own clients and the other survivor's successor requests alike.
    let gets = (0..10).map(|i| {
        let group = Arc::clone(&group);
        let key = key.clone();
        let from = if i % 2 == 0 {
            Requester::Client
        } else {
            Requester::Successor
        };
        tokio::spawn(async move { group.get(&key, from).await })
    });
    for result in futures::future::join_all(gets).await {
        result.expect("no panic").expect("load");
    }
    assert_eq!(
        source(&group, &key).await,
        Source::Main,
        "kept as owner-in-waiting"
    );
    assert!(
        !peers.peeked().contains(&id(OTHER)),
        "the unreachable owner was peeked at: {:?}",
        peers.peeked()
    );
    let stats = group.stats();
    assert_eq!((stats.local_loads, stats.successor_loads), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn with_no_successor_reachable_the_load_is_local_and_hot_only() {
    let setup = Setup::churn();
    let ring = setup.ring();
    let key = key_with_successor(&ring, OTHER, THIRD);
    let peers = FakePeers::answering(Err(unreachable()));
    let (group, _, _) = setup.build(
        config(1 << 20, Some(Duration::from_secs(60))),
        Arc::clone(&peers),
    );
    assert_eq!(source(&group, &key).await, Source::Origin);
    // OTHER, then THIRD; the next member clockwise is this node, which loads.
    let asked: Vec<MemberId> = peers.fetched().iter().map(|(m, _)| *m).collect();
    assert_eq!(asked, vec![id(OTHER), id(THIRD)]);
    assert_eq!(
        group.stats().successor_loads,
        1,
        "this node was next in line"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leaving_node_hands_its_entries_to_their_next_owners() {
    let peers = FakePeers::unused();
    let setup = Setup::churn();
    let (group, _, _) = setup.build(config(1 << 20, None), Arc::clone(&peers));
    let ring = setup.ring();
    let keys = keys_owned_on(&ring, ME, 20);
    for key in &keys {
        group
            .store_as_owner(key, Value::new(format!("v-{key}"), None))
            .expect("stored");
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    let next = ring.without(&id(ME));
    let mut budget = u64::MAX;
    let report = group
        .hand_off(&next, &mut budget, Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(
        (report.entries, report.undelivered, report.left_out),
        (20, 0, 0)
    );
    let handed = peers.handed.lock().expect("lock").clone();
    let mut seen = 0;
    for (to, entries) in &handed {
        for entry in entries {
            assert_eq!(next.owner("g", &entry.key).map(|m| m.id), Some(*to));
            assert_eq!(entry.value.bytes, format!("v-{}", entry.key));
            assert!(entry.version > Version::ZERO);
            seen += 1;
        }
    }
    assert_eq!(seen, 20);
    assert_eq!(group.stats().handoff_entries_sent, 20);
}
