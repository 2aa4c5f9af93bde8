//! The S3 destination's settings (`[s3]`, `BACKUP_S3_*`), mapped onto the storage crate's
//! plain [`S3Config`].

use backup_storage::s3::{
    normalize_prefix, parse_encryption, parse_object_lock_mode, parse_size, parse_storage_class,
    ObjectLock, DEFAULT_CONCURRENCY, MAX_CONCURRENCY,
};
use backup_storage::{S3Config, S3Encryption, StorageError};
use std::time::Duration;

use super::{check, Component, Config, Section, Setting};
use crate::error::{CoreError, Result};

/// The S3 destination, when `BACKUP_S3_BUCKET` is set (`[s3]`). Credentials are not settings:
/// they come from the standard AWS chain (`AWS_ACCESS_KEY_ID`, profiles, instance roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The sink's configuration; `None`: no S3 destination.
    pub config: Option<S3Config>,
}

const S3: &[Setting] = &[
    Setting::new("BACKUP_S3_BUCKET", "bucket", "S3 bucket (a destination)"),
    Setting::new("BACKUP_S3_PREFIX", "prefix", "key prefix inside the bucket"),
    Setting::new(
        "BACKUP_S3_ENDPOINT",
        "endpoint",
        "S3-compatible endpoint URL (MinIO, Ceph, SeaweedFS, R2)",
    ),
    Setting::new(
        "BACKUP_S3_FORCE_PATH_STYLE",
        "force_path_style",
        "true for path-style requests (most S3-compatible servers)",
    )
    .default("false"),
    Setting::new("AWS_REGION", "region", "the bucket's region")
        .alias("AWS_DEFAULT_REGION")
        .default("us-east-1"),
    Setting::new(
        "BACKUP_S3_PART_SIZE",
        "part_size",
        "multipart part size, at least 5MiB",
    )
    .default("8MiB"),
    Setting::new(
        "BACKUP_S3_CONCURRENCY",
        "concurrency",
        "multipart parts uploaded at once, and 4 MiB ranges a restore downloads at once",
    )
    .default("4"),
    Setting::new(
        "BACKUP_S3_SSE",
        "sse",
        "server-side encryption: AES256, aws:kms or none",
    ),
    Setting::new(
        "BACKUP_S3_KMS_KEY_ID",
        "kms_key_id",
        "KMS key for sse = aws:kms (implies it)",
    ),
    Setting::new(
        "BACKUP_S3_STORAGE_CLASS",
        "storage_class",
        "storage class, or none (default INTELLIGENT_TIERING on AWS, none with an endpoint)",
    ),
    Setting::new(
        "BACKUP_S3_TIMEOUT_SECONDS",
        "timeout_seconds",
        "seconds one attempt of an S3 request may take (more for parts: +1 s per 256 KiB)",
    )
    .default("60"),
    Setting::new(
        "BACKUP_S3_OBJECT_LOCK",
        "object_lock",
        "Object Lock retention of backups and manifests: governance, compliance or off \
         (the bucket must have Object Lock enabled)",
    )
    .default("off"),
    Setting::new(
        "BACKUP_S3_OBJECT_LOCK_DAYS",
        "object_lock_days",
        "days a backup stays locked after its upload (default: BACKUP_RETENTION_DAYS)",
    ),
];

impl Component for S3Settings {
    const SECTION: Section = Section {
        table: "s3",
        about: "the S3 destination (credentials: the AWS chain, never here)",
        settings: S3,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        let get = |name: &str| {
            config
                .get(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let Some(bucket) = get("BACKUP_S3_BUCKET") else {
            return Ok(Self { config: None });
        };
        let mut s3 = S3Config::new(bucket);
        if let Some(prefix) = get("BACKUP_S3_PREFIX") {
            s3.prefix = normalize_prefix(&prefix).map_err(config_error)?;
        }
        s3.endpoint = get("BACKUP_S3_ENDPOINT");
        if s3.endpoint.is_some() {
            // No storage class for S3-compatible servers unless one is asked for.
            s3.storage_class = None;
        }
        s3.force_path_style = config.bool("BACKUP_S3_FORCE_PATH_STYLE")?.unwrap_or(false);
        if let Some(region) = get("AWS_REGION") {
            s3.region = region;
        }
        if let Some(value) = get("BACKUP_S3_PART_SIZE") {
            s3.part_size = parse_size(&value).map_err(|reason| {
                CoreError::Config(format!("BACKUP_S3_PART_SIZE={value:?}: {reason}"))
            })?;
        }
        if let Some(value) = get("BACKUP_S3_CONCURRENCY") {
            s3.concurrency = value.parse().map_err(|_| {
                CoreError::Config(format!(
                    "BACKUP_S3_CONCURRENCY={value:?} is not a number; use 1 to \
                     {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})"
                ))
            })?;
        }
        let key_id = get("BACKUP_S3_KMS_KEY_ID");
        s3.encryption = match (get("BACKUP_S3_SSE"), key_id) {
            (None, None) => S3Encryption::Aes256,
            (None, Some(key_id)) => S3Encryption::Kms {
                key_id: Some(key_id),
            },
            (Some(sse), key_id) => parse_encryption(&sse, key_id).map_err(config_error)?,
        };
        if let Some(class) = get("BACKUP_S3_STORAGE_CLASS") {
            s3.storage_class = parse_storage_class(&class).map_err(config_error)?;
        }
        if let Some(value) = get("BACKUP_S3_TIMEOUT_SECONDS") {
            let seconds: u64 = value
                .parse()
                .ok()
                .filter(|seconds| *seconds > 0)
                .ok_or_else(|| {
                    CoreError::Config(format!(
                        "BACKUP_S3_TIMEOUT_SECONDS={value:?} is not a number of seconds of at \
                         least 1 (default 60)"
                    ))
                })?;
            s3.timeout = Duration::from_secs(seconds);
        }
        if let Some(mode) = get("BACKUP_S3_OBJECT_LOCK") {
            if let Some(mode) = parse_object_lock_mode(&mode).map_err(config_error)? {
                let days = match config.number::<u32>("BACKUP_S3_OBJECT_LOCK_DAYS")? {
                    Some(days) => days,
                    None => config
                        .number::<u32>("BACKUP_RETENTION_DAYS")?
                        .unwrap_or(crate::config::DEFAULT_RETENTION_DAYS)
                        .max(1),
                };
                s3.object_lock = Some(ObjectLock { mode, days });
            }
        }
        s3.validate().map_err(config_error)?;
        Ok(Self { config: Some(s3) })
    }
}

/// The storage crate's configuration errors are configuration errors here too (so that
/// [`Config::component`] can say where a value was set).
fn config_error(error: StorageError) -> CoreError {
    match error {
        StorageError::Config(message) => CoreError::Config(message),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_storage::s3::{MAX_PART_SIZE, MIN_PART_SIZE};

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    fn config_from(vars: &[(&str, &str)]) -> Result<Option<S3Config>> {
        let env = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        let sections = [S3Settings::SECTION, crate::config::RetentionConfig::SECTION];
        let config = Config::load(&sections, env, None)?;
        Ok(config.component::<S3Settings>()?.config)
    }

    #[test]
    fn object_lock_takes_its_mode_and_days_and_defaults_to_the_retention_days() {
        use backup_storage::s3::ObjectLockMode;
        assert_eq!(with_bucket(&[]).unwrap().object_lock, None);
        assert_eq!(
            with_bucket(&[("BACKUP_S3_OBJECT_LOCK", "off")])
                .unwrap()
                .object_lock,
            None
        );
        let lock = |vars: &[(&str, &str)]| with_bucket(vars).unwrap().object_lock.unwrap();
        assert_eq!(
            lock(&[("BACKUP_S3_OBJECT_LOCK", "Governance")]),
            ObjectLock {
                mode: ObjectLockMode::Governance,
                days: 30
            }
        );
        assert_eq!(
            lock(&[
                ("BACKUP_S3_OBJECT_LOCK", "compliance"),
                ("BACKUP_RETENTION_DAYS", "14")
            ])
            .days,
            14
        );
        assert_eq!(
            lock(&[
                ("BACKUP_S3_OBJECT_LOCK", "compliance"),
                ("BACKUP_S3_OBJECT_LOCK_DAYS", "7")
            ]),
            ObjectLock {
                mode: ObjectLockMode::Compliance,
                days: 7
            }
        );
        for (vars, says) in [
            (
                vec![("BACKUP_S3_OBJECT_LOCK", "forever")],
                "governance, compliance or off",
            ),
            (
                vec![
                    ("BACKUP_S3_OBJECT_LOCK", "governance"),
                    ("BACKUP_S3_OBJECT_LOCK_DAYS", "0"),
                ],
                "at least 1",
            ),
        ] {
            let err = with_bucket(&vars).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    fn with_bucket(vars: &[(&str, &str)]) -> Result<S3Config> {
        let mut all = vec![("BACKUP_S3_BUCKET", "backups")];
        all.extend_from_slice(vars);
        Ok(config_from(&all)?.expect("a bucket is configured"))
    }

    fn config_error(vars: &[(&str, &str)]) -> String {
        match with_bucket(vars) {
            Err(CoreError::Config(message)) => message,
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
            ("BACKUP_S3_TIMEOUT_SECONDS", "15"),
        ])
        .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(15));
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
    fn the_s3_table_of_a_config_file_configures_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.toml");
        std::fs::write(
            &file,
            "[s3]\nbucket = \"backups\"\nprefix = \"prod/db\"\nendpoint = \"http://minio:9000\"\n\
             force_path_style = true\nregion = \"eu-central-1\"\npart_size = \"16MiB\"\n\
             concurrency = 8\n",
        )
        .unwrap();
        let config = Config::load(&[S3Settings::SECTION], Vec::new(), Some(&file)).unwrap();
        let s3 = config.component::<S3Settings>().unwrap().config.unwrap();
        assert_eq!(s3.url(), "s3://backups/prod/db");
        assert!(s3.force_path_style);
        assert_eq!(s3.region, "eu-central-1");
        assert_eq!((s3.part_size, s3.concurrency), (16 * MIB, 8));
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
        let config = with_bucket(&[
            ("AWS_REGION", "eu-west-2"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ])
        .unwrap();
        assert_eq!(config.region, "eu-west-2", "order of the environment");
    }

    #[test]
    fn part_sizes_respect_s3_limits() {
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
        assert_eq!(
            with_bucket(&[("BACKUP_S3_PART_SIZE", "5G")])
                .unwrap()
                .part_size,
            5 * GIB
        );
        assert_eq!(MAX_PART_SIZE, 5 * GIB);
        assert_eq!(MIN_PART_SIZE, 5 * MIB);
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
    fn the_request_timeout_is_whole_seconds_of_at_least_1() {
        assert_eq!(with_bucket(&[]).unwrap().timeout, Duration::from_secs(60));
        for text in ["0", "-1", "1.5", "a minute"] {
            let message = config_error(&[("BACKUP_S3_TIMEOUT_SECONDS", text)]);
            assert!(
                message.contains("BACKUP_S3_TIMEOUT_SECONDS"),
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
                Err(CoreError::Config(message)) => message,
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
}
