//! Serving one TCP port under `limits:`: the accept loop, the connection
//! cap, and each connection's watchdog.
//!
//! axum's own `serve` bounds nothing, so a client could hold a connection
//! forever by sending nothing, a header a byte at a time, or a body that
//! never ends, and enough of them would use up the process's file
//! descriptors (and with them the admin port's health checks). Here:
//!
//! - a port holds at most its `max_connections`; one more is answered 503
//!   (JSON, `too-many-connections`) and closed at once. Each port has its
//!   own cap, so the admin port answers while the others are full;
//! - a connection must send a whole request head within
//!   `header_read_timeout` of its accept, or of its first byte after a
//!   response, and hyper refuses a head over `max_header_bytes` (431);
//! - a keep-alive connection quiet for `idle_timeout` is closed (between
//!   requests, so nothing is cut);
//! - every request body is read under the deadline of [`DeadlineBody`].
//!
//! The watchdog samples byte counters on a tick rather than timing every
//! read, so the hot path pays two relaxed atomic adds per I/O call.
//! Refusals are counted in `shoal_connections_rejected_total{port,reason}`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::peer::coalesce::YieldFirst;
use crate::peer::cork::{WriteAfterPoll, cork};
use crate::wire::DeadlineBody;

/// The shortest watchdog tick: below it the checks cost more than they
/// save.
const MIN_TICK: Duration = Duration::from_millis(50);
/// How long the accept loop pauses after an error such as EMFILE, so that
/// it does not spin while descriptors are short.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How often a run of the same trouble is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One port to serve.
pub(super) struct Port {
    /// `service`, `peer` or `admin`: the metric and log label.
    pub name: &'static str,
    pub listener: TcpListener,
    pub router: Router,
    /// The most connections it holds at once.
    pub max_connections: usize,
    /// Whether the port also speaks HTTP/2 (cleartext, prior knowledge):
    /// the peer port does, so that a node's requests to another share one
    /// multiplexed connection. HTTP/1.1 is always understood.
    pub http2: bool,
}

/// The most requests one HTTP/2 connection may have in flight at once: as
/// many as a node's client sends to one peer under load, with room.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Serves `port` until `stop` fires, then closes every connection between
/// requests and returns once the last one is done.
pub(super) async fn serve(
    port: Port,
    limits: Arc<LimitsConfig>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let Port {
        name,
        listener,
        router,
        max_connections,
        http2,
    } = port;
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let http = Arc::new(http_builder(&limits, http2));
    let open = metrics.connections_open(name);
    let mut full_logged = false;
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: the connections already open go on.
                if last_accept_error.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    warn!(port = name, %error, "cannot accept a connection");
                    last_accept_error = Some(Instant::now());
                }
                metrics.connection_rejected(name, "accept-error");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.connection_rejected(name, "connection-limit");
            if !full_logged {
                warn!(
                    port = name,
                    max_connections, "connection limit reached; refusing new connections with 503"
                );
                full_logged = true;
            }
            refuse_over_limit(&stream, name, max_connections);
            continue;
        };
        full_logged = false;
        if let Err(error) = stream.set_nodelay(true) {
            debug!(port = name, %error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            port: name,
            http: Arc::clone(&http),
            coalesce: http2,
            router: router.clone(),
            limits: Arc::clone(&limits),
            metrics: Arc::clone(&metrics),
            stop: stop.clone(),
        };
        let open = open.clone();
        open.inc();
        connections.spawn(async move {
            connection.run(stream).await;
            open.dec();
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// How a port speaks HTTP: HTTP/1.1 keep-alive, and HTTP/2 too where
/// `http2` (told apart by the connection's first bytes).
fn http_builder(limits: &LimitsConfig, http2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes)
        // The watchdog times heads (hyper's own timer would also cut the
        // quiet between requests at the head timeout).
        .header_read_timeout(None)
        .keep_alive(true);
    if !http2 {
        return builder.http1_only();
    }
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Values up to a group's max_value arrive in PUTs and handoffs:
        // let the window grow with the connection's bandwidth-delay product.
        .adaptive_window(true);
    builder
}

/// Answers a connection past the cap with a JSON 503 if the socket takes
/// it at once (never waiting on a client that does not read), and closes it.
fn refuse_over_limit(stream: &TcpStream, port: &str, max_connections: usize) {
    let body = serde_json::json!({
        "error": format!(
            "this node's {port} port holds its limit of {max_connections} connections \
             (limits.max_connections.{port}); retry shortly, or on another node"
        ),
        "group": null,
        "key": null,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         x-shoal-error: too-many-connections\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// What one connection needs.
struct Connection {
    port: &'static str,
    http: Arc<auto::Builder<TokioExecutor>>,
    /// Whether to let the tasks ready to run go first before each poll of
    /// the connection (HTTP/2 ports: their answers then share a write; see
    /// `peer::coalesce`).
    coalesce: bool,
    router: Router,
    limits: Arc<LimitsConfig>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let activity = Arc::new(Activity::default());
        // On HTTP/2 ports the frames of one poll share a write (see
        // `peer::cork`).
        let (io, uncork) = cork(
            Counted {
                inner: stream,
                activity: Arc::clone(&activity),
            },
            self.coalesce,
        );
        let io = TokioIo::new(io);
        let service = {
            let activity = Arc::clone(&activity);
            let router = self.router.clone();
            let limits = Arc::clone(&self.limits);
            let metrics = Arc::clone(&self.metrics);
            let port = self.port;
            hyper::service::service_fn(move |request: Request<Incoming>| {
                if request.version() == http::Version::HTTP_2 {
                    activity.multiplexed.store(true, Ordering::Relaxed);
                }
                let in_flight = InFlight::start(Arc::clone(&activity));
                let request = request.map(|body| {
                    // A GET's empty body is never read: no deadline to keep.
                    if body.is_end_stream() {
                        return Body::new(body);
                    }
                    let metrics = Arc::clone(&metrics);
                    Body::new(DeadlineBody::new(
                        body,
                        Arc::clone(&limits),
                        Box::new(move || metrics.connection_rejected(port, "body-timeout")),
                    ))
                });
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await;
                    drop(in_flight);
                    response
                }
            })
        };
        let connection = self.http.serve_connection(io, service);
        tokio::pin!(connection);
        let mut connection = YieldFirst::new(WriteAfterPoll::new(connection, uncork));
        connection.set_enabled(self.coalesce);
        let mut watchdog = Watchdog::new(&self.limits);
        let mut tick = tokio::time::interval(watchdog.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        self.count_error(&*error);
                    }
                    return;
                }
                () = self.stop.cancelled(), if !closing => {
                    connection.inner().inner().as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tick.tick() => match watchdog.check(&activity, Instant::now()) {
                    Verdict::Fine => {}
                    Verdict::Idle => if !closing {
                        connection.inner().inner().as_mut().graceful_shutdown();
                        closing = true;
                    },
                    Verdict::HeadTooSlow => {
                        self.metrics.connection_rejected(self.port, "header-timeout");
                        debug!(port = self.port, "closed a connection that did not send a request head in time");
                        return;
                    }
                },
            }
        }
    }

    fn count_error(&self, error: &(dyn std::error::Error + Send + Sync + 'static)) {
        let Some(error) = error.downcast_ref::<hyper::Error>() else {
            // An I/O error of the connection: the client went away.
            return;
        };
        let reason = if error.is_parse_too_large() {
            "header-too-large"
        } else if error.is_parse() {
            "malformed-request"
        } else {
            // A client going away mid-request is not a refusal.
            return;
        };
        self.metrics.connection_rejected(self.port, reason);
        debug!(port = self.port, %error, "refused a malformed request");
    }
}

/// What a connection has done, as its watchdog samples it.
#[derive(Debug, Default)]
struct Activity {
    read: AtomicU64,
    written: AtomicU64,
    /// Requests whose response is not yet built.
    in_flight: AtomicU64,
    /// Responses built so far.
    answered: AtomicU64,
    /// Whether a request ever reached the router.
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2: control frames (window
    /// updates, pings, settings) then arrive between requests, and a slow
    /// head is bounded by hyper's frame and header-list limits instead.
    multiplexed: AtomicBool,
}

/// Marks a request in flight until dropped (also when the client goes away
/// and hyper drops the response future).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the watchdog decided.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// Quiet between requests for `idle_timeout`: close it gently.
    Idle,
    /// A request head has been arriving for `header_read_timeout`, or the
    /// connection sent nothing at all for that long: cut it.
    HeadTooSlow,
}

/// Decides, from samples of [`Activity`], when a connection has been quiet
/// too long or is sending its head too slowly. Pure but for the samples.
#[derive(Debug)]
struct Watchdog {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    tick: Duration,
    accepted: Instant,
    seen_read: u64,
    seen_written: u64,
    seen_answered: u64,
    /// Since when nothing has moved either way.
    quiet_since: Instant,
    /// Since when bytes of a head have been arriving with no request in
    /// flight.
    head_since: Option<Instant>,
}

impl Watchdog {
    fn new(limits: &LimitsConfig) -> Self {
        let now = Instant::now();
        let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4).max(MIN_TICK);
        Self {
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            tick,
            accepted: now,
            seen_read: 0,
            seen_written: 0,
            seen_answered: 0,
            quiet_since: now,
            head_since: None,
        }
    }

    fn check(&mut self, activity: &Activity, now: Instant) -> Verdict {
        let read = activity.read.load(Ordering::Relaxed);
        let written = activity.written.load(Ordering::Relaxed);
        let answered = activity.answered.load(Ordering::Relaxed);
        let in_flight = activity.in_flight.load(Ordering::Relaxed);
        let read_more = read != self.seen_read;
        if read_more || written != self.seen_written {
            self.quiet_since = now;
        }
        if in_flight > 0 || answered != self.seen_answered {
            // A request reached the router: whatever was arriving was its
            // head, now complete.
            self.head_since = None;
            self.quiet_since = now;
        } else if read_more && !activity.multiplexed.load(Ordering::Relaxed) {
            self.head_since.get_or_insert(now);
        }
        self.seen_read = read;
        self.seen_written = written;
        self.seen_answered = answered;
        if in_flight > 0 {
            return Verdict::Fine;
        }
        if let Some(since) = self.head_since {
            if now.duration_since(since) >= self.header_read_timeout {
                return Verdict::HeadTooSlow;
            }
            return Verdict::Fine;
        }
        if !activity.served.load(Ordering::Relaxed) {
            // Connected and silent: a first request is owed within the head
            // timeout.
            if now.duration_since(self.accepted) >= self.header_read_timeout {
                return Verdict::HeadTooSlow;
            }
            return Verdict::Fine;
        }
        if now.duration_since(self.quiet_since) >= self.idle_timeout {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// A stream that counts the bytes through it for its watchdog.
struct Counted {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.activity.read.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count_written(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count_written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Counted {
    fn count_written(&self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(written)) = polled
            && *written > 0
        {
            self.activity
                .written
                .fetch_add(*written as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..LimitsConfig::default()
        }
    }

    fn at(watchdog: &Watchdog, secs: u64) -> Instant {
        watchdog.accepted + Duration::from_secs(secs)
    }

    #[test]
    fn a_silent_new_connection_is_cut_at_the_head_timeout() {
        let activity = Activity::default();
        let mut watchdog = Watchdog::new(&limits());
        assert_eq!(watchdog.check(&activity, at(&watchdog, 9)), Verdict::Fine);
        assert_eq!(
            watchdog.check(&activity, at(&watchdog, 10)),
            Verdict::HeadTooSlow
        );
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_cut_at_the_head_timeout() {
        let activity = Activity::default();
        let mut watchdog = Watchdog::new(&limits());
        // A first request, answered: the connection is a keep-alive one.
        activity.served.store(true, Ordering::Relaxed);
        activity.answered.store(1, Ordering::Relaxed);
        assert_eq!(watchdog.check(&activity, at(&watchdog, 1)), Verdict::Fine);
        // Then a byte every 2 s, never a whole head.
        for second in (3..12).step_by(2) {
            activity.read.fetch_add(1, Ordering::Relaxed);
            assert_eq!(
                watchdog.check(&activity, at(&watchdog, second)),
                Verdict::Fine,
                "at {second} s"
            );
        }
        activity.read.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            watchdog.check(&activity, at(&watchdog, 13)),
            Verdict::HeadTooSlow
        );
    }

    #[test]
    fn a_quiet_keep_alive_connection_is_closed_at_the_idle_timeout() {
        let activity = Activity::default();
        let mut watchdog = Watchdog::new(&limits());
        activity.read.store(100, Ordering::Relaxed);
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(watchdog.check(&activity, at(&watchdog, 1)), Verdict::Fine);
        activity.in_flight.store(0, Ordering::Relaxed);
        activity.answered.store(1, Ordering::Relaxed);
        activity.written.store(500, Ordering::Relaxed);
        assert_eq!(watchdog.check(&activity, at(&watchdog, 2)), Verdict::Fine);
        assert_eq!(watchdog.check(&activity, at(&watchdog, 61)), Verdict::Fine);
        assert_eq!(watchdog.check(&activity, at(&watchdog, 62)), Verdict::Idle);
    }

    #[test]
    fn a_request_in_flight_is_never_cut() {
        let activity = Activity::default();
        let mut watchdog = Watchdog::new(&limits());
        activity.read.store(100, Ordering::Relaxed);
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.store(1, Ordering::Relaxed);
        for minute in 1..10 {
            assert_eq!(
                watchdog.check(&activity, at(&watchdog, minute * 60)),
                Verdict::Fine
            );
        }
    }
}
