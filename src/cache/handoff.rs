//! Warm handoff: a node stopping with SIGTERM pushes its main-cache entries
//! to their owners under the ring without it, so the keys it owned stay
//! cached. This module plans that push: which entries go to whom, in what
//! order, in batches, within a byte budget. Pure: the group reads its cache
//! and sends the batches.

use std::collections::HashMap;
use std::time::Duration;

use super::value::Value;
use super::version::Version;
use crate::ring::{Member, MemberId};

/// Values bytes per handoff request: small enough that one request is
/// quick, large enough that a few thousand entries take few requests.
pub const BATCH_BYTES: u64 = 512 * 1024;
/// Entries per handoff request.
pub const BATCH_ENTRIES: usize = 1024;

/// One entry as a leaving node hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOff {
    pub key: String,
    pub value: Value,
    /// Time left to live at the sender; `None`: no expiry.
    pub ttl: Option<Duration>,
    pub version: Version,
}

impl HandedOff {
    /// What the entry costs the budget: its key and value bytes.
    pub fn bytes(&self) -> u64 {
        (self.key.len() + self.value.bytes.len()) as u64
    }
}

/// What the receiver did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffReceipt {
    /// Stored as owner.
    pub accepted: u64,
    /// Not stored: the receiver knew as new a write of the key, or the
    /// entry could not be cached there.
    pub refused: u64,
}

/// Entries for one node, sent in one request.
#[derive(Debug, Clone)]
pub struct Batch {
    pub to: Member,
    pub entries: Vec<HandedOff>,
    pub bytes: u64,
}

/// What a handoff will send.
#[derive(Debug, Default)]
pub struct Plan {
    /// In the order to send them: a batch holding more recently used
    /// entries comes earlier.
    pub batches: Vec<Batch>,
    /// Entries left out: over the budget, or with nobody to take them.
    pub left_out: usize,
    /// Bytes planned (of the budget).
    pub bytes: u64,
}

/// Plans a handoff of `entries` (most recently used first) to the members
/// `next_owner` names, at most `budget` bytes.
pub fn plan(
    entries: impl IntoIterator<Item = HandedOff>,
    next_owner: impl Fn(&str) -> Option<Member>,
    budget: u64,
) -> Plan {
    let mut plan = Plan::default();
    let mut open: HashMap<MemberId, Batch> = HashMap::new();
    for entry in entries {
        let bytes = entry.bytes();
        let Some(to) = next_owner(&entry.key) else {
            plan.left_out += 1;
            continue;
        };
        if plan.bytes + bytes > budget {
            plan.left_out += 1;
            continue;
        }
        plan.bytes += bytes;
        let id = to.id;
        let batch = open.entry(id).or_insert_with(|| Batch {
            to,
            entries: Vec::new(),
            bytes: 0,
        });
        batch.entries.push(entry);
        batch.bytes += bytes;
        let full = batch.bytes >= BATCH_BYTES || batch.entries.len() >= BATCH_ENTRIES;
        if full && let Some(batch) = open.remove(&id) {
            plan.batches.push(batch);
        }
    }
    // The rest, fullest first.
    let mut rest: Vec<Batch> = open.into_values().collect();
    rest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.to.id.cmp(&b.to.id)));
    plan.batches.extend(rest);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u8) -> Member {
        let id: MemberId = format!("10.0.0.{i}:8000").parse().expect("valid address");
        Member::new(id, format!("node-{i}"))
    }

    fn entry(key: &str, len: usize) -> HandedOff {
        HandedOff {
            key: key.to_owned(),
            value: Value::new(vec![b'x'; len], None),
            ttl: None,
            version: Version(1),
        }
    }

    /// Keys `k0`, `k1`, … go to member 2 when even, 3 when odd; `lost…`
    /// keys to nobody.
    fn owner(key: &str) -> Option<Member> {
        let n: u32 = key.strip_prefix('k')?.parse().ok()?;
        Some(member(if n.is_multiple_of(2) { 2 } else { 3 }))
    }

    #[test]
    fn entries_go_to_their_next_owner_in_order() {
        let entries = (0..10).map(|i| entry(&format!("k{i}"), 100));
        let plan = plan(entries, owner, u64::MAX);
        assert_eq!(plan.left_out, 0);
        assert_eq!(plan.batches.len(), 2);
        for batch in &plan.batches {
            let keys: Vec<&str> = batch.entries.iter().map(|e| e.key.as_str()).collect();
            let parity = if batch.to.id == member(2).id { 0 } else { 1 };
            let want: Vec<String> = (0..10)
                .filter(|i| i % 2 == parity)
                .map(|i| format!("k{i}"))
                .collect();
            assert_eq!(keys, want, "most recent first, each to its owner");
            assert_eq!(batch.bytes, 5 * 102);
        }
    }

    #[test]
    fn the_budget_keeps_the_most_recent() {
        // 10 entries of 1,002 bytes; a budget for 4.
        let entries = (0..10).map(|i| entry(&format!("k{i}"), 1000));
        let plan = plan(entries, owner, 4 * 1002 + 500);
        assert_eq!(plan.bytes, 4 * 1002);
        assert_eq!(plan.left_out, 6);
        let mut sent: Vec<String> = plan
            .batches
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.key.clone()))
            .collect();
        sent.sort();
        assert_eq!(sent, ["k0", "k1", "k2", "k3"]);
    }

    #[test]
    fn large_handoffs_are_split_into_batches() {
        let entries = (0..4000).map(|i| entry(&format!("k{}", i * 2), 1000));
        let plan = plan(entries, owner, u64::MAX);
        assert!(plan.batches.len() >= 4000 * 1000 / BATCH_BYTES as usize);
        for batch in &plan.batches {
            assert!(batch.bytes <= BATCH_BYTES + 1100, "{}", batch.bytes);
            assert!(batch.entries.len() <= BATCH_ENTRIES);
            assert_eq!(batch.to.id, member(2).id);
        }
        let total: usize = plan.batches.iter().map(|b| b.entries.len()).sum();
        assert_eq!(total, 4000);
        // The first batch sent holds the most recently used entries.
        assert_eq!(plan.batches[0].entries[0].key, "k0");
    }

    #[test]
    fn entries_nobody_takes_are_left_out() {
        let entries = [entry("lost", 10), entry("k1", 10)];
        let plan = plan(entries, owner, u64::MAX);
        assert_eq!(plan.left_out, 1);
        assert_eq!(plan.batches.len(), 1);
    }
}
