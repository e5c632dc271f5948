//! The `churn` section: what keeps the cache warm while membership
//! changes. Every part is on unless switched off.

use crate::config::file::FileChurn;
use crate::config::{
    ChurnConfig, ConfigError, DEFAULT_HANDOFF_MAX_BYTES, DEFAULT_PEEK_TIMEOUT,
    DEFAULT_PREVIOUS_RINGS_WINDOW,
};

/// `churn`: the previous-owner lookup, handoff and successor failover,
/// each on unless switched off.
pub(super) fn resolve(file: Option<FileChurn>) -> Result<ChurnConfig, ConfigError> {
    let file = file.unwrap_or_default();
    let lookup = file.previous_owner_lookup.unwrap_or(true);
    let window = file
        .previous_rings_window
        .unwrap_or(DEFAULT_PREVIOUS_RINGS_WINDOW);
    let peek_timeout = file.peek_timeout.unwrap_or(DEFAULT_PEEK_TIMEOUT);
    if lookup && !window.is_zero() && peek_timeout.is_zero() {
        return Err(ConfigError::field(
            "churn.peek_timeout",
            "must be above 0 while previous_owner_lookup is on (a peek that may not wait never hits)",
        ));
    }
    let handoff_max_bytes = file
        .handoff_max_bytes
        .map_or(DEFAULT_HANDOFF_MAX_BYTES, |s| s.0);
    Ok(ChurnConfig {
        previous_rings_window: (lookup && !window.is_zero()).then_some(window),
        peek_timeout,
        handoff_max_bytes: (file.handoff.unwrap_or(true) && handoff_max_bytes > 0)
            .then_some(handoff_max_bytes),
        successor_failover: file.successor_failover.unwrap_or(true),
    })
}
