//! Counting, hashing and verifying stream adapters.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use ring::digest;
use tokio::io::{AsyncRead, ReadBuf};

/// Size and SHA-256 of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDigest {
    /// Bytes that passed.
    pub size: u64,
    /// Lowercase hex SHA-256 of those bytes.
    pub sha256: String,
}

/// A reader that hashes (SHA-256) and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    context: digest::Context,
    size: u64,
}

impl<R> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            context: digest::Context::new(&digest::SHA256),
            size: 0,
        }
    }

    /// Size and SHA-256 of what has been read so far.
    pub fn digest(&self) -> StreamDigest {
        StreamDigest {
            size: self.size,
            sha256: hex::encode(self.context.clone().finish().as_ref()),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let fresh = &buf.filled()[before..];
            this.context.update(fresh);
            this.size += fresh.len() as u64;
        }
        poll
    }
}

/// A shared byte counter, readable while the stream it counts is owned elsewhere.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    /// Bytes counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Callback told how many bytes just passed (for progress bars).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A reader that counts bytes into a [`ByteCounter`] and reports progress.
pub struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
    progress: Option<ProgressFn>,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`; returns the reader and a handle on its count.
    pub fn new(inner: R, progress: Option<ProgressFn>) -> (Self, ByteCounter) {
        let counter = ByteCounter::default();
        let reader = Self {
            inner,
            counter: counter.clone(),
            progress,
        };
        (reader, counter)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = (buf.filled().len() - before) as u64;
            this.counter.0.fetch_add(n, Ordering::Relaxed);
            if let Some(progress) = &this.progress {
                if n > 0 {
                    progress(n);
                }
            }
        }
        poll
    }
}

/// Why a stream failed verification; carried inside an [`io::Error`] of kind `InvalidData`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IntegrityError(pub String);

/// A reader that checks a stream against an expected size and SHA-256.
///
/// It returns end-of-file only after the whole stream matched; a mismatch is returned as a read
/// error instead, so a consumer that commits only at end-of-file never commits bad data. A
/// stream longer than expected fails as soon as it passes the expected size.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    expected: Option<StreamDigest>,
}

impl<R> VerifyingReader<R> {
    /// Verifies `inner` against `expected`; with `None` it only counts and hashes.
    pub fn new(inner: R, expected: Option<StreamDigest>) -> Self {
        Self {
            inner: HashingReader::new(inner),
            expected,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let Some(expected) = &this.expected else {
            return Poll::Ready(Ok(()));
        };
        let at_eof = buf.filled().len() == before && buf.remaining() > 0;
        if this.inner.size > expected.size {
            // An error must not come with data: take back what this read added.
            buf.set_filled(before);
            return Poll::Ready(Err(integrity(format!(
                "stored object is longer than the {} bytes recorded in its manifest",
                expected.size
            ))));
        }
        if at_eof {
            let got = this.inner.digest();
            if got.size != expected.size {
                return Poll::Ready(Err(integrity(format!(
                    "stored object has {} bytes, its manifest records {} (truncated?)",
                    got.size, expected.size
                ))));
            }
            if got.sha256 != expected.sha256 {
                return Poll::Ready(Err(integrity(format!(
                    "SHA-256 of the stored object is {}, its manifest records {}",
                    got.sha256, expected.sha256
                ))));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn integrity(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, IntegrityError(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn sha(data: &[u8]) -> String {
        hex::encode(digest::digest(&digest::SHA256, data).as_ref())
    }

    #[tokio::test]
    async fn hashing_reader_reports_size_and_sha256() {
        let data = b"hello world".repeat(1000);
        let mut reader = HashingReader::new(&data[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(reader.digest().size, data.len() as u64);
        assert_eq!(reader.digest().sha256, sha(&data));
    }

    #[tokio::test]
    async fn verifying_reader_accepts_matching_stream() {
        let data = vec![7u8; 100_000];
        let expected = StreamDigest {
            size: data.len() as u64,
            sha256: sha(&data),
        };
        let mut out = Vec::new();
        VerifyingReader::new(&data[..], Some(expected))
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn verifying_reader_rejects_modified_truncated_and_extended_streams() {
        let data = vec![7u8; 100_000];
        let expected = StreamDigest {
            size: data.len() as u64,
            sha256: sha(&data),
        };
        let mut flipped = data.clone();
        flipped[500] ^= 1;
        let truncated = &data[..99_000];
        let mut extended = data.clone();
        extended.push(0);
        for (name, input) in [
            ("flipped", &flipped[..]),
            ("truncated", truncated),
            ("extended", &extended[..]),
        ] {
            let mut out = Vec::new();
            let err = VerifyingReader::new(input, Some(expected.clone()))
                .read_to_end(&mut out)
                .await
                .expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
            assert!(
                err.get_ref().is_some_and(|e| e.is::<IntegrityError>()),
                "{name}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn counting_reader_counts_and_reports_progress() {
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        let progress: ProgressFn = Arc::new(move |n| {
            seen2.fetch_add(n, Ordering::Relaxed);
        });
        let data = vec![1u8; 70_000];
        let (mut reader, counter) = CountingReader::new(&data[..], Some(progress));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(counter.get(), 70_000);
        assert_eq!(seen.load(Ordering::Relaxed), 70_000);
    }
}
