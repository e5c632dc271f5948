//! Client requests: one GET as a Go or urllib3 client sends it (one retry
//! after a connection-level failure), and the [`Tally`] of many.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::bench_common::format::{chain, micros};
use crate::bench_common::messages::count_message;
use crate::bench_common::retry::connection_level;
use crate::{REQUEST_TIMEOUT, SERVICE_PORT, VALUE_LEN};

/// A client like a Service's: pooled keep-alive connections.
pub fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .expect("build the load client")
}

pub fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build the admin client")
}

/// One attempt's result.
enum Attempt {
    Ok,
    /// Failed at the connection level: worth one retry.
    Retryable(String),
    Failed(String),
}

async fn get_once(client: &reqwest::Client, ip: IpAddr, path: &str) -> Attempt {
    let url = format!("http://{ip}:{SERVICE_PORT}{path}");
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(error) => {
            let retry = connection_level(&error);
            let message = format!("{ip}: {}", chain(&error.without_url()));
            return if retry {
                Attempt::Retryable(message)
            } else {
                Attempt::Failed(message)
            };
        }
    };
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("x-shoal-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    match response.bytes().await {
        Err(error) => Attempt::Failed(format!(
            "{ip}: reading the body: {}",
            chain(&error.without_url())
        )),
        Ok(_) if status != 200 => Attempt::Failed(format!("{ip}: status {status} ({kind})")),
        Ok(body) if body.len() != VALUE_LEN => {
            Attempt::Failed(format!("{ip}: a body of {} bytes", body.len()))
        }
        Ok(_) => Attempt::Ok,
    }
}

pub struct GetResult {
    pub error: Option<String>,
    /// Why the first attempt failed, when it was retried.
    retried: Option<String>,
}

/// A GET as a Go or urllib3 client does it: one retry after a
/// connection-level failure, on a node picked again (as a Service would).
pub async fn get_with_retry(
    client: &reqwest::Client,
    pick: impl Fn() -> Option<IpAddr>,
    path: &str,
) -> GetResult {
    let mut retried = None;
    loop {
        let Some(ip) = pick() else {
            return GetResult {
                error: Some("no node in service".into()),
                retried,
            };
        };
        match get_once(client, ip, path).await {
            Attempt::Ok => {
                return GetResult {
                    error: None,
                    retried,
                };
            }
            Attempt::Retryable(message) if retried.is_none() => retried = Some(message),
            Attempt::Retryable(message) | Attempt::Failed(message) => {
                return GetResult {
                    error: Some(message),
                    retried,
                };
            }
        }
    }
}

/// Requests, failures and latencies of some client traffic.
#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub failed: u64,
    pub retried: u64,
    latencies_us: Vec<u32>,
    pub errors: BTreeMap<String, u64>,
    /// What the first attempt of each retried request failed with.
    pub retry_reasons: BTreeMap<String, u64>,
}

impl Tally {
    pub fn record(&mut self, result: &GetResult, latency: Duration) {
        self.requests += 1;
        self.latencies_us.push(micros(latency));
        if let Some(reason) = &result.retried {
            self.retried += 1;
            count_message(&mut self.retry_reasons, reason);
        }
        if let Some(error) = &result.error {
            self.failed += 1;
            count_message(&mut self.errors, error);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.retried += other.retried;
        self.latencies_us.extend(other.latencies_us);
        for (message, count) in other.errors {
            *self.errors.entry(message).or_default() += count;
        }
        for (message, count) in other.retry_reasons {
            *self.retry_reasons.entry(message).or_default() += count;
        }
    }

    pub fn sorted(&mut self) -> &[u32] {
        self.latencies_us.sort_unstable();
        &self.latencies_us
    }

    pub fn messages_json(messages: &BTreeMap<String, u64>) -> serde_json::Value {
        serde_json::Value::Object(
            messages
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                .collect(),
        )
    }
}
