//! The origin: an HTTP server in the root namespace that produces a fresh,
//! self-describing value for every load, remembers when it produced each,
//! and can be told to answer slowly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};

use crate::common::{pct_decode, serve_origin};
use crate::timeline::Clock;
use crate::value::{ORIGIN, Sequence, Stamp};

/// One value the origin produced.
#[derive(Debug, Clone)]
pub struct Produced {
    pub key: String,
    /// When the request arrived and the value was made: what the origin
    /// "read" then, however long it took to answer.
    pub at: Duration,
}

struct Shared {
    clock: Clock,
    seq: Sequence,
    delay_ms: AtomicU64,
    produced: Mutex<HashMap<u64, Produced>>,
}

pub struct FaultOrigin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultOrigin {
    /// Serves `GET /data/{key}` on `ip` (port 0).
    pub async fn start(ip: IpAddr, clock: Clock, seq: Sequence) -> Self {
        let shared = Arc::new(Shared {
            clock,
            seq,
            delay_ms: AtomicU64::new(0),
            produced: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(load).with_state(shared.clone());
        let (addr, task) = serve_origin(ip, app).await;
        Self { addr, shared, task }
    }

    /// Makes every answer from now on wait `delay` (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every value produced so far, by sequence number.
    pub fn produced(&self) -> HashMap<u64, Produced> {
        self.shared.produced.lock().expect("origin log").clone()
    }
}

impl Drop for FaultOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn load(State(shared): State<Arc<Shared>>, request: Request) -> String {
    let path = request.uri().path();
    let raw = path.strip_prefix("/data/").unwrap_or(path);
    let key = String::from_utf8_lossy(&pct_decode(raw)).into_owned();
    let seq = shared.seq.next();
    let at = shared.clock.now();
    shared.produced.lock().expect("origin log").insert(
        seq,
        Produced {
            key: key.clone(),
            at,
        },
    );
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        // The slow origin itself, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    Stamp {
        key,
        producer: ORIGIN.into(),
        seq,
    }
    .encode()
}
