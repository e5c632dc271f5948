//! The answering side of the peer API. A GET is answered from this node's own
//! caches or loader and never forwarded, whatever this node's ring says.
//! Malformed requests are refused with a JSON error and counted.
//!
//! With a keyring, every request is authenticated before it is routed, and
//! from its headers alone before its body is read: a request that no key
//! verifies, that is more than 60 s off this node's clock, that was signed
//! for another member or an earlier run of this one, or that replays a
//! nonce is refused with 401 and counted in
//! `shoal_peer_rejected_total{reason}` without a byte of its body read.
//! Only then is the body read (up to the named group's `max_value`) and
//! checked against the digest the signature covers.
//!
//! A write from a peer to a `read_only` group is refused (405, counted as
//! `read-only`): such a group's values come from its loader only. Peer
//! DELETEs are invalidations and are taken.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use http_body::Body as _;
use percent_encoding::percent_decode_str;
use tokio::sync::watch;
use tracing::debug;

use super::protocol::{
    self, GENERATION_HEADER, HANDOFF_SEGMENT, NO_STORE_HEADER, PEEK_QUERY, SUCCESSOR_QUERY,
    TTL_HEADER, VERSION_HEADER,
};
use crate::cache::{Fetched, Group, Groups, HANDOFF_BATCH_BYTES, Requester, Value};
use crate::metrics::Metrics;
use crate::security::{Keyring, Presented, Refusal, RequestHead, ThisNode, Verifier, unix_now};
use crate::wire::headers::mark_stale;
use crate::wire::{ApiError, ErrorKind, read_body};

/// The most body read from a signed request whose path names no group of
/// this node (it is refused or answered 404 after it is verified).
const UNROUTED_BODY_LIMIT: u64 = 64 * 1024;

/// The `peer_rejected_total` reason of a request that is not one the peer
/// API takes (wrong path, method, key encoding, query or version header).
const MALFORMED: &str = "malformed";
/// The `peer_rejected_total` reason of a write to a `read_only` group.
const READ_ONLY: &str = ErrorKind::ReadOnly.as_str();
/// The `peer_rejected_total` reason of a request for a group this node does
/// not have: the kind's word, as the refusal says it.
const UNKNOWN_GROUP: &str = ErrorKind::UnknownGroup.as_str();

pub struct PeerState {
    pub groups: Arc<Groups>,
    pub metrics: Arc<Metrics>,
}

/// The peer API without authentication: every request is served.
pub fn router(state: Arc<PeerState>) -> Router {
    routes().with_state(state)
}

/// The peer API for a node with a keyring: only requests signed by one of
/// its keys, for `this` node, are served. The keyring is read for every
/// request, so a reloaded one applies at once.
pub fn signed_router(
    state: Arc<PeerState>,
    keyring: watch::Receiver<Arc<Keyring>>,
    this: ThisNode,
) -> Router {
    let auth = Arc::new(Auth {
        state: Arc::clone(&state),
        keyring,
        verifier: Verifier::for_node(this),
    });
    routes()
        .layer(middleware::from_fn_with_state(auth, authenticate))
        .with_state(state)
}

fn routes() -> Router<Arc<PeerState>> {
    let route = format!("{}/{{group}}/{{key}}", protocol::PREFIX);
    let handoff = format!("{}/{HANDOFF_SEGMENT}/{{group}}", protocol::PREFIX);
    Router::new()
        .route(&route, get(fetch).put(store).delete(remove))
        .route(&handoff, post(take_handoff))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown_path)
}

async fn wrong_method(
    State(state): State<Arc<PeerState>>,
    method: http::Method,
    uri: Uri,
) -> Response {
    state.metrics.peer_rejected(MALFORMED);
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not a peer API request for {}", uri.path()),
    )
    .into_response()
}

/// The most a handoff request's body may hold for a group: a full batch,
/// plus the largest entry that may close it, plus framing.
fn handoff_body_limit(group: &Group) -> u64 {
    2 * HANDOFF_BATCH_BYTES + group.config().max_value
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
        let mut response =
            ApiError::new(ErrorKind::Unauthorized, refusal.to_string()).into_response();
        if refusal == Refusal::EarlierRun {
            response.headers_mut().insert(
                GENERATION_HEADER,
                HeaderValue::from(auth.verifier.generation()),
            );
        }
        response
    };
    let (parts, body) = request.into_parts();
    // Everything but the body's digest is checked from the headers: a
    // request nobody with a key signed is refused before its body is read.
    let presented = match Presented::from_headers(&parts.headers) {
        Ok(presented) => presented,
        Err(refusal) => return refuse(refusal, None),
    };
    let head = RequestHead {
        method: parts.method.as_str(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str()),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
    };
    // The watch's lock is held for the check only (no await under it).
    let verified = auth
        .verifier
        .verify(&auth.keyring.borrow(), &presented, &head, unix_now());
    if let Err(refusal) = verified {
        return refuse(refusal, Some(presented.sender));
    }
    // A request that ended with its headers (every GET) has nothing to
    // read: its digest is checked against the empty body's, and its body
    // passed on as it came.
    if body.is_end_stream() {
        if let Err(refusal) = presented.verify_body(b"") {
            return refuse(refusal, Some(presented.sender));
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    let (group, limit) = match named_group(&auth.state.groups, parts.uri.path()) {
        Some((group, true)) => (Some(group), handoff_body_limit(group)),
        Some((group, false)) => (Some(group), group.config().max_value),
        None => (None, UNROUTED_BODY_LIMIT),
    };
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
    if let Err(refusal) = presented.verify_body(&body) {
        return refuse(refusal, Some(presented.sender));
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The group a peer API path names, if this node has it (the segment after
/// the prefix, or after the handoff segment, percent-decoded as the router
/// decodes it), and whether the path is a handoff.
fn named_group<'g>(groups: &'g Groups, path: &str) -> Option<(&'g Arc<Group>, bool)> {
    let rest = path.strip_prefix(protocol::PREFIX)?.strip_prefix('/')?;
    let mut segments = rest.split('/');
    let mut segment = segments.next()?;
    let handoff = segment == HANDOFF_SEGMENT;
    if handoff {
        segment = segments.next()?;
    }
    let name = percent_decode_str(segment).decode_utf8().ok()?;
    groups.get(&name).map(|group| (group, handoff))
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
            MALFORMED,
            ApiError::bad_request("malformed peer request path"),
        );
    };
    let key = match protocol::decode_key(&segment) {
        Ok(key) => key,
        Err(message) => return reject(MALFORMED, ApiError::bad_request(message).group(&group)),
    };
    match state.groups.get(&group) {
        Some(group) => Ok((Arc::clone(group), key)),
        None => reject(UNKNOWN_GROUP, ApiError::unknown_group(&group).key(&key)),
    }
}

/// What a GET asks of the receiver, from its query.
enum FetchAs {
    Requester(Requester),
    Peek,
}

async fn fetch(State(state): State<Arc<PeerState>>, uri: Uri, path: KeyPath) -> Response {
    let (group, key) = match target(&state, path) {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    let ask = match uri.query() {
        None => FetchAs::Requester(Requester::Peer),
        Some(PEEK_QUERY) => FetchAs::Peek,
        Some(SUCCESSOR_QUERY) => FetchAs::Requester(Requester::Successor),
        Some(other) => {
            state.metrics.peer_rejected(MALFORMED);
            return ApiError::bad_request(format!(
                "unknown peer fetch query `{other}`: expected none, `{PEEK_QUERY}` or `{SUCCESSOR_QUERY}`"
            ))
            .group(group.name())
            .key(&key)
            .into_response();
        }
    };
    let fetched = match ask {
        FetchAs::Requester(requester) => group.get(&key, requester).await,
        FetchAs::Peek => match group.peek(&key) {
            Some(fetched) => Ok(fetched),
            None => {
                return ApiError::new(
                    ErrorKind::NotCached,
                    "this node holds no copy of the key (a peek never loads)",
                )
                .group(group.name())
                .key(&key)
                .into_response();
            }
        },
    };
    match fetched {
        Ok(fetched) => value_response(fetched),
        Err(error) => ApiError::from_group(&error, group.name(), &key).into_response(),
    }
}

fn value_response(Fetched { fresh, stale, .. }: Fetched) -> Response {
    let mut response = Response::new(Body::from(fresh.value.bytes));
    let headers = response.headers_mut();
    if let Some(age) = stale {
        mark_stale(headers, age);
    }
    if let Some(content_type) = fresh.value.content_type {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Some(ttl) = fresh.ttl {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        headers.insert(TTL_HEADER, HeaderValue::from(ms));
    }
    if fresh.no_store {
        headers.insert(NO_STORE_HEADER, HeaderValue::from_static("1"));
    }
    headers.insert(VERSION_HEADER, protocol::version_header(fresh.version));
    response
}

/// A version for the response to a write.
fn with_version(version: crate::cache::Version) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(VERSION_HEADER, protocol::version_header(version));
    response
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
    if group.config().read_only {
        state.metrics.peer_rejected(READ_ONLY);
        return ApiError::new(
            ErrorKind::ReadOnly,
            format!(
                "group `{}` is read-only: its values come from its loader, and peers may only invalidate them",
                group.name()
            ),
        )
        .group(group.name())
        .key(&key)
        .into_response();
    }
    let bytes = match read_body(body, group.config().max_value).await {
        Ok(bytes) => bytes,
        Err(error) => return error.group(group.name()).key(&key).into_response(),
    };
    match group.store_as_owner(
        &key,
        Value::new(bytes, headers.get(header::CONTENT_TYPE).cloned()),
    ) {
        Ok(version) => with_version(version),
        Err(error) => ApiError::from_group(&error, group.name(), &key).into_response(),
    }
}

async fn remove(
    State(state): State<Arc<PeerState>>,
    path: KeyPath,
    headers: HeaderMap,
) -> Response {
    let (group, key) = match target(&state, path) {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    let superseded = match headers.get(VERSION_HEADER) {
        None => None,
        Some(value) => match protocol::parse_version(Some(value)) {
            Some(version) => Some(version),
            None => {
                state.metrics.peer_rejected(MALFORMED);
                return ApiError::bad_request(format!("{VERSION_HEADER} is not a version number"))
                    .group(group.name())
                    .key(&key)
                    .into_response();
            }
        },
    };
    with_version(group.drop_local(&key, superseded))
}

async fn take_handoff(
    State(state): State<Arc<PeerState>>,
    Path(group): Path<String>,
    body: Body,
) -> Response {
    let Some(group) = state.groups.get(&group).cloned() else {
        state.metrics.peer_rejected(UNKNOWN_GROUP);
        return ApiError::unknown_group(&group).into_response();
    };
    let bytes = match read_body(body, handoff_body_limit(&group)).await {
        Ok(bytes) => bytes,
        Err(error) => return error.group(group.name()).into_response(),
    };
    let entries = match protocol::decode_handoff(&bytes) {
        Ok(entries) => entries,
        Err(message) => {
            state.metrics.peer_rejected(MALFORMED);
            return ApiError::bad_request(message)
                .group(group.name())
                .into_response();
        }
    };
    let receipt = group.accept_handoff(entries);
    axum::Json(serde_json::json!({
        "accepted": receipt.accepted,
        "refused": receipt.refused,
    }))
    .into_response()
}

async fn unknown_path(State(state): State<Arc<PeerState>>, uri: Uri) -> Response {
    state.metrics.peer_rejected(MALFORMED);
    ApiError::new(
        ErrorKind::NotFound,
        format!("{} is not a peer API path", uri.path()),
    )
    .into_response()
}
