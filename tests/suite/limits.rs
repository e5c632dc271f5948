//! Bounded connections (`limits:`), probed as a hostile client would, over
//! raw TCP: a connection that sends nothing, a head sent a byte at a time,
//! a keep-alive connection left idle, a body that never arrives or never
//! ends, a header past the cap, more connections than a port holds (the
//! admin port must still answer), and unsigned or read-only peer writes.
//! Each refusal must be an answer a client can read (JSON where shoal
//! writes it) and counted in `shoal_connections_rejected_total` or
//! `shoal_peer_rejected_total`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{
    Addrs, Config, Node, NodeSpec, Origin, PEER_PORT, WAIT, keyring_file, poll_until,
};

/// This file's loopback block: nodes run on 127.0.40.2, 127.0.40.3, …
static ADDRS: Addrs = Addrs::new(40);

/// Short bounds, so that each one is seen to act within a test's time.
const LIMITS: &str = "limits: { header_read_timeout: 1s, idle_timeout: 1500ms, \
                      body_read_timeout: 1s, min_body_rate: 1KiB, max_header_bytes: 8KiB, \
                      max_connections: { service: 4, peer: 16, admin: 8 } }";

async fn limited(origin: &Origin) -> Node {
    Node::start_lone(ADDRS.next(), &Config::standard(origin).extra(LIMITS)).await
}

fn rejected(port: &str, reason: &str) -> String {
    format!("shoal_connections_rejected_total{{port=\"{port}\",reason=\"{reason}\"}}")
}

/// Waits until the node's count of `series` is at least `at_least`.
async fn wait_for_count(node: &Node, series: &str, at_least: f64) {
    poll_until(series, WAIT, || async {
        match node.metric(series).await {
            Some(count) if count >= at_least => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Reads until the server closes the connection (EOF or reset), returning
/// what it sent; panics if it is still open after `WAIT`.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the node should have closed the connection");
        match read {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and body of the one response in `raw`.
fn response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Reads one response with a `content-length` from a connection that stays
/// open.
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&buf[..n]);
        let (status, head, body) = response(&received);
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|n| n.trim().parse::<usize>().ok());
        if let Some(length) = length
            && body.len() >= length
        {
            return (status, head, body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_and_a_slow_head_are_cut_and_counted() {
    let origin = Origin::start().await;
    let node = limited(&origin).await;

    let mut silent = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    assert!(read_until_closed(&mut silent).await.is_empty());

    // A request line, then one header byte every 300 ms: never a whole
    // head, but never quiet for long either.
    let mut slow = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    slow.write_all(b"GET /data/k HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let trickle = async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(WAIT, trickle)
        .await
        .expect("the node should have cut the trickling head");
    wait_for_count(&node, &rejected("service", "header-timeout"), 2.0).await;
    // The node is as good as before.
    assert_eq!(node.get("/data/after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_but_a_slow_answer_is_not() {
    let origin = Origin::start().await;
    let node = limited(&origin).await;
    let mut stream = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    // The origin takes a second, near the idle timeout: a request in
    // flight is never idle. Then the connection idles and is closed.
    stream
        .write_all(b"GET /data/slow-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "origin:slow-1");
    let started = Instant::now();
    assert!(read_until_closed(&mut stream).await.is_empty());
    // Closed for idleness, not at once.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // Idleness is no refusal.
    assert_eq!(
        node.metric(&rejected("service", "header-timeout")).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_or_never_ends_is_a_408() {
    let origin = Origin::start().await;
    let node = limited(&origin).await;

    // Ten bytes of a promised hundred, then nothing.
    let mut stalled = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    stalled
        .write_all(b"PUT /data/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let (status, _, body) = response(&read_until_closed(&mut stalled).await);
    assert_eq!(status, 408, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let message = json["error"].as_str().expect("message");
    assert!(message.contains("limits.body_read_timeout"), "{message}");

    // A chunked body, a byte every 100 ms, forever: more than the rate
    // allows past the grace.
    let mut endless = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    endless
        .write_all(b"PUT /data/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("write");
    let writer = async {
        while endless.write_all(b"1\r\nx\r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(WAIT, writer)
        .await
        .expect("the node should have cut the endless body");
    wait_for_count(&node, &rejected("service", "body-timeout"), 2.0).await;
    // Nothing was stored.
    assert_eq!(node.get("/data/k").await.text(), "origin:k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_past_the_header_cap_is_refused() {
    let origin = Origin::start().await;
    let node = limited(&origin).await;
    let mut stream = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    let header = "a".repeat(20 * 1024);
    let request = format!("GET /data/k HTTP/1.1\r\nHost: x\r\nX-Big: {header}\r\n\r\n");
    // The node may close before it has read it all.
    let _ = stream.write_all(request.as_bytes()).await;
    let (status, head, _) = response(&read_until_closed(&mut stream).await);
    assert_eq!(status, 431, "{head}");
    wait_for_count(&node, &rejected("service", "header-too-large"), 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_connection_cap_a_port_answers_503_and_the_admin_port_still_answers() {
    let origin = Origin::start().await;
    let config = Config::standard(&origin).extra(
        "limits: { max_connections: { service: 4, peer: 16, admin: 8 }, header_read_timeout: 30s }",
    );
    let node = Node::start_lone(ADDRS.next(), &config).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            TcpStream::connect(node.service_addr())
                .await
                .expect("connect"),
        );
    }
    poll_until("4 service connections open", WAIT, || async {
        match node
            .metric("shoal_connections_open{port=\"service\"}")
            .await
        {
            Some(4.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let mut over = TcpStream::connect(node.service_addr())
        .await
        .expect("connect");
    let (status, head, body) = response(&read_until_closed(&mut over).await);
    assert_eq!(status, 503, "{head}");
    assert!(
        head.contains("x-shoal-error: too-many-connections"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let message = json["error"].as_str().expect("message");
    assert!(
        message.contains("limits.max_connections.service"),
        "{message}"
    );
    // Health and metrics are on a port of their own.
    assert_eq!(node.admin_get("/healthz").await.status, 200);
    assert_eq!(
        node.metric(&rejected("service", "connection-limit")).await,
        Some(1.0)
    );

    // One let go: the port takes connections again.
    drop(held.pop());
    poll_until("a free service connection", WAIT, || async {
        let status = node.get("/data/again").await.status;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    })
    .await;
}

/// A node with a keyring, alone on loopback, and its peer address.
async fn keyed(origin: &Origin, keys: &tempfile::TempDir) -> (Node, SocketAddr) {
    let keyring = keyring_file(keys.path(), "keyring", &[3]);
    let ip = ADDRS.next();
    let node = Node::start(
        NodeSpec::new(ip)
            .config(&Config::standard(origin))
            .arg("--keyring")
            .arg(keyring.display().to_string()),
    )
    .await;
    (node, SocketAddr::new(ip, PEER_PORT))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_peer_write_is_refused_before_its_body_is_sent() {
    let origin = Origin::start().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let (node, peer) = keyed(&origin, &keys).await;
    let mut stream = TcpStream::connect(peer).await.expect("connect");
    // A megabyte promised, not a byte of it sent: the 401 must come anyway.
    stream
        .write_all(b"PUT /_shoal/v1/data/aw HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        .await
        .expect("write");
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("accepts only signed peer requests"), "{body}");
    assert_eq!(
        node.metric("shoal_peer_rejected_total{reason=\"missing-signature\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_write_to_a_read_only_group_is_refused() {
    let origin = Origin::start().await;
    let config = Config::standard(&origin).group(
        "fixed",
        &format!(
            "{{ read_only: true, loader: {{ http: {{ url: \"{}\" }} }} }}",
            origin.url_template("fixed")
        ),
    );
    let ip = ADDRS.next();
    let node = Node::start_lone(ip, &config).await;
    let peer = SocketAddr::new(ip, PEER_PORT);
    let client = crate::common::http_client();
    // base64url("k") = "aw"
    let url = format!("http://{peer}/_shoal/v1/fixed/aw");
    let put = client
        .put(&url)
        .header("content-type", "text/html")
        .body("<script>x</script>")
        .send()
        .await
        .expect("sent");
    assert_eq!(put.status(), 405);
    assert_eq!(
        put.headers().get("x-shoal-error").map(|v| v.as_bytes()),
        Some(&b"read-only"[..])
    );
    let body: serde_json::Value =
        serde_json::from_slice(&put.bytes().await.expect("body")).expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")),
        "{body}"
    );
    assert_eq!(
        node.metric("shoal_peer_rejected_total{reason=\"read-only\"}")
            .await,
        Some(1.0)
    );
    // Clients still get the origin's value, as the origin's type.
    let got = node.get("/fixed/k").await;
    assert_eq!(got.text(), "origin:k");
    // An invalidation is still taken.
    let delete = client.delete(&url).send().await.expect("sent");
    assert_eq!(delete.status(), 204);
}
