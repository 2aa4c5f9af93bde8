//! The S3 implementation behind [`S3Server`](super::S3Server): `s3s-fs`, with the gaps that
//! matter to the backup tool filled in so it behaves like S3.
//!
//! - `ListMultipartUploads` (missing in s3s-fs) is implemented here from a table of the
//!   uploads this server started and that were neither completed nor aborted.
//! - Unknown upload ids get `NoSuchUpload`, as on S3 (s3s-fs says `AccessDenied`).
//! - s3s-fs stores objects as files, so an object `a/b` makes a directory `a`; a `GET` or
//!   `HEAD` of `a` is `NoSuchKey` here (s3s-fs would open the directory), and deleting `a`
//!   deletes nothing and succeeds, as on S3.
//! - Writes into a bucket that does not exist fail with `NoSuchBucket` (s3s-fs would create
//!   its directory).
//! - `GetObject` honours `If-Match` (s3s-fs ignores it): `412 PreconditionFailed` when the ETag
//!   differs.
//! - s3s-fs accepts only the storage classes `STANDARD` and `REDUCED_REDUNDANCY` on
//!   `PutObject` (and stores none); other classes S3 accepts, such as `INTELLIGENT_TIERING`,
//!   are dropped before s3s-fs sees them. The request log still shows the header as sent.
//! - Object Lock (absent in s3s-fs): the retention sent with `PutObject`,
//!   `CreateMultipartUpload` (applied at completion), `CopyObject` and `PutObjectRetention` is
//!   kept per key and returned by `HeadObject`. As on S3, an upload with Object Lock retention
//!   (each part of a multipart one) without `Content-MD5` or an `x-amz-checksum-*` header is
//!   refused with `InvalidRequest`. Deleting a locked object behaves as on a versioned bucket
//!   (S3 requires versioning for Object Lock): the delete succeeds as a delete marker would;
//!   such deletes are recorded ([`S3Server::deleted_while_locked`](super::S3Server)), since on S3
//!   they would free nothing.
//! - Bucket configuration: s3s answers `501 NotImplemented` to `GetBucketEncryption`,
//!   `GetPublicAccessBlock`, `GetBucketPolicy`, `GetBucketPolicyStatus`,
//!   `GetBucketLifecycleConfiguration` and the like, as a limited S3-compatible server does, and
//!   so does this one. A test gives a bucket a versioning status and Object Lock with
//!   [`S3Server::set_bucket_versioning`](super::S3Server::set_bucket_versioning) and
//!   [`S3Server::set_object_lock_enabled`](super::S3Server::set_object_lock_enabled) (or
//!   `PutBucketVersioning`); from then on `GetBucketVersioning` and
//!   `GetObjectLockConfiguration` of that bucket answer as S3 would (no status for versioning
//!   never set; `ObjectLockConfigurationNotFoundError` without Object Lock), before that
//!   `NotImplemented`. Nothing else follows from these settings: objects are not versioned.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, DeletedObject, ETagCondition, GetBucketLocationInput,
    GetBucketLocationOutput, GetBucketVersioningInput, GetBucketVersioningOutput, GetObjectInput,
    GetObjectLockConfigurationInput, GetObjectLockConfigurationOutput, GetObjectOutput,
    HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput,
    ListBucketsOutput, ListMultipartUploadsInput, ListMultipartUploadsOutput, ListObjectsInput,
    ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, ListPartsInput, ListPartsOutput,
    MultipartUpload, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockMode,
    PutBucketVersioningInput, PutBucketVersioningOutput, PutObjectInput, PutObjectOutput,
    PutObjectRetentionInput, PutObjectRetentionOutput, Timestamp, UploadPartCopyInput,
    UploadPartCopyOutput, UploadPartInput, UploadPartOutput,
};
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

/// Storage classes s3s-fs accepts on `PutObject`.
const FS_STORAGE_CLASSES: &[&str] = &["STANDARD", "REDUCED_REDUNDANCY"];

/// A multipart upload in progress.
#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    initiated: SystemTime,
    /// The Object Lock retention it asked for, applied at completion.
    lock: Option<Lock>,
}

/// An object's Object Lock retention: mode and retain-until date.
#[derive(Debug, Clone)]
pub(super) struct Lock {
    mode: ObjectLockMode,
    until: Timestamp,
}

impl Lock {
    fn of(mode: Option<&ObjectLockMode>, until: Option<&Timestamp>) -> Option<Self> {
        Some(Self {
            mode: mode?.clone(),
            until: until?.clone(),
        })
    }

    /// Whether the retention still holds.
    fn holds(&self) -> bool {
        let mut text = Vec::new();
        let seconds = self
            .until
            .format(s3s::dto::TimestampFormat::EpochSeconds, &mut text)
            .ok()
            .and_then(|()| String::from_utf8(text).ok())
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        seconds > now
    }
}

/// Object Lock retention per (bucket, key), and the keys deleted while locked.
#[derive(Debug, Clone, Default)]
pub(super) struct Locks {
    held: Arc<Mutex<BTreeMap<(String, String), Lock>>>,
    deleted: Arc<Mutex<Vec<String>>>,
}

impl Locks {
    fn set(&self, bucket: &str, key: &str, lock: Option<Lock>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match lock {
            Some(lock) => held.insert((bucket.to_owned(), key.to_owned()), lock),
            None => held.remove(&(bucket.to_owned(), key.to_owned())),
        };
    }

    fn get(&self, bucket: &str, key: &str) -> Option<Lock> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Records the delete of `key` if it is locked; the lock goes with the current version.
    fn deleting(&self, bucket: &str, key: &str) {
        if self.get(bucket, key).is_some_and(|lock| lock.holds()) {
            self.deleted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key.to_owned());
        }
        self.set(bucket, key, None);
    }

    /// The keys deleted while their retention held.
    pub(super) fn deleted_while_locked(&self) -> Vec<String> {
        self.deleted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The retention of `key` in `bucket`: mode and retain-until date (RFC 3339).
    pub(super) fn retention(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        let lock = self.get(bucket, key)?;
        let mut text = Vec::new();
        lock.until
            .format(s3s::dto::TimestampFormat::DateTime, &mut text)
            .ok()?;
        Some((lock.mode.as_str().to_owned(), String::from_utf8(text).ok()?))
    }
}

/// The configuration a test gave a bucket (see the module documentation).
#[derive(Debug, Clone, Default)]
struct BucketConfig {
    /// The versioning status: `Enabled`, `Suspended`; `None` when never set.
    versioning: Option<String>,
    /// Whether Object Lock is enabled.
    object_lock: bool,
}

/// The bucket configurations tests set, per bucket; a bucket without an entry answers
/// `NotImplemented`. Shared by the backend and the [`S3Server`](super::S3Server).
#[derive(Debug, Clone, Default)]
pub(super) struct BucketConfigs(Arc<Mutex<BTreeMap<String, BucketConfig>>>);

impl BucketConfigs {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BucketConfig>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, bucket: &str) -> Option<BucketConfig> {
        self.lock().get(bucket).cloned()
    }

    /// Sets the versioning status of `bucket` (`Enabled` or `Suspended`).
    pub(super) fn set_versioning(&self, bucket: &str, status: &str) {
        self.lock().entry(bucket.to_owned()).or_default().versioning = Some(status.to_owned());
    }

    /// Enables or disables Object Lock on `bucket`. Enabling it also enables versioning, as on
    /// S3 (which requires it).
    pub(super) fn set_object_lock(&self, bucket: &str, enabled: bool) {
        let mut configs = self.lock();
        let config = configs.entry(bucket.to_owned()).or_default();
        config.object_lock = enabled;
        if enabled {
            config.versioning = Some("Enabled".to_owned());
        }
    }
}

/// S3's answer to an upload with Object Lock retention but no checksum.
fn checksum_required() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with \
         Object Lock parameters"
    )
}

/// The multipart uploads in progress (upload id -> upload), shared by the backend and the
/// [`S3Server`](super::S3Server) (which can backdate them).
#[derive(Debug, Clone, Default)]
pub(super) struct Uploads(Arc<Mutex<BTreeMap<String, Upload>>>);

impl Uploads {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Upload>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every upload in progress look started `age` earlier.
    pub(super) fn backdate(&self, age: Duration) {
        for upload in self.lock().values_mut() {
            upload.initiated = upload
                .initiated
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
        }
    }
}

/// `s3s-fs` plus the emulation described in the module documentation.
pub(super) struct Backend {
    fs: FileSystem,
    /// The directory s3s-fs stores buckets in (canonical).
    root: PathBuf,
    uploads: Uploads,
    locks: Locks,
    bucket_configs: BucketConfigs,
}

impl Backend {
    pub(super) fn new(root: &Path) -> anyhow::Result<Self> {
        let root = root.canonicalize()?;
        let fs = FileSystem::new(&root).map_err(|error| anyhow::anyhow!("s3s-fs: {error:?}"))?;
        Ok(Self {
            fs,
            root,
            uploads: Uploads::default(),
            locks: Locks::default(),
            bucket_configs: BucketConfigs::default(),
        })
    }

    /// A handle on the table of bucket configurations.
    pub(super) fn bucket_configs_handle(&self) -> BucketConfigs {
        self.bucket_configs.clone()
    }

    /// The configuration a test gave `bucket`: `NotImplemented` (as s3s answers) when none,
    /// `NoSuchBucket` when the bucket does not exist.
    fn bucket_config(&self, bucket: &str, operation: &str) -> S3Result<BucketConfig> {
        let config = self
            .bucket_configs
            .get(bucket)
            .ok_or_else(|| s3_error!(NotImplemented, "{operation} is not implemented yet"))?;
        self.check_bucket(bucket)?;
        Ok(config)
    }

    /// A handle on the Object Lock table.
    pub(super) fn locks_handle(&self) -> Locks {
        self.locks.clone()
    }

    /// A handle on the table of uploads in progress.
    pub(super) fn uploads_handle(&self) -> Uploads {
        self.uploads.clone()
    }

    fn uploads(&self) -> MutexGuard<'_, BTreeMap<String, Upload>> {
        self.uploads.lock()
    }

    /// Whether `key` in `bucket` is a directory of s3s-fs (a "folder", not an object).
    fn is_directory(&self, bucket: &str, key: &str) -> bool {
        let relative = Path::new(bucket).join(key);
        let safe = relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        safe && self.root.join(relative).is_dir()
    }

    /// `NoSuchBucket` unless `bucket` exists (s3s-fs would create it on a write).
    fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        let safe = Path::new(bucket)
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        if safe && self.root.join(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    fn check_upload(&self, upload_id: &str) -> S3Result<()> {
        if self.uploads().contains_key(upload_id) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchUpload))
        }
    }
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.fs.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.check_bucket(&req.input.bucket)?;
        if req
            .input
            .storage_class
            .as_ref()
            .is_some_and(|class| !FS_STORAGE_CLASSES.contains(&class.as_str()))
        {
            req.input.storage_class = None;
        }
        let lock = Lock::of(
            req.input.object_lock_mode.as_ref(),
            req.input.object_lock_retain_until_date.as_ref(),
        );
        if lock.is_some() && req.input.content_md5.is_none() && req.input.checksum_crc32.is_none() {
            return Err(checksum_required());
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.fs.put_object(req).await?;
        self.locks.set(&bucket, &key, lock);
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.check_bucket(&req.input.bucket)?;
        if self.is_directory(&req.input.bucket, &req.input.key) {
            return Err(s3_error!(NoSuchKey));
        }
        let if_match = req.input.if_match.clone();
        let response = self.fs.get_object(req).await?;
        if let Some(ETagCondition::ETag(expected)) = if_match {
            let matches = response
                .output
                .e_tag
                .as_ref()
                .is_some_and(|etag| etag.strong_cmp(&expected));
            if !matches {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        if self.is_directory(&req.input.bucket, &req.input.key) {
            return Err(s3_error!(NoSuchKey));
        }
        let lock = self.locks.get(&req.input.bucket, &req.input.key);
        let mut response = self.fs.head_object(req).await?;
        if let Some(lock) = lock {
            response.output.object_lock_mode = Some(lock.mode);
            response.output.object_lock_retain_until_date = Some(lock.until);
        }
        Ok(response)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        if !req.input.key.ends_with('/') && self.is_directory(&req.input.bucket, &req.input.key) {
            return Ok(S3Response::new(DeleteObjectOutput::default()));
        }
        self.locks.deleting(&req.input.bucket, &req.input.key);
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let (folders, objects): (Vec<_>, Vec<_>) = std::mem::take(&mut req.input.delete.objects)
            .into_iter()
            .partition(|object| {
                !object.key.ends_with('/') && self.is_directory(&bucket, &object.key)
            });
        let folders_deleted = folders.into_iter().map(|object| DeletedObject {
            key: Some(object.key),
            version_id: object.version_id,
            ..Default::default()
        });
        if objects.is_empty() {
            return Ok(S3Response::new(DeleteObjectsOutput {
                deleted: Some(folders_deleted.collect()),
                ..Default::default()
            }));
        }
        for object in &objects {
            self.locks.deleting(&bucket, &object.key);
        }
        req.input.delete.objects = objects;
        let mut response = self.fs.delete_objects(req).await?;
        response
            .output
            .deleted
            .get_or_insert_with(Vec::new)
            .extend(folders_deleted);
        Ok(response)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let lock = Lock::of(
            req.input.object_lock_mode.as_ref(),
            req.input.object_lock_retain_until_date.as_ref(),
        );
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.fs.copy_object(req).await?;
        self.locks.set(&bucket, &key, lock);
        Ok(response)
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.check_bucket(&req.input.bucket)?;
        let exists = self
            .root
            .join(&req.input.bucket)
            .join(&req.input.key)
            .is_file();
        if !exists {
            return Err(s3_error!(NoSuchKey));
        }
        let retention = req.input.retention.as_ref();
        let mode = retention
            .and_then(|r| r.mode.as_ref())
            .map(|m| ObjectLockMode::from(m.as_str().to_owned()));
        let lock = Lock::of(
            mode.as_ref(),
            retention.and_then(|r| r.retain_until_date.as_ref()),
        );
        if lock.is_none() {
            return Err(s3_error!(
                MalformedXML,
                "a retention needs a mode and a date"
            ));
        }
        self.locks.set(&req.input.bucket, &req.input.key, lock);
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let config = self.bucket_config(&req.input.bucket, "GetBucketVersioning")?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: config.versioning.map(Into::into),
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.check_bucket(&req.input.bucket)?;
        let status =
            req.input.versioning_configuration.status.ok_or_else(|| {
                s3_error!(MalformedXML, "a versioning configuration needs a status")
            })?;
        let locked = self
            .bucket_configs
            .get(&req.input.bucket)
            .is_some_and(|config| config.object_lock);
        if locked && status.as_str() != "Enabled" {
            return Err(s3_error!(
                InvalidBucketState,
                "An Object Lock configuration is present on this bucket, so the versioning \
                 state cannot be changed."
            ));
        }
        self.bucket_configs
            .set_versioning(&req.input.bucket, status.as_str());
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let config = self.bucket_config(&req.input.bucket, "GetObjectLockConfiguration")?;
        if !config.object_lock {
            return Err(s3_error!(ObjectLockConfigurationNotFoundError));
        }
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule: None,
            }),
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.check_bucket(&req.input.bucket)?;
        let bucket = req.input.bucket.clone();
        let key = req.input.key.clone();
        let lock = Lock::of(
            req.input.object_lock_mode.as_ref(),
            req.input.object_lock_retain_until_date.as_ref(),
        );
        let response = self.fs.create_multipart_upload(req).await?;
        if let Some(upload_id) = &response.output.upload_id {
            self.uploads().insert(
                upload_id.clone(),
                Upload {
                    bucket,
                    key,
                    initiated: SystemTime::now(),
                    lock,
                },
            );
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.check_upload(&req.input.upload_id)?;
        let locked = self
            .uploads()
            .get(&req.input.upload_id)
            .is_some_and(|u| u.lock.is_some());
        if locked && req.input.content_md5.is_none() && req.input.checksum_crc32.is_none() {
            return Err(checksum_required());
        }
        self.fs.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.check_upload(&req.input.upload_id)?;
        self.fs.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.check_upload(&req.input.upload_id)?;
        self.fs.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        self.check_upload(&upload_id)?;
        let response = self.fs.complete_multipart_upload(req).await?;
        if let Some(upload) = self.uploads().remove(&upload_id) {
            self.locks.set(&upload.bucket, &upload.key, upload.lock);
        }
        Ok(response)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        self.check_upload(&upload_id)?;
        let response = self.fs.abort_multipart_upload(req).await?;
        self.uploads().remove(&upload_id);
        Ok(response)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads: Vec<(String, Upload)> = self
            .uploads()
            .iter()
            .filter(|(_, upload)| upload.bucket == input.bucket && upload.key.starts_with(&prefix))
            .map(|(id, upload)| (id.clone(), upload.clone()))
            .collect();
        uploads.sort_by(|(a_id, a), (b_id, b)| {
            (&a.key, a.initiated, a_id).cmp(&(&b.key, b.initiated, b_id))
        });
        if let Some(key_marker) = &input.key_marker {
            let after = match &input.upload_id_marker {
                Some(id_marker) => uploads
                    .iter()
                    .position(|(id, upload)| &upload.key == key_marker && id == id_marker)
                    .map(|index| index + 1),
                None => None,
            };
            match after {
                Some(index) => {
                    uploads.drain(..index);
                }
                None => uploads.retain(|(_, upload)| &upload.key > key_marker),
            }
        }
        let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let is_truncated = uploads.len() > max;
        uploads.truncate(max);
        let (next_key_marker, next_upload_id_marker) = match uploads.last() {
            Some((id, upload)) if is_truncated => (Some(upload.key.clone()), Some(id.clone())),
            _ => (None, None),
        };
        let listed = uploads
            .into_iter()
            .map(|(id, upload)| MultipartUpload {
                key: Some(upload.key),
                upload_id: Some(id),
                initiated: Some(Timestamp::from(upload.initiated)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(is_truncated),
            next_key_marker,
            next_upload_id_marker,
            uploads: Some(listed),
            ..Default::default()
        }))
    }
}
