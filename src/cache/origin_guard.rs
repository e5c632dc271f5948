//! What stands between a group and its origin: a bound on the loads in
//! flight at once (`max_concurrent_loads`) with a bounded wait for a slot,
//! and the circuit breaker. Every origin load of the node goes through
//! here, foreground, background refresh and revalidation alike, so the
//! origin sees at most `max_concurrent_loads` from each node.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

#[cfg(test)]
use super::breaker::BreakerConfig;
use super::breaker::{Admission, Breaker};
use super::loader::LoadError;
use crate::metrics::OriginMetrics;

/// How a group bounds its origin loads (`groups.NAME.max_concurrent_loads`,
/// `max_queued_loads`, `circuit_breaker`).
pub use crate::config::OriginLimits as GuardConfig;

/// Why the guard sent a load nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot busy and the queue full, or no slot within the wait.
    Overloaded { max_concurrent: usize },
    /// The circuit is open after a run of failures.
    CircuitOpen { retry_in: Duration },
}

/// An origin load's failure: the loader's, or the guard's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    Load(LoadError),
    Refused(Refusal),
}

pub struct OriginGuard {
    slots: Option<Semaphore>,
    max_concurrent: usize,
    max_queued: usize,
    max_wait: Duration,
    queued: AtomicUsize,
    breaker: Option<(Breaker, Duration)>,
    metrics: OriginMetrics,
}

impl OriginGuard {
    pub fn new(config: GuardConfig, metrics: OriginMetrics) -> Arc<Self> {
        Arc::new(Self {
            slots: config.max_concurrent_loads.map(Semaphore::new),
            max_concurrent: config.max_concurrent_loads.unwrap_or(usize::MAX),
            max_queued: config.max_queued_loads,
            max_wait: config.queue_wait,
            queued: AtomicUsize::new(0),
            breaker: config
                .circuit_breaker
                .map(|breaker| (Breaker::new(breaker), breaker.cool_down)),
            metrics,
        })
    }

    /// Runs `load` if the circuit and the slots allow it. The breaker
    /// counts a value, a 304 and a 404 as the origin answering; a failure
    /// or a timeout as a failure; a refusal not at all.
    pub async fn call<T, F>(&self, load: F) -> Result<T, OriginError>
    where
        F: Future<Output = Result<T, LoadError>>,
    {
        let admission = self.admit()?;
        let _slot = match self.slot().await {
            Ok(slot) => slot,
            Err(refusal) => {
                // A probe that never ran leaves the circuit as it was.
                if admission == Admission::Probe
                    && let Some((breaker, _)) = &self.breaker
                {
                    breaker.record(Admission::Probe, false, Instant::now());
                    self.show_state(breaker);
                }
                return Err(OriginError::Refused(refusal));
            }
        };
        self.metrics.inflight.inc();
        let _inflight = InFlight(&self.metrics);
        let outcome = load.await;
        if let Some((breaker, _)) = &self.breaker {
            let answered = matches!(outcome, Ok(_) | Err(LoadError::NotFound));
            breaker.record(admission, answered, Instant::now());
            self.show_state(breaker);
        }
        outcome.map_err(OriginError::Load)
    }

    fn admit(&self) -> Result<Admission, OriginError> {
        let Some((breaker, cool_down)) = &self.breaker else {
            return Ok(Admission::Pass);
        };
        let admission = breaker.admit(Instant::now());
        self.show_state(breaker);
        if admission == Admission::Refuse {
            self.metrics.circuit_open.inc();
            return Err(OriginError::Refused(Refusal::CircuitOpen {
                retry_in: *cool_down,
            }));
        }
        Ok(admission)
    }

    async fn slot(&self) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, Refusal> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        if let Ok(permit) = slots.try_acquire() {
            return Ok(Some(permit));
        }
        let overloaded = Refusal::Overloaded {
            max_concurrent: self.max_concurrent,
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.metrics.overloaded.inc();
            return Err(overloaded);
        }
        let waited = tokio::time::timeout(self.max_wait, slots.acquire()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // Timed out (the semaphore is never closed).
            _ => {
                self.metrics.overloaded.inc();
                Err(overloaded)
            }
        }
    }

    fn show_state(&self, breaker: &Breaker) {
        self.metrics.circuit_state.set(breaker.state() as i64);
    }
}

/// Takes a load off `shoal_origin_inflight` when it ends, a load whose
/// caller gave up included. Holds the metrics, not the gauge, so that
/// `prometheus` stays in `metrics.rs`.
struct InFlight<'a>(&'a OriginMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::atomic::AtomicUsize;

    fn guard(max_concurrent: usize, max_queued: usize) -> (Arc<OriginGuard>, OriginMetrics) {
        let metrics = Metrics::new().group("g").origin;
        let config = GuardConfig {
            max_concurrent_loads: Some(max_concurrent),
            max_queued_loads: max_queued,
            queue_wait: Duration::from_secs(1),
            circuit_breaker: Some(BreakerConfig {
                failures: 2,
                cool_down: Duration::from_secs(5),
            }),
        };
        (OriginGuard::new(config, metrics.clone()), metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_bound_in_flight_and_the_queue_is_bounded() {
        let (guard, metrics) = guard(2, 3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = (0..8).map(|_| {
            let (guard, running, most) = (guard.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                guard
                    .call(async {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        });
        let results = futures::future::join_all(calls).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(OriginError::Refused(Refusal::Overloaded { .. })))))
            .count();
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(refused, 3, "2 run, 3 wait, 3 refused: {results:?}");
        assert_eq!(metrics.overloaded.get(), 3);
        assert_eq!(metrics.inflight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_allowed_is_refused() {
        let (guard, _) = guard(1, 10);
        let busy = {
            let guard = guard.clone();
            tokio::spawn(async move {
                guard
                    .call(async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waited = guard.call(async { Ok(()) }).await;
        assert!(matches!(
            waited,
            Err(OriginError::Refused(Refusal::Overloaded {
                max_concurrent: 1
            }))
        ));
        assert!(busy.await.expect("no panic").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_open_the_circuit_and_a_good_probe_closes_it() {
        let (guard, metrics) = guard(4, 4);
        let fail = || async { Err::<(), _>(LoadError::Failure("down".into())) };
        for _ in 0..2 {
            assert!(matches!(
                guard.call(fail()).await,
                Err(OriginError::Load(_))
            ));
        }
        assert_eq!(metrics.circuit_state.get(), 1);
        let loads = AtomicUsize::new(0);
        let refused = guard
            .call(async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(
            refused,
            Err(OriginError::Refused(Refusal::CircuitOpen { .. }))
        ));
        assert_eq!(loads.load(Ordering::SeqCst), 0, "fails fast");
        assert_eq!(metrics.circuit_open.get(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(guard.call(async { Ok(()) }).await.is_ok(), "the probe");
        assert_eq!(metrics.circuit_state.get(), 0);
        // A 404 is the origin answering: it does not count as a failure.
        for _ in 0..3 {
            let _ = guard
                .call(async { Err::<(), _>(LoadError::NotFound) })
                .await;
        }
        assert_eq!(metrics.circuit_state.get(), 0);
    }
}
