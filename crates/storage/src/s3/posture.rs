//! [`S3Sink::bucket_posture`]: the bucket's security-relevant configuration, as `security-scan`
//! needs it: default encryption, public access block, bucket policy and its public status,
//! versioning, Object Lock and lifecycle rules.
//!
//! Each question is one request, and each answer is a [`Probe`]: known, absent (the bucket has
//! no such configuration: a definite "none"), or unknown (the endpoint does not support the
//! request, these credentials may not make it, or it failed), so that a limited S3-compatible
//! server gives "unknown", never a wrong "missing".

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{LifecycleRuleFilter, ObjectLockEnabled};

use super::{one_line, status_of, S3Sink};

/// What one question to the bucket gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<T> {
    /// The answer.
    Known(T),
    /// The bucket has no such configuration (e.g. `ServerSideEncryptionConfigurationNotFoundError`,
    /// `NoSuchPublicAccessBlockConfiguration`, `NoSuchBucketPolicy`,
    /// `ObjectLockConfigurationNotFoundError`, `NoSuchLifecycleConfiguration`): a definite
    /// "none".
    Absent,
    /// The endpoint does not support the question (`501 NotImplemented`, or an error code it
    /// does not know), these credentials may not ask (`403 AccessDenied`), or the request
    /// failed: unknown, with why.
    Unknown(String),
}

impl<T> Probe<T> {
    /// The answer, when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(value) => Some(value),
            Self::Absent | Self::Unknown(_) => None,
        }
    }

    /// Whether the question could not be answered.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown(_))
    }

    /// The probe with `f` applied to a known answer.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Probe<U> {
        match self {
            Self::Known(value) => Probe::Known(f(value)),
            Self::Absent => Probe::Absent,
            Self::Unknown(why) => Probe::Unknown(why),
        }
    }
}

/// The bucket's public access block (`GetPublicAccessBlock`): the four settings, each `false`
/// when the server leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublicAccessBlock {
    /// `BlockPublicAcls`: public ACLs on the bucket and its objects are refused.
    pub block_public_acls: bool,
    /// `IgnorePublicAcls`: public ACLs are ignored.
    pub ignore_public_acls: bool,
    /// `BlockPublicPolicy`: a bucket policy granting public access is refused.
    pub block_public_policy: bool,
    /// `RestrictPublicBuckets`: a public policy, if any, only grants AWS services and the
    /// bucket owner's account.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four settings on.
    pub const ALL_ON: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    /// Whether all four settings are on.
    pub fn all_on(&self) -> bool {
        *self == Self::ALL_ON
    }

    /// The S3 names of the settings that are off, e.g. `["BlockPublicPolicy"]`.
    pub fn off(&self) -> Vec<&'static str> {
        [
            ("BlockPublicAcls", self.block_public_acls),
            ("IgnorePublicAcls", self.ignore_public_acls),
            ("BlockPublicPolicy", self.block_public_policy),
            ("RestrictPublicBuckets", self.restrict_public_buckets),
        ]
        .into_iter()
        .filter(|(_, on)| !on)
        .map(|(name, _)| name)
        .collect()
    }
}

/// The bucket's Object Lock configuration (`GetObjectLockConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectLockSettings {
    /// Whether Object Lock is enabled on the bucket (`ObjectLockEnabled = Enabled`).
    pub enabled: bool,
    /// The mode of the default retention, `GOVERNANCE` or `COMPLIANCE`, if the bucket has one.
    pub default_mode: Option<String>,
    /// The period of the default retention in days (a period in years counts 365 days a
    /// year), if the bucket has one.
    pub default_days: Option<u32>,
}

/// One rule of the bucket's lifecycle configuration (`GetBucketLifecycleConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LifecycleRule {
    /// The rule's `ID`, if it has one.
    pub id: Option<String>,
    /// Whether the rule is on (`Status = Enabled`).
    pub enabled: bool,
    /// The key prefix the rule applies to (`Filter.Prefix`, `Filter.And.Prefix` or the
    /// legacy `Prefix`); `None` (never empty) for the whole bucket.
    pub prefix: Option<String>,
    /// Whether the rule applies only to objects with certain tags (`Filter.Tag` or tags in
    /// `Filter.And`). The backup tool tags no object, so such a rule never applies to backups.
    pub tag_filtered: bool,
    /// `Expiration.Days`: current versions expire this many days after their creation.
    pub expiration_days: Option<u32>,
    /// `Expiration.Date` (RFC 3339): current versions expire on this date.
    pub expiration_date: Option<String>,
    /// `NoncurrentVersionExpiration.NoncurrentDays`: old versions are deleted this many days
    /// after they became old.
    pub noncurrent_days: Option<u32>,
    /// `AbortIncompleteMultipartUpload.DaysAfterInitiation`: multipart uploads still
    /// incomplete this many days after they started are aborted.
    pub abort_incomplete_days: Option<u32>,
}

/// The bucket's security posture: one [`Probe`] per question (see
/// [`S3Sink::bucket_posture`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPosture {
    /// The default server-side encryption algorithm (`GetBucketEncryption`), e.g. `AES256`,
    /// `aws:kms`.
    pub encryption: Probe<String>,
    /// The public access block (`GetPublicAccessBlock`).
    pub public_access_block: Probe<PublicAccessBlock>,
    /// The bucket policy, JSON text (`GetBucketPolicy`).
    pub policy: Probe<String>,
    /// Whether S3 considers the bucket policy public (`GetBucketPolicyStatus`).
    pub policy_is_public: Probe<bool>,
    /// The versioning status (`GetBucketVersioning`): `Enabled`, `Suspended`, or `None` for a
    /// bucket versioning was never enabled on.
    pub versioning: Probe<Option<String>>,
    /// The Object Lock configuration (`GetObjectLockConfiguration`).
    pub object_lock: Probe<ObjectLockSettings>,
    /// The lifecycle rules (`GetBucketLifecycleConfiguration`).
    pub lifecycle: Probe<Vec<LifecycleRule>>,
}

impl S3Sink {
    /// The bucket's security posture: seven requests, made at the same time, one per
    /// question (`GetBucketEncryption`, `GetPublicAccessBlock`, `GetBucketPolicy`,
    /// `GetBucketPolicyStatus`, `GetBucketVersioning`, `GetObjectLockConfiguration`,
    /// `GetBucketLifecycleConfiguration`). Never fails: a question the endpoint does not
    /// support, these credentials may not ask, or that could not be asked (network error,
    /// missing bucket) is [`Probe::Unknown`] with why.
    pub async fn bucket_posture(&self) -> BucketPosture {
        let client = self.client();
        let bucket = self.config().bucket.as_str();
        let (
            encryption,
            public_access_block,
            policy,
            policy_is_public,
            versioning,
            object_lock,
            lifecycle,
        ) = tokio::join!(
            async {
                let operation = Operation::ENCRYPTION;
                match client.get_bucket_encryption().bucket(bucket).send().await {
                    Ok(output) => output
                        .server_side_encryption_configuration()
                        .and_then(|configuration| {
                            configuration.rules().iter().find_map(|rule| {
                                rule.apply_server_side_encryption_by_default()
                                    .map(|default| default.sse_algorithm().as_str().to_owned())
                            })
                        })
                        .map_or(Probe::Absent, Probe::Known),
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::PUBLIC_ACCESS_BLOCK;
                match client.get_public_access_block().bucket(bucket).send().await {
                    Ok(output) => {
                        output
                            .public_access_block_configuration()
                            .map_or(Probe::Absent, |block| {
                                Probe::Known(PublicAccessBlock {
                                    block_public_acls: block.block_public_acls().unwrap_or(false),
                                    ignore_public_acls: block.ignore_public_acls().unwrap_or(false),
                                    block_public_policy: block
                                        .block_public_policy()
                                        .unwrap_or(false),
                                    restrict_public_buckets: block
                                        .restrict_public_buckets()
                                        .unwrap_or(false),
                                })
                            })
                    }
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::POLICY;
                match client.get_bucket_policy().bucket(bucket).send().await {
                    Ok(output) => match output.policy() {
                        Some(policy) if !policy.trim().is_empty() => {
                            Probe::Known(policy.to_owned())
                        }
                        _ => Probe::Absent,
                    },
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::POLICY_STATUS;
                match client
                    .get_bucket_policy_status()
                    .bucket(bucket)
                    .send()
                    .await
                {
                    Ok(output) => match output.policy_status() {
                        Some(status) => Probe::Known(status.is_public().unwrap_or(false)),
                        None => Probe::Absent,
                    },
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::VERSIONING;
                match client.get_bucket_versioning().bucket(bucket).send().await {
                    Ok(output) => {
                        Probe::Known(output.status().map(|status| status.as_str().to_owned()))
                    }
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::OBJECT_LOCK;
                match client
                    .get_object_lock_configuration()
                    .bucket(bucket)
                    .send()
                    .await
                {
                    Ok(output) => {
                        output
                            .object_lock_configuration()
                            .map_or(Probe::Absent, |configuration| {
                                let retention = configuration
                                    .rule()
                                    .and_then(|rule| rule.default_retention());
                                let days = retention.and_then(|retention| {
                                    match (retention.days(), retention.years()) {
                                        (Some(days), _) => u32::try_from(days).ok(),
                                        (None, Some(years)) => u32::try_from(years)
                                            .ok()
                                            .map(|years| years.saturating_mul(365)),
                                        (None, None) => None,
                                    }
                                });
                                Probe::Known(ObjectLockSettings {
                                    enabled: configuration.object_lock_enabled()
                                        == Some(&ObjectLockEnabled::Enabled),
                                    default_mode: retention
                                        .and_then(|retention| retention.mode())
                                        .map(|mode| mode.as_str().to_owned()),
                                    default_days: days,
                                })
                            })
                    }
                    Err(error) => operation.failed(&error),
                }
            },
            async {
                let operation = Operation::LIFECYCLE;
                match client
                    .get_bucket_lifecycle_configuration()
                    .bucket(bucket)
                    .send()
                    .await
                {
                    Ok(output) => Probe::Known(output.rules().iter().map(lifecycle_rule).collect()),
                    Err(error) => operation.failed(&error),
                }
            },
        );
        BucketPosture {
            encryption,
            public_access_block,
            policy,
            policy_is_public,
            versioning,
            object_lock,
            lifecycle,
        }
    }
}

/// One lifecycle rule as the SDK gives it, simplified.
fn lifecycle_rule(rule: &aws_sdk_s3::types::LifecycleRule) -> LifecycleRule {
    let filter: Option<&LifecycleRuleFilter> = rule.filter();
    #[allow(deprecated)]
    let legacy_prefix = rule.prefix();
    let prefix = filter
        .and_then(|filter| {
            filter
                .prefix()
                .or_else(|| filter.and().and_then(|and| and.prefix()))
        })
        .or(legacy_prefix)
        .filter(|prefix| !prefix.is_empty())
        .map(str::to_owned);
    let tag_filtered = filter.is_some_and(|filter| {
        filter.tag().is_some() || filter.and().is_some_and(|and| !and.tags().is_empty())
    });
    let days = |days: Option<i32>| days.and_then(|days| u32::try_from(days).ok());
    LifecycleRule {
        id: rule.id().map(str::to_owned),
        enabled: rule.status() == &aws_sdk_s3::types::ExpirationStatus::Enabled,
        prefix,
        tag_filtered,
        expiration_days: days(rule.expiration().and_then(|e| e.days())),
        expiration_date: rule.expiration().and_then(|e| e.date()).and_then(|date| {
            date.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        noncurrent_days: days(
            rule.noncurrent_version_expiration()
                .and_then(|e| e.noncurrent_days()),
        ),
        abort_incomplete_days: days(
            rule.abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation()),
        ),
    }
}

/// One of the questions: its S3 operation, the IAM permission it needs, and the error codes
/// that mean "the bucket has none".
struct Operation {
    name: &'static str,
    permission: &'static str,
    absent: &'static [&'static str],
}

impl Operation {
    const ENCRYPTION: Self = Self {
        name: "GetBucketEncryption",
        permission: "s3:GetEncryptionConfiguration",
        absent: &["ServerSideEncryptionConfigurationNotFoundError"],
    };
    const PUBLIC_ACCESS_BLOCK: Self = Self {
        name: "GetPublicAccessBlock",
        permission: "s3:GetBucketPublicAccessBlock",
        absent: &["NoSuchPublicAccessBlockConfiguration"],
    };
    const POLICY: Self = Self {
        name: "GetBucketPolicy",
        permission: "s3:GetBucketPolicy",
        absent: &["NoSuchBucketPolicy"],
    };
    const POLICY_STATUS: Self = Self {
        name: "GetBucketPolicyStatus",
        permission: "s3:GetBucketPolicyStatus",
        absent: &["NoSuchBucketPolicy"],
    };
    const VERSIONING: Self = Self {
        name: "GetBucketVersioning",
        permission: "s3:GetBucketVersioning",
        absent: &[],
    };
    const OBJECT_LOCK: Self = Self {
        name: "GetObjectLockConfiguration",
        permission: "s3:GetBucketObjectLockConfiguration",
        absent: &["ObjectLockConfigurationNotFoundError"],
    };
    const LIFECYCLE: Self = Self {
        name: "GetBucketLifecycleConfiguration",
        permission: "s3:GetLifecycleConfiguration",
        absent: &["NoSuchLifecycleConfiguration"],
    };

    /// What a failed request says about the question.
    fn failed<T, E>(&self, error: &SdkError<E, HttpResponse>) -> Probe<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(
            self,
            error.code(),
            status_of(error),
            matches!(error, SdkError::ServiceError(_)),
            || one_line(error),
        )
    }
}

/// Classifies a failed question by the server's error code and the HTTP status. `service`:
/// the server answered with an error (rather than the request failing on the way).
fn classify<T>(
    operation: &Operation,
    code: Option<&str>,
    status: Option<u16>,
    service: bool,
    text: impl FnOnce() -> String,
) -> Probe<T> {
    let name = operation.name;
    if let Some(code) = code {
        if operation.absent.contains(&code) {
            return Probe::Absent;
        }
    }
    let text = text();
    let why = match (code, status) {
        (Some("NotImplemented"), _) | (_, Some(501)) => {
            format!("the endpoint does not support {name} ({text})")
        }
        (Some("AccessDenied" | "AllAccessDisabled"), _) | (_, Some(403)) => format!(
            "these credentials may not call {name} (it needs {}): {text}",
            operation.permission
        ),
        (Some("NoSuchBucket"), _) => format!("{name}: the bucket does not exist ({text})"),
        (Some("MethodNotAllowed" | "InvalidRequest" | "InvalidArgument"), _) => {
            format!("the endpoint does not support {name} ({text})")
        }
        _ if service => format!("{name} gave an answer that is not understood here ({text})"),
        _ => format!("{name} failed: {text}"),
    };
    Probe::Unknown(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(code: Option<&str>, status: Option<u16>) -> Probe<()> {
        classify(&Operation::OBJECT_LOCK, code, status, true, || {
            "HTTP ? Code".to_owned()
        })
    }

    #[test]
    fn the_codes_of_a_missing_configuration_are_absent() {
        assert_eq!(
            classified(Some("ObjectLockConfigurationNotFoundError"), Some(404)),
            Probe::Absent
        );
        let encryption: Probe<()> = classify(
            &Operation::ENCRYPTION,
            Some("ServerSideEncryptionConfigurationNotFoundError"),
            Some(404),
            true,
            String::new,
        );
        assert_eq!(encryption, Probe::Absent);
        // Another operation's "none" code is not this one's.
        assert!(classified(Some("NoSuchBucketPolicy"), Some(404)).is_unknown());
    }

    #[test]
    fn unsupported_forbidden_and_failed_are_unknown_with_why() {
        let why = |probe: Probe<()>| match probe {
            Probe::Unknown(why) => why,
            other => panic!("expected unknown, got {other:?}"),
        };
        assert!(why(classified(Some("NotImplemented"), Some(501))).contains("does not support"));
        assert!(why(classified(None, Some(501))).contains("does not support"));
        let denied = why(classified(Some("AccessDenied"), Some(403)));
        assert!(
            denied.contains("s3:GetBucketObjectLockConfiguration"),
            "{denied}"
        );
        assert!(why(classified(Some("NoSuchBucket"), Some(404))).contains("does not exist"));
        assert!(why(classified(Some("SomethingOdd"), Some(404))).contains("not understood"));
        let network = why(classify::<()>(
            &Operation::LIFECYCLE,
            None,
            None,
            false,
            || "connection refused".to_owned(),
        ));
        assert!(network.contains("connection refused"), "{network}");
    }

    #[test]
    fn public_access_block_names_the_settings_that_are_off() {
        assert!(PublicAccessBlock::ALL_ON.all_on());
        let block = PublicAccessBlock {
            block_public_policy: false,
            ..PublicAccessBlock::ALL_ON
        };
        assert!(!block.all_on());
        assert_eq!(block.off(), ["BlockPublicPolicy"]);
        assert_eq!(PublicAccessBlock::default().off().len(), 4);
    }

    #[test]
    fn lifecycle_rules_are_simplified() {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration,
            LifecycleRuleAndOperator, NoncurrentVersionExpiration, Tag,
        };
        let rule = aws_sdk_s3::types::LifecycleRule::builder()
            .id("expire")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("backups/").build())
            .expiration(LifecycleExpiration::builder().days(7).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(30)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(3)
                    .build(),
            )
            .build()
            .unwrap();
        assert_eq!(
            lifecycle_rule(&rule),
            LifecycleRule {
                id: Some("expire".to_owned()),
                enabled: true,
                prefix: Some("backups/".to_owned()),
                tag_filtered: false,
                expiration_days: Some(7),
                expiration_date: None,
                noncurrent_days: Some(30),
                abort_incomplete_days: Some(3),
            }
        );
        let tagged = aws_sdk_s3::types::LifecycleRule::builder()
            .status(ExpirationStatus::Disabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("")
                            .tags(Tag::builder().key("k").value("v").build().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .build()
            .unwrap();
        let simplified = lifecycle_rule(&tagged);
        assert!(!simplified.enabled);
        assert!(simplified.tag_filtered);
        assert_eq!(simplified.prefix, None);
    }
}
