//! Reading a request body, on either face, and the deadline every body is
//! read under.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::{ApiError, ErrorKind};
use crate::config::LimitsConfig;

/// Reads a request body of at most `limit` bytes: longer is
/// `value-too-large`, slower than the body deadline allows is
/// `request-timeout`, unreadable is `bad-request`.
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|error| {
            let mut causes = crate::error_chain::causes(&error);
            if let Some(late) = causes.find_map(|e| e.downcast_ref::<BodyTimeout>()) {
                return ApiError::new(ErrorKind::RequestTimeout, late.to_string());
            }
            let too_large = crate::error_chain::causes(&error)
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    ErrorKind::ValueTooLarge,
                    format!("the value is larger than this group's max_value ({limit} bytes)"),
                )
            } else {
                ApiError::bad_request(format!("could not read the request body: {error}"))
            }
        })
}

/// A body that did not arrive in the time its bytes allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the request body was not received in time: {received} bytes in {elapsed_ms} ms, \
     while a body has {grace_ms} ms plus one second per {min_rate} bytes \
     (limits.body_read_timeout, limits.min_body_rate)"
)]
pub struct BodyTimeout {
    received: u64,
    elapsed_ms: u128,
    grace_ms: u128,
    min_rate: u64,
}

/// Runs once, when a body's deadline passes: counts the refusal.
pub type OnTimeout = Box<dyn FnOnce() + Send>;

/// A request body read under a deadline that grows with the bytes
/// received ([`LimitsConfig::body_allowance`]): a client that trickles its
/// body, or never ends a chunked one, is cut off with [`BodyTimeout`]
/// instead of holding the connection and its buffer.
pub struct DeadlineBody<B> {
    inner: B,
    limits: Arc<LimitsConfig>,
    started: Instant,
    received: u64,
    deadline: Pin<Box<Sleep>>,
    on_timeout: Option<OnTimeout>,
}

impl<B> DeadlineBody<B> {
    /// `inner` with its deadline starting now.
    pub fn new(inner: B, limits: Arc<LimitsConfig>, on_timeout: OnTimeout) -> Self {
        let started = Instant::now();
        let deadline = Box::pin(tokio::time::sleep_until(started + limits.body_allowance(0)));
        Self {
            inner,
            limits,
            started,
            received: 0,
            deadline,
            on_timeout: Some(on_timeout),
        }
    }

    fn timed_out(&mut self) -> BodyTimeout {
        if let Some(count) = self.on_timeout.take() {
            count();
        }
        BodyTimeout {
            received: self.received,
            elapsed_ms: self.started.elapsed().as_millis(),
            grace_ms: self.limits.body_read_timeout.as_millis(),
            min_rate: self.limits.min_body_rate,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                    let allowed = this.limits.body_allowance(this.received);
                    let at = this
                        .started
                        .checked_add(allowed)
                        .unwrap_or_else(|| this.started + Duration::from_secs(86_400));
                    this.deadline.as_mut().reset(at);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(this.timed_out())))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn limits(grace: Duration, rate: u64) -> Arc<LimitsConfig> {
        Arc::new(LimitsConfig {
            body_read_timeout: grace,
            min_body_rate: rate,
            ..LimitsConfig::default()
        })
    }

    type Frames = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

    /// A body whose frames the test sends, when it likes.
    fn trickle() -> (Body, Frames) {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let frames = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        (Body::new(http_body_util::StreamBody::new(frames)), tx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_off_and_counted() {
        let (inner, tx) = trickle();
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .expect("send");
        let counted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&counted);
        let body = Body::new(DeadlineBody::new(
            inner,
            limits(Duration::from_secs(10), 1024),
            Box::new(move || {
                count.fetch_add(1, Ordering::Relaxed);
            }),
        ));
        let started = Instant::now();
        let error = read_body(body, 1 << 20).await.expect_err("cut off");
        assert_eq!(error.kind, ErrorKind::RequestTimeout);
        assert!(error.message.contains("1 bytes"), "{}", error.message);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        assert_eq!(counted.load(Ordering::Relaxed), 1);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_rate_is_read_whole() {
        let (inner, tx) = trickle();
        // 40 KiB at 4 KiB a second: past the 2 s grace, within the rate.
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let chunk = Bytes::from(vec![b'v'; 4096]);
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
        });
        let body = Body::new(DeadlineBody::new(
            inner,
            limits(Duration::from_secs(2), 4096),
            Box::new(|| {}),
        ));
        let bytes = read_body(body, 1 << 20).await.expect("read whole");
        assert_eq!(bytes.len(), 40 * 1024);
    }
}
