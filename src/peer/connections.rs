//! One HTTP/2 connection to each peer, straight on the `h2` crate.
//!
//! A request is opened on the connection's shared stream table by the task
//! that asks, and its answer wakes that task directly. hyper's pooled
//! client, which the peer path used before, adds a pool checkout, a channel
//! to its connection task, two oneshots and a spawned task to every
//! request; on a peer hit that was the largest share of the asking node's
//! CPU (BENCHMARKS.md, "Scale (issue 11)", the profile of the peer path).
//!
//! Each connection has a task that drives it and closes it once it has been
//! idle for the idle timeout, which the node sets below its peers'
//! `limits.idle_timeout`, so that it does not send on a connection the peer
//! is closing. A request is sent once more, on a new connection, when the
//! one it went out on turns out to be gone before any answer came (a peer
//! that restarted: the connection in the table is from its last run), or
//! when the peer refused it unprocessed (a stream past its GOAWAY, or reset
//! with REFUSED_STREAM).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::uri::Authority;
use http::{HeaderMap, Request, StatusCode};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::cork::{Corked, WriteAfterPoll, cork};

/// The windows a connection opens with, for values up to a group's
/// `max_value` (hyper's defaults, which the peer path had before): large
/// enough that a value on a cluster's network is not held up by
/// WINDOW_UPDATEs.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// A peer's whole answer: status, headers and body, read in full.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// No connection could be made (`refused`: nothing listens there).
    Connect { refused: bool, detail: String },
    /// Connected, but the exchange broke off: also what asking a peer that
    /// speaks HTTP/1.1 only looks like.
    Broken(String),
}

impl ExchangeError {
    fn broken(error: &h2::Error) -> Self {
        Self::Broken(format!(
            "HTTP/2 exchange with the peer broke off: {}",
            crate::error_chain::with_causes(error)
        ))
    }
}

/// The open connections, by peer address.
pub struct Http2Connections {
    open: Arc<Mutex<HashMap<SocketAddr, Open>>>,
    /// One dial at a time per peer, so that a burst of requests to a peer
    /// with no connection opens one, not one each.
    dialing: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    next_id: AtomicU64,
}

/// An open connection as the table holds it.
struct Open {
    /// Tells this connection from a later one to the same peer.
    id: u64,
    send: SendRequest<Bytes>,
    /// The peer's address as a request's authority, made once: not
    /// formatted and parsed again for every request.
    authority: Authority,
    last_used: Instant,
}

/// How a request fared, for deciding whether to send it again.
enum Attempt {
    Done(Result<Reply, ExchangeError>),
    /// The peer refused the request before processing it.
    Unprocessed(ExchangeError),
    /// The connection failed before any answer came.
    ConnectionLost(ExchangeError),
}

/// A connection to send on: `reused` if it was open already (so it may be
/// a dead one, from a peer's earlier run).
struct Connection {
    id: u64,
    send: SendRequest<Bytes>,
    authority: Authority,
    reused: bool,
}

impl Http2Connections {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            open: Arc::default(),
            dialing: Mutex::default(),
            connect_timeout,
            idle_timeout,
            next_id: AtomicU64::new(0),
        }
    }

    /// Sends the request `head` makes for the peer's authority, with
    /// `body`, to `peer` and reads its whole answer. A request sent again is
    /// made again, so that a signed one is signed anew (a peer may have seen
    /// the first one's nonce).
    pub async fn exchange<E: From<ExchangeError>>(
        &self,
        peer: SocketAddr,
        mut head: impl FnMut(&Authority) -> Result<Request<()>, E>,
        body: Bytes,
    ) -> Result<Reply, E> {
        let connection = self.connection(peer).await?;
        let (id, reused) = (connection.id, connection.reused);
        let request = head(&connection.authority)?;
        match Self::attempt(connection.send, request, body.clone()).await {
            Attempt::Done(result) => Ok(result?),
            Attempt::ConnectionLost(error) if !reused => Err(error.into()),
            Attempt::Unprocessed(error) | Attempt::ConnectionLost(error) => {
                tracing::debug!(%peer, ?error, "peer connection failed before an answer; sending again on a new one");
                self.forget(peer, id);
                let connection = self.connection(peer).await?;
                let request = head(&connection.authority)?;
                match Self::attempt(connection.send, request, body).await {
                    Attempt::Done(result) => Ok(result?),
                    Attempt::Unprocessed(error) | Attempt::ConnectionLost(error) => {
                        Err(error.into())
                    }
                }
            }
        }
    }

    /// Whether a connection to `peer` is open (for tests).
    #[cfg(test)]
    pub fn is_open(&self, peer: SocketAddr) -> bool {
        lock(&self.open).contains_key(&peer)
    }

    async fn attempt(send: SendRequest<Bytes>, request: Request<()>, body: Bytes) -> Attempt {
        let mut send = match send.ready().await {
            Ok(send) => send,
            Err(error) => return Attempt::ConnectionLost(ExchangeError::broken(&error)),
        };
        let end_of_stream = body.is_empty();
        let (response, mut stream) = match send.send_request(request, end_of_stream) {
            Ok(sent) => sent,
            Err(error) => return Attempt::ConnectionLost(ExchangeError::broken(&error)),
        };
        if !end_of_stream {
            // The body is in memory already: h2 holds it until the peer's
            // window takes it.
            if let Err(error) = stream.send_data(body, true) {
                return Attempt::Done(Err(ExchangeError::broken(&error)));
            }
        }
        let response = match response.await {
            Ok(response) => response,
            Err(error) if was_unprocessed(&error) => {
                return Attempt::Unprocessed(ExchangeError::broken(&error));
            }
            Err(error) if error.is_io() || error.is_go_away() => {
                return Attempt::ConnectionLost(ExchangeError::broken(&error));
            }
            Err(error) => return Attempt::Done(Err(ExchangeError::broken(&error))),
        };
        let (parts, recv) = response.into_parts();
        Attempt::Done(read_body(recv).await.map(|body| Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }))
    }

    /// The open connection to `peer`, or a new one.
    async fn connection(&self, peer: SocketAddr) -> Result<Connection, ExchangeError> {
        if let Some(open) = self.checkout(peer) {
            return Ok(open);
        }
        let dial_lock = Arc::clone(lock(&self.dialing).entry(peer).or_default());
        let dialed = {
            let _dialing = dial_lock.lock().await;
            match self.checkout(peer) {
                Some(open) => Ok(open),
                None => self.dial(peer).await,
            }
        };
        {
            let mut dialing = lock(&self.dialing);
            // Ours and the table's: nobody else waits to dial this peer.
            if Arc::strong_count(&dial_lock) <= 2 {
                dialing.remove(&peer);
            }
        }
        dialed
    }

    fn checkout(&self, peer: SocketAddr) -> Option<Connection> {
        let mut open = lock(&self.open);
        let connection = open.get_mut(&peer)?;
        connection.last_used = Instant::now();
        Some(Connection {
            id: connection.id,
            send: connection.send.clone(),
            authority: connection.authority.clone(),
            reused: true,
        })
    }

    /// Drops `peer`'s connection `id` from the table (its streams in flight
    /// go on; the connection closes after them).
    fn forget(&self, peer: SocketAddr, id: u64) {
        forget(&self.open, peer, id);
    }

    async fn dial(&self, peer: SocketAddr) -> Result<Connection, ExchangeError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(peer)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => {
                return Err(ExchangeError::Connect {
                    refused: error.kind() == std::io::ErrorKind::ConnectionRefused,
                    detail: format!("cannot connect to peer {peer}: {error}"),
                });
            }
            Err(_) => {
                return Err(ExchangeError::Connect {
                    refused: false,
                    detail: format!(
                        "cannot connect to peer {peer}: no answer within {:?}",
                        self.connect_timeout
                    ),
                });
            }
        };
        // Requests are small and answered at once: do not hold them back.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY on a peer connection");
        }
        // The requests opened in one poll go out in one write (see
        // `super::cork`).
        let (io, uncork) = cork(tcp, true);
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| ExchangeError::broken(&e))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let authority = authority_of(peer)?;
        lock(&self.open).insert(
            peer,
            Open {
                id,
                send: send.clone(),
                authority: authority.clone(),
                last_used: Instant::now(),
            },
        );
        tokio::spawn(drive(
            WriteAfterPoll::new(connection, uncork),
            Arc::downgrade(&self.open),
            peer,
            id,
            self.idle_timeout,
        ));
        Ok(Connection {
            id,
            send,
            authority,
            reused: false,
        })
    }
}

/// Drives one connection until it ends, or until it has been idle for
/// `idle_timeout`: then it leaves the table, and closes once its streams in
/// flight are answered.
async fn drive(
    connection: WriteAfterPoll<h2::client::Connection<Corked<TcpStream>, Bytes>, TcpStream>,
    open: Weak<Mutex<HashMap<SocketAddr, Open>>>,
    peer: SocketAddr,
    id: u64,
    idle_timeout: Duration,
) {
    // Streams opened together go out in one write.
    let mut connection = super::coalesce::YieldFirst::new(connection);
    let idle_check = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle_check);
    let mut listed = true;
    loop {
        tokio::select! {
            ended = &mut connection => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "peer connection ended");
                }
                break;
            }
            () = &mut idle_check, if listed => {
                match idle_since(&open, peer, id, idle_timeout) {
                    Some(next_check) => idle_check.as_mut().reset(next_check),
                    None => listed = false,
                }
            }
        }
    }
    if let Some(open) = open.upgrade() {
        forget(&open, peer, id);
    }
}

/// When to look again whether connection `id` to `peer` is idle, or `None`
/// if it has been idle for `idle_timeout` (and is now out of the table) or
/// is not in it any more.
fn idle_since(
    open: &Weak<Mutex<HashMap<SocketAddr, Open>>>,
    peer: SocketAddr,
    id: u64,
    idle_timeout: Duration,
) -> Option<Instant> {
    let open = open.upgrade()?;
    let mut open = lock(&open);
    let connection = open.get(&peer).filter(|c| c.id == id)?;
    let next_check = connection.last_used + idle_timeout;
    if next_check > Instant::now() {
        return Some(next_check);
    }
    // Dropping the table's handle lets the connection finish: h2 closes it
    // once no handle and no stream is left.
    open.remove(&peer);
    None
}

fn forget(open: &Mutex<HashMap<SocketAddr, Open>>, peer: SocketAddr, id: u64) {
    let mut open = lock(open);
    if open.get(&peer).is_some_and(|c| c.id == id) {
        open.remove(&peer);
    }
}

/// Whether the peer refused the stream without processing it: reset with
/// REFUSED_STREAM, or past the last stream of its graceful GOAWAY (RFC 9113,
/// section 8.7): such a request may be sent again.
fn was_unprocessed(error: &h2::Error) -> bool {
    error.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR))
}

/// The whole body of an answer. A body that came in one DATA frame is
/// handed on as h2 read it, without a copy.
async fn read_body(mut recv: h2::RecvStream) -> Result<Bytes, ExchangeError> {
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| ExchangeError::broken(&e))?;
        // Read: the peer may send as much again.
        recv.flow_control()
            .release_capacity(chunk.len())
            .map_err(|e| ExchangeError::broken(&e))?;
        match single.take() {
            None if joined.is_empty() => single = Some(chunk),
            Some(head) => {
                joined.reserve(head.len() + chunk.len());
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&chunk);
            }
            None => joined.extend_from_slice(&chunk),
        }
    }
    Ok(single.unwrap_or_else(|| joined.freeze()))
}

/// `peer` as the authority of a request's URI.
pub fn authority_of(peer: SocketAddr) -> Result<Authority, ExchangeError> {
    Authority::try_from(peer.to_string())
        .map_err(|e| ExchangeError::Broken(format!("cannot address peer {peer}: {e}")))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http::Method;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;

    /// A peer on a real socket that answers every request `200 ok` over
    /// HTTP/1.1 or HTTP/2, and counts the connections it accepts.
    struct Peer {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        serving: Arc<Mutex<Vec<JoinHandle<()>>>>,
        accepting: JoinHandle<()>,
    }

    impl Peer {
        async fn start(addr: SocketAddr) -> Self {
            let listener = TcpListener::bind(addr).await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let accepted = Arc::new(AtomicUsize::new(0));
            let serving: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
            let accepting = tokio::spawn({
                let accepted = Arc::clone(&accepted);
                let serving = Arc::clone(&serving);
                async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let service = hyper::service::service_fn(|_request| async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"ok")),
                            ))
                        });
                        let connection = tokio::spawn(async move {
                            let builder = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            );
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                        lock(&serving).push(connection);
                    }
                }
            });
            Self {
                addr,
                accepted,
                serving,
                accepting,
            }
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Whether every connection it accepted has ended.
        fn all_closed(&self) -> bool {
            lock(&self.serving).iter().all(JoinHandle::is_finished)
        }

        /// Stops at once, as a killed process would: its connections end
        /// without a GOAWAY.
        async fn kill(self) {
            self.accepting.abort();
            let _ = self.accepting.await;
            let serving = std::mem::take(&mut *lock(&self.serving));
            for connection in serving {
                connection.abort();
                let _ = connection.await;
            }
        }
    }

    fn get(peer: SocketAddr) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = format!("http://{peer}/").parse().expect("uri");
        request
    }

    async fn assert_ok(connections: &Http2Connections, peer: SocketAddr) {
        let reply = connections
            .exchange(
                peer,
                |_: &Authority| Ok::<_, ExchangeError>(get(peer)),
                Bytes::new(),
            )
            .await
            .expect("exchange");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, Bytes::from_static(b"ok"));
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "not within 10 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_to_a_new_peer_shares_one_connection() {
        let peer = Peer::start("127.0.0.1:0".parse().expect("addr")).await;
        let connections = Arc::new(Http2Connections::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ));
        let burst: Vec<_> = (0..32)
            .map(|_| {
                let connections = Arc::clone(&connections);
                let addr = peer.addr;
                tokio::spawn(async move { assert_ok(&connections, addr).await })
            })
            .collect();
        for request in burst {
            request.await.expect("request");
        }
        assert_eq!(peer.accepted(), 1);
        assert!(connections.is_open(peer.addr));
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_a_later_request_opens_another() {
        let peer = Peer::start("127.0.0.1:0".parse().expect("addr")).await;
        let connections = Http2Connections::new(Duration::from_secs(1), Duration::from_millis(200));
        assert_ok(&connections, peer.addr).await;
        assert_ok(&connections, peer.addr).await;
        assert_eq!(peer.accepted(), 1);
        eventually("the idle connection leaves the table", || {
            !connections.is_open(peer.addr)
        })
        .await;
        eventually("the peer sees the connection closed", || peer.all_closed()).await;
        assert_ok(&connections, peer.addr).await;
        assert_eq!(peer.accepted(), 2);
    }

    #[tokio::test]
    async fn a_restarted_peer_is_asked_again_on_a_new_connection() {
        let mut peer = Peer::start("127.0.0.1:0".parse().expect("addr")).await;
        let addr = peer.addr;
        let connections = Http2Connections::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_ok(&connections, addr).await;
        for restart in 0..10 {
            // Killed and started again on the same address, and asked at
            // once: the table still holds the dead run's connection.
            peer.kill().await;
            peer = Peer::start(addr).await;
            assert_ok(&connections, addr).await;
            assert_eq!(peer.accepted(), 1, "restart {restart}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_a_refused_connection() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let connections = Http2Connections::new(Duration::from_secs(1), Duration::from_secs(60));
        match connections
            .exchange(
                addr,
                |_: &Authority| Ok::<_, ExchangeError>(get(addr)),
                Bytes::new(),
            )
            .await
        {
            Err(ExchangeError::Connect { refused, .. }) => assert!(refused),
            other => panic!(
                "expected a refused connection, got {:?}",
                other.map(|r| r.status)
            ),
        }
        assert!(!connections.is_open(addr));
    }

    #[tokio::test]
    async fn a_body_of_many_frames_arrives_whole() {
        // Bigger than a frame (16 KiB) and than the default window (64 KiB).
        let value: Bytes = (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = value.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let served = served.clone();
                    async move {
                        use http_body_util::BodyExt;
                        // Echoes the body it was sent, after checking it.
                        let sent = request.into_body().collect().await?.to_bytes();
                        assert_eq!(sent, served);
                        Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(sent)))
                    }
                });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        let connections = Http2Connections::new(Duration::from_secs(1), Duration::from_secs(60));
        let put = |_: &Authority| {
            let mut request = get(addr);
            *request.method_mut() = Method::PUT;
            Ok::<_, ExchangeError>(request)
        };
        let reply = connections
            .exchange(addr, put, value.clone())
            .await
            .expect("exchange");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, value);
    }
}
