//! The requesting side of the peer API: [`HttpPeers`] implements the cache's
//! [`Peers`] over HTTP/2 (cleartext, prior knowledge): one multiplexed
//! connection to each peer, so that many requests share each write and
//! read. With a keyring, every request is signed (see
//! [`crate::security::signing`]).
//!
//! A peer that does not speak HTTP/2 (a node from before it, during a
//! rolling upgrade) is asked again over HTTP/1.1 keep-alive, and then asked
//! over HTTP/1.1 only for [`HTTP1_RECHECK`].
//!
//! HTTP/2 goes straight over the `h2` crate ([`super::connections`]);
//! HTTP/1.1 through hyper's pooled client. Neither has reqwest's layers on
//! top: the peer path builds its `Uri` from parts and never parses a URL
//! (the profile in BENCHMARKS.md, issue 11).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connections::{ExchangeError, Http2Connections, Reply, authority_of};
use super::protocol::{
    self, GENERATION_HEADER, NO_STORE_HEADER, PEEK_QUERY, SUCCESSOR_QUERY, TTL_HEADER,
    VERSION_HEADER,
};
use crate::cache::{
    Ask, Fresh, HandedOff, HandoffReceipt, LoadError, PeerError, Peers, Value, Version,
};
use crate::config::PeerConfig;
use crate::error_chain;
use crate::ring::{Member, MemberId};
use crate::security::{Keyring, Receiver, RequestParts, Signer, unix_now};
use crate::wire::ErrorKind;
use crate::wire::headers::{ERROR_HEADER, TIMEOUT_HEADER, stale_age};

/// How long a peer found to speak HTTP/1.1 only is asked over HTTP/1.1
/// before HTTP/2 is tried again (it may have been upgraded since).
pub const HTTP1_RECHECK: Duration = Duration::from_secs(300);

type Http1Client = Client<HttpConnector, Full<Bytes>>;

pub struct HttpPeers {
    http2: Http2Connections,
    http1: Http1Client,
    /// Peers that answered only over HTTP/1.1, and until when to believe it.
    http1_only: Mutex<HashMap<MemberId, Instant>>,
    timeout: Duration,
    /// How long a peek may wait for its answer once connected.
    peek_timeout: Duration,
    signing: Option<Signing>,
}

/// Who this node is to its peers, and the keys it signs with (the current
/// keyring is read for every request, so a reloaded one applies at once).
struct Signing {
    signer: Signer,
    keyring: watch::Receiver<Arc<Keyring>>,
    generations: watch::Receiver<Arc<Generations>>,
}

/// The generation each member started with, by ring id, as membership
/// knows it: a signed request names its receiver's, so it is good at that
/// run of that node only. Fixed peers have none (0).
pub type Generations = std::collections::HashMap<MemberId, u64>;

impl Signing {
    /// Whom a request to `member` is for.
    fn receiver(&self, member: &Member) -> Receiver {
        Receiver {
            addr: member.id,
            generation: self
                .generations
                .borrow()
                .get(&member.id)
                .copied()
                .unwrap_or(0),
        }
    }
}

/// One request to a peer, before it is addressed, signed and sent (it may
/// be sent more than once: signed anew for a restarted peer, or again over
/// HTTP/1.1).
struct Outgoing {
    method: Method,
    path_and_query: PathAndQuery,
    content_type: Option<HeaderValue>,
    /// One more header (a DELETE's superseded version).
    extra: Option<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Outgoing {
    fn new(method: Method, path_and_query: String) -> Result<Self, PeerError> {
        let path_and_query = PathAndQuery::try_from(path_and_query)
            .map_err(|e| PeerError::Failed(format!("cannot form the peer request's path: {e}")))?;
        Ok(Self {
            method,
            path_and_query,
            content_type: None,
            extra: None,
            body: Bytes::new(),
        })
    }

    fn get(path_and_query: String) -> Result<Self, PeerError> {
        Self::new(Method::GET, path_and_query)
    }

    /// The request for `to` at `authority`, signed for `receiver` where
    /// there is a keyring.
    fn request(
        &self,
        to: &Member,
        authority: &Authority,
        signing: Option<(&Signing, Receiver)>,
    ) -> Result<http::Request<()>, PeerError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()
            .map_err(|e| PeerError::Failed(format!("cannot address peer {}: {e}", to.id)))?;
        let mut request = http::Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if let Some(content_type) = &self.content_type {
            headers.insert(header::CONTENT_TYPE, content_type.clone());
        }
        if let Some((name, value)) = &self.extra {
            headers.insert(name.clone(), value.clone());
        }
        if !self.body.is_empty() || self.method == Method::PUT || self.method == Method::POST {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        if let Some((signing, receiver)) = signing {
            let keyring = Arc::clone(&signing.keyring.borrow());
            let parts = RequestParts {
                method: self.method.as_str(),
                path_and_query: self.path_and_query.as_str(),
                content_type: self.content_type.as_ref().map(HeaderValue::as_bytes),
                body: &self.body,
            };
            signing
                .signer
                .sign(&keyring, &parts, receiver, unix_now(), headers);
        }
        Ok(request)
    }
}

/// Which way a request goes to a peer.
#[derive(Clone, Copy)]
enum Via {
    Http2,
    Http1,
}

/// Why one exchange with a peer failed, before it is a [`PeerError`].
enum Failure {
    /// The peer could not be reached (`refused`: nothing listens there).
    Unreachable { refused: bool, detail: String },
    /// Reached, but the exchange broke off: also what asking a peer that
    /// speaks HTTP/1.1 only over HTTP/2 looks like.
    Broken(String),
}

impl Failure {
    fn of(error: &(dyn std::error::Error + 'static), connect: bool) -> Self {
        let detail = error_chain::with_causes(error);
        if connect {
            Self::Unreachable {
                refused: is_refused(error),
                detail,
            }
        } else {
            Self::Broken(detail)
        }
    }

    fn into_peer_error(self) -> PeerError {
        match self {
            Self::Unreachable { refused, detail } => PeerError::Unreachable { refused, detail },
            Self::Broken(detail) => PeerError::Failed(detail),
        }
    }
}

impl From<ExchangeError> for PeerError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Connect { refused, detail } => Self::Unreachable { refused, detail },
            ExchangeError::Broken(detail) => Self::Failed(detail),
        }
    }
}

impl HttpPeers {
    /// A client whose requests connect within the config's
    /// `connect_timeout` and are answered within its `timeout`, whose peeks
    /// wait at most `peek_timeout` for an answer, and that keeps an idle
    /// connection for at most `pool_idle_timeout`: less than peers'
    /// `limits.idle_timeout`, so that it never sends on a connection the
    /// peer is closing.
    pub fn new(config: &PeerConfig, peek_timeout: Duration, pool_idle_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(pool_idle_timeout)
            .build(connector);
        Self {
            http2: Http2Connections::new(config.connect_timeout, pool_idle_timeout),
            http1,
            http1_only: Mutex::new(HashMap::new()),
            timeout: config.timeout,
            peek_timeout,
            signing: None,
        }
    }

    /// Signs every request as `sender` (this node's id on the ring: its
    /// advertised IP and peer port) with the first key of `keyring`, for
    /// the receiver's current generation in `generations`.
    pub fn with_signing(
        mut self,
        sender: MemberId,
        keyring: watch::Receiver<Arc<Keyring>>,
        generations: watch::Receiver<Arc<Generations>>,
    ) -> Self {
        self.signing = Some(Signing {
            signer: Signer::from(sender),
            keyring,
            generations,
        });
        self
    }

    /// Whether `member` is, for now, asked over HTTP/1.1 only.
    pub fn speaks_http1_only(&self, member: &Member) -> bool {
        let mut http1_only = self
            .http1_only
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match http1_only.get(&member.id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                http1_only.remove(&member.id);
                false
            }
            None => false,
        }
    }

    fn remember_http1_only(&self, member: &Member) {
        self.http1_only
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(member.id, Instant::now() + HTTP1_RECHECK);
    }

    async fn send(&self, to: &Member, outgoing: Outgoing) -> Result<Reply, PeerError> {
        self.send_within(to, outgoing, self.timeout).await
    }

    /// Sends a request to `to` (signed for it, with a keyring) and reads
    /// its whole answer, all within `timeout`.
    async fn send_within(
        &self,
        to: &Member,
        outgoing: Outgoing,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        tokio::time::timeout(timeout, self.exchange(to, &outgoing))
            .await
            .unwrap_or(Err(PeerError::Timeout(timeout)))
    }

    async fn exchange(&self, to: &Member, outgoing: &Outgoing) -> Result<Reply, PeerError> {
        if self.speaks_http1_only(to) {
            return self.signed(Via::Http1, to, outgoing).await;
        }
        match self.signed(Via::Http2, to, outgoing).await {
            Err(PeerError::Failed(detail)) => {
                // Reached, but no HTTP/2 answer: perhaps a node from before
                // HTTP/2 between peers. Ask once more the old way.
                match self.signed(Via::Http1, to, outgoing).await {
                    Ok(reply) => {
                        tracing::info!(peer = %to.id, "peer speaks HTTP/1.1 only; asking it so for a while");
                        self.remember_http1_only(to);
                        Ok(reply)
                    }
                    Err(_) => Err(PeerError::Failed(detail)),
                }
            }
            other => other,
        }
    }

    /// One request `via` HTTP/2 or HTTP/1.1, signed for the run of `to` that
    /// membership knows; signed once more for the run that answered if
    /// that one restarted since.
    async fn signed(&self, via: Via, to: &Member, outgoing: &Outgoing) -> Result<Reply, PeerError> {
        let Some(signing) = &self.signing else {
            return self.call(via, to, outgoing, None).await;
        };
        let receiver = signing.receiver(to);
        let reply = self
            .call(via, to, outgoing, Some((signing, receiver)))
            .await?;
        // Signed for the run before a restart that membership has not
        // caught up with: sign once more for the run that answered.
        let restarted = (reply.status == StatusCode::UNAUTHORIZED)
            .then(|| {
                header_str(&reply.headers, GENERATION_HEADER)?
                    .parse::<u64>()
                    .ok()
            })
            .flatten();
        match restarted {
            Some(generation) => {
                let receiver = Receiver {
                    addr: to.id,
                    generation,
                };
                self.call(via, to, outgoing, Some((signing, receiver)))
                    .await
            }
            None => Ok(reply),
        }
    }

    /// Sends `outgoing` to `to`, signed for `receiver` where there is a
    /// keyring (and signed anew if it is sent again).
    async fn call(
        &self,
        via: Via,
        to: &Member,
        outgoing: &Outgoing,
        signing: Option<(&Signing, Receiver)>,
    ) -> Result<Reply, PeerError> {
        match via {
            Via::Http2 => {
                let head = |authority: &Authority| outgoing.request(to, authority, signing);
                self.http2
                    .exchange(to.id, head, outgoing.body.clone())
                    .await
            }
            Via::Http1 => {
                let authority = authority_of(to.id)?;
                let request = outgoing
                    .request(to, &authority, signing)?
                    .map(|()| Full::new(outgoing.body.clone()));
                self.call_http1(request).await
            }
        }
    }

    async fn call_http1(&self, request: http::Request<Full<Bytes>>) -> Result<Reply, PeerError> {
        let response = self
            .http1
            .request(request)
            .await
            .map_err(|e| Failure::of(&e, e.is_connect()).into_peer_error())?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Failure::of(&e, false).into_peer_error())?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The version a 204 reply carries ([`Version::ZERO`] if none).
    fn expect_no_content(&self, reply: Reply) -> Result<Version, PeerError> {
        if reply.status == StatusCode::NO_CONTENT {
            Ok(protocol::parse_version(reply.headers.get(VERSION_HEADER)).unwrap_or_default())
        } else {
            Err(self.error_reply(&reply))
        }
    }

    /// Turns an error reply into the error it reports (see [`reported_error`]).
    fn error_reply(&self, reply: &Reply) -> PeerError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let kind = header_str(&reply.headers, ERROR_HEADER).unwrap_or("");
        let timeout = header_str(&reply.headers, TIMEOUT_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let message = serde_json::from_slice::<ErrorBody>(&reply.body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&reply.body).into_owned());
        reported_error(reply.status, kind, message, timeout.unwrap_or(self.timeout))
    }

    async fn fetch_value(
        &self,
        node: &Member,
        ask: Ask,
        group: &str,
        key: &str,
    ) -> Result<Fresh, PeerError> {
        let mut path = protocol::path(group, key);
        if ask == Ask::Successor {
            path = format!("{path}?{SUCCESSOR_QUERY}");
        }
        let reply = self.send(node, Outgoing::get(path)?).await?;
        if reply.status != StatusCode::OK {
            return Err(self.error_reply(&reply));
        }
        Ok(read_value(reply))
    }

    async fn peek_value(
        &self,
        node: &Member,
        group: &str,
        key: &str,
    ) -> Result<Option<Fresh>, PeerError> {
        let path = format!("{}?{PEEK_QUERY}", protocol::path(group, key));
        let reply = self
            .send_within(node, Outgoing::get(path)?, self.peek_timeout)
            .await?;
        match reply.status {
            StatusCode::OK => Ok(Some(read_value(reply))),
            StatusCode::NOT_FOUND if error_kind(&reply.headers) == Some(ErrorKind::NotCached) => {
                Ok(None)
            }
            _ => Err(self.error_reply(&reply)),
        }
    }

    async fn hand_off_entries(
        &self,
        node: &Member,
        group: &str,
        entries: &[HandedOff],
    ) -> Result<HandoffReceipt, PeerError> {
        #[derive(Deserialize)]
        struct Receipt {
            accepted: u64,
            refused: u64,
        }
        let mut outgoing = Outgoing::new(Method::POST, protocol::handoff_path(group))?;
        outgoing.content_type = Some(HeaderValue::from_static("application/octet-stream"));
        outgoing.body = protocol::encode_handoff(entries).into();
        let reply = self.send(node, outgoing).await?;
        if reply.status != StatusCode::OK {
            return Err(self.error_reply(&reply));
        }
        let receipt: Receipt = serde_json::from_slice(&reply.body)
            .map_err(|e| PeerError::Failed(format!("handoff receipt does not parse: {e}")))?;
        Ok(HandoffReceipt {
            accepted: receipt.accepted,
            refused: receipt.refused,
        })
    }

    async fn store_value(
        &self,
        owner: &Member,
        group: &str,
        key: &str,
        value: &Value,
    ) -> Result<Version, PeerError> {
        let mut outgoing = Outgoing::new(Method::PUT, protocol::path(group, key))?;
        outgoing.content_type.clone_from(&value.content_type);
        outgoing.body = value.bytes.clone();
        let reply = self.send(owner, outgoing).await?;
        self.expect_no_content(reply)
    }

    async fn remove_value(
        &self,
        member: &Member,
        group: &str,
        key: &str,
        superseded: Option<Version>,
    ) -> Result<Version, PeerError> {
        let mut outgoing = Outgoing::new(Method::DELETE, protocol::path(group, key))?;
        if let Some(version) = superseded {
            outgoing.extra = Some((
                HeaderName::from_static(VERSION_HEADER),
                protocol::version_header(version),
            ));
        }
        let reply = self.send(member, outgoing).await?;
        self.expect_no_content(reply)
    }
}

/// The value a 200 reply carries, with what its headers say of it.
fn read_value(reply: Reply) -> Fresh {
    let headers = &reply.headers;
    let remaining_ttl = header_str(headers, TTL_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let no_store = headers.contains_key(NO_STORE_HEADER);
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let version = protocol::parse_version(headers.get(VERSION_HEADER)).unwrap_or_default();
    let stale = stale_age(headers);
    Fresh {
        ttl: remaining_ttl,
        no_store,
        age: stale.unwrap_or_default(),
        served_stale: stale.is_some(),
        ..Fresh::new(Value::new(reply.body, content_type)).versioned(version)
    }
}

impl Peers for HttpPeers {
    fn fetch<'a>(
        &'a self,
        node: &'a Member,
        ask: Ask,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Fresh, PeerError>> {
        self.fetch_value(node, ask, group, key).boxed()
    }

    fn peek<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Fresh>, PeerError>> {
        self.peek_value(node, group, key).boxed()
    }

    fn hand_off<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        entries: &'a [HandedOff],
    ) -> BoxFuture<'a, Result<HandoffReceipt, PeerError>> {
        self.hand_off_entries(node, group, entries).boxed()
    }

    fn store<'a>(
        &'a self,
        owner: &'a Member,
        group: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<Version, PeerError>> {
        self.store_value(owner, group, key, value).boxed()
    }

    fn remove<'a>(
        &'a self,
        node: &'a Member,
        group: &'a str,
        key: &'a str,
        superseded: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, PeerError>> {
        self.remove_value(node, group, key, superseded).boxed()
    }
}

/// The error an owner's reply reports, from its status, its `x-shoal-error`
/// word (`""` if none), its message and how long the origin had (the
/// `x-shoal-timeout-ms` header, else this node's peer timeout): the origin's
/// answer where the owner says it is one, else a failure of the request,
/// whatever the kind (one this node does not know included).
fn reported_error(
    status: StatusCode,
    kind: &str,
    message: String,
    origin_timeout: Duration,
) -> PeerError {
    match kind.parse::<ErrorKind>() {
        Ok(ErrorKind::OriginNotFound) => PeerError::Origin(LoadError::NotFound),
        Ok(ErrorKind::OriginFailure) => PeerError::Origin(LoadError::Failure(message)),
        Ok(ErrorKind::OriginTimeout) => PeerError::Origin(LoadError::Timeout(origin_timeout)),
        Ok(ErrorKind::ValueTooLarge) => PeerError::ValueTooLarge(message),
        Ok(kind @ (ErrorKind::OriginOverloaded | ErrorKind::OriginCircuitOpen)) => {
            PeerError::OriginRefused {
                circuit_open: kind == ErrorKind::OriginCircuitOpen,
                detail: message,
            }
        }
        _ => PeerError::Failed(format!("answered {status} {kind}: {message}")),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The kind `x-shoal-error` names, if it names one this node knows.
fn error_kind(headers: &HeaderMap) -> Option<ErrorKind> {
    header_str(headers, ERROR_HEADER)?.parse().ok()
}

fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    error_chain::causes(error).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(status: StatusCode, kind: &str) -> PeerError {
        reported_error(status, kind, "why".to_owned(), Duration::from_secs(2))
    }

    #[test]
    fn an_origin_answer_is_the_origin_answer() {
        assert_eq!(
            reported(StatusCode::NOT_FOUND, "origin-404"),
            PeerError::Origin(LoadError::NotFound)
        );
        assert_eq!(
            reported(StatusCode::BAD_GATEWAY, "origin-failure"),
            PeerError::Origin(LoadError::Failure("why".to_owned()))
        );
        assert_eq!(
            reported(StatusCode::GATEWAY_TIMEOUT, "origin-timeout"),
            PeerError::Origin(LoadError::Timeout(Duration::from_secs(2)))
        );
        assert_eq!(
            reported(StatusCode::SERVICE_UNAVAILABLE, "origin-overloaded"),
            PeerError::OriginRefused {
                circuit_open: false,
                detail: "why".to_owned()
            }
        );
        assert_eq!(
            reported(StatusCode::SERVICE_UNAVAILABLE, "origin-circuit-open"),
            PeerError::OriginRefused {
                circuit_open: true,
                detail: "why".to_owned()
            }
        );
    }

    #[test]
    fn a_refused_value_is_the_owners_refusal() {
        assert_eq!(
            reported(StatusCode::PAYLOAD_TOO_LARGE, "value-too-large"),
            PeerError::ValueTooLarge("why".to_owned())
        );
    }

    #[test]
    fn any_other_kind_is_a_failed_request() {
        assert_eq!(
            reported(StatusCode::NOT_FOUND, "unknown-group"),
            PeerError::Failed("answered 404 Not Found unknown-group: why".to_owned())
        );
        assert_eq!(
            reported(StatusCode::IM_A_TEAPOT, "from-a-newer-node"),
            PeerError::Failed("answered 418 I'm a teapot from-a-newer-node: why".to_owned())
        );
        assert_eq!(
            reported(StatusCode::BAD_GATEWAY, ""),
            PeerError::Failed("answered 502 Bad Gateway : why".to_owned())
        );
    }
}
