//! The admin API (port 9090): `/metrics`, `/healthz`, `/readyz`, `/_members`,
//! `/_ring/{group}/{key}` and `/_stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use http::{HeaderValue, Method, Uri, header};
use serde_json::json;
use tokio::sync::watch;

use super::route;
use super::service::stats;
use crate::cache::Groups;
use crate::membership::Members;
use crate::metrics::Metrics;
use crate::ring::{Rings, key_hash};
use crate::wire::{ApiError, ErrorKind};

/// Whether the node should receive traffic: set once its listeners are up
/// (and, with gossip, once it has joined); cleared for good when it drains.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Ticks on every change, for those who wait for one.
    changed: watch::Sender<()>,
}

impl Readiness {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.changed.send_replace(());
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.changed.send_replace(());
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Asks the client to close its connection after `response` while the
    /// node drains (see [`super::close_connections_while_draining`]).
    pub fn close_if_draining(&self, response: &mut Response) {
        if self.is_draining() {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
    }
}

pub struct AdminState {
    pub groups: Arc<Groups>,
    pub metrics: Arc<Metrics>,
    pub members: watch::Receiver<Arc<Members>>,
    pub ring: watch::Receiver<Arc<Rings>>,
    pub readiness: Arc<Readiness>,
    pub max_key: usize,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/_members", get(members))
        .route("/_ring/{*rest}", get(ring_owner))
        .route("/_stats", get(admin_stats))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    // Refreshes the cache size gauges before they are read.
    let _ = state.groups.stats();
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let readiness = &state.readiness;
    if readiness.is_ready() {
        Json(json!({ "ready": true })).into_response()
    } else if readiness.is_draining() {
        ApiError::new(ErrorKind::Draining, "the node is shutting down").into_response()
    } else {
        ApiError::new(ErrorKind::Starting, "the node is not ready yet").into_response()
    }
}

async fn members(State(state): State<Arc<AdminState>>) -> Json<Members> {
    Json(Members::clone(&state.members.borrow()))
}

async fn ring_owner(State(state): State<Arc<AdminState>>, uri: Uri) -> Response {
    let rest = uri.path().strip_prefix("/_ring/").unwrap_or_default();
    let Some((group, raw_key)) = rest.split_once('/') else {
        return ApiError::bad_request("ask for /_ring/{group}/{key}").into_response();
    };
    let key = match route::parse_key(raw_key, state.max_key) {
        Ok(key) => key,
        Err(error) => return error.group(group).into_response(),
    };
    if state.groups.get(group).is_none() {
        return ApiError::unknown_group(group).key(&key).into_response();
    }
    let ring = Arc::clone(state.ring.borrow().current());
    match ring.owner_of_hash(key_hash(group, &key)) {
        Some(owner) => Json(json!({
            "owner": { "name": &*owner.name, "addr": owner.id.ip(), "peer_port": owner.id.port() }
        }))
        .into_response(),
        None => ApiError::new(ErrorKind::EmptyRing, "the ring has no members")
            .group(group)
            .key(&key)
            .into_response(),
    }
}

async fn admin_stats(State(state): State<Arc<AdminState>>) -> Response {
    stats(&state.groups, &Method::GET)
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "{} is not an admin path: try /metrics, /healthz, /readyz, /_members, /_ring/{{group}}/{{key}} or /_stats",
            uri.path()
        ),
    )
    .into_response()
}
