//! The counting, controllable origin inside this process: one server for
//! every mode, each under its own path prefix, with one outage clock.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::VALUE;
use crate::args::{Args, Mode};

/// What the origin answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    /// 200 and the value.
    Value,
    /// 304: the node's `If-None-Match` matched.
    NotModified,
    /// 503 at once: the outage.
    Unavailable,
}

/// One request as the origin saw it.
#[derive(Clone, Copy, Debug)]
pub struct OriginRequest {
    /// When it arrived, since the load started.
    pub at: Duration,
    /// Whether it carried `If-None-Match` (a revalidation).
    pub conditional: bool,
    pub answer: Answer,
}

struct OriginState {
    /// When the load started: the outage is timed from it.
    t0: OnceLock<Instant>,
    outage: (Duration, Duration),
    delay: Duration,
    /// Every request, per mode prefix.
    requests: HashMap<&'static str, Mutex<Vec<OriginRequest>>>,
}

impl OriginState {
    fn since_t0(&self) -> Duration {
        self.t0.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    fn in_outage(&self, at: Duration) -> bool {
        self.t0.get().is_some() && at >= self.outage.0 && at < self.outage.1
    }
}

/// Every key's value is the same and never changes: one strong `ETag`
/// per key, so a revalidation always finds it unchanged.
fn etag(key: &str) -> String {
    format!("\"{key}-1\"")
}

fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// `GET /{mode}/{key}`: 503 at once during the outage; otherwise, after
/// the origin's delay, 304 to a matching `If-None-Match`, else 200 and
/// 1 KiB. Every answer to a known mode is counted, by arrival.
async fn serve(
    State(state): State<Arc<OriginState>>,
    UrlPath((mode, key)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(log) = state.requests.get(mode.as_str()) else {
        return (StatusCode::NOT_FOUND, "no such mode").into_response();
    };
    let at = state.since_t0();
    let conditional = headers.contains_key(IF_NONE_MATCH);
    let tag = etag(&key);
    let answer = if state.in_outage(at) {
        Answer::Unavailable
    } else if matches(&headers, &tag) {
        Answer::NotModified
    } else {
        Answer::Value
    };
    log.lock().expect("origin log").push(OriginRequest {
        at,
        conditional,
        answer,
    });
    match answer {
        Answer::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "origin outage").into_response(),
        Answer::NotModified => {
            tokio::time::sleep(state.delay).await;
            (StatusCode::NOT_MODIFIED, [(ETAG, tag)]).into_response()
        }
        Answer::Value => {
            tokio::time::sleep(state.delay).await;
            (
                [
                    (CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (ETAG, tag),
                ],
                Bytes::from_static(&VALUE),
            )
                .into_response()
        }
    }
}

/// The origin on `127.0.0.1:0`; stopped on drop.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(args: &Args) -> Result<Self> {
        let state = Arc::new(OriginState {
            t0: OnceLock::new(),
            outage: (args.outage_start, args.outage_end()),
            delay: args.origin_delay,
            requests: args
                .modes
                .iter()
                .map(|m| (m.name(), Mutex::new(Vec::new())))
                .collect(),
        });
        let app = Router::new()
            .route("/{mode}/{key}", get(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the origin on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                progress!("the origin stopped: {error}");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Starts the outage clock: the load starts now.
    pub fn start_clock(&self, t0: Instant) {
        let _ = self.state.t0.set(t0);
    }

    pub fn requests(&self, mode: Mode) -> Vec<OriginRequest> {
        self.state
            .requests
            .get(mode.name())
            .map(|log| log.lock().expect("origin log").clone())
            .unwrap_or_default()
    }

    /// `N requests (V values, M 304, U 503)` so far.
    pub fn progress(&self, mode: Mode) -> String {
        let requests = self.requests(mode);
        let count = |answer| requests.iter().filter(|r| r.answer == answer).count();
        format!(
            "{} requests ({} 200, {} 304, {} 503)",
            requests.len(),
            count(Answer::Value),
            count(Answer::NotModified),
            count(Answer::Unavailable)
        )
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
