//! The run's one clock: every time the load, the origin and the chaos loop
//! record is a `Duration` since the run started, so they compare directly.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Seconds with millisecond precision, for reports.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
