//! The counting HTTP origin inside the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{WAIT, pct_decode, poll_until};

/// How long the origin's `slow-` keys take to answer.
pub const SLOW: Duration = Duration::from_secs(1);
/// How long `hang-` keys take: longer than every loader timeout in
/// [`Config`](super::Config).
pub const HANG: Duration = Duration::from_secs(60);

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request path exactly as it arrived (not decoded).
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// (first segment, the rest of the path raw) of `/group/rest`.
    pub fn split(&self) -> Option<(&str, &str)> {
        self.path.strip_prefix('/')?.split_once('/')
    }

    /// Whether this request asked for `key` under `/{prefix}/`.
    pub fn is_for(&self, prefix: &str, key: &str) -> bool {
        self.split()
            .is_some_and(|(p, raw)| p == prefix && pct_decode(raw) == key.as_bytes())
    }
}

#[derive(Default)]
struct OriginState {
    seen: Mutex<Vec<Seen>>,
}

/// A counting HTTP origin on `127.0.0.1:0` (or [`Origin::start_on`]'s
/// address). Behaviour by key prefix (on the decoded key):
///
/// | prefix | answer |
/// |---|---|
/// | `slow-` | 200 `origin:<key>` after [`SLOW`] |
/// | `404-` | 404 |
/// | `500-` | 500 |
/// | `hang-` | nothing for [`HANG`] (longer than every loader timeout) |
/// | `ct-` | 200 `{"key": <key>}` with `Content-Type: application/json` |
/// | `maxage-` | 200 `origin:<key>:<n>` with `Cache-Control: max-age=1` |
/// | `ver-` | 200 `origin:<key>:<n>`, `n` = how many loads of the key so far |
/// | `slowver-` | as `ver-`, after [`SLOW`] (`n` counted when the request arrived) |
/// | other | 200 `origin:<key>`, no `Content-Type` |
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// As [`Origin::start`], on `ip` (port 0): for nodes that cannot reach
    /// the test's loopback, such as ones in network namespaces.
    pub async fn start_on(ip: IpAddr) -> Self {
        let state = Arc::new(OriginState::default());
        let app = Router::new()
            .fallback(origin_handler)
            .with_state(state.clone());
        let (addr, task) = serve_origin(ip, app).await;
        Self { addr, state, task }
    }

    /// The loader URL template for keys under `/{prefix}/`.
    pub fn url_template(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/{{key}}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("origin state").clone()
    }

    /// How many loads of `key` arrived under `/data/`.
    pub fn count(&self, key: &str) -> usize {
        self.count_in("data", key)
    }

    /// How many loads of `key` arrived under `/{prefix}/`.
    pub fn count_in(&self, prefix: &str, key: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| s.is_for(prefix, key))
            .count()
    }

    pub fn total(&self) -> usize {
        self.state.seen.lock().expect("origin state").len()
    }

    /// Waits until `key` has been requested `n` times under `/{prefix}/`.
    pub async fn wait_count(&self, prefix: &str, key: &str, n: usize) {
        poll_until(
            &format!("{n} origin loads of {prefix}/{key}"),
            WAIT,
            || async {
                let count = self.count_in(prefix, key);
                if count >= n {
                    Ok(())
                } else {
                    Err(format!("{count} loads"))
                }
            },
        )
        .await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            eprintln!("----- origin requests -----");
            for seen in self.requests() {
                eprintln!("{} {} query={:?}", seen.method, seen.path, seen.query);
            }
            eprintln!("----- end of origin requests -----");
        }
    }
}

async fn origin_handler(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let seen = Seen {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let (prefix, key) = match seen.split() {
        Some((prefix, raw)) => (
            prefix.to_owned(),
            String::from_utf8_lossy(&pct_decode(raw)).into_owned(),
        ),
        None => (String::new(), String::new()),
    };
    let loads = {
        let mut all = state.seen.lock().expect("origin state");
        all.push(seen);
        all.iter().filter(|s| s.is_for(&prefix, &key)).count()
    };

    let plain = |status: StatusCode, body: String| {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response
    };
    if key.starts_with("slow-") {
        tokio::time::sleep(SLOW).await;
        plain(StatusCode::OK, format!("origin:{key}"))
    } else if key.starts_with("404-") {
        plain(StatusCode::NOT_FOUND, "no such key".into())
    } else if key.starts_with("500-") {
        plain(StatusCode::INTERNAL_SERVER_ERROR, "origin broke".into())
    } else if key.starts_with("hang-") {
        tokio::time::sleep(HANG).await;
        plain(StatusCode::OK, format!("origin:{key}"))
    } else if key.starts_with("ct-") {
        let mut response = plain(
            StatusCode::OK,
            serde_json::json!({ "key": key }).to_string(),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else if key.starts_with("maxage-") {
        let mut response = plain(StatusCode::OK, format!("origin:{key}:{loads}"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        response
    } else if key.starts_with("slowver-") {
        tokio::time::sleep(SLOW).await;
        plain(StatusCode::OK, format!("origin:{key}:{loads}"))
    } else if key.starts_with("ver-") {
        plain(StatusCode::OK, format!("origin:{key}:{loads}"))
    } else {
        plain(StatusCode::OK, format!("origin:{key}"))
    }
}

/// Serves an origin's `app` on `ip`, on a port of its own.
pub async fn serve_origin(ip: IpAddr, app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .expect("bind the origin");
    let addr = listener.local_addr().expect("origin address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("origin server");
    });
    (addr, task)
}
