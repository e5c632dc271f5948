//! Freshness and origin protection (issue 10) end to end: real nodes on
//! 127.0.41.x and a [`ControlledOrigin`] whose delay, status, hang,
//! validators and `Cache-Control` each test sets while it runs.
//! Refresh ahead, stale-while-revalidate, stale-if-error (500s and a hung
//! origin), revalidation with `ETag` and `Last-Modified`, the bound on
//! loads in flight and its queue, the circuit breaker, TTL jitter, and
//! where all of it runs in a cluster. The demo group's unchanged
//! behaviour is `node::demo_config_without_a_file`.
//!
//! TTLs are short (1–2 s) but not tiny, so a busy 2-core machine keeps to
//! them. Where a test must let an entry age without reading it, it waits
//! for the clock ([`wait_until`]): the passing of time is the condition.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use shoal::{Fresh, LoadError, Loader, Node as EmbeddedNode, Source, Value};
use tokio::net::TcpListener;

use crate::common::{
    Addrs, Behaviour, Cluster, Config, ControlledOrigin, Node, Resp, WAIT, poll_until,
};

static ADDRS: Addrs = Addrs::new(41);

/// Nodes with no group but those given; peer timeout 10 s (above every
/// loader timeout here, and the queue's wait is what it leaves).
fn config(groups: Vec<(&str, String)>) -> Config {
    Config {
        drain: "1s".into(),
        peer_timeout: "10s".into(),
        connect_timeout: "250ms".into(),
        default_group: None,
        groups: groups
            .into_iter()
            .map(|(name, body)| (name.to_owned(), body))
            .collect(),
        extra: Vec::new(),
    }
}

/// A group loading `/{name}/{key}` from `origin` within `timeout`, with
/// `settings` (YAML flow-mapping entries, e.g. `ttl: 1s, refresh_ahead: 0.5`).
fn group(origin: &ControlledOrigin, name: &str, timeout: &str, settings: &str) -> String {
    format!(
        "{{ capacity: 4MiB, {settings}, loader: {{ http: {{ url: \"{}\", timeout: {timeout} }} }} }}",
        origin.url_template(name)
    )
}

/// A GET and how long it took.
async fn timed_get(node: &Node, group: &str, key: &str) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = node.get_key(group, key).await;
    (resp, started.elapsed())
}

/// `shoal_{name}{labels}` on the node's `/metrics`; 0 when the series is
/// not there yet (a counter never touched).
async fn metric(node: &Node, name: &str, labels: &str) -> f64 {
    node.metric(&format!("shoal_{name}{{{labels}}}"))
        .await
        .unwrap_or(0.0)
}

/// Waits for the clock to reach `instant`: an entry ages with no reads.
async fn wait_until(instant: Instant) {
    tokio::time::sleep_until(instant.into()).await;
}

fn is_stale(resp: &Resp) -> bool {
    resp.header("x-shoal-stale") == Some("1")
}

/// The `Age` header in seconds; panics when it is missing or not a number.
fn age(resp: &Resp) -> u64 {
    resp.header("age")
        .and_then(|age| age.parse().ok())
        .unwrap_or_else(|| panic!("a stale answer has an Age header: {:?}", resp.headers))
}

/// A key read again and again across several TTLs is never waited for:
/// the reloads run in the background, at about one per refresh interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_keeps_a_key_read_continuously_from_ever_waiting() {
    const DELAY: Duration = Duration::from_millis(600);
    const TTL: Duration = Duration::from_secs(2);
    let origin = ControlledOrigin::start().await;
    origin.set_default(|b| {
        b.delay = DELAY;
        b.version_per_request = true;
    });
    let config = config(vec![(
        "ra",
        group(&origin, "ra", "3s", "ttl: 2s, refresh_ahead: 0.5"),
    )]);
    let node = Node::start_lone(ADDRS.next(), &config).await;

    let (first, took) = timed_get(&node, "ra", "hot").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.source(), Some("origin"));
    assert!(
        took >= DELAY,
        "the first read waits for the origin: {took:?}"
    );

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut bodies = BTreeSet::new();
    let mut reads = 0;
    while started.elapsed() < TTL * 7 / 2 {
        let (resp, took) = timed_get(&node, "ra", "hot").await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_ne!(
            resp.source(),
            Some("origin"),
            "read {reads} waited for a load ({took:?})"
        );
        assert!(
            !is_stale(&resp),
            "read {reads} was stale: {:?}",
            resp.headers
        );
        slowest = slowest.max(took);
        bodies.insert(resp.text());
        reads += 1;
        // Pacing, not synchronisation: a steady reader, not a busy loop.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        slowest < DELAY / 2,
        "no read takes as long as a load: slowest {slowest:?} of {reads}"
    );
    // One reload per refresh interval (half the TTL, plus the load).
    let reloads = (origin.requests("hot") - 1) as f64;
    let ttl = TTL.as_secs_f64();
    assert!(
        reloads >= (elapsed / ttl).floor() && reloads <= elapsed / (ttl * 0.5) + 2.0,
        "{reloads} reloads in {elapsed:.1} s"
    );
    assert!(
        bodies.len() >= 3,
        "reloads landed and were served: {bodies:?}"
    );
    assert!(
        metric(&node, "refreshes_total", "group=\"ra\",trigger=\"ahead\"").await >= reloads - 1.0,
        "the reloads were refreshes ahead"
    );
}

/// An expired key within stale-while-revalidate is answered at once, by
/// everyone reading it meanwhile, and loaded once; then it is fresh again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_loads_once() {
    const DELAY: Duration = Duration::from_millis(800);
    let origin = ControlledOrigin::start().await;
    origin.set_default(|b| b.delay = DELAY);
    let config = config(vec![(
        "swr",
        group(&origin, "swr", "3s", "ttl: 1s, stale_while_revalidate: 30s"),
    )]);
    let node = Node::start_lone(ADDRS.next(), &config).await;

    let first = node.get_key("swr", "k").await;
    assert_eq!(first.text(), ControlledOrigin::body("k", 1));
    let loaded = Instant::now();
    origin.set("k", |b| b.version = 2);
    wait_until(loaded + Duration::from_millis(1100)).await;

    let reads: Vec<_> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let read = node.spawn_get("/swr/k");
            async move {
                let resp = read.await.expect("the read's task");
                (resp, started.elapsed())
            }
        })
        .collect();
    for (resp, took) in futures::future::join_all(reads).await {
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(is_stale(&resp), "served stale: {:?}", resp.headers);
        assert!(
            age(&resp) >= 1,
            "Age is at least the TTL: {:?}",
            resp.headers
        );
        assert_eq!(resp.text(), ControlledOrigin::body("k", 1));
        assert!(
            took < DELAY / 2,
            "answered at once, not after the load: {took:?}"
        );
    }
    let fresh = poll_until("the reload to land", WAIT, || async {
        let resp = node.get_key("swr", "k").await;
        if is_stale(&resp) {
            assert_eq!(resp.text(), ControlledOrigin::body("k", 1));
            Err(format!("still stale, Age {:?}", resp.header("age")))
        } else {
            Ok(resp)
        }
    })
    .await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.text(), ControlledOrigin::body("k", 2));
    assert_eq!(fresh.header("age"), None, "a fresh answer has no Age");
    assert_eq!(origin.requests("k"), 2, "one load, then one reload");
    assert!(
        metric(
            &node,
            "stale_served_total",
            "group=\"swr\",reason=\"while-revalidate\""
        )
        .await
            >= 20.0
    );
    assert!(metric(&node, "refreshes_total", "group=\"swr\",trigger=\"stale\"").await >= 1.0);
}

/// Reads `key` every 100 ms until an answer that is not 200, and returns
/// the answers before it (each checked to be the value `body`) and it.
async fn read_until_error(node: &Node, group: &str, key: &str, body: &str) -> (Vec<Resp>, Resp) {
    let mut served = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = node.get_key(group, key).await;
        if resp.status != 200 {
            return (served, resp);
        }
        assert_eq!(resp.text(), body, "{group}/{key}: the value held");
        served.push(resp);
        assert!(
            Instant::now() < deadline,
            "{group}/{key} served for {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An origin that turns to 500s, or stops answering, still yields the
/// held value, marked stale, until stale_if_error runs out; then the
/// error. Every stale answer is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_held_value_until_its_window_ends() {
    const TTL: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(3);
    let origin = ControlledOrigin::start().await;
    let config = config(vec![(
        "sie",
        group(&origin, "sie", "1s", "ttl: 1s, stale_if_error: 3s"),
    )]);
    let node = Node::start_lone(ADDRS.next(), &config).await;

    let case = |key: &'static str, break_it: fn(&mut Behaviour)| {
        let (node, origin) = (&node, &origin);
        async move {
            let load_started = Instant::now();
            let first = node.get_key("sie", key).await;
            assert_eq!(first.status, 200, "{}", first.text());
            let loaded = Instant::now();
            origin.set(key, break_it);
            let body = ControlledOrigin::body(key, 1);
            let (served, error) = read_until_error(node, "sie", key, &body).await;
            let ended = Instant::now();
            let stale: Vec<&Resp> = served.iter().filter(|r| is_stale(r)).collect();
            assert!(!stale.is_empty(), "{key}: served stale before the error");
            for resp in &stale {
                let age = age(resp);
                assert!((1..=5).contains(&age), "{key}: Age {age}");
            }
            let fresh_after_stale = served
                .iter()
                .skip_while(|r| !is_stale(r))
                .any(|r| !is_stale(r));
            assert!(!fresh_after_stale, "{key}: nothing fresh came back");
            assert!(
                ended >= load_started + TTL + WINDOW,
                "{key}: the error came {:?} after the load, within TTL + stale_if_error",
                ended - load_started
            );
            assert!(
                ended <= loaded + TTL + WINDOW + Duration::from_secs(3),
                "{key}: stale for {:?} after the load",
                ended - loaded
            );
            (stale.len(), error)
        }
    };
    let ((failed_stale, failed), (hung_stale, timed_out)) = tokio::join!(
        case("down", |b| b.status = 500),
        case("stuck", |b| b.hang = true)
    );
    origin.release_hung();
    failed.assert_error(502, Some("origin-failure"));
    timed_out.assert_error(504, Some("origin-timeout"));
    assert_eq!(
        node.get_key("sie", "down").await.status,
        502,
        "gone for good"
    );
    assert_eq!(
        metric(
            &node,
            "stale_served_total",
            "group=\"sie\",reason=\"if-error\""
        )
        .await,
        (failed_stale + hung_stale) as f64,
        "every stale answer counted"
    );
}

/// How the origin says `key`'s value is the one held: an `ETag`, or only
/// a `Last-Modified`.
#[derive(Clone, Copy, Debug)]
enum Validator {
    ETag,
    LastModified,
}

impl Validator {
    /// Gives `key` validators for value `version` (the previous ones when
    /// the version is unchanged).
    fn set(self, origin: &ControlledOrigin, key: &str, version: u64) {
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        origin.set(key, |b| {
            b.version = version;
            match self {
                Validator::ETag => b.etag = Some(format!("\"e{version}\"")),
                Validator::LastModified => {
                    // Seconds later per version: HTTP dates count seconds.
                    b.last_modified = Some(an_hour_ago + Duration::from_secs(60 * version));
                }
            }
        });
    }
}

/// One key through revalidation: expired, reloaded conditionally, `304`,
/// same bytes, alive for another TTL; then changed at the origin and
/// served anew.
async fn revalidates(node: &Node, origin: &ControlledOrigin, group: &str, how: Validator) {
    const TTL: Duration = Duration::from_secs(1);
    let key = format!("{how:?}");
    how.set(origin, &key, 1);
    let first = node.get_key(group, &key).await;
    assert_eq!(first.text(), ControlledOrigin::body(&key, 1));
    wait_until(Instant::now() + TTL + Duration::from_millis(100)).await;

    let again = node.get_key(group, &key).await;
    let renewed = Instant::now();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.body, first.body, "{key}: the same bytes after a 304");
    let counts = origin.counts(&key);
    assert_eq!(
        (counts.requests, counts.conditional, counts.not_modified),
        (2, 1, 1),
        "{key}: the reload was conditional and answered 304"
    );
    // Renewed for a whole TTL: no origin request until it nears its end.
    while renewed.elapsed() < TTL * 7 / 10 {
        let resp = node.get_key(group, &key).await;
        assert_eq!(resp.body, first.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(origin.requests(&key), 2, "{key}: the 304 renewed the entry");

    how.set(origin, &key, 2);
    wait_until(renewed + TTL + Duration::from_millis(100)).await;
    let changed = node.get_key(group, &key).await;
    assert_eq!(changed.text(), ControlledOrigin::body(&key, 2), "{key}");
    let counts = origin.counts(&key);
    assert_eq!(
        (counts.requests, counts.conditional, counts.not_modified),
        (3, 2, 1),
        "{key}: a conditional reload, answered with the new value"
    );
}

/// Both kinds of validator through [`revalidates`] on a lone node whose
/// group `rv` has `settings`, and the revalidations counted.
async fn revalidation_with(settings: &str) {
    let origin = ControlledOrigin::start().await;
    let config = config(vec![("rv", group(&origin, "rv", "2s", settings))]);
    let node = Node::start_lone(ADDRS.next(), &config).await;
    tokio::join!(
        revalidates(&node, &origin, "rv", Validator::ETag),
        revalidates(&node, &origin, "rv", Validator::LastModified),
    );
    let result = |result| format!("group=\"rv\",result=\"{result}\"");
    let revalidations = "origin_revalidations_total";
    assert_eq!(
        metric(&node, revalidations, &result("not-modified")).await,
        2.0
    );
    assert_eq!(metric(&node, revalidations, &result("modified")).await, 2.0);
    assert_eq!(metric(&node, revalidations, &result("failed")).await, 0.0);
    assert_eq!(
        metric(
            &node,
            "stale_served_total",
            "group=\"rv\",reason=\"if-error\""
        )
        .await,
        0.0,
        "the origin answered every reload"
    );
}

/// A 304 renews a held value without a body, for an `ETag` and for a
/// `Last-Modified`; a changed value comes back whole. Held past its
/// expiry here by stale_if_error, so the reload is of a held entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_renews_a_held_entry_on_304_and_takes_a_changed_value() {
    revalidation_with("ttl: 1s, stale_if_error: 30s").await;
}

/// The same with no stale window: an entry whose origin gave validators is
/// held a TTL past its expiry, unserved, so its reload is conditional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_needs_no_stale_window() {
    revalidation_with("ttl: 1s").await;
}

/// 200 cold keys at once through one node: the origin never sees more
/// than max_concurrent_loads; with a short queue the rest are told the
/// origin is overloaded, in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_loads_in_flight_are_bounded_and_the_queue_too() {
    let wide = ControlledOrigin::start().await;
    let narrow = ControlledOrigin::start().await;
    for origin in [&wide, &narrow] {
        origin.set_default(|b| b.delay = Duration::from_millis(200));
    }
    let mut config = config(vec![
        (
            "wide",
            group(
                &wide,
                "wide",
                "2s",
                "max_concurrent_loads: 8, max_queued_loads: 200",
            ),
        ),
        (
            "narrow",
            group(
                &narrow,
                "narrow",
                "2s",
                "max_concurrent_loads: 8, max_queued_loads: 4",
            ),
        ),
    ]);
    // The queue's wait is half of what peer.timeout leaves the loader's
    // (9 s): 25 rounds of 200 ms fit with room to spare.
    config.peer_timeout = "20s".into();
    let node = Node::start_lone(ADDRS.next(), &config).await;

    let all_at_once = |group: &'static str| {
        let reads: Vec<_> = (0..200)
            .map(|i| node.spawn_get(&format!("/{group}/cold-{i}")))
            .collect();
        async move {
            let mut answers = Vec::new();
            for read in reads {
                answers.push(read.await.expect("the read's task"));
            }
            answers
        }
    };

    for resp in all_at_once("wide").await {
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(wide.total(), 200);
    let most = wide.most_in_flight();
    assert!((2..=8).contains(&most), "{most} loads in flight at once");

    let answers = all_at_once("narrow").await;
    let mut refused = 0;
    for resp in &answers {
        if resp.status == 200 {
            continue;
        }
        resp.assert_error(503, Some("origin-overloaded"));
        refused += 1;
    }
    assert!(refused > 0, "a queue of 4 turned some away");
    assert!(
        answers.len() - refused >= 12,
        "8 loads and 4 waiting were served: {refused} refused"
    );
    assert_eq!(
        narrow.total(),
        answers.len() - refused,
        "refused loads never reached the origin"
    );
    assert!(
        narrow.most_in_flight() <= 8,
        "{} in flight",
        narrow.most_in_flight()
    );
    assert_eq!(
        metric(
            &node,
            "origin_rejected_total",
            "group=\"narrow\",reason=\"overloaded\""
        )
        .await,
        refused as f64
    );
    for group in ["wide", "narrow"] {
        poll_until("no origin load in flight", WAIT, || async {
            match metric(&node, "origin_inflight", &format!("group=\"{group}\"")).await {
                0.0 => Ok(()),
                n => Err(format!("{group}: {n}")),
            }
        })
        .await;
    }
}

/// The circuit opens after the run of failures and fails fast without
/// asking the origin; after the cool-down one probe goes through: a failed
/// probe opens it again, a good one closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_a_run_of_failures_and_a_good_probe_closes_it() {
    const COOL_DOWN: Duration = Duration::from_secs(2);
    let origin = ControlledOrigin::start().await;
    origin.set_default(|b| b.status = 500);
    let config = config(vec![(
        "cb",
        group(
            &origin,
            "cb",
            "1s",
            "circuit_breaker: { failures: 3, cool_down: 2s }",
        ),
    )]);
    let node = Node::start_lone(ADDRS.next(), &config).await;
    let state = || metric(&node, "origin_circuit_state", "group=\"cb\"");
    let circuit_open = |resp: &Resp| resp.status == 503;

    for key in ["a", "b"] {
        node.get_key("cb", key)
            .await
            .assert_error(502, Some("origin-failure"));
    }
    let opened = Instant::now();
    node.get_key("cb", "c")
        .await
        .assert_error(502, Some("origin-failure"));
    node.get_key("cb", "d")
        .await
        .assert_error(503, Some("origin-circuit-open"));
    assert_eq!(origin.total(), 3, "an open circuit asks the origin nothing");
    assert_eq!(state().await, 1.0);
    assert!(
        metric(
            &node,
            "origin_rejected_total",
            "group=\"cb\",reason=\"circuit-open\""
        )
        .await
            >= 1.0
    );

    // The probe after the cool-down, while the origin still fails.
    let (probe, reopened) = poll_until("the first probe", WAIT, || async {
        let sent = Instant::now();
        let resp = node.get_key("cb", "e").await;
        if circuit_open(&resp) {
            assert_eq!(origin.total(), 3, "refused loads reach no origin");
            Err("still open".to_owned())
        } else {
            Ok((resp, sent))
        }
    })
    .await;
    probe.assert_error(502, Some("origin-failure"));
    assert!(
        reopened >= opened + COOL_DOWN,
        "probed only after the cool-down"
    );
    assert_eq!(origin.total(), 4, "one probe");
    node.get_key("cb", "f")
        .await
        .assert_error(503, Some("origin-circuit-open"));
    assert_eq!(state().await, 1.0, "a failed probe opens it again");

    origin.set_default(|b| b.status = 200);
    let (good, sent) = poll_until("the second probe", WAIT, || async {
        let sent = Instant::now();
        let resp = node.get_key("cb", "g").await;
        if circuit_open(&resp) {
            Err("still open".to_owned())
        } else {
            Ok((resp, sent))
        }
    })
    .await;
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.text(), ControlledOrigin::body("g", 1));
    assert!(sent >= reopened + COOL_DOWN, "another whole cool-down");
    assert_eq!(state().await, 0.0, "a good probe closes it");
    for key in ["h", "i", "j"] {
        assert_eq!(node.get_key("cb", key).await.status, 200);
    }
    assert_eq!(origin.total(), 8);
}

/// A Rust loader that answers every key at once, with no TTL of its own.
struct Instant0;

impl Loader for Instant0 {
    async fn load(&self, key: &str) -> Result<Fresh, LoadError> {
        Ok(Fresh::new(Value::new(format!("v:{key}"), None)))
    }
}

/// Keys loaded together do not expire together: each stored TTL is
/// shortened by its own random fraction of ttl_jitter, never lengthened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_spreads_the_expiry_of_keys_loaded_together() {
    const TTL: Duration = Duration::from_secs(2);
    let ip = ADDRS.next();
    let bind = || async move {
        TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind port 0")
    };
    let listeners = shoal::Listeners {
        service: bind().await,
        peer: bind().await,
        admin: bind().await,
    };
    let config = shoal::Config::from_yaml(&format!(
        "node: {{ bind: {ip}, advertise: {ip}, drain: 0s }}
groups: {{ j: {{ ttl: 2s, ttl_jitter: 0.5 }} }}"
    ))
    .expect("config");
    let node = EmbeddedNode::builder(config)
        .loader("j", Instant0)
        .start(listeners)
        .await
        .expect("start");
    let group = node.group("j").expect("group j");
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let loads = keys.iter().map(|key| group.get(key));
    for loaded in futures::future::join_all(loads).await {
        assert_eq!(loaded.expect("load").source, Source::Origin);
    }
    let mut left = Vec::new();
    for key in &keys {
        let held = group.get(key).await.expect("held");
        assert_eq!(held.source, Source::Main);
        left.push(held.fresh.ttl.expect("a TTL").as_secs_f64());
    }
    let (least, most) = left
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    assert!(most <= TTL.as_secs_f64(), "none above the TTL: {left:?}");
    assert!(
        least >= TTL.as_secs_f64() * 0.5 - 0.5,
        "jitter 0.5 cuts at most half: {left:?}"
    );
    assert!(most - least > 0.3, "spread: {left:?}");
    node.shutdown().await;
}

/// In a cluster the owner refreshes and revalidates; a node reading
/// through it loads nothing itself, and passes the owner's stale answer
/// on with its marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_and_revalidations_run_at_the_owner_and_stale_passes_through() {
    let origin = ControlledOrigin::start().await;
    origin.set_default(|b| b.etag = Some("\"same\"".into()));
    let config = config(vec![(
        "w",
        group(
            &origin,
            "w",
            "1s",
            "ttl: 2s, refresh_ahead: 0.5, stale_if_error: 30s",
        ),
    )]);
    let cluster = Cluster::start(&ADDRS, 2, &config).await;
    let mut key = String::new();
    for i in 0.. {
        key = format!("k{i}");
        if cluster.owner("w", &key).await == 0 {
            break;
        }
    }
    let (owner, reader) = (&cluster.nodes[0], &cluster.nodes[1]);
    let body = ControlledOrigin::body(&key, 1);

    // Read through the non-owner across two TTLs.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        let resp = reader.get_key("w", &key).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), body);
        assert!(!is_stale(&resp));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = origin.counts(&key);
    assert!(counts.requests >= 2, "refreshed: {counts:?}");
    assert!(counts.not_modified >= 1, "revalidated: {counts:?}");
    let w = "group=\"w\"";
    assert_eq!(
        metric(owner, "local_loads_total", w).await,
        counts.requests as f64,
        "every origin request came from the owner"
    );
    assert_eq!(metric(reader, "local_loads_total", w).await, 0.0);
    let not_modified = "group=\"w\",result=\"not-modified\"";
    assert_eq!(
        metric(owner, "origin_revalidations_total", not_modified).await,
        counts.not_modified as f64
    );
    assert_eq!(
        metric(reader, "origin_revalidations_total", not_modified).await,
        0.0
    );
    let ahead = "group=\"w\",trigger=\"ahead\"";
    assert!(metric(owner, "refreshes_total", ahead).await >= 1.0);
    assert_eq!(metric(reader, "refreshes_total", ahead).await, 0.0);

    // The origin fails: once the owner's entry expires, its stale answer
    // reaches the reader marked as such.
    origin.set(&key, |b| b.status = 500);
    let stale = poll_until("a stale answer through the non-owner", WAIT, || async {
        let resp = reader.get_key("w", &key).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), body);
        if is_stale(&resp) {
            Ok(resp)
        } else {
            Err(format!("fresh from {:?}", resp.source()))
        }
    })
    .await;
    assert_eq!(stale.source(), Some("peer"));
    assert!(
        age(&stale) >= 2,
        "Age at least the TTL: {:?}",
        stale.headers
    );
    let if_error = "group=\"w\",reason=\"if-error\"";
    assert!(metric(owner, "stale_served_total", if_error).await >= 1.0);
    assert_eq!(metric(reader, "stale_served_total", if_error).await, 0.0);
    assert_eq!(metric(reader, "local_loads_total", w).await, 0.0);
    assert_eq!(
        metric(owner, "local_loads_total", w).await,
        origin.requests(&key) as f64
    );
}
