//! The receiving side: checks the signature with every key, the clock skew,
//! that the request is for this node (this run of it), and that the nonce
//! is new, in a table bounded in time and in size. All of it from the
//! headers, before a byte of the body is read.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hmac::Mac;

use super::Refusal;
use super::wire::{self, Covered, Presented, ReceiverText, RequestHead};
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
    /// `this.addr` as it prints, formatted once: every request signed for
    /// this node names it.
    this_addr: String,
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
            this_addr: this.addr.to_string(),
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
        presented: &Presented<'_>,
        request: &RequestHead<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        // The fields are signed as the signer formats them: the parsed
        // values formatted again (so a nonce or digest sent in uppercase
        // hex verifies as before), on the stack, fed to the MAC as they are.
        let receiver = if presented.receiver.addr == self.this.addr {
            ReceiverText::with_addr(&self.this_addr, presented.receiver.generation)
        } else {
            ReceiverText::of(&presented.receiver)
        };
        let body_digest = wire::hex32(&presented.body_digest);
        let nonce = wire::nonce_hex(presented.nonce);
        let covered = Covered {
            timestamp: presented.timestamp,
            nonce: &nonce,
            sender: presented.sender,
            receiver: receiver.as_bytes(),
            body_digest: &body_digest,
        };
        let signed_by_a_key = keyring.keys().iter().any(|key| {
            let mut mac = key.mac.clone();
            wire::feed(&mut mac, request, &covered);
            mac.verify_slice(&presented.signature).is_ok()
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
    fn check_receiver(&self, presented: &Presented<'_>) -> Result<(), Refusal> {
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
///
/// Full, the table forgets its oldest seconds early rather than refuse
/// everything: a node taking more signed requests a second than the bound
/// spread over the skew window (16,700 a second for 1,000,000 over 60 s)
/// keeps serving, and only requests signed in a second it forgot are
/// refused (they could be replays it can no longer tell). Signers stamp the
/// current second, so with clocks in step every genuine request is newer.
#[derive(Debug, Default)]
struct NonceTable {
    by_second: BTreeMap<u64, HashSet<u128>>,
    len: usize,
    /// The newest second forgotten early, while it is within the window.
    forgotten_through: Option<u64>,
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
        self.forgotten_through = self.forgotten_through.filter(|&second| second >= oldest);
        if self
            .forgotten_through
            .is_some_and(|second| timestamp <= second)
        {
            return Err(Insert::Full);
        }
        let seen = |table: &Self| {
            table
                .by_second
                .get(&timestamp)
                .is_some_and(|nonces| nonces.contains(&nonce))
        };
        // A replay makes no room: it is refused below, as seen.
        if self.len >= capacity && seen(self) {
            return Err(Insert::Seen);
        }
        // Room from the oldest seconds before this request's own, whole.
        while self.len >= capacity
            && let Some(entry) = self.by_second.first_entry()
            && *entry.key() < timestamp
        {
            let second = *entry.key();
            self.len -= entry.remove().len();
            self.forgotten_through = Some(second);
        }
        if self.len >= capacity {
            // Its own second alone fills the table.
            return Err(Insert::Full);
        }
        // The set of a second newer than any so far starts as large as the
        // latest one ended, so that it does not rehash its way up to a
        // second's worth of requests (every rehash hashes every nonce
        // again). Only the newest second's: older ones, from skewed clocks,
        // start empty, so that what is allocated stays near what is held.
        let presize = match self.by_second.last_key_value() {
            Some((&latest, nonces)) if latest < timestamp => nonces.len().min(capacity - self.len),
            _ => 0,
        };
        let nonces = self
            .by_second
            .entry(timestamp)
            .or_insert_with(|| HashSet::with_capacity(presize));
        // One lookup: `insert` says whether the nonce was there.
        if !nonces.insert(nonce) {
            return Err(Insert::Seen);
        }
        self.len += 1;
        Ok(())
    }
}
