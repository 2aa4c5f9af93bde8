//! The reader of an [`S3Sink`](super::S3Sink): a `GetObject` body that resumes with a ranged
//! `GetObject` (`If-Match` the first ETag) when the connection breaks.

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
    let download = Download {
        etag: output.e_tag().map(str::to_owned),
        size,
        body: Some(output.body),
        inner,
        object_key,
        offset: 0,
        failures: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(download, |mut download| async move {
        match download.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), download)),
            Ok(None) => None,
            Err(error) => {
                download.done = true;
                Some((Err(error), download))
            }
        }
    });
    Ok(Box::new(ChunkReader {
        stream: stream.boxed(),
        chunk: Bytes::new(),
    }))
}

/// The state of one download.
struct Download {
    inner: Arc<Inner>,
    object_key: String,
    /// The ETag of the first response; every resumed response must have it.
    etag: Option<String>,
    /// The object's size, from the first response.
    size: Option<u64>,
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
                    Some(Ok(chunk)) => {
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
                    None => match self.size {
                        Some(size) if self.offset < size => {
                            last_error =
                                format!("the response ended after {} of {size} bytes", self.offset);
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
            if self.size == Some(self.offset) {
                self.done = true;
                return Ok(None);
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
            .range(format!("bytes={}-", self.offset));
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
