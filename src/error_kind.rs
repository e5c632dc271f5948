//! Every kind of error either HTTP face answers with: the word in the
//! `x-shoal-error` header, its HTTP status, and a metric label where kinds
//! are counted.
//!
//! It sits at the bottom of the crate, below [`crate::cache`], because the
//! cache names kinds ([`crate::cache::GroupError::kind`]) and the cache is
//! below [`crate::wire`], the layer the service and peer APIs share. So the
//! imports point one way: `http`/`peer` → `wire` → `cache` → here. This
//! module imports nothing of the crate; the rest of the crate reaches it as
//! [`crate::wire::ErrorKind`].

use std::fmt;
use std::str::FromStr;

use http::StatusCode;
use thiserror::Error;

/// The kind of an error: what the `x-shoal-error` header says, on the
/// service, admin and peer APIs alike. The strings are part of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The origin has no value for the key.
    OriginNotFound,
    /// The origin failed.
    OriginFailure,
    /// The origin did not answer in time.
    OriginTimeout,
    /// The key's owner did not answer in time.
    PeerTimeout,
    /// The request to the key's owner failed.
    PeerFailure,
    /// The key's owner cannot be connected to.
    OwnerUnreachable,
    /// A bug: see the node's log.
    Internal,
    /// The request is malformed.
    BadRequest,
    /// The path names nothing.
    NotFound,
    /// The path names a group this node does not have.
    UnknownGroup,
    /// A one-segment path on a node with no `default_group`.
    NoDefaultGroup,
    /// The path does not take this method.
    MethodNotAllowed,
    /// A write to a `read_only` group.
    ReadOnly,
    /// A body larger than the group's `max_value`.
    ValueTooLarge,
    /// A key longer than `node.max_key`.
    KeyTooLong,
    /// A peer request that no key of the keyring verifies.
    Unauthorized,
    /// A peek found no copy of the key.
    NotCached,
    /// `/readyz` while the node shuts down.
    Draining,
    /// `/readyz` before the node is ready.
    Starting,
    /// `/_ring/…` while the ring has no members.
    EmptyRing,
    /// A request body that did not arrive within `limits.body_read_timeout`
    /// and `limits.min_body_rate`.
    RequestTimeout,
    /// A connection past the port's `limits.max_connections`.
    TooManyConnections,
    /// The group's `max_concurrent_loads` are busy and its queue is full.
    OriginOverloaded,
    /// The group's circuit breaker is open after a run of origin failures.
    OriginCircuitOpen,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 24] = [
        ErrorKind::OriginNotFound,
        ErrorKind::OriginFailure,
        ErrorKind::OriginTimeout,
        ErrorKind::PeerTimeout,
        ErrorKind::PeerFailure,
        ErrorKind::OwnerUnreachable,
        ErrorKind::Internal,
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::UnknownGroup,
        ErrorKind::NoDefaultGroup,
        ErrorKind::MethodNotAllowed,
        ErrorKind::ReadOnly,
        ErrorKind::ValueTooLarge,
        ErrorKind::KeyTooLong,
        ErrorKind::Unauthorized,
        ErrorKind::NotCached,
        ErrorKind::Draining,
        ErrorKind::Starting,
        ErrorKind::EmptyRing,
        ErrorKind::RequestTimeout,
        ErrorKind::TooManyConnections,
        ErrorKind::OriginOverloaded,
        ErrorKind::OriginCircuitOpen,
    ];

    /// The kind as the `x-shoal-error` header and metric labels spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::OriginNotFound => "origin-404",
            ErrorKind::OriginFailure => "origin-failure",
            ErrorKind::OriginTimeout => "origin-timeout",
            ErrorKind::PeerTimeout => "peer-timeout",
            ErrorKind::PeerFailure => "peer-failure",
            ErrorKind::OwnerUnreachable => "owner-unreachable",
            ErrorKind::Internal => "internal",
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::NotFound => "not-found",
            ErrorKind::UnknownGroup => "unknown-group",
            ErrorKind::NoDefaultGroup => "no-default-group",
            ErrorKind::MethodNotAllowed => "method-not-allowed",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::ValueTooLarge => "value-too-large",
            ErrorKind::KeyTooLong => "key-too-long",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotCached => "not-cached",
            ErrorKind::Draining => "draining",
            ErrorKind::Starting => "starting",
            ErrorKind::EmptyRing => "empty-ring",
            ErrorKind::RequestTimeout => "request-timeout",
            ErrorKind::TooManyConnections => "too-many-connections",
            ErrorKind::OriginOverloaded => "origin-overloaded",
            ErrorKind::OriginCircuitOpen => "origin-circuit-open",
        }
    }

    /// The status every answer of this kind carries: each kind is answered
    /// with one status wherever it occurs.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::OriginNotFound
            | ErrorKind::NotFound
            | ErrorKind::UnknownGroup
            | ErrorKind::NoDefaultGroup
            | ErrorKind::NotCached => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed | ErrorKind::ReadOnly => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::KeyTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::OriginFailure | ErrorKind::PeerFailure | ErrorKind::OwnerUnreachable => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::Draining
            | ErrorKind::Starting
            | ErrorKind::EmptyRing
            | ErrorKind::TooManyConnections
            | ErrorKind::OriginOverloaded
            | ErrorKind::OriginCircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::OriginTimeout | ErrorKind::PeerTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`ErrorKind`] (from a newer or older node, or not
/// from shoal at all).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{0}` is not a shoal error kind")]
pub struct UnknownKind(pub String);

impl FromStr for ErrorKind {
    type Err = UnknownKind;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .ok_or_else(|| UnknownKind(word.to_owned()))
    }
}

/// Compares with the wire word, as `http::Method` compares with `"GET"`.
impl PartialEq<str> for ErrorKind {
    fn eq(&self, word: &str) -> bool {
        self.as_str() == word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_word() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn words_are_distinct_and_lowercase() {
        let mut words: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert!(words.iter().all(|w| {
            w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }));
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn all_lists_every_variant() {
        // A variant missing from ALL would not parse: this match fails to
        // compile when one is added, as a reminder to list it.
        for kind in ErrorKind::ALL {
            match kind {
                ErrorKind::OriginNotFound
                | ErrorKind::OriginFailure
                | ErrorKind::OriginTimeout
                | ErrorKind::PeerTimeout
                | ErrorKind::PeerFailure
                | ErrorKind::OwnerUnreachable
                | ErrorKind::Internal
                | ErrorKind::BadRequest
                | ErrorKind::NotFound
                | ErrorKind::UnknownGroup
                | ErrorKind::NoDefaultGroup
                | ErrorKind::MethodNotAllowed
                | ErrorKind::ReadOnly
                | ErrorKind::ValueTooLarge
                | ErrorKind::KeyTooLong
                | ErrorKind::Unauthorized
                | ErrorKind::NotCached
                | ErrorKind::Draining
                | ErrorKind::Starting
                | ErrorKind::EmptyRing
                | ErrorKind::RequestTimeout
                | ErrorKind::TooManyConnections
                | ErrorKind::OriginOverloaded
                | ErrorKind::OriginCircuitOpen => {}
            }
        }
    }

    #[test]
    fn unknown_words_are_errors() {
        for word in ["", "nope", "Origin-404", "origin-404 ", "origin_404"] {
            assert_eq!(word.parse::<ErrorKind>(), Err(UnknownKind(word.to_owned())));
        }
    }

    #[test]
    fn statuses() {
        let status = |word: &str| word.parse::<ErrorKind>().map(ErrorKind::status);
        assert_eq!(status("origin-404"), Ok(StatusCode::NOT_FOUND));
        assert_eq!(status("origin-failure"), Ok(StatusCode::BAD_GATEWAY));
        assert_eq!(status("origin-timeout"), Ok(StatusCode::GATEWAY_TIMEOUT));
        assert_eq!(status("peer-timeout"), Ok(StatusCode::GATEWAY_TIMEOUT));
        assert_eq!(status("peer-failure"), Ok(StatusCode::BAD_GATEWAY));
        assert_eq!(status("owner-unreachable"), Ok(StatusCode::BAD_GATEWAY));
        assert_eq!(status("internal"), Ok(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(status("bad-request"), Ok(StatusCode::BAD_REQUEST));
        assert_eq!(status("not-found"), Ok(StatusCode::NOT_FOUND));
        assert_eq!(status("unknown-group"), Ok(StatusCode::NOT_FOUND));
        assert_eq!(status("no-default-group"), Ok(StatusCode::NOT_FOUND));
        assert_eq!(
            status("method-not-allowed"),
            Ok(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(status("read-only"), Ok(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status("value-too-large"), Ok(StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(status("key-too-long"), Ok(StatusCode::URI_TOO_LONG));
        assert_eq!(status("unauthorized"), Ok(StatusCode::UNAUTHORIZED));
        assert_eq!(status("not-cached"), Ok(StatusCode::NOT_FOUND));
        assert_eq!(status("draining"), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(status("starting"), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(status("empty-ring"), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(status("request-timeout"), Ok(StatusCode::REQUEST_TIMEOUT));
        assert_eq!(
            status("too-many-connections"),
            Ok(StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
