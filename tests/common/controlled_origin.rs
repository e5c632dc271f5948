//! The controllable origin: a real HTTP server whose answers the test sets
//! per key (or for every key) while it runs, and which counts what it was
//! asked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use headers::{HeaderMapExt, IfModifiedSince, LastModified};
use tokio::sync::watch;

use super::{WAIT, pct_decode, poll_until, serve_origin};

/// How the origin answers for one key.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The status of a full answer (200, 404, 500, 503 …).
    pub status: u16,
    /// How long it waits before answering.
    pub delay: Duration,
    /// Never answers, until [`ControlledOrigin::release_hung`].
    pub hang: bool,
    /// The body of a 200 is [`ControlledOrigin::body`]`(key, version)`, so
    /// a test tells a reload from a stale copy.
    pub version: u64,
    /// The body's version is instead the number of this request for the
    /// key (1 for the first), so every load brings a new body.
    pub version_per_request: bool,
    /// Sent as `ETag`; a request whose `If-None-Match` holds it gets `304`.
    pub etag: Option<String>,
    /// Sent as `Last-Modified`; a request whose `If-Modified-Since` is not
    /// before it (and that sent no `If-None-Match`) gets `304`.
    pub last_modified: Option<SystemTime>,
    /// Sent as `Cache-Control`, on 200s and 304s.
    pub cache_control: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            status: 200,
            delay: Duration::ZERO,
            hang: false,
            version: 1,
            version_per_request: false,
            etag: None,
            last_modified: None,
            cache_control: None,
        }
    }
}

/// What the origin counted for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request.
    pub requests: usize,
    /// Requests with `If-None-Match` or `If-Modified-Since`.
    pub conditional: usize,
    /// Those answered `304`.
    pub not_modified: usize,
}

struct OriginState {
    default: Mutex<Behaviour>,
    keys: Mutex<HashMap<String, Behaviour>>,
    counts: Mutex<HashMap<String, Counts>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Bumped to let every hung request answer.
    release: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding it has failed already.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl OriginState {
    fn behaviour(&self, key: &str) -> Behaviour {
        lock(&self.keys)
            .get(key)
            .cloned()
            .unwrap_or_else(|| lock(&self.default).clone())
    }
}

/// A controllable HTTP origin on `127.0.0.1:0`. Every request under
/// `/{prefix}/{key}` (any prefix; the key percent-decoded) is answered as
/// the key's [`Behaviour`] says at the moment it arrives, else as the
/// default behaviour says.
pub struct ControlledOrigin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlledOrigin {
    pub async fn start() -> Self {
        let state = Arc::new(OriginState {
            default: Mutex::new(Behaviour::default()),
            keys: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            release: watch::channel(0).0,
        });
        let app = Router::new().fallback(answer).with_state(state.clone());
        let (addr, task) = serve_origin(IpAddr::V4(Ipv4Addr::LOCALHOST), app).await;
        Self { addr, state, task }
    }

    /// The loader URL template for keys under `/{prefix}/`.
    pub fn url_template(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/{{key}}", self.addr)
    }

    /// The body of a 200 for `key` at `version`.
    pub fn body(key: &str, version: u64) -> String {
        format!("{key}:v{version}")
    }

    /// Changes how every key without a behaviour of its own is answered.
    pub fn set_default(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut lock(&self.state.default));
    }

    /// Changes how `key` is answered (starting from the default the first
    /// time).
    pub fn set(&self, key: &str, change: impl FnOnce(&mut Behaviour)) {
        let default = lock(&self.state.default).clone();
        let mut keys = lock(&self.state.keys);
        change(keys.entry(key.to_owned()).or_insert(default));
    }

    /// Lets every request hung so far answer, as its key's behaviour now
    /// says (hang or not).
    pub fn release_hung(&self) {
        self.state
            .release
            .send_modify(|generation| *generation += 1);
    }

    /// What the origin counted for `key`.
    pub fn counts(&self, key: &str) -> Counts {
        lock(&self.state.counts)
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Requests for `key` so far.
    pub fn requests(&self, key: &str) -> usize {
        self.counts(key).requests
    }

    /// Requests for every key so far.
    pub fn total(&self) -> usize {
        lock(&self.state.counts).values().map(|c| c.requests).sum()
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `key` has been asked for `n` times.
    pub async fn wait_requests(&self, key: &str, n: usize) {
        poll_until(&format!("{n} origin requests for {key}"), WAIT, || async {
            match self.requests(key) {
                seen if seen >= n => Ok(()),
                seen => Err(format!("{seen} requests")),
            }
        })
        .await;
    }
}

impl Drop for ControlledOrigin {
    fn drop(&mut self) {
        self.release_hung();
        self.task.abort();
        if std::thread::panicking() {
            let counts = lock(&self.state.counts).clone();
            eprintln!(
                "----- controlled origin: counts per key {counts:?}; most in flight {} -----",
                self.most_in_flight()
            );
        }
    }
}

/// Counts a request in flight for as long as it lives (a request the
/// client gave up on included, whose handler is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(state: &'a OriginState) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(&state.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The key of `/{prefix}/{key}`, percent-decoded.
fn key_of(path: &str) -> String {
    let raw = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .map_or("", |(_, key)| key);
    String::from_utf8_lossy(&pct_decode(raw)).into_owned()
}

/// Whether a conditional request's validators match the behaviour's, so
/// that the answer is `304` (RFC 9110 §13.2.2: `If-None-Match` first, and
/// `If-Modified-Since` only without it).
fn not_modified(request: &HeaderMap, behaviour: &Behaviour) -> bool {
    if let Some(sent) = request.get(header::IF_NONE_MATCH) {
        let sent = sent.to_str().unwrap_or_default();
        return behaviour.etag.as_deref().is_some_and(|etag| {
            sent.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    }
    match (
        request.typed_get::<IfModifiedSince>(),
        behaviour.last_modified,
    ) {
        (Some(since), Some(modified)) => !since.is_modified(modified),
        _ => false,
    }
}

async fn answer(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let _in_flight = InFlight::enter(&state);
    let key = key_of(request.uri().path());
    let conditional = request.headers().contains_key(header::IF_NONE_MATCH)
        || request.headers().contains_key(header::IF_MODIFIED_SINCE);
    let nth = {
        let mut counts = lock(&state.counts);
        let counts = counts.entry(key.clone()).or_default();
        counts.requests += 1;
        counts.conditional += usize::from(conditional);
        counts.requests
    };
    let mut release = state.release.subscribe();
    let arrived = state.behaviour(&key);
    if arrived.hang {
        // Until the test releases it (or the client gives up on it).
        let _ = release.changed().await;
    }
    tokio::time::sleep(arrived.delay).await;
    // What the test says now: a request released from a hang answers as
    // the key's behaviour is by then.
    let behaviour = if arrived.hang {
        state.behaviour(&key)
    } else {
        arrived
    };
    let mut response = if behaviour.status == 200 && not_modified(request.headers(), &behaviour) {
        lock(&state.counts)
            .entry(key.clone())
            .or_default()
            .not_modified += 1;
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let status = StatusCode::from_u16(behaviour.status).unwrap_or(StatusCode::IM_A_TEAPOT);
        let body = if status == StatusCode::OK {
            let version = if behaviour.version_per_request {
                nth as u64
            } else {
                behaviour.version
            };
            ControlledOrigin::body(&key, version)
        } else {
            format!("origin says {status}")
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        if let Some(etag) = behaviour
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert(header::ETAG, etag);
        }
        if let Some(modified) = behaviour.last_modified {
            headers.typed_insert(LastModified::from(modified));
        }
        if let Some(control) = behaviour
            .cache_control
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::CACHE_CONTROL, control);
        }
    }
    response
}
