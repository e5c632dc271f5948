//! The receiving side: checks the signature with every key, the clock skew,
//! that the request is for this node (this run of it), and that the nonce
//! is new, in a table bounded in time and in size. All of it from the
//! headers, before a byte of the body is read.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hmac::Mac;

use super::Refusal;
use super::wire::{self, Covered, Presented, RequestHead};
use crate::security::Keyring;

/// The most a request's timestamp may differ from the verifier's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60);
/// The most nonces a verifier remembers (about 20 MB).
pub(crate) const NONCE_CAPACITY: usize = 1_000_000;

/// The node a verifier stands for: requests must name it as their
/// receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThisNode {
    /// Its ring id: advertised IP and peer port.
    pub addr: std::net::SocketAddr,
    /// The generation it started with (a renewed generation is larger).
    pub generation: u64,
    /// When it started, in unix seconds.
    pub started: u64,
}

/// Checks signed requests and remembers their nonces. One per node, shared
/// by every request it serves.
#[derive(Debug)]
pub(crate) struct Verifier {
    this: ThisNode,
    max_skew: u64,
    capacity: usize,
    nonces: Mutex<NonceTable>,
}

impl Verifier {
    /// A verifier for `this` node with the default limits ([`MAX_SKEW`],
    /// [`NONCE_CAPACITY`]).
    pub(crate) fn for_node(this: ThisNode) -> Self {
        Self::new(this, MAX_SKEW, NONCE_CAPACITY)
    }

    /// A verifier with other limits than the defaults.
    pub(crate) fn new(this: ThisNode, max_skew: Duration, capacity: usize) -> Self {
        Self {
            this,
            max_skew: max_skew.as_secs(),
            capacity,
            nonces: Mutex::new(NonceTable::default()),
        }
    }

    /// Verifies a request whose signature headers were `presented`, at
    /// `now` (unix seconds). Checks, in order: that a key of `keyring` made
    /// the signature, the clock skew, that the request is for this node and
    /// this run of it, and that the nonce is new; the nonce is remembered
    /// only when all else passed. The body is checked against its signed
    /// digest once read ([`Presented::verify_body`]).
    pub(crate) fn verify(
        &self,
        keyring: &Keyring,
        presented: &Presented,
        request: &RequestHead<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let receiver = presented.receiver.to_string();
        let body_digest = hex::encode(presented.body_digest);
        let covered = Covered {
            timestamp: presented.timestamp,
            nonce: presented.nonce,
            sender: &presented.sender,
            receiver: &receiver,
            body_digest: &body_digest,
        };
        let text = wire::canonical(request, &covered);
        let signed_by_a_key = keyring.keys().iter().any(|key| {
            key.mac
                .clone()
                .chain_update(&text)
                .verify_slice(&presented.signature)
                .is_ok()
        });
        if !signed_by_a_key {
            return Err(Refusal::BadSignature);
        }
        let skew = now.abs_diff(presented.timestamp);
        if skew > self.max_skew {
            return Err(Refusal::ClockSkew {
                skew,
                ahead: presented.timestamp > now,
                max: self.max_skew,
            });
        }
        self.check_receiver(presented)?;
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                presented.timestamp,
                presented.nonce,
                now.saturating_sub(self.max_skew),
                self.capacity,
            )
            .map_err(|refused| match refused {
                Insert::Seen => Refusal::ReplayedNonce,
                Insert::Full => Refusal::NonceTableFull {
                    capacity: self.capacity,
                    window: self.max_skew,
                },
            })
    }

    /// The generation this node started with.
    pub(crate) fn generation(&self) -> u64 {
        self.this.generation
    }

    /// A request signed for another node, or for an earlier run of this
    /// one, is refused: it can only be a replay.
    fn check_receiver(&self, presented: &Presented) -> Result<(), Refusal> {
        let receiver = presented.receiver;
        if receiver.addr != self.this.addr {
            return Err(Refusal::WrongReceiver {
                named: receiver.addr,
                this: self.this.addr,
            });
        }
        let this_run = if receiver.generation == 0 {
            presented.timestamp >= self.this.started
        } else {
            receiver.generation >= self.this.generation
        };
        if this_run {
            Ok(())
        } else {
            Err(Refusal::EarlierRun)
        }
    }

    /// How many nonces are remembered now.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }
}

/// Accepted nonces by the second their request was signed: a nonce need be
/// looked for only under its own timestamp (the signature binds the two),
/// and a whole second is forgotten at once when it leaves the window.
#[derive(Debug, Default)]
struct NonceTable {
    by_second: BTreeMap<u64, HashSet<u128>>,
    len: usize,
}

/// Why a nonce was not taken.
enum Insert {
    Seen,
    Full,
}

impl NonceTable {
    /// Remembers `nonce` under `timestamp`, forgetting every second before
    /// `oldest` first (no timestamp that old passes the skew check).
    fn insert(
        &mut self,
        timestamp: u64,
        nonce: u128,
        oldest: u64,
        capacity: usize,
    ) -> Result<(), Insert> {
        while let Some(entry) = self.by_second.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            self.len -= entry.remove().len();
        }
        if self
            .by_second
            .get(&timestamp)
            .is_some_and(|nonces| nonces.contains(&nonce))
        {
            return Err(Insert::Seen);
        }
        if self.len >= capacity {
            return Err(Insert::Full);
        }
        self.by_second.entry(timestamp).or_default().insert(nonce);
        self.len += 1;
        Ok(())
    }
}
