//! The node's groups by name, and the default group.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::group::{Group, GroupStats, HandoffReport};
use crate::ring::Ring;

pub struct Groups {
    by_name: HashMap<String, Arc<Group>>,
    default: Option<Arc<Group>>,
}

impl Groups {
    pub fn new(groups: impl IntoIterator<Item = Arc<Group>>, default: Option<&str>) -> Self {
        let by_name: HashMap<String, Arc<Group>> = groups
            .into_iter()
            .map(|group| (group.name().to_owned(), group))
            .collect();
        let default = default.and_then(|name| by_name.get(name).cloned());
        Self { by_name, default }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Group>> {
        self.by_name.get(name)
    }

    pub fn default_group(&self) -> Option<&Arc<Group>> {
        self.default.as_ref()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.by_name.values()
    }

    /// Hands every group's main cache to its owners on `next_owners`, one
    /// group after another, within one byte budget and `deadline`.
    pub async fn hand_off(
        &self,
        next_owners: &Ring,
        budget: u64,
        deadline: Instant,
    ) -> HandoffReport {
        let mut budget = budget;
        let mut report = HandoffReport::default();
        for group in self.by_name.values() {
            if Instant::now() >= deadline {
                break;
            }
            report.add(group.hand_off(next_owners, &mut budget, deadline).await);
        }
        report
    }

    /// Every group's stats, by name, sorted.
    pub fn stats(&self) -> std::collections::BTreeMap<String, GroupStats> {
        self.by_name
            .iter()
            .map(|(name, group)| (name.clone(), group.stats()))
            .collect()
    }
}
