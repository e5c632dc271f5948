//! Every HTTP error is JSON, `{"error", "group", "key"}`, with the error's
//! kind in `x-shoal-error` so a node can tell an origin's answer from its own.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::cache::GroupError;
use crate::peer::protocol::{ERROR_HEADER, TIMEOUT_HEADER};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub group: Option<String>,
    pub key: Option<String>,
    /// For origin timeouts: how long the origin had, for peers to pass on.
    pub timeout_ms: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    group: Option<&'a str>,
    key: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            group: None,
            key: None,
            timeout_ms: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    pub fn unknown_group(group: &str) -> Self {
        Self::not_found(
            "unknown-group",
            format!("there is no group `{group}` on this node"),
        )
        .group(group)
    }

    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.to_owned());
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// The response for a failed get, put or delete.
    pub fn from_group(error: &GroupError, group: &str, key: &str) -> Self {
        let status = match error {
            GroupError::OriginNotFound => StatusCode::NOT_FOUND,
            GroupError::OriginFailure(_)
            | GroupError::PeerFailure { .. }
            | GroupError::OwnerUnreachable { .. } => StatusCode::BAD_GATEWAY,
            GroupError::OriginTimeout(_) | GroupError::PeerTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            GroupError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut api = Self::new(status, error.kind().as_str(), error.to_string())
            .group(group)
            .key(key);
        if let GroupError::OriginTimeout(after) = error {
            api.timeout_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            group: self.group.as_deref(),
            key: self.key.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind));
        if let Some(ms) = self.timeout_ms {
            headers.insert(TIMEOUT_HEADER, HeaderValue::from(ms));
        }
        response
    }
}
