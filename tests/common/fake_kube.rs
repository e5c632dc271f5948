//! A fake Kubernetes API server inside the test process, for the
//! EndpointSlice cross-check: no real API server can run here.
//!
//! It serves `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`
//! over plain HTTP on `127.0.0.1:PORT`, as the real one does:
//!
//! - a list answers `{"kind": "EndpointSliceList", "metadata":
//!   {"resourceVersion"}, "items"}`, filtered by `labelSelector` (equality
//!   terms), paged by `limit` and `continue`;
//! - `?watch=true` answers a stream of newline-delimited watch events
//!   (`ADDED`, `MODIFIED`, `DELETED`, and `BOOKMARK` when the client sent
//!   `allowWatchBookmarks=true`), starting after the `resourceVersion` it
//!   gives (every change since is replayed; without one, every current
//!   slice comes as `ADDED`), and ending after `timeoutSeconds`.
//!
//! The test changes slices ([`FakeKube::set_slice`], [`FakeKube::delete_slice`]),
//! pushes bookmarks, closes every open watch stream so clients must watch
//! again ([`FakeKube::close_watches`]), makes every request fail with a
//! status ([`FakeKube::fail_with`]), counts list and watch requests, and
//! writes a kubeconfig that points at the server ([`FakeKube::kubeconfig`]).
//!
//! Like the DNS server it runs on a thread of its own with its own runtime,
//! and stops when dropped; it prints the requests it saw when a test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The label that ties a slice to its Service.
pub const SERVICE_LABEL: &str = "kubernetes.io/service-name";
const API_VERSION: &str = "discovery.k8s.io/v1";
/// What a watch without `timeoutSeconds` lasts at most.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// One endpoint of a slice: a pod's address and its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeEndpoint {
    pub ip: IpAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl FakeEndpoint {
    /// A running, ready pod.
    pub fn ready(ip: IpAddr) -> Self {
        Self {
            ip,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A running pod whose readiness probe fails: with
    /// `publishNotReadyAddresses` still `ready`, but not `serving`.
    pub fn not_serving(ip: IpAddr) -> Self {
        Self {
            serving: false,
            ..Self::ready(ip)
        }
    }

    /// A pod being deleted, as the EndpointSlice controller shows it for a
    /// Service with `publishNotReadyAddresses`: still `ready`, not
    /// `serving`, `terminating`.
    pub fn terminating(ip: IpAddr) -> Self {
        Self {
            ip,
            ready: true,
            serving: false,
            terminating: true,
        }
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|v| v == "true" || v == "1")
    }
}

/// A change, kept so a watch from an older resourceVersion can replay it.
struct Change {
    resource_version: u64,
    kind: &'static str,
    namespace: String,
    object: Value,
}

/// An open watch stream.
struct Watch {
    namespace: String,
    selector: Vec<(String, String)>,
    bookmarks: bool,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Store {
    /// (namespace, name) → the slice as the API would return it.
    slices: BTreeMap<(String, String), Value>,
    resource_version: u64,
    history: Vec<Change>,
    watches: Vec<Watch>,
    /// Every request answers this status while it is set.
    failure: Option<StatusCode>,
    seen: Vec<Seen>,
}

impl Store {
    /// Sends one event line to every open watch that sees `object`.
    fn publish(&mut self, kind: &str, namespace: &str, object: &Value) {
        let line = event_line(kind, object);
        self.watches.retain(|watch| {
            if watch.namespace != namespace || !matches(&watch.selector, object) {
                return !watch.events.is_closed();
            }
            watch.events.unbounded_send(line.clone()).is_ok()
        });
    }

    fn record(&mut self, kind: &'static str, namespace: &str, object: Value) {
        self.publish(kind, namespace, &object);
        self.history.push(Change {
            resource_version: self.resource_version,
            kind,
            namespace: namespace.to_owned(),
            object,
        });
    }
}

pub struct FakeKube {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKube {
    /// Binds `127.0.0.1:0` and starts serving, with no slices.
    pub async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake kube: bind");
        listener
            .set_nonblocking(true)
            .expect("fake kube: nonblocking");
        let addr = listener.local_addr().expect("fake kube: local addr");
        let store = Arc::new(Mutex::new(Store {
            resource_version: 100,
            ..Store::default()
        }));
        let (stop_tx, stop_rx) = oneshot::channel();
        let app = Router::new()
            .route(
                "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                get(endpointslices),
            )
            .fallback(not_found)
            .with_state(store.clone());
        let thread = std::thread::Builder::new()
            .name(format!("fake-kube-{addr}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake kube: runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake kube: tokio listener");
                    tokio::select! {
                        served = axum::serve(listener, app) => served.expect("fake kube: serve"),
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("fake kube: thread");
        Self {
            addr,
            store,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("fake kube: store")
    }

    /// Writes a kubeconfig whose current context points at this server (with
    /// a bearer token and `namespace` as the context's namespace) into
    /// `dir`, and returns its path: the node's `KUBECONFIG`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.addr
        );
        std::fs::write(&path, text).expect("fake kube: write the kubeconfig");
        path
    }

    /// Creates or replaces the slice `name` of Service `service`: an
    /// `ADDED` or `MODIFIED` event for every watch that sees it.
    pub fn set_slice(
        &self,
        namespace: &str,
        name: &str,
        service: &str,
        endpoints: &[FakeEndpoint],
    ) {
        let mut store = self.store();
        store.resource_version += 1;
        let object = slice_json(namespace, name, service, endpoints, store.resource_version);
        let key = (namespace.to_owned(), name.to_owned());
        let kind = if store.slices.insert(key, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.record(kind, namespace, object);
    }

    /// Deletes the slice `name`: a `DELETED` event with its last state.
    pub fn delete_slice(&self, namespace: &str, name: &str) {
        let mut store = self.store();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(mut object) = store.slices.remove(&key) else {
            panic!("fake kube: no slice {namespace}/{name} to delete");
        };
        store.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        store.record("DELETED", namespace, object);
    }

    /// Sends a `BOOKMARK` at the current resourceVersion to every open
    /// watch that asked for bookmarks.
    pub fn bookmark(&self) {
        let mut store = self.store();
        let rv = store.resource_version.to_string();
        let object = json!({
            "kind": "EndpointSlice",
            "apiVersion": API_VERSION,
            "metadata": { "resourceVersion": rv },
        });
        let line = event_line("BOOKMARK", &object);
        store
            .watches
            .retain(|watch| !watch.bookmarks || watch.events.unbounded_send(line.clone()).is_ok());
    }

    /// Ends every open watch stream, as an API server does when it
    /// restarts or a watch times out: clients must watch again.
    pub fn close_watches(&self) {
        self.store().watches.clear();
    }

    /// From now on every request answers `status` (a Kubernetes `Status`
    /// body), and open watches end; `None` answers normally again.
    pub fn fail_with(&self, status: Option<u16>) {
        let mut store = self.store();
        store.failure = status.map(|s| StatusCode::from_u16(s).expect("fake kube: a status code"));
        if status.is_some() {
            store.watches.clear();
        }
    }

    /// The current resourceVersion: the last change's.
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.store().seen.clone()
    }

    pub fn list_requests(&self) -> usize {
        self.seen().iter().filter(|s| !s.is_watch()).count()
    }

    pub fn watch_requests(&self) -> usize {
        self.seen().iter().filter(|s| s.is_watch()).count()
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        let mut store = self.store();
        store.watches.retain(|watch| !watch.events.is_closed());
        store.watches.len()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- fake kube requests -----");
            for seen in self.seen() {
                eprintln!("GET {} {:?}", seen.path, seen.query);
            }
            eprintln!("----- end of fake kube requests -----");
        }
        self.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An EndpointSlice as the API serves it.
fn slice_json(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: &[FakeEndpoint],
    resource_version: u64,
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.ip.to_string()],
                "conditions": { "ready": e.ready, "serving": e.serving, "terminating": e.terminating },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": format!("pod-{}", e.ip.to_string().replace(['.', ':'], "-")),
                },
            })
        })
        .collect();
    let address_type = if endpoints.is_empty() || endpoints_are_v4(&endpoints) {
        "IPv4"
    } else {
        "IPv6"
    };
    json!({
        "kind": "EndpointSlice",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("00000000-0000-0000-0000-{:012}", resource_version),
            "resourceVersion": resource_version.to_string(),
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {
                SERVICE_LABEL: service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [
            { "name": "gossip", "port": 7946, "protocol": "UDP" },
            { "name": "peer", "port": 8000, "protocol": "TCP" },
        ],
    })
}

fn endpoints_are_v4(endpoints: &[Value]) -> bool {
    endpoints.iter().all(|e| {
        e["addresses"][0]
            .as_str()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_ipv4())
    })
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object }))
        .expect("fake kube: encode an event");
    line.push(b'\n');
    Bytes::from(line)
}

/// Equality terms of a label selector: `k=v`, `k==v`, comma-separated.
fn parse_selector(text: Option<&String>) -> Result<Vec<(String, String)>, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|term| {
            if term.contains("!=") {
                return Err(format!(
                    "the fake supports equality selectors only: {term:?}"
                ));
            }
            let (key, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| format!("the fake supports equality selectors only: {term:?}"))?;
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn matches(selector: &[(String, String)], object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .iter()
        .all(|(key, value)| labels[key.as_str()].as_str() == Some(value.as_str()))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A `Status` answer, as the API sends with every error.
fn status_response(status: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status.as_u16(),
        }),
    )
}

async fn not_found() -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the fake serves endpointslices only",
    )
}

async fn endpointslices(
    State(store): State<Arc<Mutex<Store>>>,
    UrlPath(namespace): UrlPath<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request_headers: axum::http::HeaderMap,
) -> Response {
    let mut store = store.lock().expect("fake kube: store");
    let seen = Seen {
        path: format!("/apis/{API_VERSION}/namespaces/{namespace}/endpointslices"),
        query: query.clone(),
        authorization: request_headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let watch = seen.is_watch();
    store.seen.push(seen);
    if let Some(status) = store.failure {
        return status_response(status, "InternalError", "the fake API server is failing");
    }
    let selector = match parse_selector(query.get("labelSelector")) {
        Ok(selector) => selector,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if watch {
        start_watch(&mut store, namespace, selector, &query)
    } else {
        list(&store, &namespace, &selector, &query)
    }
}

/// A list, paged by `limit` and `continue` (the offset of the next page).
fn list(
    store: &Store,
    namespace: &str,
    selector: &[(String, String)],
    query: &BTreeMap<String, String>,
) -> Response {
    let all: Vec<Value> = store
        .slices
        .iter()
        .filter(|((ns, _), object)| ns == namespace && matches(selector, object))
        .map(|(_, object)| {
            let mut item = object.clone();
            // List items carry no kind or apiVersion of their own.
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let next = start.saturating_add(page.len());
    let mut metadata = json!({ "resourceVersion": store.resource_version.to_string() });
    if next < all.len() {
        metadata["continue"] = json!(next.to_string());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "EndpointSliceList",
            "apiVersion": API_VERSION,
            "metadata": metadata,
            "items": page,
        }),
    )
}

/// Opens a watch stream: the changes after `resourceVersion` (or every
/// current slice as `ADDED` without one), then changes as they happen,
/// until `timeoutSeconds` or until the test closes it.
fn start_watch(
    store: &mut Store,
    namespace: String,
    selector: Vec<(String, String)>,
    query: &BTreeMap<String, String>,
) -> Response {
    let (events, stream) = mpsc::unbounded::<Bytes>();
    let since = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|&rv| rv > 0);
    let backlog: Vec<Bytes> = match since {
        Some(since) => store
            .history
            .iter()
            .filter(|c| c.resource_version > since && c.namespace == namespace)
            .filter(|c| matches(&selector, &c.object))
            .map(|c| event_line(c.kind, &c.object))
            .collect(),
        None => store
            .slices
            .iter()
            .filter(|((ns, _), object)| *ns == namespace && matches(&selector, object))
            .map(|(_, object)| event_line("ADDED", object))
            .collect(),
    };
    for line in backlog {
        let _ = events.unbounded_send(line);
    }
    store.watches.push(Watch {
        namespace,
        selector,
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
        events,
    });
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let body = stream
        .map(Ok::<Bytes, Infallible>)
        .take_until(Box::pin(tokio::time::sleep(timeout)));
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
