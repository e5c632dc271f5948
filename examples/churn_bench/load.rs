//! The steady load: client workers at a fixed rate, each request to a random
//! key on a random node in service.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::bench_common::format::key_name;
use crate::client::{Tally, get_with_retry};
use crate::{MAX_LOAD, REQUEST_TIMEOUT};

struct LoadShared {
    client: reqwest::Client,
    /// The endpoints new requests go to.
    in_service: RwLock<Vec<IpAddr>>,
    stop: AtomicBool,
    keys: usize,
}

impl LoadShared {
    fn pick(&self) -> Option<IpAddr> {
        let nodes = self.in_service.read().expect("in-service set");
        if nodes.is_empty() {
            None
        } else {
            Some(nodes[rand::random_range(0..nodes.len())])
        }
    }
}

/// Client workers, each sending at `rate / workers` requests a second to
/// a random key on a random node in service.
pub struct Load {
    shared: Arc<LoadShared>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    pub fn start(client: reqwest::Client, in_service: &[IpAddr], args: &Args) -> Self {
        let shared = Arc::new(LoadShared {
            client,
            in_service: RwLock::new(in_service.to_vec()),
            stop: AtomicBool::new(false),
            keys: args.keys,
        });
        let period = Duration::from_secs_f64(args.workers as f64 / f64::from(args.rate));
        let workers = (0..args.workers)
            .map(|index| {
                let shared = shared.clone();
                let offset = period.mul_f64(index as f64 / args.workers as f64);
                tokio::spawn(worker(shared, offset, period))
            })
            .collect();
        Self { shared, workers }
    }

    pub fn add(&self, ip: IpAddr) {
        let mut nodes = self.shared.in_service.write().expect("in-service set");
        if !nodes.contains(&ip) {
            nodes.push(ip);
        }
    }

    pub fn remove(&self, ip: IpAddr) {
        self.shared
            .in_service
            .write()
            .expect("in-service set")
            .retain(|&n| n != ip);
    }

    /// Stops the workers once their requests in flight are answered.
    pub async fn stop(self) -> Tally {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for worker in self.workers {
            match tokio::time::timeout(REQUEST_TIMEOUT * 3, worker).await {
                Ok(Ok(tally)) => total.merge(tally),
                Ok(Err(error)) => progress!("a load worker failed: {error}"),
                Err(_) => progress!("a load worker did not stop in time"),
            }
        }
        total
    }
}

async fn worker(shared: Arc<LoadShared>, offset: Duration, period: Duration) -> Tally {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let max_requests = (MAX_LOAD.as_secs_f64() / period.as_secs_f64()).ceil() as u64;
    let mut tally = Tally::default();
    while tally.requests < max_requests && started.elapsed() < MAX_LOAD {
        ticks.tick().await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let path = format!("/bench/{}", key_name(rand::random_range(0..shared.keys)));
        let sent = Instant::now();
        let result = get_with_retry(&shared.client, || shared.pick(), &path).await;
        tally.record(&result, sent.elapsed());
    }
    tally
}
