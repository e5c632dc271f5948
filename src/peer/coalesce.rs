//! Lets the tasks ready to run go first before an HTTP/2 connection is
//! polled, so that one write carries the frames of all of them.
//!
//! A task that opens a stream (or answers one) wakes the connection's task;
//! tokio runs a task woken that way next, so the connection would write
//! each frame as soon as it is queued: a syscall and a wake-up of the peer
//! per request, though 64 requests were ready at once (measured on the
//! peer hit: 1.3 syscalls per request at the owner, BENCHMARKS.md, "Scale").
//! Yielding once per wake puts the connection behind them: they queue their
//! frames, and its next poll writes them together.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `inner`, polled only after a yield on every wake (while enabled).
pub struct YieldFirst<F> {
    inner: F,
    enabled: bool,
    yielded: bool,
}

impl<F> YieldFirst<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            enabled: true,
            yielded: false,
        }
    }

    /// Disabled, it polls `inner` at once, like `inner` alone.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub fn inner(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: Future + Unpin> Future for YieldFirst<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.enabled && !self.yielded {
            // Woken while running, a tokio task goes to the back of its
            // worker's queue: behind every task that is ready now.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_ready_tasks_run_before_the_wrapped_future_is_polled() {
        let ran = Arc::new(AtomicUsize::new(0));
        let others: Vec<_> = (0..8)
            .map(|_| {
                let ran = Arc::clone(&ran);
                tokio::spawn(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // On the test's single thread, the spawned tasks are queued and
        // have not run yet: the wrapped future sees them all done.
        let seen = YieldFirst::new(Box::pin(async { ran.load(Ordering::SeqCst) })).await;
        assert_eq!(seen, 8);
        for task in others {
            task.await.expect("task");
        }
    }
}
