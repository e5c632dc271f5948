//! Reading a request body, on either face.

use axum::body::Body;

use super::{ApiError, ErrorKind};

/// Reads a request body of at most `limit` bytes: longer is
/// `value-too-large`, unreadable is `bad-request`.
pub async fn read_body(body: Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|error| {
            let too_large = crate::error_chain::causes(&error)
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    ErrorKind::ValueTooLarge,
                    format!("the value is larger than this group's max_value ({limit} bytes)"),
                )
            } else {
                ApiError::bad_request(format!("could not read the request body: {error}"))
            }
        })
}
