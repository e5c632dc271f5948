//! The answering side of the peer API. A GET is answered from this node's own
//! caches or loader and never forwarded, whatever this node's ring says.
//! Malformed requests are refused with a JSON error and counted.
//!
//! With a keyring, every request is authenticated before it is routed: its
//! signature headers are checked, its body read (up to the named group's
//! `max_value`) and digested, and a request that no key verifies, that is
//! more than 60 s off this node's clock or that replays a nonce is refused
//! with 401 and counted in `shoal_peer_rejected_total{reason}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use tokio::sync::watch;
use tracing::debug;

use super::protocol::{self, NO_STORE_HEADER, TTL_HEADER};
use crate::cache::{Group, Groups, Requester, Value};
use crate::http::ApiError;
use crate::http::service::read_body;
use crate::metrics::Metrics;
use crate::security::{Keyring, Presented, Refusal, RequestParts, Verifier, unix_now};

/// The most body read from a signed request whose path names no group of
/// this node (it is refused or answered 404 after it is verified).
const UNROUTED_BODY_LIMIT: u64 = 64 * 1024;

pub struct PeerState {
    pub groups: Arc<Groups>,
    pub metrics: Arc<Metrics>,
}

/// The peer API without authentication: every request is served.
pub fn router(state: Arc<PeerState>) -> Router {
    routes().with_state(state)
}

/// The peer API for a node with a keyring: only requests signed by one of
/// its keys are served. The keyring is read for every request, so a
/// reloaded one applies at once.
pub fn signed_router(state: Arc<PeerState>, keyring: watch::Receiver<Arc<Keyring>>) -> Router {
    let auth = Arc::new(Auth {
        state: Arc::clone(&state),
        keyring,
        verifier: Verifier::default(),
    });
    routes()
        .layer(middleware::from_fn_with_state(auth, authenticate))
        .with_state(state)
}

fn routes() -> Router<Arc<PeerState>> {
    let route = format!("{}/{{group}}/{{key}}", protocol::PREFIX);
    Router::new()
        .route(&route, get(fetch).put(store).delete(remove))
        .fallback(unknown_path)
}

struct Auth {
    state: Arc<PeerState>,
    keyring: watch::Receiver<Arc<Keyring>>,
    /// Remembers the nonces of accepted requests.
    verifier: Verifier,
}

/// Lets through only requests that a key of the keyring signed.
async fn authenticate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let refuse = |refusal: Refusal, sender: Option<&str>| {
        auth.state.metrics.peer_rejected(refusal.reason());
        debug!(
            sender = sender.unwrap_or("-"),
            reason = refusal.reason(),
            error = %refusal,
            "peer request refused"
        );
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            refusal.to_string(),
        )
        .into_response()
    };
    let (parts, body) = request.into_parts();
    // An unsigned request is refused before its body is read.
    let presented = match Presented::from_headers(&parts.headers) {
        Ok(presented) => presented,
        Err(refusal) => return refuse(refusal, None),
    };
    let group = named_group(&auth.state.groups, parts.uri.path());
    let limit = group.map_or(UNROUTED_BODY_LIMIT, |group| group.config().max_value);
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(error) => {
            let error = match group {
                Some(group) => error.group(group.name()),
                None => error,
            };
            return error.into_response();
        }
    };
    let request_parts = RequestParts {
        method: parts.method.as_str(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str()),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        body: &body,
    };
    let keyring = Arc::clone(&auth.keyring.borrow());
    if let Err(refusal) = auth
        .verifier
        .verify(&keyring, &presented, &request_parts, unix_now())
    {
        return refuse(refusal, Some(&presented.sender));
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The group a peer API path names, if this node has it: the segment after
/// the prefix, percent-decoded as the router decodes it.
fn named_group<'g>(groups: &'g Groups, path: &str) -> Option<&'g Arc<Group>> {
    let rest = path.strip_prefix(protocol::PREFIX)?.strip_prefix('/')?;
    let segment = rest.split('/').next()?;
    let name = percent_decode_str(segment).decode_utf8().ok()?;
    groups.get(&name)
}

type KeyPath = Result<Path<(String, String)>, PathRejection>;

/// The group and key a request names, or the refusal to send.
fn target(state: &PeerState, path: KeyPath) -> Result<(Arc<Group>, String), ApiError> {
    let reject = |reason: &'static str, error: ApiError| {
        state.metrics.peer_rejected(reason);
        Err(error)
    };
    let Ok(Path((group, segment))) = path else {
        return reject(
            "malformed",
            ApiError::bad_request("malformed peer request path"),
        );
    };
    let key = match protocol::decode_key(&segment) {
        Ok(key) => key,
        Err(message) => return reject("malformed", ApiError::bad_request(message).group(&group)),
    };
    match state.groups.get(&group) {
        Some(group) => Ok((Arc::clone(group), key)),
        None => reject("unknown-group", ApiError::unknown_group(&group).key(&key)),
    }
}

async fn fetch(State(state): State<Arc<PeerState>>, path: KeyPath) -> Response {
    let (group, key) = match target(&state, path) {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    match group.get(&key, Requester::Peer).await {
        Ok(fetched) => {
            let mut response = Response::new(Body::from(fetched.value.bytes));
            let headers = response.headers_mut();
            if let Some(content_type) = fetched.value.content_type {
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            if let Some(ttl) = fetched.ttl {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                headers.insert(TTL_HEADER, HeaderValue::from(ms));
            }
            if fetched.no_store {
                headers.insert(NO_STORE_HEADER, HeaderValue::from_static("1"));
            }
            response
        }
        Err(error) => ApiError::from_group(&error, group.name(), &key).into_response(),
    }
}

async fn store(
    State(state): State<Arc<PeerState>>,
    path: KeyPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (group, key) = match target(&state, path) {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    let bytes = match read_body(body, group.config().max_value).await {
        Ok(bytes) => bytes,
        Err(error) => return error.group(group.name()).key(&key).into_response(),
    };
    group.store_as_owner(
        &key,
        Value::new(bytes, headers.get(header::CONTENT_TYPE).cloned()),
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn remove(State(state): State<Arc<PeerState>>, path: KeyPath) -> Response {
    let (group, key) = match target(&state, path) {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    group.drop_local(&key);
    StatusCode::NO_CONTENT.into_response()
}

async fn unknown_path(State(state): State<Arc<PeerState>>, uri: Uri) -> Response {
    state.metrics.peer_rejected("malformed");
    ApiError::not_found(
        "not-found",
        format!("{} is not a peer API path", uri.path()),
    )
    .into_response()
}
