//! Progress lines on stdout, each stamped with the seconds since the run
//! started.
//!
//! `progress!` names the clock `$crate::CLOCK`: a bench declares
//! `static CLOCK: RunClock` at its root.

use std::sync::OnceLock;
use std::time::Instant;

/// When the run started, and how wide the seconds of a stamp are (each
/// bench keeps the width its output always had).
pub struct RunClock {
    start: OnceLock<Instant>,
    width: usize,
}

impl RunClock {
    pub const fn new(width: usize) -> Self {
        Self {
            start: OnceLock::new(),
            width,
        }
    }

    /// Starts the clock, unless a line was already stamped.
    pub fn start(&self) {
        self.start.get_or_init(Instant::now);
    }

    /// `[   12.3s]`: seconds since the start, right-aligned in the width.
    pub fn stamp(&self) -> String {
        let elapsed = self.start.get_or_init(Instant::now).elapsed();
        format!("[{:>w$.1}s]", elapsed.as_secs_f64(), w = self.width)
    }
}

macro_rules! progress {
    ($($arg:tt)*) => {
        println!("{} {}", $crate::CLOCK.stamp(), format_args!($($arg)*))
    };
}
