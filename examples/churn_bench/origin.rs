//! The counting origin inside this process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;

use crate::{ORIGIN_DELAY, VALUE};

#[derive(Default)]
pub struct OriginCounts {
    /// Loads per `bench` key.
    bench: Mutex<HashMap<String, u32>>,
    pub bench_total: AtomicU64,
    cold_total: AtomicU64,
    /// When each `bench` load arrived, and its key.
    pub log: Mutex<Vec<(Instant, String)>>,
}

/// The counting origin: `GET /bench/{key}` answers 1 KiB after 50 ms,
/// `GET /cold/{key}` at once. Every request is counted when it arrives.
pub struct Origin {
    pub addr: SocketAddr,
    pub counts: Arc<OriginCounts>,
    task: tokio::task::JoinHandle<()>,
}

async fn origin_bench(
    State(counts): State<Arc<OriginCounts>>,
    UrlPath(key): UrlPath<String>,
) -> impl IntoResponse {
    counts.bench_total.fetch_add(1, Ordering::SeqCst);
    *counts
        .bench
        .lock()
        .expect("origin counts")
        .entry(key.clone())
        .or_default() += 1;
    counts
        .log
        .lock()
        .expect("origin log")
        .push((Instant::now(), key));
    tokio::time::sleep(ORIGIN_DELAY).await;
    (
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from_static(&VALUE),
    )
}

async fn origin_cold(State(counts): State<Arc<OriginCounts>>) -> impl IntoResponse {
    counts.cold_total.fetch_add(1, Ordering::SeqCst);
    (
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from_static(&VALUE),
    )
}

impl Origin {
    pub async fn start() -> Result<Self> {
        let counts = Arc::new(OriginCounts::default());
        let app = Router::new()
            .route("/bench/{key}", get(origin_bench))
            .route("/cold/{key}", get(origin_cold))
            .with_state(counts.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the origin on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, counts, task })
    }

    pub fn bench_loads(&self) -> u64 {
        self.counts.bench_total.load(Ordering::SeqCst)
    }

    pub fn per_key(&self) -> HashMap<String, u32> {
        self.counts.bench.lock().expect("origin counts").clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
