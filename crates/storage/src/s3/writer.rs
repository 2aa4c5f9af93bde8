//! The [`ObjectWriter`] of an [`S3Sink`](super::S3Sink): one `PutObject` for objects that fit
//! in the first part, a multipart upload with parts sent by background tasks otherwise.

use std::future::Future;
use std::io;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use tokio::io::AsyncWrite;
use tokio::task::{JoinError, JoinHandle, JoinSet};

use super::{is_retryable, part_size_for, Inner, MAX_OBJECT_SIZE, MAX_PARTS};
use crate::error::{Result, StorageError};
use crate::sink::{ObjectMeta, ObjectWriter, WriteMode};

/// Capacity reserved for the first part; it grows as needed (most objects written in one go,
/// like manifests, are small). Later parts reserve their full size at once.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// A write in progress to one S3 object.
pub(super) struct S3ObjectWriter {
    inner: Arc<Inner>,
    /// The sink key.
    key: String,
    /// The S3 object key (with the prefix).
    object_key: String,
    /// Bytes of the part being filled, part number `next_part`.
    buffer: BytesMut,
    /// The number of the part being filled (1-based).
    next_part: u32,
    /// Bytes accepted so far.
    written: u64,
    /// `CreateMultipartUpload` in progress.
    creating: Option<JoinHandle<Result<String>>>,
    /// The multipart upload, once created.
    upload_id: Option<String>,
    /// Part uploads in flight, at most `concurrency`.
    uploads: JoinSet<Result<CompletedPart>>,
    /// Parts uploaded.
    completed: Vec<CompletedPart>,
    /// The first failure; every later write fails, and commit aborts.
    failure: Option<StorageError>,
    /// Committed or aborted: nothing left for `Drop` to clean up.
    finished: bool,
    /// Whether the commit may replace an existing object.
    mode: WriteMode,
}

impl S3ObjectWriter {
    pub(super) fn new(inner: Arc<Inner>, key: &str, mode: WriteMode) -> Self {
        let object_key = inner.object_key(key);
        Self {
            inner,
            key: key.to_owned(),
            object_key,
            buffer: BytesMut::new(),
            next_part: 1,
            written: 0,
            creating: None,
            upload_id: None,
            uploads: JoinSet::new(),
            completed: Vec::new(),
            failure: None,
            finished: false,
            mode,
        }
    }

    fn url(&self) -> String {
        self.inner.url_of(&self.object_key)
    }

    /// Records `error` as the writer's failure and returns it as an I/O error.
    fn fail(&mut self, error: StorageError) -> io::Error {
        let io_error = io::Error::other(error.to_string());
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        io_error
    }

    fn part_done(
        &mut self,
        result: std::result::Result<Result<CompletedPart>, JoinError>,
    ) -> Result<()> {
        match result {
            Ok(Ok(part)) => {
                self.completed.push(part);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(join_error) => Err(task_error("UploadPart", self.url(), &join_error)),
        }
    }

    /// Collects the part uploads that have finished, without waiting.
    fn poll_finished_parts(&mut self, cx: &mut Context<'_>) -> Result<()> {
        while let Poll::Ready(Some(result)) = self.uploads.poll_join_next(cx) {
            self.part_done(result)?;
        }
        Ok(())
    }

    /// Hands the buffered part to a background upload: creates the multipart upload first if
    /// needed, and waits for a free upload slot.
    fn poll_send_part(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Err(error) = self.poll_finished_parts(cx) {
            return Poll::Ready(Err(error));
        }
        if self.upload_id.is_none() {
            let creating = self.creating.get_or_insert_with(|| {
                let inner = Arc::clone(&self.inner);
                let object_key = self.object_key.clone();
                let mode = self.mode;
                tokio::spawn(
                    async move { create_multipart_upload(&inner, &object_key, mode).await },
                )
            });
            let created = match Pin::new(creating).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => result,
            };
            self.creating = None;
            match created {
                Ok(Ok(upload_id)) => self.upload_id = Some(upload_id),
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                Err(join_error) => {
                    return Poll::Ready(Err(task_error(
                        "CreateMultipartUpload",
                        self.url(),
                        &join_error,
                    )))
                }
            }
        }
        while self.uploads.len() >= self.inner.config.concurrency {
            match self.uploads.poll_join_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => break,
                Poll::Ready(Some(result)) => {
                    if let Err(error) = self.part_done(result) {
                        return Poll::Ready(Err(error));
                    }
                }
            }
        }
        if self.next_part > MAX_PARTS {
            return Poll::Ready(Err(too_large(&self.url())));
        }
        let Some(upload_id) = self.upload_id.clone() else {
            return Poll::Ready(Err(task_error_message(
                "UploadPart",
                self.url(),
                "no multipart upload",
            )));
        };
        let data = mem::take(&mut self.buffer).freeze();
        let number = self.next_part;
        self.next_part += 1;
        tracing::debug!(key = %self.key, part = number, size = data.len(), "uploading part");
        let inner = Arc::clone(&self.inner);
        let object_key = self.object_key.clone();
        self.uploads
            .spawn(async move { upload_part(inner, object_key, upload_id, number, data).await });
        Poll::Ready(Ok(()))
    }

    /// Sends the rest, waits for every part and completes the upload.
    async fn finish_multipart(&mut self) -> Result<ObjectMeta> {
        if !self.buffer.is_empty() {
            std::future::poll_fn(|cx| self.poll_send_part(cx)).await?;
        }
        while let Some(result) = self.uploads.join_next().await {
            self.part_done(result)?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let parts = mem::take(&mut self.completed);
        let count = parts.len();
        let completed =
            complete_multipart_upload(&self.inner, &self.object_key, &upload_id, parts, self.mode)
                .await;
        if let Err(error) = completed {
            // The server may have completed the upload and the reply been lost (a dropped
            // connection, a 500 after the commit, a retry that then found the upload gone or
            // the key taken): ask what is stored before calling it a failure.
            if !self.landed_as_multipart(&upload_id).await {
                return Err(match error {
                    StorageError::AlreadyExists { .. } => StorageError::AlreadyExists {
                        key: self.key.clone(),
                    },
                    other => other,
                });
            }
            tracing::warn!(
                key = %self.key,
                %error,
                "CompleteMultipartUpload reported an error, but the upload was completed (it \
                 is gone and an object of its size is stored): committed"
            );
        }
        self.upload_id = None;
        tracing::debug!(key = %self.key, size = self.written, parts = count, "committed S3 multipart upload");
        Ok(self.meta())
    }

    /// Whether this writer's multipart upload `upload_id` was completed after all: the upload
    /// is gone (only this writer knows its id, and it has not aborted it) and an object of
    /// exactly the size written is stored under the key. An upload that still exists was not
    /// completed (e.g. refused because the key was taken).
    async fn landed_as_multipart(&self, upload_id: &str) -> bool {
        let inner = &self.inner;
        let parts = inner
            .client
            .list_parts()
            .bucket(&inner.config.bucket)
            .key(&self.object_key)
            .upload_id(upload_id)
            .max_parts(1)
            .send()
            .await;
        match parts {
            Err(error) if error.code() == Some("NoSuchUpload") => {}
            // Still open, or unknown: not committed.
            _ => return false,
        }
        let head = inner
            .client
            .head_object()
            .bucket(&inner.config.bucket)
            .key(&self.object_key)
            .send()
            .await;
        let Ok(head) = head else {
            return false;
        };
        head.content_length()
            .and_then(|n| u64::try_from(n).ok())
            .is_some_and(|n| n == self.written)
    }

    /// Whether the object now stored under the key holds exactly `data` (a small object whose
    /// `PutObject` reply was lost).
    async fn landed_as(&self, data: &Bytes) -> bool {
        let inner = &self.inner;
        let got = inner
            .client
            .get_object()
            .bucket(&inner.config.bucket)
            .key(&self.object_key)
            .send()
            .await;
        let Ok(got) = got else {
            return false;
        };
        match got.body.collect().await {
            Ok(body) => body.into_bytes() == *data,
            Err(_) => false,
        }
    }

    async fn put_whole(&mut self) -> Result<ObjectMeta> {
        let data = mem::take(&mut self.buffer).freeze();
        let result = self.send_put(data.clone()).await;
        if let Err(error) = result {
            // As for multipart: a lost reply (or a retry that found the key taken by this
            // very put) leaves the object stored; compare before calling it a failure.
            if !self.landed_as(&data).await {
                return Err(error);
            }
            tracing::warn!(
                key = %self.key,
                %error,
                "PutObject reported an error, but the object holds exactly the bytes sent: committed"
            );
        }
        tracing::debug!(key = %self.key, size = self.written, "committed S3 object");
        Ok(self.meta())
    }

    async fn send_put(&self, data: Bytes) -> Result<()> {
        let inner = &self.inner;
        let length = i64::try_from(data.len()).unwrap_or(i64::MAX);
        let data_len = data.len() as u64;
        let (lock_mode, retain_until) = super::lock_headers(&inner.config, self.mode);
        // S3 refuses an upload with Object Lock retention that carries no checksum.
        let md5 = inner.config.object_lock.map(|_| super::content_md5(&data));
        inner
            .client
            .put_object()
            .bucket(&inner.config.bucket)
            .key(&self.object_key)
            .content_length(length)
            .body(ByteStream::from(data))
            .set_server_side_encryption(inner.sse())
            .set_ssekms_key_id(inner.kms_key_id())
            .set_storage_class(inner.storage_class())
            .set_if_none_match(if_none_match(self.mode))
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(retain_until)
            .set_content_md5(md5)
            .customize()
            .config_override(super::attempt_timeout_override(
                inner.config.attempt_timeout(data_len),
            ))
            .send()
            .await
            .map_err(|error| {
                inner.write_error("PutObject", &self.key, &self.object_key, self.mode, error)
            })?;
        Ok(())
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            key: self.key.clone(),
            size: self.written,
            last_modified: Utc::now(),
        }
    }

    /// Stops the part uploads and aborts the multipart upload, if one was started.
    async fn abort_upload(&mut self) -> Result<()> {
        self.finished = true;
        self.uploads.shutdown().await;
        let upload_id = match (self.upload_id.take(), self.creating.take()) {
            (Some(upload_id), _) => Some(upload_id),
            (None, Some(creating)) => creating.await.ok().and_then(Result::ok),
            (None, None) => None,
        };
        match upload_id {
            Some(upload_id) => {
                abort_multipart_upload(&self.inner, &self.object_key, &upload_id).await
            }
            None => Ok(()),
        }
    }
}

impl AsyncWrite for S3ObjectWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = &this.failure {
            return Poll::Ready(Err(io::Error::other(error.to_string())));
        }
        if this.finished {
            return Poll::Ready(Err(io::Error::other(
                "the write was already committed or aborted",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let base = this.inner.config.part_size;
        if this.buffer.len() as u64 >= part_size_for(base, this.next_part) {
            match this.poll_send_part(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(this.fail(error))),
                Poll::Ready(Ok(())) => {}
            }
        } else if let Err(error) = this.poll_finished_parts(cx) {
            return Poll::Ready(Err(this.fail(error)));
        }
        if this.written + buf.len() as u64 > MAX_OBJECT_SIZE {
            let error = too_large(&this.url());
            return Poll::Ready(Err(this.fail(error)));
        }
        let part_size = part_size_for(base, this.next_part);
        let room = usize::try_from(part_size).unwrap_or(usize::MAX) - this.buffer.len();
        let accepted = room.min(buf.len());
        if this.buffer.capacity() == 0 {
            let capacity = if this.next_part == 1 {
                INITIAL_CAPACITY
            } else {
                usize::try_from(part_size).unwrap_or(INITIAL_CAPACITY)
            };
            this.buffer.reserve(capacity);
        }
        this.buffer.extend_from_slice(&buf[..accepted]);
        this.written += accepted as u64;
        Poll::Ready(Ok(accepted))
    }

    /// Reports failed part uploads, without waiting: a partial part can only be sent as the
    /// last one, so buffered bytes stay until [`ObjectWriter::commit`].
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = this.poll_finished_parts(cx) {
            return Poll::Ready(Err(this.fail(error)));
        }
        match &this.failure {
            Some(error) => Poll::Ready(Err(io::Error::other(error.to_string()))),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Same as flush: the object is published by [`ObjectWriter::commit`].
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl ObjectWriter for S3ObjectWriter {
    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        if let Some(error) = self.failure.take() {
            if let Err(abort_error) = self.abort_upload().await {
                tracing::warn!(key = %self.key, %abort_error, "could not abort the failed upload");
            }
            return Err(error);
        }
        if self.finished {
            return Err(task_error_message(
                "commit",
                self.url(),
                "the write was already committed or aborted",
            ));
        }
        let multipart = self.upload_id.is_some() || self.creating.is_some();
        let result = if multipart {
            self.finish_multipart().await
        } else {
            self.put_whole().await
        };
        match result {
            Ok(meta) => {
                self.finished = true;
                Ok(meta)
            }
            Err(error) => {
                if let Err(abort_error) = self.abort_upload().await {
                    tracing::warn!(key = %self.key, %abort_error, "could not abort the failed upload");
                }
                self.finished = true;
                Err(error)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let result = self.abort_upload().await;
        tracing::debug!(key = %self.key, "aborted S3 write");
        result
    }
}

impl Drop for S3ObjectWriter {
    fn drop(&mut self) {
        if self.finished || (self.upload_id.is_none() && self.creating.is_none()) {
            return;
        }
        let mut uploads = mem::take(&mut self.uploads);
        let upload_id = self.upload_id.take();
        let creating = self.creating.take();
        let inner = Arc::clone(&self.inner);
        let object_key = self.object_key.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                object = %self.url(),
                ?upload_id,
                "an unfinished multipart upload was dropped outside a Tokio runtime and could \
                 not be aborted; Sink::remove_incomplete will remove it"
            );
            return;
        };
        crate::cleanup::spawn(&runtime, async move {
            uploads.shutdown().await;
            let upload_id = match (upload_id, creating) {
                (Some(upload_id), _) => Some(upload_id),
                (None, Some(creating)) => creating.await.ok().and_then(Result::ok),
                (None, None) => None,
            };
            if let Some(upload_id) = upload_id {
                match abort_multipart_upload(&inner, &object_key, &upload_id).await {
                    Ok(()) => {
                        tracing::debug!(%object_key, "aborted the upload of a dropped writer")
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "could not abort the upload of a dropped writer; \
                         Sink::remove_incomplete will remove it"
                    ),
                }
            }
        });
    }
}

fn too_large(url: &str) -> StorageError {
    task_error_message(
        "UploadPart",
        url.to_owned(),
        "the object would exceed S3's limits (5 TiB, 10,000 parts)",
    )
}

fn task_error(op: &'static str, target: String, error: &JoinError) -> StorageError {
    task_error_message(op, target, &format!("the upload task failed: {error}"))
}

fn task_error_message(op: &'static str, target: String, message: &str) -> StorageError {
    StorageError::S3 {
        op,
        target,
        message: message.to_owned(),
    }
}

/// Starts a multipart upload of `object_key` with the configured encryption and storage class.
pub(super) async fn create_multipart_upload(
    inner: &Inner,
    object_key: &str,
    mode: WriteMode,
) -> Result<String> {
    let (lock_mode, retain_until) = super::lock_headers(&inner.config, mode);
    let output = inner
        .client
        .create_multipart_upload()
        .bucket(&inner.config.bucket)
        .key(object_key)
        .set_server_side_encryption(inner.sse())
        .set_ssekms_key_id(inner.kms_key_id())
        .set_storage_class(inner.storage_class())
        .set_object_lock_mode(lock_mode)
        .set_object_lock_retain_until_date(retain_until)
        .send()
        .await
        .map_err(|error| inner.error("CreateMultipartUpload", inner.url_of(object_key), error))?;
    match output.upload_id() {
        Some(upload_id) => {
            tracing::debug!(%object_key, upload_id, "started multipart upload");
            Ok(upload_id.to_owned())
        }
        None => Err(task_error_message(
            "CreateMultipartUpload",
            inner.url_of(object_key),
            "the server returned no upload id",
        )),
    }
}

/// Uploads one part, retrying transient failures with backoff (the SDK's own retries are off
/// for this call, so the attempts are exactly [`S3Config::part_attempts`](super::S3Config)).
async fn upload_part(
    inner: Arc<Inner>,
    object_key: String,
    upload_id: String,
    number: u32,
    data: Bytes,
) -> Result<CompletedPart> {
    let part_number = i32::try_from(number).unwrap_or(i32::MAX);
    let length = i64::try_from(data.len()).unwrap_or(i64::MAX);
    // Parts of an upload under Object Lock need a checksum too.
    let md5 = inner.config.object_lock.map(|_| super::content_md5(&data));
    let mut attempt = 1;
    loop {
        let result = inner
            .client
            .upload_part()
            .bucket(&inner.config.bucket)
            .key(&object_key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .content_length(length)
            .set_content_md5(md5.clone())
            .body(ByteStream::from(data.clone()))
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(super::timeouts(
                        inner.config.attempt_timeout(data.len() as u64),
                    )),
            )
            .send()
            .await;
        match result {
            Ok(output) => {
                return Ok(CompletedPart::builder()
                    .set_e_tag(output.e_tag().map(str::to_owned))
                    .part_number(part_number)
                    .build())
            }
            Err(error) if attempt < inner.config.part_attempts && is_retryable(&error) => {
                let delay = inner.backoff(attempt);
                tracing::warn!(
                    object = %inner.url_of(&object_key),
                    part = number,
                    attempt,
                    ?delay,
                    error = %super::one_line(&error),
                    "part upload failed; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(inner.error("UploadPart", inner.url_of(&object_key), error));
            }
        }
    }
}

/// The `If-None-Match` header of a write in `mode`: `*` makes S3 refuse to replace an object.
fn if_none_match(mode: WriteMode) -> Option<String> {
    mode.creates().then(|| "*".to_owned())
}

/// Completes a multipart upload from its parts (sorted by part number); in
/// [`WriteMode::Create`] only if no object exists under the key.
pub(super) async fn complete_multipart_upload(
    inner: &Inner,
    object_key: &str,
    upload_id: &str,
    mut parts: Vec<CompletedPart>,
    mode: WriteMode,
) -> Result<()> {
    parts.sort_by_key(|part| part.part_number());
    // Completing takes the server longer the more parts there are: one more second per part.
    let attempt = inner
        .config
        .timeout
        .saturating_add(std::time::Duration::from_secs(parts.len() as u64));
    let upload = CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build();
    inner
        .client
        .complete_multipart_upload()
        .bucket(&inner.config.bucket)
        .key(object_key)
        .upload_id(upload_id)
        .multipart_upload(upload)
        .set_if_none_match(if_none_match(mode))
        .customize()
        .config_override(super::attempt_timeout_override(attempt))
        .send()
        .await
        .map_err(|error| {
            inner.write_error(
                "CompleteMultipartUpload",
                object_key,
                object_key,
                mode,
                error,
            )
        })?;
    Ok(())
}

/// Aborts a multipart upload, retrying transient failures; an upload that is already gone is
/// not an error.
pub(super) async fn abort_multipart_upload(
    inner: &Inner,
    object_key: &str,
    upload_id: &str,
) -> Result<()> {
    let mut attempt = 1;
    loop {
        let result = inner
            .client
            .abort_multipart_upload()
            .bucket(&inner.config.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => {
                tracing::debug!(%object_key, upload_id, "aborted multipart upload");
                return Ok(());
            }
            Err(error) if error.code() == Some("NoSuchUpload") => return Ok(()),
            Err(error) if attempt < inner.config.part_attempts && is_retryable(&error) => {
                tokio::time::sleep(inner.backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(inner.error(
                    "AbortMultipartUpload",
                    format!("{} (upload {upload_id})", inner.url_of(object_key)),
                    error,
                ))
            }
        }
    }
}
