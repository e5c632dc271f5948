//! Holds an HTTP/2 connection's writes back until its task's poll ends,
//! then writes them out together: one syscall for all the frames of a poll.
//!
//! Why: h2 writes a DATA frame of 256 bytes or more from its payload in
//! place (a vectored write of the frames buffered before it, then the
//! payload) and takes no other frame until that write is done, so each
//! answer carrying a value of 256 B or more went out in a write of its own:
//! a syscall, a TCP segment and a wake-up of the asking node per answer,
//! however many answers were ready in the same poll (measured at the owner
//! of the peer-hit benchmark: one `writev` per answer, one read for forty
//! requests; BENCHMARKS.md, "Scale").
//!
//! [`cork`] splits a stream in two: [`Corked`], the stream handed to the
//! HTTP library, whose writes land in a buffer and whose flushes wait for
//! the end of the poll, and [`Uncork`], which [`WriteAfterPoll`] calls after
//! every poll of the connection future to write the buffer out. Every write
//! of h2 (and hyper) happens inside that poll, so nothing waits longer than
//! the poll that wrote it. Past [`HOLD_LIMIT`] a write goes out at once, and
//! when the socket takes no more the writer waits: memory stays bounded and
//! a slow reader slows the writer down, as with the bare stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back: a write that would hold more writes the held
/// ones out first (and waits if the socket takes no more).
pub const HOLD_LIMIT: usize = 64 * 1024;
/// The buffer capacity kept between polls; a larger one, grown by a big
/// batch, is given back once written, so that an idle connection holds
/// little (a node may keep a connection to each of thousands of peers).
const RETAINED_CAPACITY: usize = 16 * 1024;

/// Splits `io` into the stream to hand to the HTTP library and the handle
/// that writes what it held back. Disabled (`enabled == false`), the stream
/// passes every call straight through and the handle does nothing.
pub fn cork<IO>(io: IO, enabled: bool) -> (Corked<IO>, Uncork<IO>) {
    let held = Arc::new(Mutex::new(Held {
        io,
        enabled,
        pending: Vec::new(),
        written: 0,
        failed: None,
    }));
    (
        Corked {
            held: Arc::clone(&held),
        },
        Uncork { held },
    )
}

/// The stream and the writes it holds back, shared by [`Corked`] and
/// [`Uncork`] (both used from the connection's one task: never contended).
struct Held<IO> {
    io: IO,
    enabled: bool,
    /// Bytes accepted but not yet written; `written` of them are out.
    pending: Vec<u8>,
    written: usize,
    /// A write after the poll failed: the next write of the connection
    /// returns this error (the stream is broken).
    failed: Option<(io::ErrorKind, String)>,
}

impl<IO: AsyncWrite + Unpin> Held<IO> {
    /// Writes the held bytes out; `Pending` (with the waker registered by
    /// the stream) while the socket takes no more.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        if self.pending.capacity() > RETAINED_CAPACITY {
            self.pending.shrink_to(RETAINED_CAPACITY);
        }
        Poll::Ready(Ok(()))
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// Makes room for `len` more bytes: writes the held ones out first if
    /// they would pass [`HOLD_LIMIT`]. `Ready(true)` when the `len` bytes
    /// are to be held, `Ready(false)` when they are too many to hold and
    /// nothing is held: they go straight to the stream.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        self.check_failed()?;
        if self.pending.len() + len > HOLD_LIMIT {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(len < HOLD_LIMIT))
    }
}

/// The stream as the HTTP library sees it: writes are held back (up to
/// [`HOLD_LIMIT`]) and flushes wait for [`Uncork::release`].
pub struct Corked<IO> {
    held: Arc<Mutex<Held<IO>>>,
}

/// Writes out what [`Corked`] held back.
pub struct Uncork<IO> {
    held: Arc<Mutex<Held<IO>>>,
}

fn lock<IO>(held: &Mutex<Held<IO>>) -> MutexGuard<'_, Held<IO>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<IO: AsyncWrite + Unpin> Uncork<IO> {
    /// Writes the held bytes out as far as the socket takes them now. The
    /// rest waits for the socket, which wakes the task (the waker of `cx`)
    /// when it takes more; a failed write wakes it too, so that the
    /// connection's next write meets the error.
    pub fn release(&self, cx: &mut Context<'_>) {
        let mut held = lock(&self.held);
        if held.failed.is_some() || held.pending.is_empty() {
            return;
        }
        if let Poll::Ready(Err(error)) = held.poll_write_out(cx) {
            held.failed = Some((error.kind(), error.to_string()));
            cx.waker().wake_by_ref();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Corked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.held).io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Corked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut held = lock(&self.held);
        if !held.enabled {
            return Pin::new(&mut held.io).poll_write(cx, buf);
        }
        if !ready!(held.poll_room(cx, buf.len()))? {
            return Pin::new(&mut held.io).poll_write(cx, buf);
        }
        held.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut held = lock(&self.held);
        if !held.enabled {
            return Pin::new(&mut held.io).poll_write_vectored(cx, bufs);
        }
        let len = bufs.iter().map(|buf| buf.len()).sum();
        if !ready!(held.poll_room(cx, len))? {
            return Pin::new(&mut held.io).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            held.pending.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        let held = lock(&self.held);
        // Held back, a vectored write costs a copy, as a plain one does.
        held.enabled || held.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = lock(&self.held);
        if !held.enabled {
            return Pin::new(&mut held.io).poll_flush(cx);
        }
        // The release after this poll writes the held bytes out.
        Poll::Ready(held.check_failed())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = lock(&self.held);
        held.check_failed()?;
        ready!(held.poll_write_out(cx))?;
        Pin::new(&mut held.io).poll_shutdown(cx)
    }
}

/// A connection future whose held-back writes go out after each poll.
pub struct WriteAfterPoll<F, IO> {
    inner: F,
    uncork: Uncork<IO>,
}

impl<F, IO> WriteAfterPoll<F, IO> {
    pub fn new(inner: F, uncork: Uncork<IO>) -> Self {
        Self { inner, uncork }
    }

    pub fn inner(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: Future + Unpin, IO: AsyncWrite + Unpin> Future for WriteAfterPoll<F, IO> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let polled = Pin::new(&mut self.inner).poll(cx);
        self.uncork.release(cx);
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A socket that counts the writes that reach it.
    struct CountingWrites {
        inner: TcpStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncWrite for CountingWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A connected pair on loopback: the writing end counted, and the
    /// reading end.
    async fn pair() -> (CountingWrites, Arc<AtomicUsize>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let writes = Arc::new(AtomicUsize::new(0));
        let writer = CountingWrites {
            inner: connected.expect("connect"),
            writes: Arc::clone(&writes),
        };
        (writer, writes, accepted.expect("accept").0)
    }

    /// Writes `frames` of `frame_len` bytes each (byte `i` of the stream
    /// is `i % 251`), flushing after each, all in one poll as h2 does.
    fn write_frames(
        stream: &mut Corked<CountingWrites>,
        cx: &mut Context<'_>,
        frames: usize,
        frame_len: usize,
    ) {
        for frame in 0..frames {
            let bytes: Vec<u8> = (frame * frame_len..(frame + 1) * frame_len)
                .map(|i| (i % 251) as u8)
                .collect();
            let head = io::IoSlice::new(&bytes[..9]);
            let payload = io::IoSlice::new(&bytes[9..]);
            let polled = Pin::new(&mut *stream).poll_write_vectored(cx, &[head, payload]);
            assert!(matches!(polled, Poll::Ready(Ok(n)) if n == frame_len));
            assert!(matches!(
                Pin::new(&mut *stream).poll_flush(cx),
                Poll::Ready(Ok(()))
            ));
        }
    }

    /// Held bytes that are never written would hang a read: fail instead.
    const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

    async fn read_exactly(reader: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        tokio::time::timeout(READ_DEADLINE, reader.read_exact(&mut got))
            .await
            .expect("the held bytes never arrived")
            .expect("read");
        got
    }

    async fn read_all(reader: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(READ_DEADLINE, reader.read_to_end(&mut got))
            .await
            .expect("the held bytes never arrived")
            .expect("read");
        got
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn the_frames_of_one_poll_go_out_in_one_write() {
        let (writer, writes, mut reader) = pair().await;
        let (mut corked, uncork) = cork(writer, true);
        let poll = WriteAfterPoll::new(
            Box::pin(std::future::poll_fn(|cx| {
                write_frames(&mut corked, cx, 12, 1_100);
                Poll::Ready(())
            })),
            uncork,
        );
        poll.await;
        // 13 kB: less than a new socket's send buffer takes at once.
        assert_eq!(writes.load(Ordering::SeqCst), 1, "12 frames, one write");
        assert_eq!(read_exactly(&mut reader, 13_200).await, pattern(13_200));
    }

    #[tokio::test]
    async fn disabled_every_write_goes_straight_through() {
        let (writer, writes, mut reader) = pair().await;
        let (mut corked, uncork) = cork(writer, false);
        let poll = WriteAfterPoll::new(
            Box::pin(std::future::poll_fn(|cx| {
                write_frames(&mut corked, cx, 10, 1_100);
                Poll::Ready(())
            })),
            uncork,
        );
        poll.await;
        assert!(writes.load(Ordering::SeqCst) >= 10);
        assert_eq!(read_exactly(&mut reader, 11_000).await, pattern(11_000));
    }

    /// A writer far ahead of its reader holds no more than the limit, waits
    /// for the socket, and every byte arrives in order.
    #[tokio::test]
    async fn a_slow_reader_holds_the_writer_back_and_loses_nothing() {
        const LEN: usize = 16 * 1024 * 1024;
        let (writer, _writes, mut reader) = pair().await;
        let (corked, uncork) = cork(writer, true);
        let held = Arc::clone(&corked.held);
        let writing = tokio::spawn(WriteAfterPoll::new(
            Box::pin(async move {
                let mut corked = corked;
                let data = pattern(LEN);
                // Frames of a DATA frame's size, as h2 writes them.
                for chunk in data.chunks(16_393) {
                    corked.write_all(chunk).await.expect("write");
                    corked.flush().await.expect("flush");
                }
                corked.shutdown().await.expect("shutdown");
            }),
            uncork,
        ));
        // Nothing read yet: the socket fills, and the writer stops at the
        // limit (it cannot finish: 16 MiB is more than any socket buffer).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pending = lock(&held).pending.len();
            assert!(pending <= HOLD_LIMIT, "held {pending} bytes");
            if pending > HOLD_LIMIT / 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer never filled its hold"
            );
            tokio::task::yield_now().await;
        }
        assert!(!writing.is_finished());
        let got = read_all(&mut reader).await;
        writing.await.expect("writer");
        assert_eq!(got.len(), LEN);
        assert!(got == pattern(LEN), "the bytes arrived out of order");
    }

    #[tokio::test]
    async fn shutdown_writes_out_what_was_held() {
        let (writer, _writes, mut reader) = pair().await;
        let (mut corked, _uncork) = cork(writer, true);
        corked.write_all(b"last words").await.expect("write");
        corked.shutdown().await.expect("shutdown");
        assert_eq!(read_all(&mut reader).await, b"last words");
    }

    #[tokio::test]
    async fn a_failed_write_out_fails_the_next_write() {
        let (writer, _writes, reader) = pair().await;
        let (mut corked, uncork) = cork(writer, true);
        drop(reader);
        // Writes to a closed peer fail once it has answered with a reset.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let error = loop {
            let failed = std::future::poll_fn(|cx| {
                let Poll::Ready(wrote) = Pin::new(&mut corked).poll_write(cx, &[7; 1000]) else {
                    panic!("a write of 1000 bytes into an empty hold waited");
                };
                uncork.release(cx);
                Poll::Ready(wrote)
            })
            .await;
            if let Err(error) = failed {
                break error;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes never failed"
            );
            tokio::task::yield_now().await;
        };
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{error}"
        );
        assert!(corked.flush().await.is_err());
    }
}
