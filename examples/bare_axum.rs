//! The benchmark baseline: the least an axum server can do per request.
//!
//! Every `GET /*path` answers 200 with the same 1 KiB body
//! (`application/octet-stream`), on a tokio multi-thread runtime with the
//! default worker count — the same stack shoal serves its cache hits on,
//! minus the cache. `bench/hit-path.sh` measures both and prints the ratio.
//!
//! ```text
//! cargo build --release --example bare_axum
//! ./target/release/examples/bare_axum 127.0.0.1:3999
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;

/// The size of the body, matching the 1 KiB values the benchmark caches in shoal.
const BODY_LEN: usize = 1024;
static BODY: [u8; BODY_LEN] = [b'x'; BODY_LEN];

async fn fixed_body() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from_static(&BODY),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{arg}` is not an IP:PORT address: {error}"),
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 3999)),
    };
    let app = Router::new()
        .route("/", get(fixed_body))
        .route("/{*path}", get(fixed_body));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| std::io::Error::new(error.kind(), format!("bind {addr}: {error}")))?;
    eprintln!("bare_axum listening on {addr}");
    axum::serve(listener, app).await
}
