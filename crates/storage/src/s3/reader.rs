//! The reader of an [`S3Sink`](super::S3Sink): a `GetObject` body that resumes with a ranged
//! `GetObject` (`If-Match` the first ETag) when the connection breaks.
//!
//! An object larger than two ranges of [`READ_RANGE_BYTES`] is read by up to
//! [`S3Config::concurrency`](super::S3Config::concurrency) ranged `GetObject`s at once (the
//! first range from the first response's body), each `If-Match` the first ETag and resumed on
//! its own when its connection breaks, and handed over strictly in order: a restore is not
//! limited to one connection's speed, and memory stays at `concurrency + 1` ranges.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Buf, Bytes};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, ReadBuf};

use super::{is_not_found, is_retryable, not_found, Inner};
use crate::error::{Result, StorageError};
use crate::sink::ObjectReader;

/// Bytes per ranged `GetObject` of a parallel download.
pub const READ_RANGE_BYTES: u64 = 4 * 1024 * 1024;

/// Opens `key` and returns a reader over its bytes.
pub(super) async fn open(inner: Arc<Inner>, key: &str) -> Result<ObjectReader> {
    let object_key = inner.object_key(key);
    let output = inner
        .client
        .get_object()
        .bucket(&inner.config.bucket)
        .key(&object_key)
        .send()
        .await
        .map_err(|error| {
            if is_not_found(&error) {
                not_found(key)
            } else {
                inner.error("GetObject", inner.url_of(&object_key), error)
            }
        })?;
    let size = output
        .content_length()
        .and_then(|length| u64::try_from(length).ok());
    let etag = output.e_tag().map(str::to_owned);
    let concurrency = inner.config.concurrency;
    let stream = match (size, &etag) {
        (Some(size), Some(_)) if concurrency > 1 && size > 2 * READ_RANGE_BYTES => {
            parallel(inner, object_key, etag, size, output.body)
        }
        _ => {
            let download = Download {
                etag,
                size,
                end: size,
                body: Some(output.body),
                inner,
                object_key,
                offset: 0,
                failures: 0,
                done: false,
            };
            chunks(download).boxed()
        }
    };
    Ok(Box::new(ChunkReader {
        stream,
        chunk: Bytes::new(),
    }))
}

/// The chunks of one download, ending after its first error.
fn chunks(download: Download) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::unfold(download, |mut download| async move {
        match download.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), download)),
            Ok(None) => None,
            Err(error) => {
                download.done = true;
                Some((Err(error), download))
            }
        }
    })
}

/// The object in ranges of [`READ_RANGE_BYTES`], `concurrency` of them downloading at once and
/// each collected whole, yielded in order; the first range is the start of `first_body`.
fn parallel(
    inner: Arc<Inner>,
    object_key: String,
    etag: Option<String>,
    size: u64,
    first_body: ByteStream,
) -> BoxStream<'static, io::Result<Bytes>> {
    let concurrency = inner.config.concurrency;
    let mut first_body = Some(first_body);
    let ranges = (0..size.div_ceil(READ_RANGE_BYTES)).map(move |i| {
        let start = i * READ_RANGE_BYTES;
        let download = Download {
            inner: Arc::clone(&inner),
            object_key: object_key.clone(),
            etag: etag.clone(),
            size: Some(size),
            end: Some((start + READ_RANGE_BYTES).min(size)),
            body: first_body.take(),
            offset: start,
            failures: 0,
            done: false,
        };
        async move {
            let mut download = download;
            let mut range = Vec::new();
            while let Some(chunk) = download.next_chunk().await? {
                range.push(chunk);
            }
            io::Result::Ok(range)
        }
    });
    futures_util::stream::iter(ranges)
        .buffered(concurrency)
        .map(|range| match range {
            Ok(chunks) => futures_util::stream::iter(chunks.into_iter().map(Ok)).left_stream(),
            Err(error) => futures_util::stream::iter([Err(error)]).right_stream(),
        })
        .flatten()
        .scan(false, |failed, item| {
            // Nothing after the first error.
            if *failed {
                return std::future::ready(None);
            }
            *failed = item.is_err();
            std::future::ready(Some(item))
        })
        .boxed()
}

/// The state of one download.
struct Download {
    inner: Arc<Inner>,
    object_key: String,
    /// The ETag of the first response; every resumed response must have it.
    etag: Option<String>,
    /// The object's size, from the first response.
    size: Option<u64>,
    /// Where this download ends (exclusive): the object's size, or the end of its range.
    end: Option<u64>,
    /// The body being read, `None` after it broke.
    body: Option<ByteStream>,
    /// Bytes delivered so far.
    offset: u64,
    /// Failed attempts since the last byte arrived.
    failures: u32,
    /// The end (or a final error) was reached.
    done: bool,
}

impl Download {
    fn url(&self) -> String {
        self.inner.url_of(&self.object_key)
    }

    /// The next bytes of the object, `None` at its end.
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let mut last_error = String::new();
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(body) = &mut self.body {
                // A body that stops arriving counts as a broken connection: resumed from
                // where it stopped, within the attempts, never waited on for ever.
                let stall = self.inner.config.timeout;
                let next = match tokio::time::timeout(stall, body.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        last_error = format!(
                            "no data for {} s (BACKUP_S3_TIMEOUT_SECONDS)",
                            stall.as_secs()
                        );
                        tracing::warn!(
                            object = %self.url(),
                            offset = self.offset,
                            "download stalled: {last_error}; resuming"
                        );
                        self.body = None;
                        continue;
                    }
                };
                match next {
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(mut chunk)) => {
                        if let Some(end) = self.end.filter(|&end| Some(end) != self.size) {
                            // A range read from a longer body: stop at the range's end.
                            let room = end.saturating_sub(self.offset);
                            if chunk.len() as u64 >= room {
                                chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                                self.body = None;
                                self.done = true;
                                self.offset = end;
                                return Ok((!chunk.is_empty()).then_some(chunk));
                            }
                        }
                        self.offset += chunk.len() as u64;
                        if self.size.is_some_and(|size| self.offset > size) {
                            return Err(self.fatal(format!(
                                "the server sent more than the object's {} bytes",
                                self.size.unwrap_or_default()
                            )));
                        }
                        self.failures = 0;
                        return Ok(Some(chunk));
                    }
                    Some(Err(error)) => {
                        last_error = error.to_string();
                        tracing::warn!(
                            object = %self.url(),
                            offset = self.offset,
                            error = %last_error,
                            "download broke off; resuming"
                        );
                        self.body = None;
                    }
                    None => match self.end {
                        Some(end) if self.offset < end => {
                            last_error =
                                format!("the response ended at byte {} of {end}", self.offset);
                            tracing::warn!(object = %self.url(), "{last_error}; resuming");
                            self.body = None;
                        }
                        _ => {
                            self.done = true;
                            return Ok(None);
                        }
                    },
                }
            }
            if self.end == Some(self.offset) {
                self.done = true;
                return Ok(None);
            }
            // A range not requested yet is requested at once; after a failure, with backoff.
            if self.body.is_none() && self.failures == 0 && last_error.is_empty() {
                match self.resume().await {
                    Ok(body) => {
                        self.body = Some(body);
                        continue;
                    }
                    Err(Resume::Retry(message)) => last_error = message,
                    Err(Resume::Fatal(error)) => return Err(error),
                }
            }
            self.failures += 1;
            if self.failures > self.inner.config.read_attempts {
                return Err(self.fatal(format!(
                    "gave up after {} attempts to resume at byte {} of the object: \
                     {last_error}",
                    self.inner.config.read_attempts, self.offset
                )));
            }
            tokio::time::sleep(self.inner.backoff(self.failures)).await;
            match self.resume().await {
                Ok(body) => self.body = Some(body),
                Err(Resume::Retry(message)) => last_error = message,
                Err(Resume::Fatal(error)) => return Err(error),
            }
        }
    }

    /// Requests the rest of the object from `offset` on.
    async fn resume(&mut self) -> std::result::Result<ByteStream, Resume> {
        let inner = Arc::clone(&self.inner);
        let mut request = inner
            .client
            .get_object()
            .bucket(&inner.config.bucket)
            .key(&self.object_key)
            .range(match self.end.filter(|&end| Some(end) != self.size) {
                Some(end) => format!("bytes={}-{}", self.offset, end - 1),
                None => format!("bytes={}-", self.offset),
            });
        if let Some(etag) = &self.etag {
            request = request.if_match(etag);
        }
        // No SDK retries: this loop retries, counting attempts itself.
        let output = match request
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
        {
            Ok(output) => output,
            Err(error)
                if matches!(error.code(), Some("PreconditionFailed"))
                    || super::status_of(&error) == Some(412) =>
            {
                return Err(Resume::Fatal(
                    self.fatal(
                        "the object was replaced while it was being read (its ETag changed); \
                     read it again"
                            .to_owned(),
                    ),
                ))
            }
            Err(error) if is_retryable(&error) => {
                return Err(Resume::Retry(super::one_line(&error)))
            }
            Err(error) => {
                let error = inner.error("GetObject", self.url(), error);
                return Err(Resume::Fatal(io::Error::other(error.to_string())));
            }
        };
        self.check_resumed(&output).map_err(Resume::Fatal)?;
        tracing::debug!(object = %self.url(), offset = self.offset, "download resumed");
        Ok(output.body)
    }

    /// Checks that a resumed response continues the same object at the right offset.
    fn check_resumed(&self, output: &GetObjectOutput) -> io::Result<()> {
        if let (Some(expected), Some(got)) = (&self.etag, output.e_tag()) {
            if expected != got {
                return Err(self.fatal(format!(
                    "the object was replaced while it was being read (ETag {expected} became \
                     {got}); read it again"
                )));
            }
        }
        let range = output.content_range().unwrap_or_default();
        let expected_start = format!("bytes {}-", self.offset);
        if !range.starts_with(&expected_start) {
            return Err(self.fatal(format!(
                "the server did not honour the range request (Content-Range {range:?}, \
                 expected {expected_start}...)"
            )));
        }
        if let (Some(size), Some(total)) = (self.size, range.rsplit('/').next()) {
            if total != "*" && total != size.to_string() {
                return Err(self.fatal(format!(
                    "the object changed size while it was being read ({size} became {total} \
                     bytes); read it again"
                )));
            }
        }
        Ok(())
    }

    fn fatal(&self, message: String) -> io::Error {
        let error = StorageError::S3 {
            op: "GetObject",
            target: self.url(),
            message,
        };
        io::Error::other(error.to_string())
    }
}

/// Why a resume attempt failed.
enum Resume {
    /// A transient failure: try again (the message is the error).
    Retry(String),
    /// Give up with this error.
    Fatal(io::Error),
}

/// An [`AsyncRead`] over a stream of chunks.
struct ChunkReader {
    stream: BoxStream<'static, io::Result<Bytes>>,
    /// The unread rest of the current chunk.
    chunk: Bytes,
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let count = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..count]);
                this.chunk.advance(count);
                return Poll::Ready(Ok(()));
            }
            match this.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.chunk = chunk,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
