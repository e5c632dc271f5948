//! Self-describing values: every value the origin or a client produces
//! names its key, its producer and a sequence number unique in the run, so
//! the checker can tell where any answer came from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who produced a value, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub key: String,
    pub producer: String,
    pub seq: u64,
}

const PREFIX: &str = "shoal-faults";

impl Stamp {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX};key={};by={};seq={}",
            self.key, self.producer, self.seq
        )
    }

    /// The stamp in `body`; `None` for anything else (a violation).
    pub fn decode(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let mut parts = text.split(';');
        if parts.next()? != PREFIX {
            return None;
        }
        let key = parts.next()?.strip_prefix("key=")?.to_owned();
        let producer = parts.next()?.strip_prefix("by=")?.to_owned();
        let seq = parts.next()?.strip_prefix("seq=")?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(Self { key, producer, seq })
    }
}

/// Sequence numbers shared by the origin and every client, so `seq` alone
/// names a value.
#[derive(Debug, Clone, Default)]
pub struct Sequence(Arc<AtomicU64>);

impl Sequence {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The producer name of the origin's values.
pub const ORIGIN: &str = "origin";

/// The producer name of client `i`'s values.
pub fn client(i: usize) -> String {
    format!("client{i}")
}
