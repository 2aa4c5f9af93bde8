//! [`S3Sink`]: objects in an Amazon S3 bucket or on an S3-compatible server (MinIO, Ceph,
//! SeaweedFS, Cloudflare R2, ...), through `aws-sdk-s3`.
//!
//! Key `k` is stored as `{prefix}/k` (or `k` without a prefix); [`Sink::list`] strips the
//! prefix again. Every write sends the configured server-side encryption and storage class
//! (on `PutObject`, `CreateMultipartUpload` and `CopyObject`).
//!
//! **Writes** stream with bounded memory and need no size in advance: bytes fill one part at a
//! time; an object that fits in the first part is sent with a single `PutObject` on commit,
//! a larger one becomes a multipart upload whose parts are sent by background tasks, at most
//! [`S3Config::concurrency`] at once (so a writer holds at most `concurrency + 1` parts). Part
//! sizes follow [`part_size_for`], which grows the size so that the 10,000 parts S3 allows
//! always cover its 5 TiB object limit. Each part is retried on its own (transient errors
//! only: 5xx, throttling, timeouts, broken connections), with exponential backoff from
//! [`S3Config::retry_delay`] up to [`S3Config::max_retry_delay`], at most
//! [`S3Config::part_attempts`] times. Any failure, [`ObjectWriter::abort`], and dropping an
//! uncommitted writer abort the multipart upload (on drop, by a task spawned on the current
//! Tokio runtime, best effort), so neither a half-written object nor an orphaned upload stays
//! behind; [`Sink::remove_incomplete`] cleans up after crashes.
//!
//! **Reads** stream too, and survive dropped connections: when the body breaks off, the rest
//! is requested again with `Range: bytes=OFFSET-` and `If-Match: <ETag of the first response>`
//! (also checked on the response), so an object replaced meanwhile is an error, never a mix of
//! two versions. At most [`S3Config::read_attempts`] attempts in a row may fail without
//! progress. An object larger than two ranges of [`READ_RANGE_BYTES`] is read by
//! [`S3Config::concurrency`] ranged `GetObject`s at once (each `If-Match` the first ETag and
//! resumed on its own), handed over in order, so a restore is not held to one connection's
//! speed.
//!
//! **Timeouts**: every attempt of a request is abandoned after [`S3Config::timeout`] (more
//! for requests carrying data, see [`S3Config::attempt_timeout`]), and connecting after
//! 3.1 s, so a server that stops answering makes the operation fail (after its retries),
//! never hang.

mod config;
mod posture;
mod reader;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Result, StorageError};
use crate::key::{validate_key, validate_prefix};
use crate::sink::{ObjectMeta, ObjectReader, ObjectWriter, Sink, WriteMode};

pub use config::{
    normalize_prefix, parse_encryption, parse_object_lock_mode, parse_size, parse_storage_class,
    ObjectLock, ObjectLockMode, S3Config, S3Encryption, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE,
    DEFAULT_REGION, DEFAULT_STORAGE_CLASS, DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_PART_SIZE,
    MIN_PART_SIZE, TIMEOUT_BYTES_PER_SECOND,
};
pub use posture::{BucketPosture, LifecycleRule, ObjectLockSettings, Probe, PublicAccessBlock};
pub use reader::READ_RANGE_BYTES;

/// How long connecting to the server may take (the SDK's default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The timeouts of a request attempt that may take `attempt`.
fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .build()
}

/// A per-request configuration override giving each attempt `attempt` (for requests that
/// carry or copy data, or take long on the server).
fn attempt_timeout_override(attempt: Duration) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(timeouts(attempt))
}

/// The most parts one multipart upload may have.
pub const MAX_PARTS: u32 = 10_000;
/// The largest object S3 stores: 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Every this many parts, [`part_size_for`] doubles the part size.
pub const PARTS_PER_DOUBLING: u32 = 900;
/// The most keys one `DeleteObjects` request may name.
const DELETE_BATCH: usize = 1000;

/// The size of part `part_number` (1-based) of a multipart upload whose first part is
/// `first_part_size` bytes: the size doubles every [`PARTS_PER_DOUBLING`] (900) parts, up to
/// S3's 5 GiB maximum part size.
///
/// So parts 1–900 are `first_part_size`, parts 901–1800 twice that, and so on. With the
/// smallest first part S3 allows (5 MiB), the 10,000 parts of an upload hold over 8 TiB, more
/// than S3's 5 TiB object limit (doubling every 1,000 parts would reach only 4.88 TiB), while
/// a typical backup keeps small parts: with 8 MiB first parts, a 100 GiB object uses parts of
/// at most 64 MiB.
pub fn part_size_for(first_part_size: u64, part_number: u32) -> u64 {
    let doublings = part_number.saturating_sub(1) / PARTS_PER_DOUBLING;
    if doublings >= 32 {
        return MAX_PART_SIZE;
    }
    first_part_size
        .saturating_mul(1 << doublings)
        .min(MAX_PART_SIZE)
}

/// A [`Sink`] storing objects in an S3 bucket (see the [module documentation](self) for the
/// upload, retry and download behaviour). Cloning is cheap; clones share the client.
#[derive(Clone)]
pub struct S3Sink {
    inner: Arc<Inner>,
}

/// What the sink and its writers and readers share.
struct Inner {
    client: Client,
    config: S3Config,
}

impl fmt::Debug for S3Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Sink")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// A sink for `config`, with a client built from the standard AWS configuration chain
    /// (credentials from the environment, shared profile files, web identity or instance
    /// metadata; region and endpoint from `config`; TLS through rustls with the system's root
    /// certificates). Request and response checksums are computed only where S3 requires them,
    /// which third-party servers need. Makes no request yet: bad credentials or a missing bucket
    /// show up as errors of the first operation.
    pub async fn new(config: S3Config) -> Result<Self> {
        use aws_smithy_http_client::tls;
        config.validate()?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http_client)
            .load()
            .await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(timeouts(config.timeout));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self::with_client(Client::from_conf(builder.build()), config)
    }

    /// A sink using `client` as it is configured (tests, or embedders with their own client);
    /// only the bucket, prefix, upload and retry settings of `config` are used, and its
    /// timeout for requests that carry data (parts, whole objects).
    pub fn with_client(client: Client, config: S3Config) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner { client, config }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Deletes every key of `keys` with `DeleteObjects`, 1,000 keys per request. Absent keys
    /// are not an error. All keys are checked before anything is deleted. Falls back to one
    /// `DeleteObject` per key on servers that do not implement `DeleteObjects`.
    pub async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key)?;
        }
        for batch in keys.chunks(DELETE_BATCH) {
            self.delete_batch(batch).await?;
        }
        Ok(())
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<()> {
        let inner = &self.inner;
        let objects = keys
            .iter()
            .map(|key| {
                ObjectIdentifier::builder()
                    .key(inner.object_key(key))
                    .build()
                    .map_err(|error| inner.build_error("DeleteObjects", key, &error))
            })
            .collect::<Result<Vec<_>>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|error| inner.build_error("DeleteObjects", "", &error))?;
        let result = inner
            .client
            .delete_objects()
            .bucket(&inner.config.bucket)
            .delete(delete)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if matches!(error.code(), Some("NotImplemented" | "MissingContentMD5")) => {
                tracing::info!(
                    sink = %self.describe(),
                    "the server does not accept DeleteObjects; deleting one object at a time"
                );
                for key in keys {
                    self.delete(key).await?;
                }
                return Ok(());
            }
            Err(error) => return Err(inner.error("DeleteObjects", inner.config.url(), error)),
        };
        let failures: Vec<String> = output
            .errors()
            .iter()
            .map(|error| {
                format!(
                    "{}: {} {}",
                    error.key().unwrap_or("?"),
                    error.code().unwrap_or("?"),
                    error.message().unwrap_or_default()
                )
            })
            .collect();
        if !failures.is_empty() {
            let shown = failures
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            return Err(StorageError::S3 {
                op: "DeleteObjects",
                target: inner.config.url(),
                message: format!(
                    "{} of {} objects could not be deleted: {shown}{}",
                    failures.len(),
                    keys.len(),
                    hint_for_code(output.errors().first().and_then(|e| e.code()))
                ),
            });
        }
        tracing::debug!(count = keys.len(), "deleted S3 objects");
        Ok(())
    }

    /// Copies an object larger than [`S3Config::multipart_copy_threshold`] with
    /// `UploadPartCopy`, part by part on the server.
    async fn copy_multipart(&self, from: &str, to: &str, source: &Source) -> Result<()> {
        let inner = &self.inner;
        let to_key = inner.object_key(to);
        let upload_id =
            writer::create_multipart_upload(inner, &to_key, WriteMode::Overwrite).await?;
        let result = self.copy_parts(&to_key, &upload_id, from, source).await;
        let completion = match result {
            Ok(parts) => {
                writer::complete_multipart_upload(
                    inner,
                    &to_key,
                    &upload_id,
                    parts,
                    WriteMode::Overwrite,
                )
                .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = completion {
            if let Err(abort_error) =
                writer::abort_multipart_upload(inner, &to_key, &upload_id).await
            {
                tracing::warn!(%abort_error, "could not abort the multipart copy");
            }
            return Err(error);
        }
        Ok(())
    }

    async fn copy_parts(
        &self,
        to_key: &str,
        upload_id: &str,
        from: &str,
        source: &Source,
    ) -> Result<Vec<CompletedPart>> {
        let inner = &self.inner;
        let part_size = inner
            .config
            .part_size
            .max(source.size.div_ceil(u64::from(MAX_PARTS)))
            .min(MAX_PART_SIZE);
        let ranges: Vec<(u32, u64, u64)> = (0..)
            .map(|index: u64| index * part_size)
            .take_while(|start| *start < source.size)
            .enumerate()
            .map(|(index, start)| {
                let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
                (number, start, (start + part_size).min(source.size) - 1)
            })
            .collect();
        let copy_source = copy_source(&inner.config.bucket, &inner.object_key(from));
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(ranges)
            .map(|(number, first, last)| {
                let copy_source = copy_source.clone();
                async move {
                    let mut attempt = 1;
                    loop {
                        let mut request = inner
                            .client
                            .upload_part_copy()
                            .bucket(&inner.config.bucket)
                            .key(to_key)
                            .upload_id(upload_id)
                            .part_number(i32::try_from(number).unwrap_or(i32::MAX))
                            .copy_source(&copy_source)
                            .copy_source_range(format!("bytes={first}-{last}"));
                        if let Some(etag) = &source.etag {
                            request = request.copy_source_if_match(etag);
                        }
                        let limit = inner.config.attempt_timeout(last - first + 1);
                        match request
                            .customize()
                            .config_override(attempt_timeout_override(limit))
                            .send()
                            .await
                        {
                            Ok(output) => {
                                let etag = output.copy_part_result().and_then(|r| r.e_tag());
                                return Ok(CompletedPart::builder()
                                    .set_e_tag(etag.map(str::to_owned))
                                    .part_number(i32::try_from(number).unwrap_or(i32::MAX))
                                    .build());
                            }
                            Err(error)
                                if attempt < inner.config.part_attempts && is_retryable(&error) =>
                            {
                                tokio::time::sleep(inner.backoff(attempt)).await;
                                attempt += 1;
                            }
                            Err(error) => {
                                return Err(inner.error(
                                    "UploadPartCopy",
                                    inner.url_of(to_key),
                                    error,
                                ))
                            }
                        }
                    }
                }
            })
            .buffer_unordered(inner.config.concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|part| part.part_number());
        Ok(parts)
    }

    async fn head_source(&self, key: &str) -> Result<Source> {
        let inner = &self.inner;
        let object_key = inner.object_key(key);
        match inner
            .client
            .head_object()
            .bucket(&inner.config.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(output) => Ok(Source {
                size: u64::try_from(output.content_length().unwrap_or(0)).unwrap_or(0),
                etag: output.e_tag().map(str::to_owned),
                last_modified: output.last_modified().map(to_chrono),
            }),
            Err(error) if is_not_found(&error) => Err(not_found(key)),
            Err(error) => Err(inner.error("HeadObject", inner.url_of(&object_key), error)),
        }
    }
}

/// What `HeadObject` said about an object.
struct Source {
    size: u64,
    etag: Option<String>,
    last_modified: Option<DateTime<Utc>>,
}

#[async_trait]
impl Sink for S3Sink {
    fn describe(&self) -> String {
        let config = &self.inner.config;
        match &config.endpoint {
            Some(endpoint) => format!(
                "{} (endpoint {endpoint}, region {})",
                config.url(),
                config.region
            ),
            None => format!("{} (region {})", config.url(), config.region),
        }
    }

    async fn writer_with(&self, key: &str, mode: WriteMode) -> Result<Box<dyn ObjectWriter>> {
        validate_key(key)?;
        Ok(Box::new(writer::S3ObjectWriter::new(
            Arc::clone(&self.inner),
            key,
            mode,
        )))
    }

    async fn get(&self, key: &str) -> Result<ObjectReader> {
        validate_key(key)?;
        reader::open(Arc::clone(&self.inner), key).await
    }

    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        validate_key(key)?;
        // Asked whatever the configuration says: objects locked earlier, or by the bucket's
        // default retention, are locked all the same.
        let inner = &self.inner;
        let object_key = inner.object_key(key);
        match inner
            .client
            .head_object()
            .bucket(&inner.config.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .object_lock_retain_until_date()
                .map(to_chrono)
                .filter(|until| *until > Utc::now())),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(inner.error("HeadObject", inner.url_of(&object_key), error)),
        }
    }

    async fn retain(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let inner = &self.inner;
        let Some(lock) = inner.config.object_lock else {
            return Ok(());
        };
        let object_key = inner.object_key(key);
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(aws_sdk_s3::types::ObjectLockRetentionMode::from(
                lock.mode.as_str(),
            ))
            .retain_until_date(to_smithy(lock.retain_until(Utc::now())))
            .build();
        inner
            .client
            .put_object_retention()
            .bucket(&inner.config.bucket)
            .key(&object_key)
            .retention(retention)
            .send()
            .await
            .map_err(|error| inner.error("PutObjectRetention", inner.url_of(&object_key), error))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        let source = self.head_source(key).await?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: source.size,
            last_modified: source.last_modified.unwrap_or_else(Utc::now),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let inner = &self.inner;
        let root = inner.root();
        let full_prefix = format!("{root}{prefix}");
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = inner
                .client
                .list_objects_v2()
                .bucket(&inner.config.bucket)
                .set_continuation_token(token.take());
            if !full_prefix.is_empty() {
                request = request.prefix(&full_prefix);
            }
            let output = request
                .send()
                .await
                .map_err(|error| inner.error("ListObjectsV2", inner.url_of(&full_prefix), error))?;
            for object in output.contents() {
                let Some(key) = object.key().and_then(|key| key.strip_prefix(root.as_str())) else {
                    continue;
                };
                if !key.starts_with(prefix) || validate_key(key).is_err() {
                    // Folder markers (`a/`) and names that are not keys.
                    continue;
                }
                objects.push(ObjectMeta {
                    key: key.to_owned(),
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                    last_modified: object.last_modified().map_or_else(Utc::now, to_chrono),
                });
            }
            match (output.is_truncated(), output.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_owned()),
                (Some(true), None) => {
                    return Err(StorageError::S3 {
                        op: "ListObjectsV2",
                        target: inner.url_of(&full_prefix),
                        message: "the server said the listing is truncated but gave no \
                                  continuation token"
                            .to_owned(),
                    })
                }
                _ => break,
            }
        }
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let inner = &self.inner;
        let object_key = inner.object_key(key);
        inner
            .client
            .delete_object()
            .bucket(&inner.config.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|error| inner.error("DeleteObject", inner.url_of(&object_key), error))?;
        tracing::debug!(key, "deleted S3 object");
        Ok(())
    }

    fn delete_detached(&self, key: &str, expected: Bytes) {
        if validate_key(key).is_err() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                key,
                "cannot delete outside a Tokio runtime; left for pruning"
            );
            return;
        };
        let inner = Arc::clone(&self.inner);
        let object_key = inner.object_key(key);
        crate::cleanup::spawn(&runtime, async move {
            // Markers are small and never rewritten (created with `If-None-Match: *`), so
            // equal content means the marker is this run's.
            let got = inner
                .client
                .get_object()
                .bucket(&inner.config.bucket)
                .key(&object_key)
                .send()
                .await;
            let ours = match got {
                // Only a body of the marker's size is read (a key that someone filled with
                // something large is not theirs to read into memory).
                Ok(output) if output.content_length() != i64::try_from(expected.len()).ok() => {
                    false
                }
                Ok(output) => match output.body.collect().await {
                    Ok(body) => body.into_bytes() == expected,
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if !ours {
                tracing::debug!(key = %object_key, "not deleted: absent, unreadable or another run's");
                return;
            }
            let result = inner
                .client
                .delete_object()
                .bucket(&inner.config.bucket)
                .key(&object_key)
                .send()
                .await;
            if let Err(error) = result {
                let error = inner.error("DeleteObject", inner.url_of(&object_key), error);
                tracing::warn!(%error, "could not delete; left for pruning");
            }
        });
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        validate_key(from)?;
        validate_key(to)?;
        let source = self.head_source(from).await?;
        if from == to {
            return Ok(());
        }
        if source.size > self.inner.config.multipart_copy_threshold {
            return self.copy_multipart(from, to, &source).await;
        }
        let inner = &self.inner;
        let to_key = inner.object_key(to);
        let mut request = inner
            .client
            .copy_object()
            .bucket(&inner.config.bucket)
            .key(&to_key)
            .copy_source(copy_source(&inner.config.bucket, &inner.object_key(from)))
            .set_server_side_encryption(inner.sse())
            .set_ssekms_key_id(inner.kms_key_id())
            .set_storage_class(inner.storage_class());
        if let Some(etag) = &source.etag {
            request = request.copy_source_if_match(etag);
        }
        let attempt = inner.config.attempt_timeout(source.size);
        match request
            .customize()
            .config_override(attempt_timeout_override(attempt))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Err(not_found(from)),
            Err(error) => Err(inner.error("CopyObject", inner.url_of(&to_key), error)),
        }
    }

    async fn remove_incomplete(&self, older_than: Duration) -> Result<Vec<String>> {
        let inner = &self.inner;
        let root = inner.root();
        let cutoff = SystemTime::now().checked_sub(older_than);
        let mut removed = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let mut request = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.config.bucket)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take());
            if !root.is_empty() {
                request = request.prefix(&root);
            }
            let output = request
                .send()
                .await
                .map_err(|error| inner.error("ListMultipartUploads", inner.url_of(&root), error))?;
            for upload in output.uploads() {
                let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(initiated) = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                else {
                    tracing::warn!(
                        key,
                        upload_id,
                        "multipart upload without a start time; kept"
                    );
                    continue;
                };
                if cutoff.is_none_or(|cutoff| initiated > cutoff) {
                    continue;
                }
                writer::abort_multipart_upload(inner, key, upload_id).await?;
                let started = DateTime::<Utc>::from(initiated).to_rfc3339();
                tracing::info!(key, upload_id, %started, "aborted stale multipart upload");
                removed.push(format!(
                    "multipart upload {upload_id} of {} started {started}",
                    inner.url_of(key)
                ));
            }
            match (
                output.is_truncated(),
                output.next_key_marker(),
                output.next_upload_id_marker(),
            ) {
                (Some(true), Some(key), upload) => {
                    markers = (Some(key.to_owned()), upload.map(str::to_owned));
                }
                _ => break,
            }
        }
        Ok(removed)
    }
}

impl Inner {
    /// The prefix every object key starts with: `{prefix}/`, or empty.
    fn root(&self) -> String {
        match &self.config.prefix {
            Some(prefix) => format!("{prefix}/"),
            None => String::new(),
        }
    }

    /// The S3 object key of sink key `key`.
    fn object_key(&self, key: &str) -> String {
        match &self.config.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_owned(),
        }
    }

    /// `s3://bucket/object_key`, for messages.
    fn url_of(&self, object_key: &str) -> String {
        format!("s3://{}/{object_key}", self.config.bucket)
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        match &self.config.encryption {
            S3Encryption::None => None,
            S3Encryption::Aes256 => Some(ServerSideEncryption::Aes256),
            S3Encryption::Kms { .. } => Some(ServerSideEncryption::AwsKms),
        }
    }

    fn kms_key_id(&self) -> Option<String> {
        match &self.config.encryption {
            S3Encryption::Kms { key_id } => key_id.clone(),
            _ => None,
        }
    }

    fn storage_class(&self) -> Option<StorageClass> {
        self.config.storage_class.as_deref().map(StorageClass::from)
    }

    /// The delay before attempt `attempt + 1`: `retry_delay * 2^(attempt-1)`, at most
    /// `max_retry_delay`, minus up to a quarter at random (so parallel retries spread out).
    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let delay = self
            .config
            .retry_delay
            .saturating_mul(1 << exponent)
            .min(self.config.max_retry_delay);
        let jitter = delay.mul_f64(rand::random::<f64>() / 4.0);
        delay.saturating_sub(jitter)
    }

    /// A [`StorageError::S3`] for a failed SDK call, with what to check.
    fn error<E>(
        &self,
        op: &'static str,
        target: String,
        error: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let text = one_line(&error);
        let hint = hint_for(&error, &text, &self.config);
        if is_missing_credentials(&error, &text) {
            // Nothing was tried against the server: a configuration problem (exit 3).
            return StorageError::Config(format!("S3 {op} of {target}: {text}{hint}"));
        }
        StorageError::S3 {
            op,
            target,
            message: format!("{text}{hint}"),
        }
    }

    /// The error of a write: [`StorageError::AlreadyExists`] when a [`WriteMode::Create`]
    /// write found the key taken (`412 PreconditionFailed`; `409 ConditionalRequestConflict`
    /// when another write of the key was in flight), else as [`Self::error`].
    fn write_error<E>(
        &self,
        op: &'static str,
        key: &str,
        object_key: &str,
        mode: WriteMode,
        error: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let conflict = matches!(
            error.code(),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        ) || error
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 412);
        if mode.creates() && conflict {
            return StorageError::AlreadyExists {
                key: key.to_owned(),
            };
        }
        self.error(op, self.url_of(object_key), error)
    }

    fn build_error(
        &self,
        op: &'static str,
        key: &str,
        error: &aws_sdk_s3::error::BuildError,
    ) -> StorageError {
        StorageError::S3 {
            op,
            target: self.url_of(&self.object_key(key)),
            message: format!("could not build the request: {error}"),
        }
    }
}

fn not_found(key: &str) -> StorageError {
    StorageError::NotFound {
        key: key.to_owned(),
    }
}

/// The SDK's date of `time` (whole seconds).
fn to_smithy(time: DateTime<Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(time.timestamp())
}

/// The `Content-MD5` header value of `data`: base64 of its MD5 digest.
pub(super) fn content_md5(data: &[u8]) -> String {
    use base64::Engine as _;
    use md5::{Digest, Md5};
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

/// The Object Lock headers of a write in `mode`: mode and retain-until date for a
/// [`WriteMode::Retained`] write when a lock is configured.
pub(super) fn lock_headers(
    config: &S3Config,
    mode: WriteMode,
) -> (
    Option<aws_sdk_s3::types::ObjectLockMode>,
    Option<aws_sdk_s3::primitives::DateTime>,
) {
    match config.object_lock {
        Some(lock) if mode == WriteMode::Retained => (
            Some(aws_sdk_s3::types::ObjectLockMode::from(lock.mode.as_str())),
            Some(to_smithy(lock.retain_until(Utc::now()))),
        ),
        _ => (None, None),
    }
}

fn to_chrono(time: &aws_sdk_s3::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos()).unwrap_or_else(Utc::now)
}

/// The `x-amz-copy-source` value for `key` in `bucket`: `bucket/key`, percent-encoded except
/// for unreserved characters and `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(bucket.len() + key.len() + 1);
    for byte in bucket
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(key.bytes())
    {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An SDK error on one line, for people: the server's error code and message when it sent
/// one (with the HTTP status), else the messages of the error and its causes, each once,
/// joined by `: `. Never the SDK's `Debug` dump.
pub(crate) fn one_line<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(code) = error.code() {
        let status = status_of(error)
            .map(|s| format!("HTTP {s} "))
            .unwrap_or_default();
        return match error.message() {
            Some(message) if !message.is_empty() => format!("{status}{code}: {message}"),
            _ => format!("{status}{code}"),
        };
    }
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Whether `error` says no credentials could be found (no request was sent).
fn is_missing_credentials<E>(error: &SdkError<E, HttpResponse>, text: &str) -> bool {
    matches!(error, SdkError::DispatchFailure(_)) && text.contains("credential")
}

fn status_of<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error
        .raw_response()
        .map(|response| response.status().as_u16())
}

/// Whether an SDK error means the object does not exist (not the bucket).
fn is_not_found<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error.code() {
        Some("NoSuchKey" | "NotFound") => true,
        Some("NoSuchBucket") => false,
        _ => status_of(error) == Some(404),
    }
}

/// Whether trying again may help: throttling, server errors, timeouts, broken connections.
fn is_retryable<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(_) => {
            matches!(
                error.code(),
                Some(
                    "RequestTimeout"
                        | "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "InternalError"
                        | "ServiceUnavailable"
                        | "RequestTimeTooSkewed"
                )
            ) || status_of(error).is_some_and(|status| status >= 500 || status == 429)
        }
        _ => false,
    }
}

/// What to check for an error, as a sentence to append to its message.
fn hint_for<E: ProvideErrorMetadata>(
    error: &SdkError<E, HttpResponse>,
    text: &str,
    config: &S3Config,
) -> String {
    let from_code = hint_for_code(error.code());
    if !from_code.is_empty() {
        return from_code.to_owned();
    }
    match error {
        SdkError::TimeoutError(_) if !text.contains("credential") => format!(
            " (the S3 server did not answer in time, also when retried: check the server and \
             the network; BACKUP_S3_TIMEOUT_SECONDS={} sets the time per attempt)",
            config.timeout.as_secs()
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            if text.contains("credential") {
                " (no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE, or run with an instance or web-identity role)"
                    .to_owned()
            } else {
                match &config.endpoint {
                    Some(endpoint) => format!(
                        " (the connection to the S3 server failed: check \
                         BACKUP_S3_ENDPOINT={endpoint} and the network)"
                    ),
                    None => format!(
                        " (the connection to S3 failed: check the network, proxy settings and \
                         AWS_REGION={})",
                        config.region
                    ),
                }
            }
        }
        _ => match status_of(error) {
            Some(403) => hint_for_code(Some("AccessDenied")).to_owned(),
            Some(301 | 307 | 400) if config.endpoint.is_none() => format!(
                " (check AWS_REGION={}: the bucket may be in another region)",
                config.region
            ),
            Some(status) if status >= 500 => {
                " (the server failed; it is retried where safe, try again later)".to_owned()
            }
            _ => String::new(),
        },
    }
}

fn hint_for_code(code: Option<&str>) -> &'static str {
    match code {
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled",
        ) => {
            " (check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
             the instance or web-identity role) and that they may use this bucket)"
        }
        Some("NoSuchBucket") => {
            " (check BACKUP_S3_BUCKET: the bucket must exist, in AWS_REGION or at \
             BACKUP_S3_ENDPOINT)"
        }
        Some(
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
        ) => " (check AWS_REGION: the bucket is in another region)",
        Some("InvalidStorageClass") => " (check BACKUP_S3_STORAGE_CLASS)",
        Some(
            "KMS.NotFoundException"
            | "KMS.DisabledException"
            | "KMS.AccessDeniedException"
            | "KMSAccessDenied",
        ) => " (check BACKUP_S3_KMS_KEY_ID and that the credentials may use the key)",
        Some("NoSuchUpload") => {
            " (the multipart upload no longer exists: aborted by remove_incomplete or a bucket \
             lifecycle rule?)"
        }
        Some("PreconditionFailed") => " (the object changed meanwhile)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const TIB: u64 = 1024 * 1024 * MIB;

    #[test]
    fn part_sizes_double_every_900_parts_up_to_5_gib() {
        assert_eq!(part_size_for(5 * MIB, 1), 5 * MIB);
        assert_eq!(part_size_for(5 * MIB, 900), 5 * MIB);
        assert_eq!(part_size_for(5 * MIB, 901), 10 * MIB);
        assert_eq!(part_size_for(5 * MIB, 1800), 10 * MIB);
        assert_eq!(part_size_for(5 * MIB, 1801), 20 * MIB);
        assert_eq!(part_size_for(8 * MIB, 0), 8 * MIB);
        assert_eq!(part_size_for(MAX_PART_SIZE, 10_000), MAX_PART_SIZE);
        assert_eq!(part_size_for(5 * MIB, u32::MAX), MAX_PART_SIZE);
        for base in [MIN_PART_SIZE, DEFAULT_PART_SIZE, 100 * MIB, MAX_PART_SIZE] {
            let mut previous = 0;
            for part in 1..=MAX_PARTS {
                let size = part_size_for(base, part);
                assert!(size >= previous, "sizes never shrink");
                assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size));
                previous = size;
            }
        }
    }

    #[test]
    fn ten_thousand_parts_cover_the_5_tib_object_limit() {
        for base in [
            MIN_PART_SIZE,
            MIN_PART_SIZE + 1,
            DEFAULT_PART_SIZE,
            64 * MIB,
        ] {
            let total: u64 = (1..=MAX_PARTS).map(|part| part_size_for(base, part)).sum();
            assert!(
                total >= MAX_OBJECT_SIZE,
                "first part {base}: 10,000 parts hold only {total} bytes"
            );
        }
        assert_eq!(MAX_OBJECT_SIZE, 5 * TIB);
        // Doubling every 1,000 parts would not be enough with 5 MiB parts.
        let per_1000: u64 = (0..10).map(|band| 1000 * ((5 * MIB) << band)).sum();
        assert!(per_1000 < MAX_OBJECT_SIZE);
    }

    #[test]
    fn typical_backups_keep_parts_small() {
        // The part in use when a 100 GiB object has been written with 8 MiB first parts.
        let mut written = 0;
        let mut part = 1;
        while written < 100 * 1024 * MIB {
            written += part_size_for(DEFAULT_PART_SIZE, part);
            part += 1;
        }
        assert!(part_size_for(DEFAULT_PART_SIZE, part) <= 64 * MIB);
    }

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(copy_source("b", "a/b c/ü+x"), "b/a/b%20c/%C3%BC%2Bx");
        assert_eq!(
            copy_source("my-bucket", "db/x_1.sql~"),
            "my-bucket/db/x_1.sql~"
        );
    }
}
