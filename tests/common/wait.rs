//! Every wait is a poll for a condition with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// A generous deadline for one condition to come true.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Ok`, and panics after `timeout` with `what`
/// and the last `Err` it returned (the state that was not good enough).
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
