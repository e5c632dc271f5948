//! Every HTTP error is JSON, `{"error", "group", "key"}`, with the error's
//! kind in `x-shoal-error` so a node can tell an origin's answer from its own.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::ErrorKind;
use super::headers::{ERROR_HEADER, TIMEOUT_HEADER};
use crate::cache::GroupError;

#[derive(Debug, Clone)]
pub struct ApiError {
    /// Says the status too: see [`ErrorKind::status`].
    pub kind: ErrorKind,
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
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            group: None,
            key: None,
            timeout_ms: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn unknown_group(group: &str) -> Self {
        Self::new(
            ErrorKind::UnknownGroup,
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

    /// The status the response carries, its kind's.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The response for a failed get, put or delete.
    pub fn from_group(error: &GroupError, group: &str, key: &str) -> Self {
        let mut api = Self::new(error.kind(), error.to_string())
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
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind.as_str()));
        if let Some(ms) = self.timeout_ms {
            headers.insert(TIMEOUT_HEADER, HeaderValue::from(ms));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_group_error_keeps_its_status() {
        let cases = [
            (GroupError::OriginNotFound, StatusCode::NOT_FOUND),
            (
                GroupError::OriginFailure("origin answered 500".into()),
                StatusCode::BAD_GATEWAY,
            ),
            (
                GroupError::OriginTimeout(Duration::from_secs(2)),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                GroupError::PeerTimeout {
                    owner: "b".into(),
                    after: Duration::from_secs(3),
                },
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                GroupError::PeerFailure {
                    owner: "b".into(),
                    detail: Arc::from("reset"),
                },
                StatusCode::BAD_GATEWAY,
            ),
            (
                GroupError::OwnerUnreachable {
                    owner: "b".into(),
                    detail: Arc::from("refused"),
                },
                StatusCode::BAD_GATEWAY,
            ),
            (GroupError::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, status) in cases {
            let api = ApiError::from_group(&error, "g", "k");
            assert_eq!(api.status(), status, "{error:?}");
            assert_eq!(api.kind, error.kind());
            assert_eq!(api.message, error.to_string());
            assert_eq!(
                api.timeout_ms.is_some(),
                error.kind() == ErrorKind::OriginTimeout
            );
        }
    }

    #[test]
    fn the_response_carries_kind_status_and_timeout() {
        let response = ApiError::from_group(
            &GroupError::OriginTimeout(Duration::from_millis(1500)),
            "g",
            "k",
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()[ERROR_HEADER], "origin-timeout");
        assert_eq!(response.headers()[TIMEOUT_HEADER], "1500");

        let response = ApiError::unknown_group("nope").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[ERROR_HEADER], "unknown-group");
        assert!(!response.headers().contains_key(TIMEOUT_HEADER));
    }
}
