//! Stream plumbing shared by every source and restore target: the [`ChannelReader`] (a
//! channel of chunks read as one stream) and the [`tee_to_validator`] stage (a stream passed
//! through unchanged while a validator beside it reads every byte: the RDB parser of Redis
//! backups and restores, the completeness check of `pg_dump` output).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use backup_core::ByteStream;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

/// What travels through a [`ChannelReader`]'s channel: a chunk of bytes, or the error that
/// ends the stream.
pub(crate) type Chunk = io::Result<Bytes>;

/// An `AsyncRead` over the chunks of a channel: what a thread or task produces (a child's
/// pipe, a tee to a parser) read as one byte stream. The end of the channel (every sender
/// dropped) is end of file; an `Err` chunk is a read error. Built on tokio-util's
/// [`StreamReader`].
pub(crate) struct ChannelReader(StreamReader<Chunks, Bytes>);

impl ChannelReader {
    /// Reads what is sent on the other end of `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self(StreamReader::new(Chunks(rx)))
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// The receiver as a `Stream`.
struct Chunks(mpsc::Receiver<Chunk>);

impl Stream for Chunks {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

/// A synchronous `Write` into the channel of a [`ChannelReader`], for producers that run on a
/// thread of their own (a tar writer walking a directory tree): bytes are sent in chunks of
/// [`WRITE_CHUNK`], blocking while the channel is full (bounded memory). Writing fails with
/// `BrokenPipe` once the reader is gone (the backup was abandoned).
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

/// The chunk size of a [`ChannelWriter`].
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    /// A writer into `tx`. Must not be used on an async runtime thread (it blocks).
    pub(crate) fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(WRITE_CHUNK),
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(WRITE_CHUNK),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader of the stream is gone",
            )
        })
    }

    /// Ends the stream with `error` (the reader sees a read error after the bytes before it).
    pub(crate) fn fail(mut self, error: io::Error) {
        let _ = self.send_buffer();
        let _ = self.tx.blocking_send(Err(error));
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = WRITE_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == WRITE_CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// A validator's work: reads the copy of the stream, says whether it was good.
pub(crate) type Validation<'r, V, E> = Pin<Box<dyn Future<Output = Result<V, E>> + Send + 'r>>;

/// Chunks in flight between a [`TeeStream`] and its validator: the memory bound of the stage
/// (each chunk is at most one read of the consumer's buffer).
pub(crate) const TEE_CHUNKS: usize = 16;

/// Passes `inner` through unchanged while `validator`, in a task of its own, reads a copy of
/// every byte from a bounded channel. The stream fails as soon as the validator does (with
/// `what is invalid: REASON`), instead of shipping the rest of a doomed stream; a slow
/// validator slows the stream (bounded memory). After the stream ended, [`Tee::verdict`]
/// gives the validator's result.
pub(crate) fn tee_to_validator<V, E, F>(
    inner: ByteStream,
    what: &'static str,
    validator: F,
) -> (TeeStream, Tee<V, E>)
where
    F: for<'r> FnOnce(&'r mut ChannelReader) -> Validation<'r, V, E> + Send + 'static,
    V: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Chunk>(TEE_CHUNKS);
    let shared = Arc::new(TeeShared::default());
    let task_shared = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        let mut reader = ChannelReader::new(rx);
        let result = validator(&mut reader).await;
        if let Err(e) = &result {
            TeeShared::set(&task_shared.validator_error, e.to_string());
        }
        // The receiving end is dropped only now, after the reason was recorded, so that the
        // stream finds it when its next send fails.
        drop(reader);
        result
    });
    let stream = TeeStream {
        inner,
        sender: PollSender::new(tx),
        unsent: None,
        shared: Arc::clone(&shared),
        what,
        done: false,
    };
    (stream, Tee { shared, task })
}

/// State shared between a [`TeeStream`], its validator task and its [`Tee`].
#[derive(Debug, Default)]
struct TeeShared {
    /// The consumer read the stream to its end (and the validator got every byte).
    ended: AtomicBool,
    /// Bytes that went through.
    bytes: AtomicU64,
    /// Why the validator failed.
    validator_error: Mutex<Option<String>>,
    /// Why reading the underlying stream failed.
    read_error: Mutex<Option<String>>,
}

impl TeeShared {
    fn get(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().ok().and_then(|e| e.clone())
    }

    fn set(slot: &Mutex<Option<String>>, message: String) {
        if let Ok(mut slot) = slot.lock() {
            slot.get_or_insert(message);
        }
    }
}

/// The validator side of a [`tee_to_validator`] stage.
pub(crate) struct Tee<V, E> {
    shared: Arc<TeeShared>,
    task: JoinHandle<Result<V, E>>,
}

impl<V, E> Tee<V, E> {
    /// Whether the consumer read the stream to its end.
    pub(crate) fn ended(&self) -> bool {
        self.shared.ended.load(Ordering::SeqCst)
    }

    /// Bytes that went through.
    pub(crate) fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Why reading the underlying stream failed, if it did.
    pub(crate) fn read_error(&self) -> Option<String> {
        TeeShared::get(&self.shared.read_error)
    }

    /// Whether the validator is done (it failed, or stopped reading early).
    pub(crate) fn validator_done(&self) -> bool {
        self.task.is_finished() || TeeShared::get(&self.shared.validator_error).is_some()
    }

    /// Waits for the validator's result. Call it after the stream ended, or after
    /// [`validator_done`](Self::validator_done): a validator still waiting for bytes of an
    /// abandoned stream waits until the stream is dropped.
    pub(crate) async fn verdict(self) -> Result<Result<V, E>, JoinError> {
        self.task.await
    }

    /// Stops the validator (a stream abandoned half-way).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// The stream side of a [`tee_to_validator`] stage.
pub(crate) struct TeeStream {
    inner: ByteStream,
    sender: PollSender<Chunk>,
    /// A chunk already returned to the reader but not yet accepted by the channel.
    unsent: Option<Bytes>,
    shared: Arc<TeeShared>,
    what: &'static str,
    done: bool,
}

impl TeeStream {
    fn validator_failed(&self) -> io::Error {
        let reason = TeeShared::get(&self.shared.validator_error)
            .unwrap_or_else(|| "its check stopped early".to_owned());
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is invalid: {reason}", self.what),
        )
    }

    /// Hands `unsent` to the channel; `Ready(Err)` when the validator is gone.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unsent.is_none() {
            return Poll::Ready(Ok(()));
        }
        match self.sender.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                if let Some(chunk) = self.unsent.take() {
                    if self.sender.send_item(Ok(chunk)).is_err() {
                        return Poll::Ready(Err(self.validator_failed()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.validator_failed())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TeeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if TeeShared::get(&this.shared.validator_error).is_some() {
            return Poll::Ready(Err(this.validator_failed()));
        }
        match this.poll_push(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if this.done || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                TeeShared::set(&this.shared.read_error, e.to_string());
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 {
                    this.done = true;
                    this.sender.close();
                    this.shared.ended.store(true, Ordering::SeqCst);
                    return Poll::Ready(Ok(()));
                }
                this.shared.bytes.fetch_add(n as u64, Ordering::SeqCst);
                this.unsent = Some(Bytes::copy_from_slice(&buf.filled()[before..]));
                // Try to hand it over right away; otherwise on the next read.
                match this.poll_push(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn chunks_read_as_one_stream_until_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel(4);
        let producer = tokio::spawn(async move {
            for chunk in [&b"ab"[..], b"", b"cde"] {
                tx.send(Ok(Bytes::from_static(chunk))).await.unwrap();
            }
        });
        let mut out = Vec::new();
        ChannelReader::new(rx).read_to_end(&mut out).await.unwrap();
        producer.await.unwrap();
        assert_eq!(out, b"abcde");
    }

    #[tokio::test]
    async fn an_error_chunk_is_a_read_error_after_the_bytes_before_it() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Bytes::from_static(b"xy"))).await.unwrap();
        tx.send(Err(io::Error::other("pipe broke"))).await.unwrap();
        drop(tx);
        let mut reader = ChannelReader::new(rx);
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 2);
        let err = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "pipe broke");
    }

    fn stream(chunks: &[&'static [u8]]) -> ByteStream {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(Ok(Bytes::from_static(chunk))).unwrap();
        }
        Box::new(ChannelReader::new(rx))
    }

    #[tokio::test]
    async fn the_tee_passes_every_byte_and_the_validator_sees_them_all() {
        let (mut tee, check) = tee_to_validator(stream(&[b"abc", b"def"]), "the test", |r| {
            Box::pin(async move {
                let mut seen = Vec::new();
                r.read_to_end(&mut seen).await?;
                Ok::<_, io::Error>(seen)
            })
        });
        let mut out = Vec::new();
        tee.read_to_end(&mut out).await.unwrap();
        drop(tee);
        assert_eq!(out, b"abcdef");
        assert!(check.ended());
        assert_eq!(check.bytes(), 6);
        assert_eq!(check.verdict().await.unwrap().unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn a_failing_validator_fails_the_stream_with_its_reason() {
        let chunks: Vec<&'static [u8]> = vec![&[b'x'; 4096]; 64];
        let (mut tee, check) = tee_to_validator(stream(&chunks), "the snapshot", |r| {
            Box::pin(async move {
                let mut first = [0u8; 1];
                r.read_exact(&mut first).await?;
                Err::<(), _>(io::Error::other("bad magic"))
            })
        });
        let mut out = Vec::new();
        let err = tee.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.to_string(), "the snapshot is invalid: bad magic");
        assert!(!check.ended());
        assert!(check.validator_done());
        assert!(check.verdict().await.unwrap().is_err());
        assert!(out.len() < 64 * 4096, "the rest was not shipped");
    }
}
