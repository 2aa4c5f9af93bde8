//! [`S3Config`]: where and how an [`S3Sink`](super::S3Sink) stores objects: a plain value.
//! Nothing here reads the environment; the `BACKUP_S3_*` variables are mapped onto it by
//! `backup_core::config::S3Settings`, with the other destination settings.

use std::fmt;
use std::time::Duration;

use crate::error::{Result, StorageError};
use crate::key::validate_key;

/// The smallest part S3 accepts (except for the last part of an upload): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// The default first part size: 8 MiB.
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// The default number of parts uploaded at the same time.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The most parts that may be uploaded at the same time.
pub const MAX_CONCURRENCY: usize = 64;
/// The region used when `AWS_REGION` (and `AWS_DEFAULT_REGION`) is not set.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The storage class used on AWS (no custom endpoint) when `BACKUP_S3_STORAGE_CLASS` is not
/// set, as the old scripts used. Custom endpoints get no storage-class header unless it is
/// set: many S3-compatible servers refuse classes they do not know.
pub const DEFAULT_STORAGE_CLASS: &str = "INTELLIGENT_TIERING";
/// The default [`S3Config::timeout`]: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// A request that carries data (a part, a whole object) gets one more second of
/// [`S3Config::timeout`] per this many bytes it carries: it may be sent as slowly as 256 KiB/s
/// without timing out (a 64 MiB part: 60 s + 256 s).
pub const TIMEOUT_BYTES_PER_SECOND: u64 = 256 * KIB;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Server-side encryption requested for every object written (`BACKUP_S3_SSE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum S3Encryption {
    /// No `x-amz-server-side-encryption` header (`BACKUP_S3_SSE=none`): the bucket's default
    /// applies. For servers that reject the header.
    None,
    /// SSE-S3, `AES256` (the default, as the old scripts used).
    #[default]
    Aes256,
    /// SSE-KMS, `aws:kms`, with the bucket's or account's default key or the given key
    /// (`BACKUP_S3_KMS_KEY_ID`: key id, ARN or alias).
    Kms {
        /// The KMS key; `None` uses the AWS managed key.
        key_id: Option<String>,
    },
}

impl fmt::Display for S3Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Aes256 => f.write_str("AES256"),
            Self::Kms { key_id: None } => f.write_str("aws:kms"),
            Self::Kms { key_id: Some(key) } => write!(f, "aws:kms (key {key})"),
        }
    }
}

/// S3 Object Lock retention mode (`BACKUP_S3_OBJECT_LOCK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLockMode {
    /// `GOVERNANCE`: users with `s3:BypassGovernanceRetention` can still shorten or remove it.
    Governance,
    /// `COMPLIANCE`: nobody, not even the account's root user, can delete the object or shorten
    /// its retention before the date.
    Compliance,
}

impl ObjectLockMode {
    /// The name S3 uses: `GOVERNANCE` or `COMPLIANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }
}

/// Object Lock retention put on every backup and manifest at upload
/// ([`WriteMode::Retained`](crate::WriteMode::Retained)): `mode` for `days` days from the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// The retention mode.
    pub mode: ObjectLockMode,
    /// Days from the upload until the object may be deleted (`BACKUP_S3_OBJECT_LOCK_DAYS`).
    pub days: u32,
}

impl ObjectLock {
    /// The retain-until date of an object uploaded at `now`.
    pub fn retain_until(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        now + chrono::TimeDelta::days(i64::from(self.days))
    }
}

/// Parses `BACKUP_S3_OBJECT_LOCK`: `governance` or `compliance` (any case); `off`, `none`,
/// `false` or empty for no lock.
pub fn parse_object_lock_mode(value: &str) -> Result<Option<ObjectLockMode>> {
    match value.trim().to_ascii_lowercase().as_str() {
        "governance" => Ok(Some(ObjectLockMode::Governance)),
        "compliance" => Ok(Some(ObjectLockMode::Compliance)),
        "" | "off" | "none" | "false" => Ok(None),
        _ => Err(StorageError::Config(format!(
            "BACKUP_S3_OBJECT_LOCK={value:?} is not a lock mode: use governance, compliance or \
             off"
        ))),
    }
}

/// Configuration of an [`S3Sink`](super::S3Sink).
///
/// Holds no secrets: credentials come from the standard AWS credential chain (environment,
/// shared profile files, web identity, instance or container metadata) when the sink is built
/// with [`S3Sink::new`](super::S3Sink::new). Build one with [`S3Config::new`] and adjust the
/// public fields (`backup_core::config::S3Settings` builds one from the `BACKUP_S3_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket (`BACKUP_S3_BUCKET`).
    pub bucket: String,
    /// Optional folder inside the bucket that all keys live under, without leading or
    /// trailing `/` (`BACKUP_S3_PREFIX`): key `k` is stored as `{prefix}/k`.
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible server, e.g. `http://minio:9000`
    /// (`BACKUP_S3_ENDPOINT`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing, `endpoint/bucket/key`, as most self-hosted servers need
    /// (`BACKUP_S3_FORCE_PATH_STYLE`).
    pub force_path_style: bool,
    /// The region (`AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`).
    pub region: String,
    /// Size of the first parts of a multipart upload, 5 MiB to 5 GiB (`BACKUP_S3_PART_SIZE`).
    /// Later parts grow, see [`part_size_for`](super::part_size_for).
    pub part_size: u64,
    /// How many parts of one upload are sent at the same time, and how many ranges of
    /// [`READ_RANGE_BYTES`](super::READ_RANGE_BYTES) one download fetches at the same time,
    /// 1 to 64 (`BACKUP_S3_CONCURRENCY`). A writer holds at most `concurrency + 1` parts in
    /// memory, a reader `concurrency + 1` ranges.
    pub concurrency: usize,
    /// Server-side encryption (`BACKUP_S3_SSE`, `BACKUP_S3_KMS_KEY_ID`).
    pub encryption: S3Encryption,
    /// Storage class of new objects, e.g. `STANDARD` or `INTELLIGENT_TIERING`
    /// (`BACKUP_S3_STORAGE_CLASS`); `None` sends no storage class header
    /// (`BACKUP_S3_STORAGE_CLASS=none`).
    pub storage_class: Option<String>,
    /// Attempts per part upload (and per abort) before the upload fails; at least 1.
    pub part_attempts: u32,
    /// Consecutive failed attempts to (re)open a download before a read fails; at least 1.
    pub read_attempts: u32,
    /// First delay between attempts; it doubles each time, up to [`Self::max_retry_delay`].
    pub retry_delay: Duration,
    /// The longest delay between attempts.
    pub max_retry_delay: Duration,
    /// How long one attempt of a request may take before it is abandoned (and retried, if
    /// attempts are left), so that a server or connection that stops answering ends in an
    /// error, never a hang (`BACKUP_S3_TIMEOUT_SECONDS`, default 60 s). Requests that carry
    /// data get more, see [`Self::attempt_timeout`]. A download whose body sends nothing for
    /// this long is resumed from where it stopped, like a broken connection.
    pub timeout: Duration,
    /// Objects larger than this are copied part by part (`UploadPartCopy`) instead of with one
    /// `CopyObject`, which S3 refuses above 5 GiB. Default 5 GiB.
    pub multipart_copy_threshold: u64,
    /// Object Lock retention of backups and manifests (`BACKUP_S3_OBJECT_LOCK`); `None`: no
    /// lock headers are sent. The bucket must have been created with Object Lock enabled.
    pub object_lock: Option<ObjectLock>,
}

impl S3Config {
    /// A configuration for `bucket` with every default: no prefix, AWS (no endpoint),
    /// virtual-hosted addressing, `us-east-1`, 8 MiB parts, 4 parts in flight, `AES256`,
    /// `INTELLIGENT_TIERING` (set `storage_class` to `None` for an S3-compatible server that
    /// refuses the header; the `BACKUP_S3_*` settings do so for a custom endpoint),
    /// 5 attempts per part and per download, retries from 200 ms up to 10 s, 60 s per attempt
    /// of a request ([`DEFAULT_TIMEOUT`]).
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            endpoint: None,
            force_path_style: false,
            region: DEFAULT_REGION.to_owned(),
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            encryption: S3Encryption::Aes256,
            storage_class: Some(DEFAULT_STORAGE_CLASS.to_owned()),
            part_attempts: 5,
            read_attempts: 5,
            retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(10),
            timeout: DEFAULT_TIMEOUT,
            multipart_copy_threshold: MAX_PART_SIZE,
            object_lock: None,
        }
    }

    /// The time one attempt of a request carrying `bytes` bytes may take: [`Self::timeout`]
    /// plus one second per [`TIMEOUT_BYTES_PER_SECOND`] (256 KiB) carried.
    pub fn attempt_timeout(&self, bytes: u64) -> Duration {
        self.timeout
            .saturating_add(Duration::from_secs(bytes / TIMEOUT_BYTES_PER_SECOND))
    }

    /// Checks every field, with messages that name the environment variable to fix.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(StorageError::Config(message));
        let bucket = &self.bucket;
        if bucket.is_empty()
            || bucket.len() > 255
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return invalid(format!(
                "BACKUP_S3_BUCKET={bucket:?} is not a bucket name; give the bare name (like \
                 my-backups), and put any folder in BACKUP_S3_PREFIX"
            ));
        }
        if let Some(prefix) = &self.prefix {
            if normalize_prefix(prefix)?.as_deref() != Some(prefix.as_str()) {
                return invalid(format!(
                    "BACKUP_S3_PREFIX={prefix:?} must be a folder path without leading or \
                     trailing '/'"
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint)?;
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid(format!(
                "AWS_REGION={:?} is not a region name (like eu-central-1)",
                self.region
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return invalid(format!(
                "BACKUP_S3_PART_SIZE of {} bytes is out of range: S3 parts are 5MiB to 5GiB",
                self.part_size
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return invalid(format!(
                "BACKUP_S3_CONCURRENCY={} is out of range: use 1 to {MAX_CONCURRENCY} \
                 (default {DEFAULT_CONCURRENCY})",
                self.concurrency
            ));
        }
        if let S3Encryption::Kms { key_id: Some(key) } = &self.encryption {
            if key.is_empty() || key.chars().any(char::is_whitespace) {
                return invalid(format!("BACKUP_S3_KMS_KEY_ID={key:?} is not a KMS key id"));
            }
        }
        if let Some(class) = &self.storage_class {
            if parse_storage_class(class)?.as_deref() != Some(class.as_str()) {
                return invalid(format!(
                    "BACKUP_S3_STORAGE_CLASS={class:?} is not a storage class (like STANDARD \
                     or INTELLIGENT_TIERING)"
                ));
            }
        }
        if self.timeout.is_zero() {
            return invalid("BACKUP_S3_TIMEOUT_SECONDS must be at least 1 (default 60)".to_owned());
        }
        if self.object_lock.is_some_and(|lock| lock.days == 0) {
            return invalid(
                "BACKUP_S3_OBJECT_LOCK_DAYS must be at least 1 (S3 keeps a locked object at \
                 least a day)"
                    .to_owned(),
            );
        }
        if self.part_attempts == 0 || self.read_attempts == 0 {
            return invalid("part_attempts and read_attempts must be at least 1".to_owned());
        }
        Ok(())
    }

    /// `s3://bucket/prefix` (or `s3://bucket` without a prefix).
    pub fn url(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("s3://{}/{prefix}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }
}

/// `prefix` without leading and trailing `/`, `None` when nothing remains.
///
/// # Errors
/// [`StorageError::Config`] when what remains is not a valid key (empty, `.` or `..`
/// segments, ...).
pub fn normalize_prefix(prefix: &str) -> Result<Option<String>> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    validate_key(trimmed).map_err(|error| {
        StorageError::Config(format!(
            "BACKUP_S3_PREFIX={prefix:?} is not usable: {error}"
        ))
    })?;
    Ok(Some(trimmed.to_owned()))
}

/// Parses a byte size: a number with an optional suffix. `K`/`KiB`, `M`/`MiB`, `G`/`GiB` are
/// powers of 1024; `KB`, `MB`, `GB` powers of 1000; `B` or nothing is bytes. Suffixes are
/// case-insensitive and may follow a space.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    if number.is_empty() {
        return Err("expected a number of bytes, optionally with a suffix like 8MiB".to_owned());
    }
    let number: u64 = number
        .parse()
        .map_err(|_| "the number is too large".to_owned())?;
    let multiplier = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        other => {
            return Err(format!(
                "unknown size suffix {other:?}; use KiB, MiB or GiB (or K, M, G)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| "the size is too large".to_owned())
}

/// Server-side encryption from its setting (`AES256`, `aws:kms` or `none`, any case) and an
/// optional KMS key, which requires `aws:kms`.
///
/// # Errors
/// [`StorageError::Config`] for another value, or a key with another mode.
pub fn parse_encryption(value: &str, key_id: Option<String>) -> Result<S3Encryption> {
    let has_key = key_id.is_some();
    let encryption = match value.to_ascii_lowercase().as_str() {
        "aes256" => S3Encryption::Aes256,
        "aws:kms" | "kms" => S3Encryption::Kms { key_id },
        "none" | "off" | "false" => S3Encryption::None,
        _ => {
            return Err(StorageError::Config(format!(
                "BACKUP_S3_SSE={value:?} is not supported; use AES256 (default), aws:kms \
                 (with BACKUP_S3_KMS_KEY_ID for a specific key) or none"
            )))
        }
    };
    if has_key && !matches!(encryption, S3Encryption::Kms { .. }) {
        return Err(StorageError::Config(format!(
            "BACKUP_S3_KMS_KEY_ID is set but BACKUP_S3_SSE={value:?}; a KMS key needs \
             BACKUP_S3_SSE=aws:kms (or leave BACKUP_S3_SSE unset)"
        )));
    }
    Ok(encryption)
}

/// `None` for `none`; else the class in upper case, when it looks like one.
///
/// # Errors
/// [`StorageError::Config`] when it does not look like a storage class.
pub fn parse_storage_class(value: &str) -> Result<Option<String>> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let class = value.to_ascii_uppercase();
    if class.is_empty()
        || class.len() > 64
        || !class
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(StorageError::Config(format!(
            "BACKUP_S3_STORAGE_CLASS={value:?} is not a storage class; use e.g. STANDARD, \
             STANDARD_IA or INTELLIGENT_TIERING (or none to send no storage class)"
        )));
    }
    Ok(Some(class))
}

fn check_endpoint(endpoint: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(StorageError::Config(format!(
            "BACKUP_S3_ENDPOINT={endpoint:?} {reason}"
        )))
    };
    let Some(rest) = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
    else {
        return invalid("must be a URL starting with http:// or https://");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return invalid("has no host");
    }
    if authority.contains('@') {
        return invalid(
            "must not contain credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        );
    }
    if endpoint.chars().any(char::is_whitespace) {
        return invalid("contains white space");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_checks_hand_built_configs() {
        let mut config = S3Config::new("backups");
        assert!(config.validate().is_ok());
        config.part_size = MIN_PART_SIZE - 1;
        assert!(config.validate().is_err());
        config.part_size = MAX_PART_SIZE;
        assert!(config.validate().is_ok());
        config.concurrency = 0;
        assert!(config.validate().is_err());
        config.concurrency = 1;
        config.prefix = Some("/leading".to_owned());
        assert!(config.validate().is_err());
        config.prefix = Some("fine/prefix".to_owned());
        assert!(config.validate().is_ok());
        config.storage_class = Some("lower".to_owned());
        assert!(config.validate().is_err());
        config.storage_class = None;
        config.part_attempts = 0;
        assert!(config.validate().is_err());
        config.part_attempts = 1;
        config.timeout = Duration::ZERO;
        assert!(config.validate().is_err());
    }

    #[test]
    fn requests_carrying_data_get_more_time() {
        let config = S3Config::new("backups");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.attempt_timeout(0), Duration::from_secs(60));
        assert_eq!(config.attempt_timeout(1000), Duration::from_secs(60));
        assert_eq!(
            config.attempt_timeout(8 * MIB),
            Duration::from_secs(60 + 32)
        );
        assert_eq!(
            config.attempt_timeout(64 * MIB),
            Duration::from_secs(60 + 256)
        );
    }

    #[test]
    fn part_sizes_accept_suffixes() {
        for (text, bytes) in [
            ("8MiB", 8 * MIB),
            ("8 MiB", 8 * MIB),
            ("8mib", 8 * MIB),
            ("8M", 8 * MIB),
            ("5242880", 5 * MIB),
            ("5120KiB", 5 * MIB),
            ("1GiB", GIB),
            ("5G", 5 * GIB),
            ("10MB", 10_000_000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["abc", "MiB", "8XiB", "-8MiB", "99999999999999999999"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        // The config has no credential fields at all; endpoints with credentials are refused.
        let debug = format!("{:?}", S3Config::new("backups"));
        assert!(!debug.to_ascii_lowercase().contains("secret"), "{debug}");
    }
}
