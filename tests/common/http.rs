//! Talking HTTP to the nodes: a client, whole answers, raw requests, and
//! keys as path segments.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// A reqwest client for plain HTTP to the nodes: no proxy, a whole-request
/// timeout well above anything the tests wait for.
pub fn http_client() -> reqwest::Client {
    // The crate's reqwest is built with `rustls-no-provider`: a client needs a
    // process-wide crypto provider even if it only speaks plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build the test's HTTP client")
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub(super) async fn read(what: &str, response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-shoal-source`: where the answering node got the bytes.
    pub fn source(&self) -> Option<&str> {
        self.header("x-shoal-source")
    }

    /// `x-shoal-error`: the kind of error.
    pub fn error_kind(&self) -> Option<&str> {
        self.header("x-shoal-error")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts a JSON error answer: the status, `{"error": "<non-empty string>"}`
    /// and, when given, the `x-shoal-error` kind.
    pub fn assert_error(&self, status: u16, kind: Option<&str>) -> serde_json::Value {
        assert_eq!(self.status, status, "status; body {:?}", self.text());
        let json = self.json();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "an error body has a non-empty \"error\" string: {json}"
        );
        if let Some(kind) = kind {
            assert_eq!(self.error_kind(), Some(kind), "x-shoal-error; body {json}");
        }
        json
    }
}

/// A raw HTTP/1.1 exchange over a fresh TCP connection, for request paths that
/// a URL library would normalise (`/data/..`). Returns the status code and the
/// rest of the answer (head and body) as text.
pub async fn raw_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("writing to {addr}: {e}"));
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP/1.1 answer: {answer:?}"));
    (status, answer)
}

/// What [`enc`] leaves as it is: ASCII letters, digits, `-`, `_` and `~`,
/// RFC 3986's unreserved characters but `.`. A `.` is escaped too, so that
/// keys such as `.` and `..` stay keys and are not taken for dot-segments.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Percent-encodes every byte of `key` but those [`SEGMENT`] keeps, so the
/// key is one path segment that no URL library rewrites.
pub fn enc(key: &str) -> String {
    utf8_percent_encode(key, SEGMENT).to_string()
}

/// Decodes `%XX` escapes (`XX` two hex digits); anything else, a malformed
/// escape included, is kept as it is.
pub fn pct_decode(text: &str) -> Vec<u8> {
    percent_decode_str(text).collect()
}
