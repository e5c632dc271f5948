//! The answering side of the peer API. A GET is answered from this node's own
//! caches or loader and never forwarded, whatever this node's ring says.
//! Malformed requests are refused with a JSON error and counted.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use super::protocol::{self, NO_STORE_HEADER, TTL_HEADER};
use crate::cache::{Group, Groups, Requester, Value};
use crate::http::ApiError;
use crate::http::service::read_body;
use crate::metrics::Metrics;

pub struct PeerState {
    pub groups: Arc<Groups>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<PeerState>) -> Router {
    let route = format!("{}/{{group}}/{{key}}", protocol::PREFIX);
    Router::new()
        .route(&route, get(fetch).put(store).delete(remove))
        .fallback(unknown_path)
        .with_state(state)
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
