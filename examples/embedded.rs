//! shoal embedded in a Rust service, the groupcache way: the loader is a
//! Rust function in the same process, and the service reads the cache with
//! a method call, not a request to `localhost:3000`.
//!
//! The service answers `GET /quote/{symbol}` on its own port (4000) with a
//! price that takes 300 ms to compute. Two instances run here, on
//! 127.0.0.2 and 127.0.0.3 (as two pods would), with fixed membership; each
//! embeds a shoal node on the standard ports of its address. A quote asked
//! of either instance is computed once, by the instance that owns the
//! symbol, and then served from memory by both.
//!
//! ```text
//! cargo run --example embedded
//! ```
//!
//! It asks both instances for a few quotes, prints where each answer came
//! from and how many times each quote was computed, then shuts both down.
//! In a deployment each pod runs one instance, with gossip membership seeded
//! by the headless Service's name instead of the fixed list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal::{Config, Fresh, GroupError, GroupHandle, Listeners, LoadError, Loader, Node, Value};

/// The slow computation: a price per symbol, 300 ms each. Counts its calls
/// so the example can show that each symbol was computed once.
#[derive(Clone, Default)]
struct Quotes {
    computed: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Loader for Quotes {
    async fn load(&self, symbol: &str) -> Result<Fresh, LoadError> {
        if !symbol.bytes().all(|b| b.is_ascii_uppercase()) || symbol.len() > 5 {
            return Err(LoadError::NotFound);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.total.fetch_add(1, Ordering::Relaxed);
        *self
            .computed
            .lock()
            .map_err(|_| LoadError::Failure("the counter is poisoned".into()))?
            .entry(symbol.to_owned())
            .or_default() += 1;
        let cents: u64 = symbol.bytes().map(u64::from).sum::<u64>() * 37 % 100_000;
        let body = format!(
            "{{\"symbol\":\"{symbol}\",\"price\":{}.{:02}}}",
            cents / 100,
            cents % 100
        );
        let json = HeaderValue::from_static("application/json");
        // A quote is good for a minute.
        Ok(Fresh::new(Value::new(body, Some(json))).with_ttl(Duration::from_secs(60)))
    }
}

/// The service's own API: `GET /quote/{symbol}`, read through the cache.
fn service(quotes: GroupHandle) -> Router {
    Router::new()
        .route("/quote/{symbol}", get(quote))
        .with_state(quotes)
}

async fn quote(State(quotes): State<GroupHandle>, Path(symbol): Path<String>) -> Response {
    match quotes.get(&symbol).await {
        Ok(fetched) => {
            let value = fetched.fresh.value;
            let mut response = value.bytes.into_response();
            if let Some(content_type) = value.content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response.headers_mut().insert(
                "x-answered-from",
                HeaderValue::from_static(fetched.source.as_str()),
            );
            response
        }
        Err(GroupError::OriginNotFound) => {
            (StatusCode::NOT_FOUND, "no such symbol").into_response()
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// One instance: an embedded shoal node and the service on port 4000.
struct Instance {
    ip: IpAddr,
    node: shoal::NodeHandle,
    serving: tokio::task::JoinHandle<()>,
}

const SERVICE_PORT: u16 = 4000;

async fn start_instance(
    ip: IpAddr,
    everyone: &[IpAddr],
    quotes: Quotes,
) -> Result<Instance, Box<dyn std::error::Error>> {
    let peers: Vec<String> = everyone.iter().map(|ip| format!("\"{ip}\"")).collect();
    // The config file's format; the group's loader is the Rust one below.
    let config = Config::from_yaml(&format!(
        "node: {{ name: quotes-{ip}, bind: {ip}, advertise: {ip}, drain: 200ms }}
membership: {{ static_peers: [{}] }}
groups: {{ quotes: {{ capacity: 16MiB, ttl: 5m }} }}
",
        peers.join(", ")
    ))?;
    let listeners = Listeners::bind(&config)?;
    let node = Node::builder(config)
        .loader("quotes", quotes)
        .start(listeners)
        .await?;
    let group = node.group("quotes").ok_or("the node has no quotes group")?;
    let listener = tokio::net::TcpListener::bind((ip, SERVICE_PORT)).await?;
    let serving = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, service(group)).await {
            eprintln!("the service on {ip} stopped: {error}");
        }
    });
    Ok(Instance { ip, node, serving })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ips: Vec<IpAddr> = vec!["127.0.0.2".parse()?, "127.0.0.3".parse()?];
    let quotes = Quotes::default();
    let mut instances = Vec::new();
    for &ip in &ips {
        instances.push(start_instance(ip, &ips, quotes.clone()).await?);
    }
    for instance in &instances {
        if !instance.node.ready(Duration::from_secs(10)).await {
            return Err(format!("the node on {} did not become ready", instance.ip).into());
        }
    }
    println!(
        "two instances up; each sees {} members",
        instances[0].node.members().len()
    );

    let client = reqwest::Client::builder().no_proxy().build()?;
    for symbol in ["ACME", "GLOBX", "INITE"] {
        for instance in &instances {
            let url = format!("http://{}:{SERVICE_PORT}/quote/{symbol}", instance.ip);
            let response = client.get(&url).send().await?;
            let from = response
                .headers()
                .get("x-answered-from")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let status = response.status();
            let body = response.text().await?;
            println!("{url} → {status} {body} (from {from})");
        }
    }
    let missing = client
        .get(format!("http://{}:{SERVICE_PORT}/quote/nope", ips[0]))
        .send()
        .await?;
    println!("an unknown symbol → {}", missing.status());

    let computed = quotes
        .computed
        .lock()
        .map_err(|_| "the counter is poisoned")?
        .clone();
    println!(
        "computed {} times in all: {computed:?}",
        quotes.total.load(Ordering::Relaxed)
    );
    let twice: Vec<_> = computed.iter().filter(|(_, n)| **n > 1).collect();

    for instance in instances {
        instance.serving.abort();
        instance.node.shutdown().await;
    }
    if !twice.is_empty() {
        return Err(format!("computed more than once: {twice:?}").into());
    }
    println!("every quote was computed once for both instances");
    Ok(())
}
