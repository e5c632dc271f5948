//! Invalidation epochs: make an invalidation win over a load in flight.
//!
//! A load reads its key's epoch when it starts; DELETE and PUT bump it. The
//! load stores its value only if the epoch is unchanged, checked under the
//! same lock the invalidation holds, so a value loaded before a DELETE can
//! never be stored after it. Epochs live in a fixed array of stripes indexed
//! by key hash, so memory stays bounded however many keys pass through; two
//! keys sharing a stripe only cost an occasional skipped store, never a
//! stale one.

use std::sync::{Mutex, MutexGuard};

const STRIPES: usize = 4096;

pub struct Epochs {
    stripes: Box<[Mutex<u64>]>,
}

/// The epoch a load saw when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

impl Default for Epochs {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
        }
    }
}

impl Epochs {
    fn stripe(&self, digest: u128) -> MutexGuard<'_, u64> {
        self.stripes[(digest % STRIPES as u128) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The current epoch of the key with this hash.
    pub fn current(&self, digest: u128) -> Epoch {
        Epoch(*self.stripe(digest))
    }

    /// Runs `store` only if no invalidation happened since `seen`.
    pub fn store_if_current<R>(
        &self,
        digest: u128,
        seen: Epoch,
        store: impl FnOnce() -> R,
    ) -> Option<R> {
        let stripe = self.stripe(digest);
        (*stripe == seen.0).then(store)
    }

    /// Runs `check_and_store` under the key's lock without bumping its
    /// epoch: a store that must see, and not race, PUTs and DELETEs (a
    /// handed-off entry checked against what this node holds).
    pub fn locked<R>(&self, digest: u128, check_and_store: impl FnOnce() -> R) -> R {
        let _stripe = self.stripe(digest);
        check_and_store()
    }

    /// Bumps the epoch and runs `invalidate` under the same lock.
    pub fn invalidate<R>(&self, digest: u128, invalidate: impl FnOnce() -> R) -> R {
        let mut stripe = self.stripe(digest);
        *stripe = stripe.wrapping_add(1);
        invalidate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_after_invalidation_is_refused() {
        let epochs = Epochs::default();
        let seen = epochs.current(42);
        epochs.invalidate(42, || ());
        assert_eq!(epochs.store_if_current(42, seen, || "stored"), None);
        let fresh = epochs.current(42);
        assert_eq!(
            epochs.store_if_current(42, fresh, || "stored"),
            Some("stored")
        );
    }

    #[test]
    fn other_stripes_are_unaffected() {
        let epochs = Epochs::default();
        let seen = epochs.current(1);
        epochs.invalidate(2, || ());
        assert!(epochs.store_if_current(1, seen, || ()).is_some());
    }
}
