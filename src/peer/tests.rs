//! Signed peer requests end to end, in process: the real peer client
//! (`HttpPeers`) against the real peer server, on `127.0.0.1:0`.
//!
//! Whole-node tests (unsigned requests to a running `shoal`, nodes with
//! different keyrings) belong with the node wiring.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::{
    Ask, Clock, Cluster, CopyDrops, Group, Groups, HandedOff, PeerError, Peers, Requester,
    RingView, Value, Version,
};
use crate::config::{GroupConfig, LoaderConfig, PeerConfig};
use crate::loader::DemoLoader;
use crate::metrics::Metrics;
use crate::peer::client::{Generations, HttpPeers};
use crate::peer::protocol;
use crate::peer::server::{self, PeerState};
use crate::ring::{Member, Ring, Rings};
use crate::security::signing::wire::HEADERS;
use crate::security::{Keyring, Receiver, RequestParts, Signer, ThisNode, unix_now};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const MAX_VALUE: u64 = 1024;

fn keyring(bytes: &[u8]) -> Keyring {
    Keyring::new(bytes.iter().map(|&b| [b; 32])).expect("keys")
}

fn keys(bytes: &[u8]) -> watch::Receiver<Arc<Keyring>> {
    watch::channel(Arc::new(keyring(bytes))).1
}

fn peer_config() -> PeerConfig {
    PeerConfig {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
    }
}

fn unsigned_client() -> HttpPeers {
    crate::node::install_crypto_provider();
    HttpPeers::new(
        &peer_config(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
}

/// A signing client that knows no member's generation (as with fixed
/// peers): its requests pass at servers started before they were signed.
fn client(sender: &str, keyring: watch::Receiver<Arc<Keyring>>) -> HttpPeers {
    let (_, generations) = watch::channel(Arc::new(Generations::new()));
    unsigned_client().with_signing(sender.parse().expect("addr"), keyring, generations)
}

/// One node's peer API, serving a demo group `g` that it owns entirely.
struct Server {
    member: Member,
    /// The generation it started with.
    generation: u64,
    metrics: Arc<Metrics>,
    group: Arc<Group>,
    /// Requests that reached the router, by HTTP version: [HTTP/1.1, HTTP/2].
    versions: Arc<[AtomicU64; 2]>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    async fn start(keyring: Option<watch::Receiver<Arc<Keyring>>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, keyring, 1).await
    }

    /// A server that speaks HTTP/1.1 only, as nodes did before HTTP/2
    /// between peers.
    async fn start_http1_only() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve_as(listener, None, 1, true).await
    }

    fn requests(&self, version: http::Version) -> u64 {
        let index = usize::from(version == http::Version::HTTP_2);
        self.versions[index].load(Ordering::Relaxed)
    }

    /// Serves on `listener` as `generation` of the node there.
    async fn serve(
        listener: TcpListener,
        keyring: Option<watch::Receiver<Arc<Keyring>>>,
        generation: u64,
    ) -> Self {
        Self::serve_as(listener, keyring, generation, false).await
    }

    async fn serve_as(
        listener: TcpListener,
        keyring: Option<watch::Receiver<Arc<Keyring>>>,
        generation: u64,
        http1_only: bool,
    ) -> Self {
        let addr = listener.local_addr().expect("addr");
        let member = Member::new(addr, "server");
        let rings = Rings::new(
            addr,
            Ring::new([member.clone()]),
            Duration::ZERO,
            Duration::ZERO,
            tokio::time::Instant::now(),
        );
        let (_ring_tx, ring) = watch::channel(Arc::new(rings));
        let metrics = Arc::new(Metrics::new());
        let config = GroupConfig {
            capacity: 1 << 20,
            hot_fraction: 0.125,
            ttl: None,
            hot_ttl: None,
            negative_ttl: None,
            read_only: false,
            max_value: MAX_VALUE,
            loader: LoaderConfig::Demo {
                delay: Duration::ZERO,
            },
            ..GroupConfig::default()
        };
        let group = Arc::new(Group::new(
            "g",
            config,
            Arc::new(DemoLoader::new(Duration::ZERO)),
            Cluster {
                peers: Arc::new(unsigned_client()),
                ring: RingView::new(ring),
                copy_drops: CopyDrops::Fanout,
                clock: Arc::new(Clock::default()),
                successor_failover: true,
                remember_writes: Duration::ZERO,
            },
            metrics.group("g"),
        ));
        let state = Arc::new(PeerState {
            groups: Arc::new(Groups::new([Arc::clone(&group)], None)),
            metrics: Arc::clone(&metrics),
        });
        let router = match keyring {
            Some(keyring) => server::signed_router(
                state,
                keyring,
                ThisNode {
                    addr,
                    generation,
                    started: unix_now(),
                },
            ),
            None => server::router(state),
        };
        let versions = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let counted = Arc::clone(&versions);
        let router = router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let index = usize::from(request.version() == http::Version::HTTP_2);
                counted[index].fetch_add(1, Ordering::Relaxed);
                next.run(request)
            },
        ));
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        if http1_only {
            tokio::spawn(async move {
                tokio::pin!(stopped);
                loop {
                    let stream = tokio::select! {
                        () = &mut stopped => return,
                        accepted = listener.accept() => accepted.expect("accept").0,
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router.clone());
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            });
        } else {
            // axum's own server speaks HTTP/1.1 and HTTP/2, as nodes do.
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                    .expect("serve");
            });
        }
        Self {
            member,
            generation,
            metrics,
            group,
            versions,
            stop,
        }
    }

    /// Requests signed for this server.
    fn receiver(&self) -> Receiver {
        Receiver {
            addr: self.member.id,
            generation: self.generation,
        }
    }

    fn rejected(&self, reason: &str) -> u64 {
        let needle = format!("shoal_peer_rejected_total{{reason=\"{reason}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .map_or(0, |count| count.parse().expect("count"))
    }

    fn url(&self, key: &str) -> String {
        format!("http://{}{}", self.member.id, protocol::path("g", key))
    }
}

fn assert_unauthorized(result: Result<impl std::fmt::Debug, PeerError>, says: &str) {
    match result {
        Err(PeerError::Failed(message)) => {
            assert!(message.contains("401"), "{message}");
            assert!(message.contains("unauthorized"), "{message}");
            assert!(message.contains(says), "{message}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn signed_requests_pass() {
    let server = Server::start(Some(keys(&[1]))).await;
    let peers = client("127.0.0.7:8000", keys(&[1]));

    let fetched = peers
        .fetch(&server.member, Ask::Owner, "g", "a/b c")
        .await
        .expect("fetch");
    assert_eq!(fetched.value.bytes, Bytes::from("Value of a/b c"));

    let value = Value::new(Bytes::from_static(b"stored"), None);
    peers
        .store(&server.member, "g", "k", &value)
        .await
        .expect("store");
    let stored = server.group.get("k", Requester::Peer).await.expect("get");
    assert_eq!(stored.fresh.value.bytes, Bytes::from_static(b"stored"));

    peers
        .remove(&server.member, "g", "k", None)
        .await
        .expect("remove");
    assert_eq!(server.rejected("missing-signature"), 0);
    assert_eq!(server.rejected("bad-signature"), 0);
    // Peers speak HTTP/2 to each other.
    assert_eq!(server.requests(http::Version::HTTP_2), 3);
    assert_eq!(server.requests(http::Version::HTTP_11), 0);
    assert!(!peers.speaks_http1_only(&server.member));
}

#[tokio::test]
async fn a_peer_that_speaks_http1_only_is_asked_over_http1() {
    let old = Server::start_http1_only().await;
    let peers = unsigned_client();
    let fetched = peers
        .fetch(&old.member, Ask::Owner, "g", "k")
        .await
        .expect("fetch from an HTTP/1.1-only peer");
    assert_eq!(fetched.value.bytes, Bytes::from("Value of k"));
    assert!(peers.speaks_http1_only(&old.member));
    // Remembered: the next requests go over HTTP/1.1 at once.
    let value = Value::new(Bytes::from_static(b"stored"), None);
    peers
        .store(&old.member, "g", "k", &value)
        .await
        .expect("store at an HTTP/1.1-only peer");
    assert_eq!(old.requests(http::Version::HTTP_11), 2);
    assert_eq!(old.requests(http::Version::HTTP_2), 0);
}

#[tokio::test]
async fn an_unreachable_peer_is_not_taken_for_an_http1_one() {
    // Bound, then closed: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gone = Member::new(addr, "gone");
    let peers = unsigned_client();
    match peers.fetch(&gone, Ask::Owner, "g", "k").await {
        Err(PeerError::Unreachable { refused, .. }) => assert!(refused),
        other => panic!("expected an unreachable peer, got {other:?}"),
    }
    assert!(!peers.speaks_http1_only(&gone));
}

#[tokio::test]
async fn unsigned_requests_are_refused_only_where_a_keyring_is_set() {
    let signed = Server::start(Some(keys(&[1]))).await;
    let peers = unsigned_client();
    assert_unauthorized(
        peers.fetch(&signed.member, Ask::Owner, "g", "k").await,
        "accepts only signed peer requests",
    );
    let value = Value::new(Bytes::from_static(b"v"), None);
    assert_unauthorized(
        peers.store(&signed.member, "g", "k", &value).await,
        "no x-shoal-signature header",
    );
    assert_unauthorized(peers.remove(&signed.member, "g", "k", None).await, "signed");
    assert_eq!(signed.rejected("missing-signature"), 3);
    // Unknown paths too are refused before anything else.
    let response = reqwest::get(format!("http://{}/elsewhere", signed.member.id))
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-shoal-error"], "unauthorized");
    assert_eq!(signed.rejected("missing-signature"), 4);

    let open = Server::start(None).await;
    peers
        .fetch(&open.member, Ask::Owner, "g", "k")
        .await
        .expect("fetch");
    // A signing client is welcome on a node without a keyring.
    client("127.0.0.7:8000", keys(&[1]))
        .fetch(&open.member, Ask::Owner, "g", "k")
        .await
        .expect("fetch");
}

#[tokio::test]
async fn another_keyring_is_refused_until_the_keys_overlap() {
    let (server_keys_tx, server_keys) = watch::channel(Arc::new(keyring(&[1])));
    let server = Server::start(Some(server_keys)).await;
    let (client_keys_tx, client_keys) = watch::channel(Arc::new(keyring(&[2])));
    let peers = client("127.0.0.7:8000", client_keys);

    assert_unauthorized(
        peers.fetch(&server.member, Ask::Owner, "g", "k").await,
        "the request's signature matches no key in this node's keyring",
    );
    assert_eq!(server.rejected("bad-signature"), 1);

    // Rotation: the server learns key 2 (second), the client still signs with it.
    server_keys_tx.send_replace(Arc::new(keyring(&[1, 2])));
    peers
        .fetch(&server.member, Ask::Owner, "g", "k")
        .await
        .expect("accepted");
    // The client moves to key 1 first; the server takes both.
    client_keys_tx.send_replace(Arc::new(keyring(&[1, 2])));
    peers
        .fetch(&server.member, Ask::Owner, "g", "k")
        .await
        .expect("accepted");
    // Key 2 retired on the server: a client still signing with it is refused.
    server_keys_tx.send_replace(Arc::new(keyring(&[1])));
    client_keys_tx.send_replace(Arc::new(keyring(&[2])));
    assert_unauthorized(
        peers.fetch(&server.member, Ask::Owner, "g", "k").await,
        "no key",
    );
    assert_eq!(server.rejected("bad-signature"), 2);
}

#[tokio::test]
async fn identical_concurrent_gets_from_different_nodes_all_pass() {
    let server = Server::start(Some(keys(&[1]))).await;
    let senders = ["127.0.0.7:8000", "127.0.0.8:8000", "127.0.0.9:8000"];
    let clients: Vec<HttpPeers> = senders.iter().map(|s| client(s, keys(&[1]))).collect();
    let owner = &server.member;
    let fetches = clients
        .iter()
        .flat_map(|peers| (0..10).map(move |_| peers.fetch(owner, Ask::Owner, "g", "same")));
    for result in futures::future::join_all(fetches).await {
        assert_eq!(
            result.expect("every fetch passes").value.bytes,
            Bytes::from("Value of same")
        );
    }
    assert_eq!(server.rejected("replayed-nonce"), 0);
}

/// Signs a raw request for `server` the way [`HttpPeers`] does.
fn signed_request(
    http: &reqwest::Client,
    server: &Server,
    method: reqwest::Method,
    key: &str,
    body: &'static [u8],
    now: u64,
) -> reqwest::Request {
    signed_request_for(http, server, server.receiver(), method, key, body, now)
}

/// Signs a raw request to `server` for `receiver`.
fn signed_request_for(
    http: &reqwest::Client,
    server: &Server,
    receiver: Receiver,
    method: reqwest::Method,
    key: &str,
    body: &'static [u8],
    now: u64,
) -> reqwest::Request {
    let mut request = http
        .request(method, server.url(key))
        .body(body)
        .build()
        .expect("request");
    let path = request.url().path().to_owned();
    let mut headers = http::HeaderMap::new();
    Signer::new("127.0.0.7:8000").expect("sender").sign(
        &keyring(&[1]),
        &RequestParts {
            method: request.method().as_str(),
            path_and_query: &path,
            content_type: None,
            body,
        },
        receiver,
        now,
        &mut headers,
    );
    request.headers_mut().extend(headers);
    request
}

#[tokio::test]
async fn replays_skew_and_tampering_are_refused() {
    let server = Server::start(Some(keys(&[1]))).await;
    let http = reqwest::Client::new();

    let request = signed_request(&http, &server, reqwest::Method::PUT, "k", b"v1", unix_now());
    let replay = request.try_clone().expect("clonable");
    let response = http.execute(request).await.expect("sent");
    assert_eq!(response.status(), 204);
    let response = http.execute(replay).await.expect("sent");
    assert_eq!(response.status(), 401);
    let body = response.text().await.expect("body");
    assert!(body.contains("replay"), "{body}");
    assert_eq!(server.rejected("replayed-nonce"), 1);

    let stale = unix_now() - 120;
    let request = signed_request(&http, &server, reqwest::Method::GET, "k", b"", stale);
    let response = http.execute(request).await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(server.rejected("clock-skew"), 1);

    // Another body under the same signature.
    let mut request = signed_request(&http, &server, reqwest::Method::PUT, "k", b"v2", unix_now());
    *request.body_mut() = Some(reqwest::Body::from("forged"));
    let response = http.execute(request).await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(server.rejected("body-mismatch"), 1);
    // Signed for one key, sent for another.
    let mut request = signed_request(
        &http,
        &server,
        reqwest::Method::DELETE,
        "k",
        b"",
        unix_now(),
    );
    *request.url_mut() = server.url("other").parse().expect("url");
    let response = http.execute(request).await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(server.rejected("bad-signature"), 1);

    // Every header present but garbled.
    let mut request = signed_request(&http, &server, reqwest::Method::GET, "k", b"", unix_now());
    for name in HEADERS {
        request
            .headers_mut()
            .insert(name, http::HeaderValue::from_static("?"));
    }
    let response = http.execute(request).await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(server.rejected("bad-signature"), 2);

    // The value stored by the one genuine PUT is intact.
    let stored = server.group.get("k", Requester::Peer).await.expect("get");
    assert_eq!(stored.fresh.value.bytes, Bytes::from_static(b"v1"));
}

#[tokio::test]
async fn signed_bodies_are_read_within_the_groups_max_value() {
    let server = Server::start(Some(keys(&[1]))).await;
    let peers = client("127.0.0.7:8000", keys(&[1]));
    let at_limit = Value::new(Bytes::from(vec![b'x'; MAX_VALUE as usize]), None);
    peers
        .store(&server.member, "g", "k", &at_limit)
        .await
        .expect("a value at max_value is stored");
    let too_large = Value::new(Bytes::from(vec![b'x'; MAX_VALUE as usize + 1]), None);
    match peers.store(&server.member, "g", "k", &too_large).await {
        Err(PeerError::ValueTooLarge(message)) => {
            assert!(message.contains("max_value"), "{message}")
        }
        other => panic!("expected the owner's value-too-large, got {other:?}"),
    }
}

fn handed(key: &str, text: &str, version: u64) -> HandedOff {
    HandedOff {
        key: key.to_owned(),
        value: Value::new(Bytes::from(text.to_owned()), None),
        ttl: Some(Duration::from_secs(60)),
        version: Version(version),
    }
}

#[tokio::test]
async fn peeks_and_handoffs_are_signed_like_every_peer_request() {
    let server = Server::start(Some(keys(&[1]))).await;
    let signed = client("127.0.0.7:8000", keys(&[1]));
    let unsigned = unsigned_client();

    assert_unauthorized(unsigned.peek(&server.member, "g", "k").await, "signed");
    assert_unauthorized(
        unsigned
            .hand_off(&server.member, "g", &[handed("k", "v", 1)])
            .await,
        "signed",
    );
    assert_unauthorized(
        client("127.0.0.7:8000", keys(&[9]))
            .peek(&server.member, "g", "k")
            .await,
        "no key",
    );
    assert_eq!(server.rejected("missing-signature"), 2);
    assert_eq!(
        server.group.stats().handoff_entries_received,
        0,
        "a refused handoff stored nothing"
    );

    // Signed: a peek misses (and does not load), a handoff is taken, and
    // then the peek finds it.
    assert_eq!(
        signed
            .peek(&server.member, "g", "k")
            .await
            .expect("peek")
            .map(|v| v.value),
        None
    );
    assert_eq!(server.group.stats().local_loads, 0, "a peek never loads");
    let receipt = signed
        .hand_off(&server.member, "g", &[handed("k", "handed", 5)])
        .await
        .expect("handoff");
    assert_eq!((receipt.accepted, receipt.refused), (1, 0));
    let copy = signed
        .peek(&server.member, "g", "k")
        .await
        .expect("peek")
        .expect("a hit");
    assert_eq!(copy.value.bytes, Bytes::from_static(b"handed"));
    assert_eq!(copy.version, Version(5));
    assert!(copy.ttl.is_some_and(|ttl| ttl <= Duration::from_secs(60)));

    // An acknowledged DELETE is not undone by a late copy of the old value.
    let deleted = signed
        .remove(&server.member, "g", "k", None)
        .await
        .expect("remove");
    assert!(deleted > Version(5));
    let late = signed
        .hand_off(&server.member, "g", &[handed("k", "handed", 5)])
        .await
        .expect("handoff");
    assert_eq!((late.accepted, late.refused), (0, 1));
    let fetched = signed
        .fetch(&server.member, Ask::Owner, "g", "k")
        .await
        .expect("fetch");
    assert_eq!(fetched.value.bytes, Bytes::from_static(b"Value of k"));
    assert!(
        fetched.version > deleted,
        "a load after the DELETE is newer"
    );
}

#[tokio::test]
async fn a_malformed_handoff_is_refused_and_counted() {
    let server = Server::start(None).await;
    let response = common_client()
        .post(format!(
            "http://{}{}",
            server.member.id,
            protocol::handoff_path("g")
        ))
        .body(vec![0xffu8; 16])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-shoal-error"], "bad-request");
    assert_eq!(server.rejected("malformed"), 1);
    let wrong = common_client()
        .get(format!("{}?as=everything", server.url("k")))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 400);
    assert_eq!(server.rejected("malformed"), 2);
    assert_eq!(server.group.stats().local_loads, 0);
}

fn common_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_request_signed_for_one_node_is_refused_at_another_and_after_a_restart() {
    let keyring = keys(&[1]);
    let first = Server::start(Some(keyring.clone())).await;
    let second = Server::start(Some(keyring.clone())).await;
    let http = reqwest::Client::new();

    // Captured on its way to `first`, replayed to `second`.
    let request = signed_request(&http, &first, reqwest::Method::PUT, "k", b"v", unix_now());
    let mut replay = request.try_clone().expect("clonable");
    *replay.url_mut() = second.url("k").parse().expect("url");
    assert_eq!(http.execute(request).await.expect("sent").status(), 204);
    let response = http.execute(replay).await.expect("sent");
    assert_eq!(response.status(), 401);
    let body = response.text().await.expect("body");
    assert!(body.contains("not this one"), "{body}");
    assert_eq!(second.rejected("wrong-receiver"), 1);
    assert!(second.group.peek("k").is_none(), "nothing stored");

    // `first` restarts on the same address, as a new generation: a request
    // signed for its earlier run is refused, though its nonce is unknown
    // to the new process.
    let addr = first.member.id;
    let old = signed_request(&http, &first, reqwest::Method::DELETE, "k", b"", unix_now());
    drop(first);
    let listener = poll_bind(addr).await;
    let restarted = Server::serve(listener, Some(keyring), 2).await;
    let response = http.execute(old).await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(restarted.rejected("earlier-run"), 1);
    // Signed for the new generation, it passes.
    let fresh = signed_request(
        &http,
        &restarted,
        reqwest::Method::DELETE,
        "k",
        b"",
        unix_now(),
    );
    assert_eq!(http.execute(fresh).await.expect("sent").status(), 204);
}

/// Binds `addr` again once the server that held it has let it go.
async fn poll_bind(addr: std::net::SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("cannot bind {addr} again: {error}"),
        }
    }
}
