//! When an owner's entry is refreshed, served stale or given up (RFC 5861's
//! stale-while-revalidate and stale-if-error, and refresh-ahead), and how
//! TTLs are spread. Pure: the caller passes `now` and the random sample.
//!
//! An entry's life, from when it is stored:
//!
//! ```text
//! stored ── fresh ──▶ refresh_at ── refresh due ──▶ expires_at
//!        ── stale while revalidate ──▶ + stale_while_revalidate
//!        ── stale only if the reload fails ──▶ + stale_if_error
//!        ── expired, held to revalidate ──▶ + one more TTL ── gone
//! ```
//!
//! The two stale windows both start at expiry, so the longer one ends last.
//! An entry with validators is held one TTL past its expiry (or its stale
//! windows, if longer) but never served in that time: it is there so that
//! its reload can be conditional, and a `304` saves the body.

use std::time::Duration;

use tokio::time::Instant;

/// A group's freshness settings (`groups.NAME.{refresh_ahead, …}`); the
/// config holds them, this module gives them meaning.
pub use crate::config::Freshness as FreshnessPolicy;

/// What an origin said about serving one value stale (RFC 5861); each
/// replaces the group's setting for that value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleDirectives {
    /// `stale-while-revalidate=N`.
    pub while_revalidate: Option<Duration>,
    /// `stale-if-error=N`.
    pub if_error: Option<Duration>,
}

/// Where an entry is in its life at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Served as it is.
    Fresh,
    /// Served as it is; the first hit starts a background reload.
    RefreshDue,
    /// Expired: served stale at once while one background reload runs.
    StaleWhileRevalidate,
    /// Expired: reloaded before answering, and served stale only if the
    /// reload fails.
    StaleIfError,
    /// Expired and never served, held only for its validators: the reload
    /// before answering is conditional.
    Revalidate,
    /// Past every window: a miss.
    Gone,
}

/// The instants at which one stored entry changes [`Stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// `None`: no refresh ahead.
    pub refresh_at: Option<Instant>,
    pub expires_at: Instant,
    pub revalidate_until: Instant,
    pub if_error_until: Instant,
    /// Until when the entry is held for its validators (at the latest
    /// window's end when it has none).
    pub validators_until: Instant,
}

impl FreshnessPolicy {
    /// Whether any setting needs more than an expiry instant per entry.
    pub fn is_active(&self) -> bool {
        self.refresh_ahead > 0.0
            || self.stale_while_revalidate.is_some()
            || self.stale_if_error.is_some()
    }

    /// `ttl` shortened by `sample` (in `[0, 1)`) of the jitter: a value is
    /// never kept longer than its TTL, so an origin's `max-age` still holds.
    pub fn jittered(&self, ttl: Duration, sample: f64) -> Duration {
        if self.ttl_jitter <= 0.0 {
            return ttl;
        }
        let cut = (self.ttl_jitter * sample.clamp(0.0, 1.0)).min(1.0);
        ttl.mul_f64(1.0 - cut)
    }

    /// The life of an entry stored at `now` with `ttl` to live, the origin's
    /// directives replacing the group's stale windows where given; with
    /// `validators`, held a TTL past expiry to revalidate.
    pub fn timeline(
        &self,
        now: Instant,
        ttl: Duration,
        origin: StaleDirectives,
        validators: bool,
    ) -> Timeline {
        let expires_at = now + ttl;
        let refresh_at = (self.refresh_ahead > 0.0 && !ttl.is_zero())
            .then(|| now + ttl.mul_f64(self.refresh_ahead.min(1.0)));
        let window = |origin: Option<Duration>, group: Option<Duration>| {
            expires_at + origin.or(group).unwrap_or(Duration::ZERO)
        };
        let revalidate_until = window(origin.while_revalidate, self.stale_while_revalidate);
        let if_error_until = window(origin.if_error, self.stale_if_error);
        let held = if validators {
            expires_at + ttl
        } else {
            expires_at
        };
        Timeline {
            refresh_at,
            expires_at,
            revalidate_until,
            if_error_until,
            validators_until: held.max(revalidate_until).max(if_error_until),
        }
    }
}

impl Timeline {
    /// The entry's stage at `now`.
    pub fn stage(&self, now: Instant) -> Stage {
        if now < self.expires_at {
            match self.refresh_at {
                Some(at) if now >= at => Stage::RefreshDue,
                _ => Stage::Fresh,
            }
        } else if now < self.revalidate_until {
            Stage::StaleWhileRevalidate
        } else if now < self.if_error_until {
            Stage::StaleIfError
        } else if now < self.validators_until {
            Stage::Revalidate
        } else {
            Stage::Gone
        }
    }

    /// Until when the cache must hold the entry.
    pub fn keep_until(&self) -> Instant {
        self.validators_until
    }

    /// Until when a copy elsewhere may be kept: the expiry, or the refresh,
    /// whichever comes first (after it the owner holds a newer value).
    pub fn copy_until(&self) -> Instant {
        self.refresh_at
            .map_or(self.expires_at, |at| at.min(self.expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> FreshnessPolicy {
        FreshnessPolicy {
            refresh_ahead: 0.8,
            stale_while_revalidate: Some(S(5)),
            stale_if_error: Some(S(60)),
            ttl_jitter: 0.0,
        }
    }

    #[test]
    fn an_entry_goes_through_every_stage_in_order() {
        let now = Instant::now();
        let line = policy().timeline(now, S(10), StaleDirectives::default(), false);
        let at = |secs: u64| line.stage(now + S(secs));
        assert_eq!(at(0), Stage::Fresh);
        assert_eq!(at(7), Stage::Fresh);
        assert_eq!(at(8), Stage::RefreshDue);
        assert_eq!(at(9), Stage::RefreshDue);
        assert_eq!(at(10), Stage::StaleWhileRevalidate);
        assert_eq!(at(14), Stage::StaleWhileRevalidate);
        assert_eq!(at(15), Stage::StaleIfError);
        assert_eq!(at(69), Stage::StaleIfError);
        assert_eq!(at(70), Stage::Gone);
        assert_eq!(line.keep_until(), now + S(70));
        assert_eq!(line.copy_until(), now + S(8));
    }

    #[test]
    fn everything_off_is_fresh_then_gone() {
        let now = Instant::now();
        let line =
            FreshnessPolicy::default().timeline(now, S(10), StaleDirectives::default(), false);
        assert_eq!(line.stage(now + S(9)), Stage::Fresh);
        assert_eq!(line.stage(now + S(10)), Stage::Gone);
        assert_eq!(line.keep_until(), now + S(10));
        assert_eq!(line.copy_until(), now + S(10));
        assert!(!FreshnessPolicy::default().is_active());
        assert!(policy().is_active());
    }

    #[test]
    fn the_origins_directives_replace_the_groups() {
        let now = Instant::now();
        let origin = StaleDirectives {
            while_revalidate: Some(S(1)),
            if_error: Some(S(600)),
        };
        let line = policy().timeline(now, S(10), origin, false);
        assert_eq!(line.stage(now + S(11)), Stage::StaleIfError);
        assert_eq!(line.stage(now + S(609)), Stage::StaleIfError);
        assert_eq!(line.stage(now + S(610)), Stage::Gone);
        // An origin may also switch a window off for its value.
        let off = StaleDirectives {
            while_revalidate: Some(Duration::ZERO),
            if_error: None,
        };
        let line = policy().timeline(now, S(10), off, false);
        assert_eq!(line.stage(now + S(10)), Stage::StaleIfError);
    }

    #[test]
    fn a_stale_if_error_shorter_than_revalidation_never_shows() {
        let now = Instant::now();
        let short = FreshnessPolicy {
            stale_while_revalidate: Some(S(30)),
            stale_if_error: Some(S(5)),
            ..policy()
        };
        let line = short.timeline(now, S(10), StaleDirectives::default(), false);
        assert_eq!(line.stage(now + S(39)), Stage::StaleWhileRevalidate);
        assert_eq!(line.stage(now + S(40)), Stage::Gone);
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let jitter = FreshnessPolicy {
            ttl_jitter: 0.1,
            ..FreshnessPolicy::default()
        };
        assert_eq!(jitter.jittered(S(100), 0.0), S(100));
        assert_eq!(jitter.jittered(S(100), 0.5), S(95));
        assert!(jitter.jittered(S(100), 0.999_999) > S(90));
        assert_eq!(jitter.jittered(S(100), 7.0), S(90), "samples are clamped");
        assert_eq!(FreshnessPolicy::default().jittered(S(100), 0.5), S(100));
    }

    #[test]
    fn validators_hold_an_entry_a_ttl_past_expiry_unserved() {
        let now = Instant::now();
        let plain = FreshnessPolicy::default();
        let line = plain.timeline(now, S(10), StaleDirectives::default(), true);
        assert_eq!(line.stage(now + S(9)), Stage::Fresh);
        assert_eq!(line.stage(now + S(10)), Stage::Revalidate);
        assert_eq!(line.stage(now + S(19)), Stage::Revalidate);
        assert_eq!(line.stage(now + S(20)), Stage::Gone);
        // Stale windows longer than a TTL hold it anyway, and come first.
        let line = policy().timeline(now, S(10), StaleDirectives::default(), true);
        assert_eq!(line.stage(now + S(69)), Stage::StaleIfError);
        assert_eq!(line.stage(now + S(70)), Stage::Gone);
        assert_eq!(line.keep_until(), now + S(70));
    }

    #[test]
    fn a_zero_ttl_has_no_refresh_point() {
        let now = Instant::now();
        let line = policy().timeline(now, Duration::ZERO, StaleDirectives::default(), false);
        assert_eq!(line.refresh_at, None);
        assert_eq!(line.stage(now), Stage::StaleWhileRevalidate);
    }
}
