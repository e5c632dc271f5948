//! The requesting side of the peer API: [`HttpPeers`] implements the cache's
//! [`Peers`] over pooled keep-alive HTTP connections. With a keyring, every
//! request is signed (see [`crate::security::signing`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use tokio::sync::watch;

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

pub struct HttpPeers {
    client: reqwest::Client,
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

impl HttpPeers {
    /// A client whose peeks wait at most `peek_timeout` for an answer and
    /// that keeps an idle connection for at most `pool_idle_timeout`: less
    /// than peers' `limits.idle_timeout`, so that it never sends on a
    /// connection the peer is closing.
    pub fn new(
        config: &PeerConfig,
        peek_timeout: Duration,
        pool_idle_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(pool_idle_timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            timeout: config.timeout,
            peek_timeout,
            signing: None,
        })
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

    fn url(member: &Member, group: &str, key: &str) -> String {
        format!("http://{}{}", member.id, protocol::path(group, key))
    }

    fn transport_error(&self, error: reqwest::Error) -> PeerError {
        self.transport_error_after(error, self.timeout)
    }

    fn transport_error_after(&self, error: reqwest::Error, timeout: Duration) -> PeerError {
        // The causes only: reqwest's own message holds the URL, and so the key.
        let detail = error_chain::causes_only(&error, "request failed");
        if error.is_connect() {
            PeerError::Unreachable {
                refused: is_refused(&error),
                detail,
            }
        } else if error.is_timeout() {
            PeerError::Timeout(timeout)
        } else {
            PeerError::Failed(detail)
        }
    }

    async fn send(
        &self,
        to: &Member,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PeerError> {
        self.send_within(to, request, self.timeout).await
    }

    /// Sends a request to `to` (signed for it, with a keyring) whose answer
    /// may take at most `timeout`.
    async fn send_within(
        &self,
        to: &Member,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, PeerError> {
        let mut request = request
            .timeout(timeout)
            .build()
            .map_err(|e| self.transport_error_after(e, timeout))?;
        let Some(signing) = &self.signing else {
            return self.execute(request, timeout).await;
        };
        sign(signing, signing.receiver(to), &mut request);
        let again = request.try_clone();
        let response = self.execute(request, timeout).await?;
        // Signed for the run before a restart that membership has not
        // caught up with: sign once more for the run that answered.
        let restarted = (response.status() == StatusCode::UNAUTHORIZED)
            .then(|| {
                header_str(response.headers(), GENERATION_HEADER)?
                    .parse::<u64>()
                    .ok()
            })
            .flatten();
        match (restarted, again) {
            (Some(generation), Some(mut again)) => {
                let receiver = Receiver {
                    addr: to.id,
                    generation,
                };
                sign(signing, receiver, &mut again);
                self.execute(again, timeout).await
            }
            _ => Ok(response),
        }
    }

    async fn execute(
        &self,
        request: reqwest::Request,
        timeout: Duration,
    ) -> Result<reqwest::Response, PeerError> {
        self.client
            .execute(request)
            .await
            .map_err(|e| self.transport_error_after(e, timeout))
    }

    /// The version a 204 reply carries ([`Version::ZERO`] if none).
    async fn expect_no_content(&self, response: reqwest::Response) -> Result<Version, PeerError> {
        if response.status() == StatusCode::NO_CONTENT {
            Ok(protocol::parse_version(response.headers().get(VERSION_HEADER)).unwrap_or_default())
        } else {
            Err(self.error_reply(response).await)
        }
    }

    /// Turns an error reply into the error it reports (see [`reported_error`]).
    async fn error_reply(&self, response: reqwest::Response) -> PeerError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let status = response.status();
        let kind = header_str(response.headers(), ERROR_HEADER)
            .unwrap_or("")
            .to_owned();
        let timeout = header_str(response.headers(), TIMEOUT_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        reported_error(status, &kind, message, timeout.unwrap_or(self.timeout))
    }

    async fn fetch_value(
        &self,
        node: &Member,
        ask: Ask,
        group: &str,
        key: &str,
    ) -> Result<Fresh, PeerError> {
        let mut url = Self::url(node, group, key);
        if ask == Ask::Successor {
            url = format!("{url}?{SUCCESSOR_QUERY}");
        }
        let response = self.send(node, self.client.get(url)).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error_reply(response).await);
        }
        self.read_value(response, self.timeout).await
    }

    async fn read_value(
        &self,
        response: reqwest::Response,
        timeout: Duration,
    ) -> Result<Fresh, PeerError> {
        let headers = response.headers();
        let remaining_ttl = header_str(headers, TTL_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let no_store = headers.contains_key(NO_STORE_HEADER);
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let version = protocol::parse_version(headers.get(VERSION_HEADER)).unwrap_or_default();
        let stale = stale_age(headers);
        let bytes: Bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error_after(e, timeout))?;
        Ok(Fresh {
            ttl: remaining_ttl,
            no_store,
            age: stale.unwrap_or_default(),
            served_stale: stale.is_some(),
            ..Fresh::new(Value::new(bytes, content_type)).versioned(version)
        })
    }

    async fn peek_value(
        &self,
        node: &Member,
        group: &str,
        key: &str,
    ) -> Result<Option<Fresh>, PeerError> {
        let url = format!("{}?{PEEK_QUERY}", Self::url(node, group, key));
        let response = self
            .send_within(node, self.client.get(url), self.peek_timeout)
            .await?;
        match response.status() {
            StatusCode::OK => self.read_value(response, self.peek_timeout).await.map(Some),
            StatusCode::NOT_FOUND
                if error_kind(response.headers()) == Some(ErrorKind::NotCached) =>
            {
                Ok(None)
            }
            _ => Err(self.error_reply(response).await),
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
        let url = format!("http://{}{}", node.id, protocol::handoff_path(group));
        let request = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(protocol::encode_handoff(entries));
        let response = self.send(node, request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.error_reply(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        let receipt: Receipt = serde_json::from_slice(&body)
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
        let mut request = self
            .client
            .put(Self::url(owner, group, key))
            .body(value.bytes.clone());
        if let Some(content_type) = &value.content_type {
            request = request.header(header::CONTENT_TYPE, content_type.clone());
        }
        let response = self.send(owner, request).await?;
        self.expect_no_content(response).await
    }

    async fn remove_value(
        &self,
        member: &Member,
        group: &str,
        key: &str,
        superseded: Option<Version>,
    ) -> Result<Version, PeerError> {
        let mut request = self.client.delete(Self::url(member, group, key));
        if let Some(version) = superseded {
            request = request.header(VERSION_HEADER, protocol::version_header(version));
        }
        let response = self.send(member, request).await?;
        self.expect_no_content(response).await
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

/// Signs the request as it will go on the wire: the path and query as the
/// URL serialises them, the body's bytes.
fn sign(signing: &Signing, receiver: Receiver, request: &mut reqwest::Request) {
    let url = request.url();
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let keyring = Arc::clone(&signing.keyring.borrow());
    let parts = RequestParts {
        method: request.method().as_str(),
        path_and_query: &path_and_query,
        content_type: request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(http::HeaderValue::as_bytes),
        body: request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default(),
    };
    let mut signature = HeaderMap::new();
    signing
        .signer
        .sign(&keyring, &parts, receiver, unix_now(), &mut signature);
    request.headers_mut().extend(signature);
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

fn is_refused(error: &reqwest::Error) -> bool {
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
