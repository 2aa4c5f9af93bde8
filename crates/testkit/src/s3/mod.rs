//! [`S3Server`]: an in-process S3 server for tests, speaking real HTTP and checking real SigV4
//! signatures, so `aws-sdk-s3` is exercised exactly as against AWS.
//!
//! It is [`s3s`] + [`s3s_fs`] (objects are files in a temporary directory) behind a thin HTTP
//! layer that records every request ([`S3Server::requests`]) and injects faults on demand
//! ([`S3Server::fail_upload_part`], [`S3Server::fail_upload_parts_from`],
//! [`S3Server::slow_down_upload_parts`], [`S3Server::cut_get_object_after`],
//! [`S3Server::lose_reply_of`], [`S3Server::fail_complete_with`],
//! [`S3Server::complete_with_200_error`], [`S3Server::delay`], [`S3Server::stall`]) or makes
//! time pass for multipart uploads ([`S3Server::backdate_multipart_uploads`]). Bucket
//! configuration answers `NotImplemented` unless a test sets it
//! ([`S3Server::set_bucket_versioning`], [`S3Server::set_object_lock_enabled`]). See
//! `backend.rs` for where it fills gaps of s3s-fs.

mod backend;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The region the server claims (SigV4 signatures are checked for any region).
const REGION: &str = "us-east-1";

/// How long a cut response body waits, after its last byte, before the connection is cut.
const CUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Headers a request record leaves out: they carry credentials.
const SECRET_HEADERS: &[&str] = &["authorization", "x-amz-security-token"];

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3RequestRecord {
    /// The S3 operation, from the method, path, query and headers: `PutObject`,
    /// `CreateMultipartUpload`, `UploadPart`, `UploadPartCopy`, `CompleteMultipartUpload`,
    /// `AbortMultipartUpload`, `ListMultipartUploads`, `ListParts`, `GetObject`, `HeadObject`,
    /// `DeleteObject`, `DeleteObjects`, `CopyObject`, `PutObjectRetention`, `ListObjectsV2`,
    /// `ListObjects`,
    /// `CreateBucket`, `HeadBucket`, `DeleteBucket`, `GetBucketLocation`, `ListBuckets`,
    /// `GetBucketVersioning`, `PutBucketVersioning`, `GetObjectLockConfiguration`,
    /// `GetBucketEncryption`, `GetPublicAccessBlock`, `GetBucketPolicy`,
    /// `GetBucketPolicyStatus`, `GetBucketLifecycleConfiguration`, or `Unknown`.
    pub operation: &'static str,
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path as sent (percent-encoded), e.g. `/bucket/some%20key`.
    pub path: String,
    /// The query string as sent, without `?` (empty when there is none).
    pub query: String,
    /// Every header (lower-case names) except `authorization` and `x-amz-security-token`.
    pub headers: BTreeMap<String, String>,
    /// The response status, once the response started (`None` for a failed connection).
    pub status: Option<u16>,
    /// The fault injected into this request, if any.
    pub fault: Option<&'static str>,
}

impl S3RequestRecord {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The bucket named by the (path-style) path.
    pub fn bucket(&self) -> Option<String> {
        let path = self.path.trim_start_matches('/');
        let bucket = path.split('/').next().unwrap_or_default();
        (!bucket.is_empty()).then(|| percent_decode(bucket))
    }

    /// The object key named by the (path-style) path, percent-decoded.
    pub fn key(&self) -> Option<String> {
        let path = self.path.trim_start_matches('/');
        let (_, key) = path.split_once('/')?;
        (!key.is_empty()).then(|| percent_decode(key))
    }

    /// Whether the query has parameter `name` (with or without a value).
    pub fn has_query(&self, name: &str) -> bool {
        query_has(&self.query, name)
    }
}

/// Faults to inject, and the counters they need.
#[derive(Debug, Default)]
struct Faults {
    /// `UploadPart` requests seen since the upload-part fault was set.
    upload_parts_seen: usize,
    /// Fail the `n`th `UploadPart` (1-based), or every one from the `n`th on when `true`.
    fail_upload_part: Option<(usize, bool)>,
    /// Cut the next `times` `GetObject` response bodies after `bytes` bytes.
    cut_get_object: Option<(u64, usize)>,
    /// Stop sending the next `times` `GetObject` response bodies after `bytes` bytes, leaving
    /// the connection open.
    stall_get_object: Option<(u64, usize)>,
    /// Carry out the next `times` requests of this operation, then answer `500
    /// InternalError` as if the reply had been lost.
    lose_reply: Option<(&'static str, usize)>,
    /// Answer the next this many `UploadPart` requests with `503 SlowDown`.
    slow_down_upload_parts: usize,
    /// Answer every `CompleteMultipartUpload` with this status and an error body, without
    /// carrying it out.
    fail_complete: Option<u16>,
    /// Answer the next `.0` `CompleteMultipartUpload` requests with `200 OK` and an `<Error>`
    /// body; carried out first when `.1`.
    complete_200_error: Option<(usize, bool)>,
    /// Requests held before they are carried out.
    holds: Vec<Hold>,
}

/// Requests of `operation` whose key ends with `key_suffix` wait `delay` before they are
/// carried out, or, with `None`, are never answered.
#[derive(Debug, Clone)]
struct Hold {
    operation: &'static str,
    key_suffix: String,
    delay: Option<Duration>,
}

/// What the HTTP layer shares between connections.
#[derive(Default)]
struct State {
    log: Mutex<Vec<S3RequestRecord>>,
    faults: Mutex<Faults>,
    /// Operation -> (requests being handled now, most ever handled at once).
    in_flight: Mutex<BTreeMap<&'static str, (usize, usize)>>,
    /// `bucket/key` -> body bytes sent in `GetObject` responses.
    served: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl State {
    fn log(&self) -> MutexGuard<'_, Vec<S3RequestRecord>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn served(&self) -> MutexGuard<'_, BTreeMap<String, Arc<AtomicU64>>> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_flight(&self) -> MutexGuard<'_, BTreeMap<&'static str, (usize, usize)>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a request as in flight until dropped.
struct InFlight {
    state: Arc<State>,
    operation: &'static str,
}

impl InFlight {
    fn new(state: &Arc<State>, operation: &'static str) -> Self {
        let mut counts = state.in_flight();
        let (now, max) = counts.entry(operation).or_default();
        *now += 1;
        *max = (*max).max(*now);
        Self {
            state: Arc::clone(state),
            operation,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((now, _)) = self.state.in_flight().get_mut(self.operation) {
            *now = now.saturating_sub(1);
        }
    }
}

/// An S3 server on `127.0.0.1` for tests: `s3s` + `s3s-fs` in a temporary directory, SigV4
/// authentication with a random key pair, a request log and fault injection. Stopped, and its
/// files deleted, on drop.
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// let server = backup_testkit::S3Server::start().await?;
/// server.create_bucket("backups").await?;
/// let client = server.client();
/// client.put_object().bucket("backups").key("a").send().await?;
/// assert_eq!(server.requests_of("PutObject").len(), 1);
/// # Ok(())
/// # }
/// ```
pub struct S3Server {
    address: SocketAddr,
    access_key: String,
    secret_key: String,
    state: Arc<State>,
    uploads: backend::Uploads,
    locks: backend::Locks,
    bucket_configs: backend::BucketConfigs,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts a server on a free port of `127.0.0.1`, with no buckets. Call from inside a
    /// Tokio runtime; the server runs on it.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating the S3 server's directory")?;
        let root = dir.path().join("data");
        std::fs::create_dir(&root).context("creating the S3 server's data directory")?;
        let access_key = format!("AKTEST{:016X}", rand::random::<u64>());
        let secret_key = format!(
            "{:016x}{:016x}{:08x}",
            rand::random::<u64>(),
            rand::random::<u64>(),
            rand::random::<u32>()
        );
        let backend = backend::Backend::new(&root)?;
        let uploads = backend.uploads_handle();
        let locks = backend.locks_handle();
        let bucket_configs = backend.bucket_configs_handle();
        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the S3 server to 127.0.0.1")?;
        let address = listener.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(serve(listener, service, Arc::clone(&state)));
        tracing::debug!(%address, "S3 test server started");
        Ok(Self {
            address,
            access_key,
            secret_key,
            state,
            uploads,
            locks,
            bucket_configs,
            task,
            _dir: dir,
        })
    }

    /// The Object Lock retention of `key` in `bucket` (mode, retain-until date in RFC 3339), as
    /// the uploads set it; `None` for an object without.
    pub fn retention(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        self.locks.retention(bucket, key)
    }

    /// The keys deleted while their Object Lock retention held (on S3 such a delete only
    /// hides the object behind a delete marker and frees nothing).
    pub fn deleted_while_locked(&self) -> Vec<String> {
        self.locks.deleted_while_locked()
    }

    /// Gives `bucket` versioning status `status` (`Enabled` or `Suspended`), as
    /// `GetBucketVersioning` then reports it. Until this, [`set_object_lock_enabled`] or a
    /// `PutBucketVersioning` for the bucket, `GetBucketVersioning` and
    /// `GetObjectLockConfiguration` answer `501 NotImplemented`, as on a limited S3-compatible
    /// server; after it, `GetObjectLockConfiguration` answers as S3 for a bucket without
    /// Object Lock (`ObjectLockConfigurationNotFoundError`) unless Object Lock was enabled.
    /// Only the answers change: objects are not versioned.
    ///
    /// [`set_object_lock_enabled`]: Self::set_object_lock_enabled
    pub fn set_bucket_versioning(&self, bucket: &str, status: &str) {
        self.bucket_configs.set_versioning(bucket, status);
    }

    /// Enables (or disables) Object Lock on `bucket`, as `GetObjectLockConfiguration` then
    /// reports it (`ObjectLockEnabled = Enabled`, no default retention; disabled:
    /// `ObjectLockConfigurationNotFoundError`). Enabling it also sets versioning to `Enabled`,
    /// as S3 requires. See [`set_bucket_versioning`](Self::set_bucket_versioning) for the
    /// answers before either is called. Uploads are not checked against it.
    pub fn set_object_lock_enabled(&self, bucket: &str, enabled: bool) {
        self.bucket_configs.set_object_lock(bucket, enabled);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The access key id requests must be signed with.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret access key requests must be signed with.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region to sign for (`us-east-1`).
    pub fn region(&self) -> &str {
        REGION
    }

    /// Creates bucket `name` through the S3 API.
    pub async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "creating bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&error)
                )
            })?;
        Ok(())
    }

    /// The multipart uploads in progress in `bucket`: (key, upload id), as the server lists
    /// them.
    ///
    /// # Panics
    /// When the listing fails (test support).
    pub async fn pending_uploads(&self, bucket: &str) -> Vec<(String, String)> {
        #[allow(clippy::expect_used)]
        let listed = self
            .client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("ListMultipartUploads");
        listed
            .uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap_or_default().to_owned(),
                    u.upload_id().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// An S3 client for this server: its credentials, path-style addressing, and checksums
    /// only where required (as the backup tool configures its own client).
    pub fn client(&self) -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "backup-testkit",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .http_client(http_client)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The environment for a binary to use this server with `bucket`: `BACKUP_S3_BUCKET`,
    /// `BACKUP_S3_ENDPOINT`, `BACKUP_S3_FORCE_PATH_STYLE=true`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`.
    pub fn env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("BACKUP_S3_BUCKET", bucket.to_owned()),
            ("BACKUP_S3_ENDPOINT", self.endpoint()),
            ("BACKUP_S3_FORCE_PATH_STYLE", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Every request received so far (or since [`clear_requests`](Self::clear_requests)), in
    /// order of arrival.
    pub fn requests(&self) -> Vec<S3RequestRecord> {
        self.state.log().clone()
    }

    /// The requests of one operation, e.g. `"UploadPart"`.
    pub fn requests_of(&self, operation: &str) -> Vec<S3RequestRecord> {
        self.state
            .log()
            .iter()
            .filter(|record| record.operation == operation)
            .cloned()
            .collect()
    }

    /// How many body bytes `GetObject` responses for `key` in `bucket` have sent so far (or
    /// since [`clear_requests`](Self::clear_requests)): how often an object was downloaded.
    pub fn bytes_served(&self, bucket: &str, key: &str) -> u64 {
        self.state
            .served()
            .get(&format!("{bucket}/{key}"))
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }

    /// Forgets the requests received so far (and the counts of
    /// [`max_in_flight`](Self::max_in_flight) and [`bytes_served`](Self::bytes_served)).
    pub fn clear_requests(&self) {
        self.state.log().clear();
        self.state.served().clear();
        self.state.in_flight().retain(|_, (now, max)| {
            *max = *now;
            *now > 0
        });
    }

    /// The most requests of `operation` (e.g. `"UploadPart"`) the server was handling at the
    /// same time, from receiving the request to producing the response (so for uploads, while
    /// the request body was being received).
    pub fn max_in_flight(&self, operation: &str) -> usize {
        self.state
            .in_flight()
            .get(operation)
            .map_or(0, |(_, max)| *max)
    }

    /// Makes the `nth` `UploadPart` request from now on (1-based) fail with `500
    /// InternalError`, after its body was read. Later ones succeed.
    pub fn fail_upload_part(&self, nth: usize) {
        let mut faults = self.state.faults();
        faults.upload_parts_seen = 0;
        faults.fail_upload_part = Some((nth, false));
    }

    /// Makes every `UploadPart` request from the `nth` from now on (1-based) fail with `500
    /// InternalError`, so an upload cannot finish.
    pub fn fail_upload_parts_from(&self, nth: usize) {
        let mut faults = self.state.faults();
        faults.upload_parts_seen = 0;
        faults.fail_upload_part = Some((nth, true));
    }

    /// Cuts the bodies of the next `times` `GetObject` responses after `bytes` bytes by
    /// closing the connection, as a network failure would (the client receives the status,
    /// the headers and exactly `bytes` bytes of the body).
    pub fn cut_get_object_after(&self, bytes: u64, times: usize) {
        self.state.faults().cut_get_object = Some((bytes, times));
    }

    /// Stops the bodies of the next `times` `GetObject` responses after `bytes` bytes and
    /// keeps the connection open without sending anything more, as a stalled network path
    /// would: only a client-side timeout ends such a download.
    pub fn stall_get_object_after(&self, bytes: u64, times: usize) {
        self.state.faults().stall_get_object = Some((bytes, times));
    }

    /// Carries out the next `times` requests of `operation` (e.g. `"CompleteMultipartUpload"`,
    /// `"PutObject"`) and then answers each with `500 InternalError`, as a reply lost after the
    /// server committed would look to the client.
    pub fn lose_reply_of(&self, operation: &'static str, times: usize) {
        self.state.faults().lose_reply = Some((operation, times));
    }

    /// Answers the next `times` `UploadPart` requests with `503 SlowDown` (after reading their
    /// bodies), as S3 throttles a busy prefix. Later ones succeed.
    pub fn slow_down_upload_parts(&self, times: usize) {
        self.state.faults().slow_down_upload_parts = times;
    }

    /// Answers every `CompleteMultipartUpload` from now on with `status` (e.g. `500`) and an
    /// `InternalError` error body (`SlowDown` for `503`), without carrying it out: the upload
    /// stays open, no object appears.
    pub fn fail_complete_with(&self, status: u16) {
        self.state.faults().fail_complete = Some(status);
    }

    /// Answers the next `times` `CompleteMultipartUpload` requests with `200 OK` and an
    /// `<Error><Code>InternalError</Code>...` body, as S3 does when it fails after it started
    /// the response. With `carried_out`, each is first carried out (the object is committed,
    /// only the reply says otherwise); without, the upload stays open and no object appears.
    pub fn complete_with_200_error(&self, times: usize, carried_out: bool) {
        self.state.faults().complete_200_error = Some((times, carried_out));
    }

    /// Makes every request of `operation` (e.g. `"PutObject"`) whose key ends with
    /// `key_suffix` (`""`: any key) wait `delay` before it is carried out. The request is in
    /// the log, with fault `"delayed"`, as soon as it arrives, so a test can act while it
    /// waits. Lasts until [`clear_faults`](Self::clear_faults).
    pub fn delay(&self, operation: &'static str, key_suffix: &str, delay: Duration) {
        self.state.faults().holds.push(Hold {
            operation,
            key_suffix: key_suffix.to_owned(),
            delay: Some(delay),
        });
    }

    /// Makes every request of `operation` whose key ends with `key_suffix` (`""`: any key) a
    /// stalled connection: its body is read, then nothing is ever answered (the connection
    /// stays open until the client gives up or the server is dropped). The request is in the
    /// log with fault `"stalled"` and no status. Lasts until
    /// [`clear_faults`](Self::clear_faults) (requests already stalled stay stalled).
    pub fn stall(&self, operation: &'static str, key_suffix: &str) {
        self.state.faults().holds.push(Hold {
            operation,
            key_suffix: key_suffix.to_owned(),
            delay: None,
        });
    }

    /// Makes every multipart upload in progress look as if it had been started `age` earlier
    /// (in `ListMultipartUploads`), so that a cleanup of stale uploads can be tested without
    /// waiting.
    pub fn backdate_multipart_uploads(&self, age: Duration) {
        self.uploads.backdate(age);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        *self.state.faults() = Faults::default();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// Accepts connections until aborted; each connection is served by its own task.
async fn serve(listener: TcpListener, service: S3Service, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "S3 test server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let service = service.clone();
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let handler = hyper::service::service_fn(move |request| {
                handle(service.clone(), Arc::clone(&state), request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "S3 test server: connection ended with an error");
            }
        });
    }
}

/// Logs `request`, injects any due fault, and otherwise passes it to s3s.
async fn handle(
    service: S3Service,
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<s3s::Body>, s3s::HttpError> {
    let operation = classify(&request);
    let served_path = request.uri().path().trim_start_matches('/').to_owned();
    let mut record = S3RequestRecord {
        operation,
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
        headers: request
            .headers()
            .iter()
            .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: None,
        fault: None,
    };
    let key_of_request = S3RequestRecord::key(&record).unwrap_or_default();
    let injected = {
        let mut faults = state.faults();
        let slow_down = operation == "UploadPart" && faults.slow_down_upload_parts > 0;
        if slow_down {
            faults.slow_down_upload_parts -= 1;
        }
        let refuse_complete = match faults.fail_complete {
            Some(status) if operation == "CompleteMultipartUpload" => Some(status),
            _ => None,
        };
        let complete_200 = match &mut faults.complete_200_error {
            Some((times, carried_out)) if operation == "CompleteMultipartUpload" && *times > 0 => {
                *times -= 1;
                Some(*carried_out)
            }
            _ => None,
        };
        let hold = faults
            .holds
            .iter()
            .find(|hold| hold.operation == operation && key_of_request.ends_with(&hold.key_suffix))
            .map(|hold| hold.delay);
        (slow_down, refuse_complete, complete_200, hold)
    };
    let (slow_down, refuse_complete, complete_200, hold) = injected;
    let refusal = if slow_down {
        Some(("503 SlowDown", error_response(503)))
    } else {
        refuse_complete.map(|status| ("CompleteMultipartUpload refused", error_response(status)))
    };
    if let Some((fault, response)) = refusal {
        record.fault = Some(fault);
        record.status = Some(response.status().as_u16());
        state.log().push(record);
        let _ = request.into_body().collect().await;
        return Ok(response);
    }
    if complete_200 == Some(false) {
        record.fault = Some("200 with an error body, not carried out");
        record.status = Some(200);
        state.log().push(record);
        let _ = request.into_body().collect().await;
        return Ok(ok_with_error_body());
    }
    // A delayed request is logged when it arrives (so a test can act while it waits).
    let mut logged_at = None;
    match hold {
        Some(Some(delay)) => {
            record.fault = Some("delayed");
            logged_at = Some({
                let mut log = state.log();
                log.push(record.clone());
                log.len() - 1
            });
            tokio::time::sleep(delay).await;
        }
        Some(None) => {
            record.fault = Some("stalled");
            state.log().push(record);
            let _ = request.into_body().collect().await;
            return std::future::pending().await;
        }
        None => {}
    }
    let (fail, cut, lose) = {
        let mut faults = state.faults();
        let fail = operation == "UploadPart" && {
            faults.upload_parts_seen += 1;
            let seen = faults.upload_parts_seen;
            match faults.fail_upload_part {
                Some((nth, false)) => seen == nth,
                Some((nth, true)) => seen >= nth,
                None => false,
            }
        };
        let cut = match (operation, &mut faults.cut_get_object) {
            ("GetObject", Some((bytes, times))) if *times > 0 => {
                *times -= 1;
                Some((*bytes, false))
            }
            _ => match (operation, &mut faults.stall_get_object) {
                ("GetObject", Some((bytes, times))) if *times > 0 => {
                    *times -= 1;
                    Some((*bytes, true))
                }
                _ => None,
            },
        };
        let lose = match &mut faults.lose_reply {
            Some((op, times)) if *op == operation && *times > 0 => {
                *times -= 1;
                true
            }
            _ => false,
        };
        (fail, cut, lose)
    };
    if fail {
        record.fault = Some("500 InternalError");
        record.status = Some(500);
        state.log().push(record);
        // Read the body first, so the client sees a clean 500 response.
        let _ = request.into_body().collect().await;
        return Ok(internal_error());
    }
    match cut {
        Some((_, false)) => record.fault = Some("body cut"),
        Some((_, true)) => record.fault = Some("body stalled"),
        None => {}
    }
    if lose {
        record.fault = Some("reply lost after the operation was carried out");
    }
    if complete_200 == Some(true) {
        record.fault = Some("200 with an error body, carried out");
    }
    let index = {
        let mut log = state.log();
        match logged_at {
            Some(index) => {
                if let Some(logged) = log.get_mut(index) {
                    logged.fault = record.fault;
                }
                index
            }
            None => {
                log.push(record);
                log.len() - 1
            }
        }
    };
    let in_flight = InFlight::new(&state, operation);
    let response = service.call(request.map(s3s::Body::from)).await?;
    drop(in_flight);
    let response = if lose && response.status().is_success() {
        internal_error()
    } else if complete_200 == Some(true) && response.status().is_success() {
        ok_with_error_body()
    } else {
        response
    };
    if let Some(record) = state.log().get_mut(index) {
        record.status = Some(response.status().as_u16());
    }
    let response = match cut {
        Some((bytes, stall)) if response.status().is_success() => response.map(|body| {
            s3s::Body::http_body(CutBody {
                inner: body,
                remaining: bytes,
                pause: None,
                stall,
            })
        }),
        _ => response,
    };
    Ok(
        if operation == "GetObject" && response.status().is_success() {
            let key = percent_decode(&served_path);
            let counter = Arc::clone(state.served().entry(key).or_default());
            response.map(|body| {
                s3s::Body::http_body(CountingBody {
                    inner: body,
                    counter,
                })
            })
        } else {
            response
        },
    )
}

/// A response body that adds the bytes it sends to `counter`.
struct CountingBody {
    inner: s3s::Body,
    counter: Arc<AtomicU64>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn internal_error() -> Response<s3s::Body> {
    error_response(500)
}

/// A response with `status` and an S3 error body: `SlowDown` for `503`, else `InternalError`.
fn error_response(status: u16) -> Response<s3s::Body> {
    let code = if status == 503 {
        "SlowDown"
    } else {
        "InternalError"
    };
    let mut response = xml_error(code);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// `200 OK` with an `InternalError` error body, as S3 may answer `CompleteMultipartUpload`
/// (it sends the status early and reports a failure in the body).
fn ok_with_error_body() -> Response<s3s::Body> {
    xml_error("InternalError")
}

/// A `200 OK` response whose body is the S3 error `code`.
fn xml_error(code: &str) -> Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected fault (backup-testkit S3Server)</Message></Error>"
    );
    let mut response = Response::new(s3s::Body::from(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// A response body that fails after `remaining` bytes, which makes hyper close the
/// connection mid-body. Before failing it pauses briefly, so that hyper flushes what was sent
/// and the client receives exactly `remaining` bytes.
struct CutBody {
    inner: s3s::Body,
    remaining: u64,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Send nothing more (and never end) instead of cutting.
    stall: bool,
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 && this.stall {
            return Poll::Pending;
        }
        if this.remaining == 0 {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_PAUSE)));
            return match pause.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => Poll::Ready(Some(Err("injected fault: connection cut".into()))),
            };
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let limit = usize::try_from(this.remaining).unwrap_or(usize::MAX);
                    data.truncate(limit);
                    this.remaining -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }
}

/// The S3 operation of a path-style request.
fn classify<B>(request: &Request<B>) -> &'static str {
    let method = request.method().as_str();
    let query = request.uri().query().unwrap_or_default();
    let has = |name: &str| query_has(query, name);
    let copy = request.headers().contains_key("x-amz-copy-source");
    let path = request.uri().path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) => (bucket, key),
        None => (path, ""),
    };
    if bucket.is_empty() {
        return if method == "GET" {
            "ListBuckets"
        } else {
            "Unknown"
        };
    }
    if key.is_empty() {
        return match method {
            "PUT" if has("versioning") => "PutBucketVersioning",
            "PUT" => "CreateBucket",
            "HEAD" => "HeadBucket",
            "DELETE" => "DeleteBucket",
            "POST" if has("delete") => "DeleteObjects",
            "GET" if has("uploads") => "ListMultipartUploads",
            "GET" if has("location") => "GetBucketLocation",
            "GET" if has("versioning") => "GetBucketVersioning",
            "GET" if has("object-lock") => "GetObjectLockConfiguration",
            "GET" if has("encryption") => "GetBucketEncryption",
            "GET" if has("publicAccessBlock") => "GetPublicAccessBlock",
            "GET" if has("policyStatus") => "GetBucketPolicyStatus",
            "GET" if has("policy") => "GetBucketPolicy",
            "GET" if has("lifecycle") => "GetBucketLifecycleConfiguration",
            "GET" if query.split('&').any(|pair| pair == "list-type=2") => "ListObjectsV2",
            "GET" => "ListObjects",
            _ => "Unknown",
        };
    }
    match method {
        "PUT" if has("uploadId") && has("partNumber") && copy => "UploadPartCopy",
        "PUT" if has("uploadId") && has("partNumber") => "UploadPart",
        "PUT" if copy => "CopyObject",
        "PUT" if has("retention") => "PutObjectRetention",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        "GET" if has("uploadId") => "ListParts",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        _ => "Unknown",
    }
}

fn query_has(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
fn percent_decode(text: &str) -> String {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b/%C3%BC"), "a b/ü");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%2"), "%zz%2");
    }

    #[test]
    fn classifies_path_style_requests() {
        let request = |method: &str, uri: &str, copy: bool| {
            let mut builder = Request::builder().method(method).uri(uri);
            if copy {
                builder = builder.header("x-amz-copy-source", "b/src");
            }
            builder.body(()).unwrap()
        };
        let cases = [
            ("PUT", "/b/k", false, "PutObject"),
            ("PUT", "/b/k", true, "CopyObject"),
            ("PUT", "/b/k?partNumber=2&uploadId=x", false, "UploadPart"),
            (
                "PUT",
                "/b/k?partNumber=2&uploadId=x",
                true,
                "UploadPartCopy",
            ),
            ("POST", "/b/k?uploads", false, "CreateMultipartUpload"),
            ("POST", "/b/k?uploadId=x", false, "CompleteMultipartUpload"),
            ("DELETE", "/b/k?uploadId=x", false, "AbortMultipartUpload"),
            ("GET", "/b?uploads&prefix=p", false, "ListMultipartUploads"),
            ("GET", "/b?list-type=2&prefix=p", false, "ListObjectsV2"),
            ("POST", "/b?delete", false, "DeleteObjects"),
            ("GET", "/b/k", false, "GetObject"),
            ("HEAD", "/b/k", false, "HeadObject"),
            ("DELETE", "/b/k", false, "DeleteObject"),
            ("PUT", "/b", false, "CreateBucket"),
            ("GET", "/b?location", false, "GetBucketLocation"),
            ("GET", "/b?versioning", false, "GetBucketVersioning"),
            ("PUT", "/b?versioning", false, "PutBucketVersioning"),
            ("GET", "/b?object-lock", false, "GetObjectLockConfiguration"),
            ("GET", "/b?encryption", false, "GetBucketEncryption"),
            ("GET", "/b?publicAccessBlock", false, "GetPublicAccessBlock"),
            ("GET", "/b?policy", false, "GetBucketPolicy"),
            ("GET", "/b?policyStatus", false, "GetBucketPolicyStatus"),
            (
                "GET",
                "/b?lifecycle",
                false,
                "GetBucketLifecycleConfiguration",
            ),
            ("GET", "/b?prefix=versioning", false, "ListObjects"),
            // Object-level: not the bucket's configuration.
            ("GET", "/b/k?versioning", false, "GetObject"),
            ("GET", "/", false, "ListBuckets"),
        ];
        for (method, uri, copy, expected) in cases {
            assert_eq!(
                classify(&request(method, uri, copy)),
                expected,
                "{method} {uri}"
            );
        }
    }
}
