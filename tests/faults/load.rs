//! The load: client tasks doing GET (most), PUT and DELETE on a bounded key
//! set through random running nodes' service ports, each request with a
//! timeout, every answer recorded.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::common::SERVICE_PORT;
use crate::settings::{CLIENT_PERIOD, CLIENT_TIMEOUT, KEYS};
use crate::timeline::Clock;
use crate::value::{Sequence, Stamp, client};

/// The nodes clients may send to: every node's address, and whether it is
/// running (the chaos loop clears the flag before it stops a node and sets
/// it once the new process is ready).
pub struct Targets {
    pub ips: Vec<IpAddr>,
    pub up: Vec<AtomicBool>,
}

impl Targets {
    pub fn new(ips: Vec<IpAddr>) -> Arc<Self> {
        let up = ips.iter().map(|_| AtomicBool::new(true)).collect();
        Arc::new(Self { ips, up })
    }

    pub fn set_up(&self, i: usize, up: bool) {
        self.up[i].store(up, Ordering::SeqCst);
    }

    fn pick(&self, rng: &mut StdRng) -> IpAddr {
        let up: Vec<IpAddr> = self
            .ips
            .iter()
            .zip(&self.up)
            .filter(|(_, up)| up.load(Ordering::SeqCst))
            .map(|(ip, _)| *ip)
            .collect();
        let from = if up.is_empty() { &self.ips } else { &up };
        from[rng.random_range(0..from.len())]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Get,
    /// A PUT of the value with this sequence number.
    Put(u64),
    Delete,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put(_) => "PUT",
            Op::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Answer {
        status: u16,
        /// `x-shoal-source`.
        source: Option<String>,
        body: Bytes,
    },
    /// No answer: `timeout`, `connect` or another transport error.
    Failed(String),
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Record {
    pub client: usize,
    pub op: Op,
    pub key: String,
    pub node: IpAddr,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

impl Record {
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Answer { status, .. } => Some(status),
            Outcome::Failed(_) => None,
        }
    }

    /// `GET 200`, `PUT 204`, `GET timeout`, …
    pub fn class(&self) -> String {
        match &self.outcome {
            Outcome::Answer { status, .. } => format!("{} {status}", self.op.name()),
            Outcome::Failed(kind) => format!("{} {kind}", self.op.name()),
        }
    }
}

/// The running clients; [`Load::stop`] ends them and returns their records.
pub struct Load {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
}

impl Load {
    /// Starts `clients` client tasks, each with its own RNG from `seed`.
    pub fn start(
        clients: usize,
        seed: u64,
        clock: Clock,
        seq: Sequence,
        targets: Arc<Targets>,
    ) -> Self {
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(CLIENT_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("the load's HTTP client");
        let tasks = (0..clients)
            .map(|i| {
                let client = Client {
                    id: i,
                    rng: StdRng::seed_from_u64(seed ^ (0x9e37_79b9 * (i as u64 + 1))),
                    http: http.clone(),
                    clock,
                    seq: seq.clone(),
                    targets: targets.clone(),
                };
                tokio::spawn(client.run(stop.clone()))
            })
            .collect();
        Self { stop, tasks }
    }

    /// Lets every request in flight finish, then returns all records.
    pub async fn stop(self) -> Vec<Record> {
        self.stop.cancel();
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("a load client panicked"));
        }
        all.sort_by_key(|r| r.start);
        all
    }
}

struct Client {
    id: usize,
    rng: StdRng,
    http: reqwest::Client,
    clock: Clock,
    seq: Sequence,
    targets: Arc<Targets>,
}

impl Client {
    async fn run(mut self, stop: CancellationToken) -> Vec<Record> {
        let mut records = Vec::new();
        let mut pace = tokio::time::interval(CLIENT_PERIOD);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return records,
                _ = pace.tick() => {}
            }
            records.push(self.one().await);
        }
    }

    /// One request: 80 % GET, 12 % PUT, 8 % DELETE, on a random key through
    /// a random running node.
    async fn one(&mut self) -> Record {
        let key = format!("k{}", self.rng.random_range(0..KEYS));
        let node = self.targets.pick(&mut self.rng);
        let roll = self.rng.random_range(0..100);
        let url = format!("http://{node}:{SERVICE_PORT}/data/{key}");
        let (op, request) = if roll < 80 {
            (Op::Get, self.http.get(&url))
        } else if roll < 92 {
            let seq = self.seq.next();
            let value = Stamp {
                key: key.clone(),
                producer: client(self.id),
                seq,
            };
            (Op::Put(seq), self.http.put(&url).body(value.encode()))
        } else {
            (Op::Delete, self.http.delete(&url))
        };
        let start = self.clock.now();
        let outcome = send(request).await;
        Record {
            client: self.id,
            op,
            key,
            node,
            start,
            end: self.clock.now(),
            outcome,
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Outcome {
    let failed = |e: reqwest::Error| {
        Outcome::Failed(if e.is_timeout() {
            "timeout".into()
        } else if e.is_connect() {
            "connect-error".into()
        } else {
            "transport-error".into()
        })
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let status = response.status().as_u16();
    let source = response
        .headers()
        .get("x-shoal-source")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match response.bytes().await {
        Ok(body) => Outcome::Answer {
            status,
            source,
            body,
        },
        Err(e) => failed(e),
    }
}
