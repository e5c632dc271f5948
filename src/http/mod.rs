//! The service API (port 3000, for apps) and the admin API (port 9090, for
//! operators and Prometheus), both axum.

pub mod admin;
pub mod error;
pub mod route;
pub mod service;

pub use error::ApiError;
