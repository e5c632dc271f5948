//! The service API (port 3000, for apps) and the admin API (port 9090, for
//! operators and Prometheus), both axum. Their errors, and what else they
//! share with the peer API, are in [`crate::wire`].

pub mod admin;
pub mod route;
pub mod service;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::middleware::{self, Next};
use axum::response::Response;

use admin::Readiness;

/// While the node drains, every response on `router` tells the client to
/// close its connection (`Connection: close`): keep-alive clients move to a
/// live node while this one still answers, instead of finding an idle
/// connection closed under them when it exits.
pub fn close_connections_while_draining(router: Router, readiness: Arc<Readiness>) -> Router {
    router.layer(middleware::from_fn_with_state(readiness, close_if_draining))
}

async fn close_if_draining(
    State(readiness): State<Arc<Readiness>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    readiness.close_if_draining(&mut response);
    response
}
