//! Signed peer requests: HMAC-SHA256 with the keyring's first key, verified
//! with any key of the keyring.
//!
//! The signature covers the canonical text
//!
//! ```text
//! shoal-peer-request-v2
//! {method}
//! {path and query, as sent}
//! {content-type header, empty if none, a NUL byte if present but empty}
//! {timestamp: unix seconds, decimal}
//! {nonce: 128 random bits, 32 lowercase hex digits}
//! {sender}
//! {receiver: its IP:PORT#GENERATION}
//! {SHA-256 of the body, lowercase hex}
//! ```
//!
//! (lines joined by `\n`; no field can hold a newline). The timestamp,
//! nonce, sender, receiver, body digest and signature travel in the
//! `x-shoal-timestamp`, `x-shoal-nonce`, `x-shoal-sender`,
//! `x-shoal-receiver`, `x-shoal-content-sha256` and `x-shoal-signature`
//! (hex) headers. With the body's digest in a header, the whole signature
//! is checked before the body is read: a forged request costs its headers.
//! The nonce and signature headers are marked sensitive, so that HTTP/2
//! sends them as never-indexed HPACK literals: they are new in every
//! request, and indexing them only evicted the headers that repeat. (That
//! is HPACK's choice of representation, not a change of the headers: any
//! HTTP/2 peer decodes both.)
//!
//! A verifier refuses a signature that no key makes, a timestamp more than
//! 60 s (`MAX_SKEW`) away from its clock either way, a request signed for
//! another member (another address) or for an earlier run of this one (a
//! smaller generation; with generation 0, which fixed peers send, a
//! timestamp from before this node started), and a nonce it accepted
//! before. So a request cannot be replayed at another node, nor at this
//! one after a restart has emptied its nonce table. Nonces are remembered only as long as their timestamp could pass
//! the skew check, and at most a million (`NONCE_CAPACITY`) of them: when
//! that many signed requests arrived within the window, more are refused
//! rather than the table grown. Every request carries its own random nonce,
//! so identical concurrent requests (the same GET from several nodes) all
//! pass.
//!
//! Time is an input everywhere (`now`, unix seconds) so that tests need no
//! clock.
//!
//! # Layout
//!
//! - `wire`: the canonical text and the six headers, both ways.
//! - `signer`: the sending side, [`Signer`].
//! - `verifier`: the receiving side, `Verifier` and its nonce table.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

mod signer;
#[cfg(test)]
mod tests;
mod verifier;
pub(crate) mod wire;

pub use signer::Signer;
pub(crate) use verifier::{ThisNode, Verifier};
pub(crate) use wire::Presented;
pub use wire::{Receiver, RequestHead, RequestParts};

/// Why a request was refused. [`Refusal::reason`] is its metric label.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum Refusal {
    #[error(
        "the request is not signed: it carries no {header} header, and this node \
         accepts only signed peer requests"
    )]
    Missing { header: &'static str },
    #[error("the request's {header} header is malformed: {problem}")]
    Malformed {
        header: &'static str,
        problem: &'static str,
    },
    #[error("the request's signature matches no key in this node's keyring")]
    BadSignature,
    #[error(
        "the request's timestamp is {skew} s {} this node's clock; at most {max} s of \
         clock skew is accepted",
        if *ahead { "ahead of" } else { "behind" }
    )]
    ClockSkew { skew: u64, ahead: bool, max: u64 },
    #[error("the request's nonce was seen before: the request is a replay")]
    ReplayedNonce,
    #[error(
        "the request was signed for the member at {named}, not this one ({this}): it is a replay"
    )]
    WrongReceiver {
        named: std::net::SocketAddr,
        this: std::net::SocketAddr,
    },
    #[error(
        "the request was signed for an earlier run of this node (before it restarted): it is a replay"
    )]
    EarlierRun,
    #[error("the request's body is not the one its signature covers (SHA-256 mismatch)")]
    BodyMismatch,
    #[error(
        "this node accepted {capacity} signed requests within the last {window} s, so it \
         remembers nonces only for the latest seconds, and this request was signed before \
         them (or in a second that alone holds that many); retry, and check that the \
         sender's clock is in step with this node's"
    )]
    NonceTableFull { capacity: usize, window: u64 },
}

impl Refusal {
    /// A metric label: `missing-signature`, `bad-signature`, `clock-skew`,
    /// `replayed-nonce`, `wrong-receiver`, `earlier-run`, `body-mismatch`
    /// or `nonce-table-full`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing { .. } => "missing-signature",
            Refusal::Malformed { .. } | Refusal::BadSignature => "bad-signature",
            Refusal::ClockSkew { .. } => "clock-skew",
            Refusal::ReplayedNonce => "replayed-nonce",
            Refusal::WrongReceiver { .. } => "wrong-receiver",
            Refusal::EarlierRun => "earlier-run",
            Refusal::BodyMismatch => "body-mismatch",
            Refusal::NonceTableFull { .. } => "nonce-table-full",
        }
    }
}

/// The seconds since the Unix epoch on this node's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
