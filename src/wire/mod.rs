//! What the two HTTP faces share: the service and admin APIs (`http`)
//! and the peer API (`peer`) answer errors alike and read bodies
//! alike, so both build on this module and neither imports the other.
//!
//! - [`ErrorKind`]: every kind of error either face answers with, its
//!   `x-shoal-error` word and its status. It is defined below the cache
//!   (`src/error_kind.rs`) because [`crate::cache::GroupError::kind`] names
//!   kinds and the cache must not import this layer; it is re-exported here,
//!   where the HTTP faces find it.
//! - [`ApiError`]: the JSON error response, `{"error", "group", "key"}`.
//! - [`headers`]: the names of the headers both faces use. Headers only the
//!   peer API uses are in `peer::protocol`.
//! - [`read_body`]: a request body, up to a size limit; [`DeadlineBody`]:
//!   the deadline every request body is read under (`limits:`).
//!
//! Imports point down: `http` and `peer` → `wire` → `cache` → `error_kind`.
//! This module imports neither face.

mod body;
mod error;
pub mod headers;

pub use crate::error_kind::ErrorKind;
pub use body::{DeadlineBody, read_body};
pub use error::ApiError;
