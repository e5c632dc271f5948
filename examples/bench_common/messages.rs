//! Error messages counted by their text, so that a report can say what
//! failed and how often without keeping every failure.

use std::collections::BTreeMap;

/// Distinct messages kept per count; the rest are counted as "other".
pub const ERROR_KINDS: usize = 40;

/// Counts `message`, keeping at most [`ERROR_KINDS`] distinct ones.
pub fn count_message(messages: &mut BTreeMap<String, u64>, message: &str) {
    let key = if messages.len() < ERROR_KINDS || messages.contains_key(message) {
        message.to_owned()
    } else {
        "(other messages)".to_owned()
    };
    *messages.entry(key).or_default() += 1;
}
