//! The service API that apps call (`localhost:3000`): GET, PUT and DELETE of
//! `/{group}/{key}` (or `/{key}` on the default group) and `/_stats`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::json;

use super::admin::Readiness;
use super::route::{self, Route};
use crate::cache::{Group, Groups, Requester, Value};
use crate::metrics::SOURCES;
use crate::wire::headers::{SOURCE_HEADER, mark_stale};
use crate::wire::{ApiError, ErrorKind, read_body};

pub struct ServiceState {
    pub groups: Arc<Groups>,
    pub max_key: usize,
    /// While draining, answers ask clients to close their connections.
    pub readiness: Arc<Readiness>,
}

pub fn router(state: Arc<ServiceState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const ERROR_SOURCE: usize = SOURCES.len() - 1;

async fn handle(
    State(state): State<Arc<ServiceState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut response = answer(&state, method, uri, headers, body).await;
    state.readiness.close_if_draining(&mut response);
    response
}

async fn answer(
    state: &ServiceState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = match route::parse(uri.path(), state.max_key) {
        Ok(route) => route,
        Err(error) => return error.into_response(),
    };
    let (group_name, key) = match route {
        Route::Stats => return stats(&state.groups, &method),
        Route::Key { group, key } => (group, key),
    };
    let group = match &group_name {
        Some(name) => state
            .groups
            .get(name)
            .ok_or_else(|| ApiError::unknown_group(name)),
        None => state.groups.default_group().ok_or_else(|| {
            ApiError::new(
                ErrorKind::NoDefaultGroup,
                "this node has no default_group: ask for /{group}/{key}",
            )
        }),
    };
    let group = match group {
        Ok(group) => group,
        Err(error) => return error.key(&key).into_response(),
    };
    match method {
        Method::GET | Method::HEAD => get(group, &key).await,
        Method::PUT => put(group, &key, &headers, body).await,
        Method::DELETE => delete(group, &key).await,
        _ => method_not_allowed("GET, HEAD, PUT, DELETE"),
    }
}

async fn get(group: &Arc<Group>, key: &str) -> Response {
    let started = Instant::now();
    let result = group.get(key, Requester::Client).await;
    let metrics = group.metrics();
    match result {
        Ok(fetched) => {
            let source = fetched.source;
            let stale = fetched.stale;
            let value = fetched.fresh.value;
            let content_type = value.content_type.unwrap_or(OCTET_STREAM);
            let mut response = Response::new(Body::from(value.bytes));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, content_type);
            headers.insert(SOURCE_HEADER, HeaderValue::from_static(source.as_str()));
            if let Some(age) = stale {
                mark_stale(headers, age);
            }
            metrics.request_duration[source.index()].observe(started.elapsed().as_secs_f64());
            response
        }
        Err(error) => {
            metrics.request_duration[ERROR_SOURCE].observe(started.elapsed().as_secs_f64());
            ApiError::from_group(&error, group.name(), key).into_response()
        }
    }
}

async fn put(group: &Arc<Group>, key: &str, headers: &HeaderMap, body: Body) -> Response {
    if let Some(refusal) = read_only(group, key) {
        return refusal;
    }
    let bytes = match read_body(body, group.config().max_value).await {
        Ok(bytes) => bytes,
        Err(error) => return error.group(group.name()).key(key).into_response(),
    };
    let value = Value::new(bytes, headers.get(header::CONTENT_TYPE).cloned());
    match group.put(key, value).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ApiError::from_group(&error, group.name(), key).into_response(),
    }
}

async fn delete(group: &Arc<Group>, key: &str) -> Response {
    if let Some(refusal) = read_only(group, key) {
        return refusal;
    }
    match group.delete(key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ApiError::from_group(&error, group.name(), key).into_response(),
    }
}

fn read_only(group: &Group, key: &str) -> Option<Response> {
    group.config().read_only.then(|| {
        ApiError::new(
            ErrorKind::ReadOnly,
            format!("group `{}` is read_only: it accepts only GET", group.name()),
        )
        .group(group.name())
        .key(key)
        .into_response()
    })
}

pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("this path accepts {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `/_stats`: `{"groups": {NAME: {...}}}`.
pub fn stats(groups: &Groups, method: &Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    Json(json!({ "groups": groups.stats() })).into_response()
}
