//! [`S3Config`]: where and how an [`S3Sink`](super::S3Sink) stores objects, read from the
//! environment.

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

/// Configuration of an [`S3Sink`](super::S3Sink).
///
/// Holds no secrets: credentials come from the standard AWS credential chain (environment,
/// shared profile files, web identity, instance or container metadata) when the sink is built
/// with [`S3Sink::new`](super::S3Sink::new). Build one with [`S3Config::new`] and adjust the
/// public fields, or read the environment with [`S3Config::from_lookup`].
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
    /// How many parts of one upload are sent at the same time, 1 to 64
    /// (`BACKUP_S3_CONCURRENCY`). A writer holds at most `concurrency + 1` parts in memory.
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
    /// Objects larger than this are copied part by part (`UploadPartCopy`) instead of with one
    /// `CopyObject`, which S3 refuses above 5 GiB. Default 5 GiB.
    pub multipart_copy_threshold: u64,
}

impl S3Config {
    /// A configuration for `bucket` with every default: no prefix, AWS (no endpoint),
    /// virtual-hosted addressing, `us-east-1`, 8 MiB parts, 4 parts in flight, `AES256`,
    /// `INTELLIGENT_TIERING` (set `storage_class` to `None` for an S3-compatible server that
    /// refuses the header; [`from_lookup`](Self::from_lookup) does so for a custom endpoint),
    /// 5 attempts per part and per download, retries from 200 ms up to 10 s.
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
            multipart_copy_threshold: MAX_PART_SIZE,
        }
    }

    /// Reads the configuration from environment-style variables through `lookup` (pass
    /// `&|name| std::env::var(name).ok()` for the process environment). `None` when
    /// `BACKUP_S3_BUCKET` is unset or empty (no S3 destination); an error when a variable has
    /// an invalid value. Empty variables count as unset.
    ///
    /// Variables: `BACKUP_S3_BUCKET`, `BACKUP_S3_PREFIX`, `BACKUP_S3_ENDPOINT`,
    /// `BACKUP_S3_FORCE_PATH_STYLE` (`true`/`false`, `1`/`0`, `yes`/`no`), `AWS_REGION`
    /// (or `AWS_DEFAULT_REGION`), `BACKUP_S3_PART_SIZE` (bytes, or with a suffix: `8MiB`,
    /// `8M`, `64KiB`, `1GiB`; `MB`/`GB` are decimal), `BACKUP_S3_CONCURRENCY`,
    /// `BACKUP_S3_SSE` (`AES256`, `aws:kms` or `none`), `BACKUP_S3_KMS_KEY_ID` (implies
    /// `aws:kms` when `BACKUP_S3_SSE` is unset), `BACKUP_S3_STORAGE_CLASS` (e.g. `STANDARD`,
    /// or `none`; default `INTELLIGENT_TIERING` on AWS, none with `BACKUP_S3_ENDPOINT`).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let Some(bucket) = get("BACKUP_S3_BUCKET") else {
            return Ok(None);
        };
        let mut config = Self::new(bucket);
        if let Some(prefix) = get("BACKUP_S3_PREFIX") {
            config.prefix = normalize_prefix(&prefix)?;
        }
        config.endpoint = get("BACKUP_S3_ENDPOINT");
        if config.endpoint.is_some() {
            // No storage class for S3-compatible servers unless one is asked for.
            config.storage_class = None;
        }
        if let Some(value) = get("BACKUP_S3_FORCE_PATH_STYLE") {
            config.force_path_style = parse_bool("BACKUP_S3_FORCE_PATH_STYLE", &value)?;
        }
        if let Some(region) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
            config.region = region;
        }
        if let Some(value) = get("BACKUP_S3_PART_SIZE") {
            config.part_size = parse_size(&value).map_err(|reason| {
                StorageError::Config(format!("BACKUP_S3_PART_SIZE={value:?}: {reason}"))
            })?;
        }
        if let Some(value) = get("BACKUP_S3_CONCURRENCY") {
            config.concurrency = value.parse().map_err(|_| {
                StorageError::Config(format!(
                    "BACKUP_S3_CONCURRENCY={value:?} is not a number; use 1 to \
                     {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})"
                ))
            })?;
        }
        let key_id = get("BACKUP_S3_KMS_KEY_ID");
        config.encryption = match (get("BACKUP_S3_SSE"), key_id) {
            (None, None) => S3Encryption::Aes256,
            (None, Some(key_id)) => S3Encryption::Kms {
                key_id: Some(key_id),
            },
            (Some(sse), key_id) => parse_encryption(&sse, key_id)?,
        };
        if let Some(class) = get("BACKUP_S3_STORAGE_CLASS") {
            config.storage_class = parse_storage_class(&class)?;
        }
        config.validate()?;
        Ok(Some(config))
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

/// `prefix` without leading and trailing `/`, `None` when nothing remains; an error when what
/// remains is not a valid key (empty, `.` or `..` segments, ...).
fn normalize_prefix(prefix: &str) -> Result<Option<String>> {
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

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(StorageError::Config(format!(
            "{name}={value:?} is not a boolean; use true or false"
        ))),
    }
}

/// Parses a byte size: a number with an optional suffix. `K`/`KiB`, `M`/`MiB`, `G`/`GiB` are
/// powers of 1024; `KB`, `MB`, `GB` powers of 1000; `B` or nothing is bytes. Suffixes are
/// case-insensitive and may follow a space.
pub(crate) fn parse_size(value: &str) -> Result<u64, String> {
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

fn parse_encryption(value: &str, key_id: Option<String>) -> Result<S3Encryption> {
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
fn parse_storage_class(value: &str) -> Result<Option<String>> {
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

    fn config_from(vars: &[(&str, &str)]) -> Result<Option<S3Config>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        S3Config::from_lookup(&move |name| {
            vars.iter()
                .find(|(var, _)| var == name)
                .map(|(_, value)| value.clone())
        })
    }

    fn with_bucket(vars: &[(&str, &str)]) -> Result<S3Config> {
        let mut all = vec![("BACKUP_S3_BUCKET", "backups")];
        all.extend_from_slice(vars);
        Ok(config_from(&all)?.expect("a bucket is configured"))
    }

    fn config_error(vars: &[(&str, &str)]) -> String {
        match with_bucket(vars) {
            Err(StorageError::Config(message)) => message,
            other => panic!("{vars:?} should be a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn no_bucket_means_no_s3() {
        assert!(config_from(&[]).unwrap().is_none());
        assert!(config_from(&[("BACKUP_S3_BUCKET", "  ")])
            .unwrap()
            .is_none());
        assert!(
            config_from(&[("BACKUP_S3_PREFIX", "x"), ("AWS_REGION", "eu-west-1")])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn defaults() {
        let config = with_bucket(&[]).unwrap();
        assert_eq!(config, S3Config::new("backups"));
        assert_eq!(config.prefix, None);
        assert_eq!(config.endpoint, None);
        assert!(!config.force_path_style);
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.part_size, 8 * MIB);
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.encryption, S3Encryption::Aes256);
        assert_eq!(
            config.storage_class.as_deref(),
            Some("INTELLIGENT_TIERING"),
            "the old scripts' class on AWS"
        );
        assert_eq!(config.url(), "s3://backups");
    }

    #[test]
    fn a_custom_endpoint_gets_no_storage_class_unless_one_is_set() {
        let config = with_bucket(&[("BACKUP_S3_ENDPOINT", "http://minio:9000")]).unwrap();
        assert_eq!(config.storage_class, None);
        let config = with_bucket(&[
            ("BACKUP_S3_ENDPOINT", "http://minio:9000"),
            ("BACKUP_S3_STORAGE_CLASS", "STANDARD"),
        ])
        .unwrap();
        assert_eq!(config.storage_class.as_deref(), Some("STANDARD"));
    }

    #[test]
    fn reads_every_variable() {
        let config = with_bucket(&[
            ("BACKUP_S3_PREFIX", "/prod/db/"),
            ("BACKUP_S3_ENDPOINT", "http://minio:9000"),
            ("BACKUP_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_REGION", "eu-central-1"),
            ("BACKUP_S3_PART_SIZE", "16MiB"),
            ("BACKUP_S3_CONCURRENCY", "8"),
            ("BACKUP_S3_SSE", "aws:kms"),
            (
                "BACKUP_S3_KMS_KEY_ID",
                "arn:aws:kms:eu-central-1:111122223333:key/abc",
            ),
            ("BACKUP_S3_STORAGE_CLASS", "intelligent_tiering"),
        ])
        .unwrap();
        assert_eq!(config.prefix.as_deref(), Some("prod/db"));
        assert_eq!(config.url(), "s3://backups/prod/db");
        assert_eq!(config.endpoint.as_deref(), Some("http://minio:9000"));
        assert!(config.force_path_style);
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(config.part_size, 16 * MIB);
        assert_eq!(config.concurrency, 8);
        assert_eq!(
            config.encryption,
            S3Encryption::Kms {
                key_id: Some("arn:aws:kms:eu-central-1:111122223333:key/abc".to_owned())
            }
        );
        assert_eq!(config.storage_class.as_deref(), Some("INTELLIGENT_TIERING"));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let config = with_bucket(&[
            ("BACKUP_S3_PREFIX", ""),
            ("BACKUP_S3_ENDPOINT", ""),
            ("BACKUP_S3_PART_SIZE", ""),
            ("BACKUP_S3_SSE", ""),
            ("AWS_REGION", ""),
        ])
        .unwrap();
        assert_eq!(config, S3Config::new("backups"));
        let config = with_bucket(&[("BACKUP_S3_PREFIX", "/")]).unwrap();
        assert_eq!(config.prefix, None);
    }

    #[test]
    fn region_falls_back_to_aws_default_region() {
        let config = with_bucket(&[("AWS_DEFAULT_REGION", "ap-south-1")]).unwrap();
        assert_eq!(config.region, "ap-south-1");
        let config = with_bucket(&[
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_REGION", "eu-west-2"),
        ])
        .unwrap();
        assert_eq!(config.region, "eu-west-2");
    }

    #[test]
    fn part_sizes_accept_suffixes_and_respect_s3_limits() {
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
            let config = with_bucket(&[("BACKUP_S3_PART_SIZE", text)]).unwrap();
            assert_eq!(config.part_size, bytes, "{text}");
        }
        for text in ["4MiB", "5MB", "6GiB", "0", "1"] {
            let message = config_error(&[("BACKUP_S3_PART_SIZE", text)]);
            assert!(message.contains("5MiB to 5GiB"), "{text}: {message}");
        }
        for text in [
            "abc",
            "MiB",
            "8XiB",
            "-8MiB",
            "99999999999999999999",
            "18446744073709551615G",
        ] {
            let message = config_error(&[("BACKUP_S3_PART_SIZE", text)]);
            assert!(message.contains("BACKUP_S3_PART_SIZE"), "{text}: {message}");
        }
    }

    #[test]
    fn concurrency_must_be_1_to_64() {
        assert_eq!(
            with_bucket(&[("BACKUP_S3_CONCURRENCY", "1")])
                .unwrap()
                .concurrency,
            1
        );
        assert_eq!(
            with_bucket(&[("BACKUP_S3_CONCURRENCY", "64")])
                .unwrap()
                .concurrency,
            64
        );
        for text in ["0", "65", "-1", "four", "4.5"] {
            let message = config_error(&[("BACKUP_S3_CONCURRENCY", text)]);
            assert!(
                message.contains("BACKUP_S3_CONCURRENCY"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn server_side_encryption_values() {
        let sse = |value: &str| with_bucket(&[("BACKUP_S3_SSE", value)]).unwrap().encryption;
        assert_eq!(sse("AES256"), S3Encryption::Aes256);
        assert_eq!(sse("aes256"), S3Encryption::Aes256);
        assert_eq!(sse("aws:kms"), S3Encryption::Kms { key_id: None });
        assert_eq!(sse("none"), S3Encryption::None);
        assert_eq!(sse("NONE"), S3Encryption::None);
        let message = config_error(&[("BACKUP_S3_SSE", "AES128")]);
        assert!(
            message.contains("AES256") && message.contains("none"),
            "{message}"
        );

        // A KMS key alone implies aws:kms; with another SSE mode it is a contradiction.
        let config = with_bucket(&[("BACKUP_S3_KMS_KEY_ID", "alias/backups")]).unwrap();
        assert_eq!(
            config.encryption,
            S3Encryption::Kms {
                key_id: Some("alias/backups".to_owned())
            }
        );
        for sse in ["AES256", "none"] {
            let message =
                config_error(&[("BACKUP_S3_SSE", sse), ("BACKUP_S3_KMS_KEY_ID", "alias/x")]);
            assert!(message.contains("BACKUP_S3_KMS_KEY_ID"), "{message}");
        }
        assert_eq!(S3Encryption::Aes256.to_string(), "AES256");
        assert_eq!(
            S3Encryption::Kms {
                key_id: Some("k".to_owned())
            }
            .to_string(),
            "aws:kms (key k)"
        );
    }

    #[test]
    fn storage_class_values() {
        let class = |value: &str| {
            with_bucket(&[("BACKUP_S3_STORAGE_CLASS", value)])
                .unwrap()
                .storage_class
        };
        assert_eq!(class("STANDARD_IA").as_deref(), Some("STANDARD_IA"));
        assert_eq!(class("glacier_ir").as_deref(), Some("GLACIER_IR"));
        assert_eq!(class("none"), None);
        for bad in ["STANDARD IA", "x-y", "ü"] {
            let message = config_error(&[("BACKUP_S3_STORAGE_CLASS", bad)]);
            assert!(
                message.contains("BACKUP_S3_STORAGE_CLASS"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn force_path_style_values() {
        for (text, expected) in [
            ("1", true),
            ("yes", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
        ] {
            let config = with_bucket(&[("BACKUP_S3_FORCE_PATH_STYLE", text)]).unwrap();
            assert_eq!(config.force_path_style, expected, "{text}");
        }
        let message = config_error(&[("BACKUP_S3_FORCE_PATH_STYLE", "maybe")]);
        assert!(message.contains("BACKUP_S3_FORCE_PATH_STYLE"), "{message}");
    }

    #[test]
    fn bucket_prefix_endpoint_and_region_are_checked() {
        for bucket in ["s3://backups", "backups/folder", "my bucket"] {
            let message = match config_from(&[("BACKUP_S3_BUCKET", bucket)]) {
                Err(StorageError::Config(message)) => message,
                other => panic!("{bucket:?} should be refused, got {other:?}"),
            };
            assert!(message.contains("BACKUP_S3_PREFIX"), "{message}");
        }
        for prefix in ["a//b", "a/../b", "./a", "a/.tmp-x"] {
            let message = config_error(&[("BACKUP_S3_PREFIX", prefix)]);
            assert!(message.contains("BACKUP_S3_PREFIX"), "{prefix}: {message}");
        }
        for endpoint in [
            "minio:9000",
            "ftp://x",
            "http://",
            "http://user:pw@minio:9000",
            "http://a b",
        ] {
            let message = config_error(&[("BACKUP_S3_ENDPOINT", endpoint)]);
            assert!(
                message.contains("BACKUP_S3_ENDPOINT"),
                "{endpoint}: {message}"
            );
        }
        let config = with_bucket(&[("BACKUP_S3_ENDPOINT", "https://abc.r2.cloudflarestorage.com")]);
        assert!(config.is_ok());
        let message = config_error(&[("AWS_REGION", "eu central")]);
        assert!(message.contains("AWS_REGION"), "{message}");
    }

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
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        // The config has no credential fields at all; endpoints with credentials are refused.
        let debug = format!("{:?}", with_bucket(&[]).unwrap());
        assert!(!debug.to_ascii_lowercase().contains("secret"), "{debug}");
    }
}
