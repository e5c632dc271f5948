//! The circuit breaker in front of a group's origin: after a run of
//! consecutive failed loads it opens and loads fail fast (or serve stale)
//! for a cool-down; then one probe load goes through, and its outcome
//! closes the circuit or opens it again. Pure apart from the lock: the
//! caller passes `now`.

use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

/// The breaker's settings (`groups.NAME.circuit_breaker`).
pub use crate::config::CircuitBreaker as BreakerConfig;

/// The circuit's state, as `shoal_origin_circuit_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// Whether a load may go to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Pass,
    /// The cool-down is over and this load is the one probe.
    Probe,
    /// Open, or half-open with the probe still out: fail fast.
    Refuse,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to send one load at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Pass,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                Admission::Probe
            }
            State::Open { .. } | State::HalfOpen => Admission::Refuse,
        }
    }

    /// Records how an admitted load went: `ok` when the origin answered (a
    /// value, a 304 or a 404), not when it failed or timed out.
    pub fn record(&self, admission: Admission, ok: bool, now: Instant) {
        let mut state = self.lock();
        match (admission, &mut *state) {
            (Admission::Probe, _) if ok => *state = State::Closed { failures: 0 },
            (Admission::Probe, _) => self.open(&mut state, now),
            (Admission::Pass, State::Closed { failures }) => {
                if ok {
                    *failures = 0;
                } else {
                    *failures += 1;
                    if *failures >= self.config.failures {
                        self.open(&mut state, now);
                    }
                }
            }
            // A load admitted while closed that ends after the circuit
            // opened (its peers failed first): the probe decides.
            _ => {}
        }
    }

    fn open(&self, state: &mut State, now: Instant) {
        *state = State::Open {
            until: now + self.config.cool_down,
        };
    }

    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const COOL: Duration = Duration::from_secs(10);

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            cool_down: COOL,
        })
    }

    #[test]
    fn opens_after_the_run_and_probes_after_the_cool_down() {
        let now = Instant::now();
        let breaker = breaker();
        for _ in 0..2 {
            assert_eq!(breaker.admit(now), Admission::Pass);
            breaker.record(Admission::Pass, false, now);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record(Admission::Pass, false, now);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.admit(now + COOL / 2), Admission::Refuse);
        assert_eq!(breaker.admit(now + COOL), Admission::Probe);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(
            breaker.admit(now + COOL),
            Admission::Refuse,
            "one probe at a time"
        );
        breaker.record(Admission::Probe, true, now + COOL);
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.admit(now + COOL), Admission::Pass);
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let now = Instant::now();
        let breaker = breaker();
        for _ in 0..3 {
            breaker.record(Admission::Pass, false, now);
        }
        assert_eq!(breaker.admit(now + COOL), Admission::Probe);
        breaker.record(Admission::Probe, false, now + COOL);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.admit(now + COOL + COOL / 2), Admission::Refuse);
        assert_eq!(breaker.admit(now + COOL * 2), Admission::Probe);
    }

    #[test]
    fn a_success_ends_the_run() {
        let now = Instant::now();
        let breaker = breaker();
        for _ in 0..5 {
            breaker.record(Admission::Pass, false, now);
            breaker.record(Admission::Pass, false, now);
            breaker.record(Admission::Pass, true, now);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn late_answers_while_open_do_not_close_it() {
        let now = Instant::now();
        let breaker = breaker();
        for _ in 0..3 {
            breaker.record(Admission::Pass, false, now);
        }
        breaker.record(Admission::Pass, true, now);
        assert_eq!(breaker.state(), CircuitState::Open);
    }
}
