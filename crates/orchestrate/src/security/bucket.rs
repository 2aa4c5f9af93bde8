//! The S3 bucket's security posture as [`Finding`]s: [`bucket_findings`] turns what
//! [`S3Sink::bucket_posture`](backup_storage::S3Sink::bucket_posture) found into one or more
//! findings per check:
//!
//! | check | fails when | severity |
//! |---|---|---|
//! | `s3.encryption` | no default encryption | medium (the tool's uploads ask for SSE anyway) |
//! | `s3.public_access_block` | none, or any of its four settings off | high |
//! | `s3.policy_public` | S3 reports the policy public, or a statement allows `*` unconditionally | critical |
//! | `s3.tls_only` | no `Deny` statement on `aws:SecureTransport = false` (also: no policy) | medium |
//! | `s3.versioning` | versioning not `Enabled` (never enabled, or `Suspended`) | medium |
//! | `s3.object_lock` | Object Lock not enabled: high when `BACKUP_S3_OBJECT_LOCK` is set (uploads fail), else low | high / low |
//! | `s3.lifecycle` | a rule expires backups sooner than the retention (or on a fixed date) | high |
//! | `s3.lifecycle` | no rule aborts incomplete multipart uploads | low |
//! | `s3.lifecycle` | versioning enabled and no rule expires old versions | low |
//!
//! A question the endpoint could not answer gives [`Finding::unknown`], never a failure.
//! `Suspended` versioning is as bad as none for new backups (overwrites and deletes are no
//! longer kept), so it is medium too.

use backup_storage::s3::{BucketPosture, LifecycleRule, Probe, PublicAccessBlock};
use serde_json::Value;

use super::{Finding, Severity};

/// What the configuration says that the bucket checks need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketExpectations {
    /// How many days backups are kept (`BACKUP_RETENTION_DAYS`; 0 keeps none by age).
    pub retention_days: u32,
    /// Whether uploads ask for Object Lock retention (`BACKUP_S3_OBJECT_LOCK` not `off`).
    pub object_lock_configured: bool,
    /// The key prefix the backups are stored under (`BACKUP_S3_PREFIX`), if any.
    pub prefix: Option<String>,
}

/// The check of the default encryption.
pub const CHECK_ENCRYPTION: &str = "s3.encryption";
/// The check of the public access block.
pub const CHECK_PUBLIC_ACCESS_BLOCK: &str = "s3.public_access_block";
/// The check that the bucket policy does not make the bucket public.
pub const CHECK_POLICY_PUBLIC: &str = "s3.policy_public";
/// The check that the bucket policy refuses requests without TLS.
pub const CHECK_TLS_ONLY: &str = "s3.tls_only";
/// The check of versioning.
pub const CHECK_VERSIONING: &str = "s3.versioning";
/// The check of Object Lock.
pub const CHECK_OBJECT_LOCK: &str = "s3.object_lock";
/// The checks of the lifecycle rules.
pub const CHECK_LIFECYCLE: &str = "s3.lifecycle";

/// Turns a posture into findings, one or more per check: checks named `s3.encryption`,
/// `s3.public_access_block`, `s3.policy_public`, `s3.tls_only`, `s3.versioning`,
/// `s3.object_lock`, `s3.lifecycle` (see the [module documentation](self) for when each
/// fails and how badly). Unknown probes give [`Finding::unknown`] (never a failure).
pub fn bucket_findings(
    bucket: &str,
    posture: &BucketPosture,
    expect: &BucketExpectations,
) -> Vec<Finding> {
    let policy = Policy::of(&posture.policy);
    let mut findings = vec![
        encryption(bucket, &posture.encryption),
        public_access_block(bucket, &posture.public_access_block),
        policy_public(bucket, &policy, &posture.policy_is_public),
        tls_only(bucket, &policy),
        versioning(bucket, &posture.versioning),
        object_lock(bucket, posture, expect),
    ];
    findings.extend(lifecycle(bucket, posture, expect));
    findings
}

fn encryption(bucket: &str, probe: &Probe<String>) -> Finding {
    match probe {
        Probe::Known(algorithm) => Finding::pass(
            CHECK_ENCRYPTION,
            format!("bucket {bucket} encrypts new objects by default ({algorithm})"),
        ),
        Probe::Absent => Finding::fail(
            CHECK_ENCRYPTION,
            Severity::Medium,
            format!(
                "bucket {bucket} has no default encryption: the backup tool's uploads are \
                 encrypted anyway (it sends x-amz-server-side-encryption, BACKUP_S3_SSE, unless \
                 that is none), but objects other writers put there are not"
            ),
            format!(
                "aws s3api put-bucket-encryption --bucket {bucket} \
                 --server-side-encryption-configuration \
                 '{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"AES256\"}}}}]}}' \
                 (or SSEAlgorithm aws:kms with a KMSMasterKeyID)"
            ),
        ),
        Probe::Unknown(why) => Finding::unknown(
            CHECK_ENCRYPTION,
            format!("default encryption of bucket {bucket} unknown: {why}"),
        ),
    }
}

fn public_access_block(bucket: &str, probe: &Probe<PublicAccessBlock>) -> Finding {
    let fix = format!(
        "aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration \
         BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true \
         (an account-wide block, `aws s3control put-public-access-block`, covers every bucket)"
    );
    match probe {
        Probe::Known(block) if block.all_on() => Finding::pass(
            CHECK_PUBLIC_ACCESS_BLOCK,
            format!("bucket {bucket} blocks public access (all four settings on)"),
        ),
        Probe::Known(block) => Finding::fail(
            CHECK_PUBLIC_ACCESS_BLOCK,
            Severity::High,
            format!(
                "bucket {bucket}'s public access block has {} off: an ACL or policy mistake \
                 could make backups public",
                block.off().join(", ")
            ),
            fix,
        ),
        Probe::Absent => Finding::fail(
            CHECK_PUBLIC_ACCESS_BLOCK,
            Severity::High,
            format!(
                "bucket {bucket} has no public access block (unless the account has one): an \
                 ACL or policy mistake could make backups public"
            ),
            fix,
        ),
        Probe::Unknown(why) => Finding::unknown(
            CHECK_PUBLIC_ACCESS_BLOCK,
            format!("public access block of bucket {bucket} unknown: {why}"),
        ),
    }
}

/// The bucket policy, as far as it could be read.
enum Policy {
    /// The bucket has none.
    Absent,
    /// Its statements.
    Statements(Vec<Value>),
    /// It exists but is not a readable policy document.
    Unreadable(String),
    /// It could not be fetched.
    Unknown(String),
}

impl Policy {
    fn of(probe: &Probe<String>) -> Self {
        match probe {
            Probe::Absent => Self::Absent,
            Probe::Unknown(why) => Self::Unknown(why.clone()),
            Probe::Known(text) => match statements(text) {
                Ok(statements) => Self::Statements(statements),
                Err(why) => Self::Unreadable(why),
            },
        }
    }
}

/// The statements of a policy document (`Statement` may be one object or a list).
fn statements(text: &str) -> Result<Vec<Value>, String> {
    let document: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    match document.get("Statement") {
        Some(Value::Array(statements)) => Ok(statements.clone()),
        Some(statement @ Value::Object(_)) => Ok(vec![statement.clone()]),
        Some(_) => Err("its Statement is neither an object nor a list".to_owned()),
        None if document.is_object() => Err("it has no Statement".to_owned()),
        None => Err("it is not a JSON object".to_owned()),
    }
}

/// `Effect` of a statement, if it is `effect` (any case).
fn has_effect(statement: &Value, effect: &str) -> bool {
    statement
        .get("Effect")
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case(effect))
}

/// Whether `value` is `"*"` or a list holding `"*"`.
fn is_wildcard(value: &Value) -> bool {
    match value {
        Value::String(text) => text == "*",
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some("*")),
        _ => false,
    }
}

/// Whether a statement names everyone: `Principal: "*"` or `Principal: {"AWS": "*"}`.
fn names_everyone(statement: &Value) -> bool {
    match statement.get("Principal") {
        Some(principal @ Value::String(_)) => is_wildcard(principal),
        Some(Value::Object(principal)) => principal.get("AWS").is_some_and(is_wildcard),
        _ => false,
    }
}

/// Whether a statement has a (non-empty) `Condition`.
fn has_condition(statement: &Value) -> bool {
    match statement.get("Condition") {
        Some(Value::Object(conditions)) => !conditions.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

/// How a statement is named in messages: its `Sid`, else its position.
fn statement_name(index: usize, statement: &Value) -> String {
    match statement.get("Sid").and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => format!("\"{sid}\""),
        _ => format!("#{}", index + 1),
    }
}

/// The statements that allow everyone without a condition.
fn public_statements(statements: &[Value]) -> Vec<String> {
    statements
        .iter()
        .enumerate()
        .filter(|(_, s)| has_effect(s, "Allow") && names_everyone(s) && !has_condition(s))
        .map(|(index, s)| statement_name(index, s))
        .collect()
}

/// Whether a statement denies requests made without TLS: `Effect: Deny` with a condition
/// `Bool` (or `BoolIfExists`) `aws:SecureTransport` = `false`.
fn denies_plain_http(statement: &Value) -> bool {
    if !has_effect(statement, "Deny") {
        return false;
    }
    let Some(Value::Object(conditions)) = statement.get("Condition") else {
        return false;
    };
    let is_false = |value: &Value| match value {
        Value::String(text) => text.eq_ignore_ascii_case("false"),
        Value::Bool(flag) => !flag,
        _ => false,
    };
    conditions
        .iter()
        .filter(|(operator, _)| {
            operator.eq_ignore_ascii_case("Bool") || operator.eq_ignore_ascii_case("BoolIfExists")
        })
        .filter_map(|(_, keys)| keys.as_object())
        .flat_map(|keys| keys.iter())
        .any(|(key, value)| {
            key.eq_ignore_ascii_case("aws:SecureTransport")
                && match value {
                    Value::Array(values) => values.iter().any(is_false),
                    other => is_false(other),
                }
        })
}

fn policy_public(bucket: &str, policy: &Policy, status: &Probe<bool>) -> Finding {
    let public = match policy {
        Policy::Statements(statements) => public_statements(statements),
        _ => Vec::new(),
    };
    let reported_public = status.known() == Some(&true);
    if reported_public || !public.is_empty() {
        let mut what = format!("bucket {bucket}'s policy makes it public");
        if reported_public {
            what.push_str(" (S3's policy status says IsPublic)");
        }
        if !public.is_empty() {
            what.push_str(&format!(
                ": statement {} allows Principal \"*\" without a Condition",
                public.join(", ")
            ));
        }
        what.push_str("; anyone may be able to read or delete the backups");
        return Finding::fail(
            CHECK_POLICY_PUBLIC,
            Severity::Critical,
            what,
            format!(
                "remove the statements that allow everyone, or restrict them to named principals \
                 or with a Condition (aws:PrincipalOrgID, aws:SourceVpce): `aws s3api \
                 get-bucket-policy --bucket {bucket} --query Policy --output text > policy.json`, \
                 edit it, `aws s3api put-bucket-policy --bucket {bucket} --policy \
                 file://policy.json`; BlockPublicPolicy=true and RestrictPublicBuckets=true in \
                 the public access block (aws s3api put-public-access-block) stop public \
                 policies too"
            ),
        );
    }
    let status_note = match status {
        Probe::Unknown(why) => format!(" (S3's policy status is unknown: {why})"),
        _ => String::new(),
    };
    match (policy, status) {
        (Policy::Absent, _) => Finding::pass(
            CHECK_POLICY_PUBLIC,
            format!("bucket {bucket} has no bucket policy, so none makes it public"),
        ),
        (Policy::Statements(_), _) => Finding::pass(
            CHECK_POLICY_PUBLIC,
            format!(
                "no statement of bucket {bucket}'s policy allows everyone without a \
                 condition{status_note}"
            ),
        ),
        (Policy::Unreadable(_) | Policy::Unknown(_), Probe::Known(false) | Probe::Absent) => {
            Finding::pass(
                CHECK_POLICY_PUBLIC,
                format!("S3 reports bucket {bucket}'s policy as not public"),
            )
        }
        (Policy::Unreadable(why), _) => Finding::unknown(
            CHECK_POLICY_PUBLIC,
            format!(
                "bucket {bucket}'s policy could not be read ({why}){status_note}, so whether it \
                 is public is unknown"
            ),
        ),
        (Policy::Unknown(why), _) => Finding::unknown(
            CHECK_POLICY_PUBLIC,
            format!("whether bucket {bucket}'s policy is public is unknown: {why}{status_note}"),
        ),
    }
}

fn tls_only(bucket: &str, policy: &Policy) -> Finding {
    let statement = serde_json::json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    });
    match policy {
        Policy::Statements(statements) if statements.iter().any(denies_plain_http) => {
            Finding::pass(
                CHECK_TLS_ONLY,
                format!("bucket {bucket}'s policy refuses requests without TLS"),
            )
        }
        Policy::Statements(_) => Finding::fail(
            CHECK_TLS_ONLY,
            Severity::Medium,
            format!(
                "bucket {bucket}'s policy does not refuse requests without TLS (no Deny on \
                 aws:SecureTransport = false): a misconfigured client could send backups and \
                 credentials-signed requests in the clear"
            ),
            format!(
                "add this statement to the policy's Statement list: {statement} (`aws s3api \
                 get-bucket-policy --bucket {bucket} --query Policy --output text > \
                 policy.json`, edit it, `aws s3api put-bucket-policy --bucket {bucket} --policy \
                 file://policy.json`)"
            ),
        ),
        Policy::Absent => {
            let document = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [statement],
            });
            Finding::fail(
                CHECK_TLS_ONLY,
                Severity::Medium,
                format!(
                    "bucket {bucket} has no bucket policy, so requests without TLS are not \
                     refused: a misconfigured client could send backups in the clear"
                ),
                format!("aws s3api put-bucket-policy --bucket {bucket} --policy '{document}'"),
            )
        }
        Policy::Unreadable(why) => Finding::unknown(
            CHECK_TLS_ONLY,
            format!(
                "bucket {bucket}'s policy could not be read ({why}), so whether it refuses \
                 requests without TLS is unknown"
            ),
        ),
        Policy::Unknown(why) => Finding::unknown(
            CHECK_TLS_ONLY,
            format!("whether bucket {bucket} refuses requests without TLS is unknown: {why}"),
        ),
    }
}

fn versioning(bucket: &str, probe: &Probe<Option<String>>) -> Finding {
    let fix = format!(
        "aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration \
         Status=Enabled (and a lifecycle rule with NoncurrentVersionExpiration, so that old \
         versions do not pile up)"
    );
    match probe {
        Probe::Known(Some(status)) if status == "Enabled" => Finding::pass(
            CHECK_VERSIONING,
            format!(
                "bucket {bucket} keeps versions: overwritten or deleted backups can be recovered"
            ),
        ),
        Probe::Known(Some(status)) if status == "Suspended" => Finding::fail(
            CHECK_VERSIONING,
            Severity::Medium,
            format!(
                "bucket {bucket}'s versioning is suspended: backups overwritten or deleted from \
                 now on (by mistake, or by someone holding the credentials) cannot be recovered"
            ),
            fix,
        ),
        Probe::Known(status) => Finding::fail(
            CHECK_VERSIONING,
            Severity::Medium,
            format!(
                "bucket {bucket} does not keep versions ({}): an overwritten or deleted backup \
                 cannot be recovered",
                status.as_deref().unwrap_or("versioning never enabled")
            ),
            fix,
        ),
        Probe::Absent => Finding::fail(
            CHECK_VERSIONING,
            Severity::Medium,
            format!(
                "bucket {bucket} does not keep versions: an overwritten or deleted backup cannot \
                 be recovered"
            ),
            fix,
        ),
        Probe::Unknown(why) => Finding::unknown(
            CHECK_VERSIONING,
            format!("versioning of bucket {bucket} unknown: {why}"),
        ),
    }
}

fn object_lock(bucket: &str, posture: &BucketPosture, expect: &BucketExpectations) -> Finding {
    let enable = format!(
        "aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration \
         Status=Enabled, then aws s3api put-object-lock-configuration --bucket {bucket} \
         --object-lock-configuration '{{\"ObjectLockEnabled\":\"Enabled\"}}'"
    );
    let settings = match &posture.object_lock {
        Probe::Unknown(why) => {
            let note = if expect.object_lock_configured {
                " (BACKUP_S3_OBJECT_LOCK is set: uploads fail if the bucket has no Object Lock)"
            } else {
                ""
            };
            return Finding::unknown(
                CHECK_OBJECT_LOCK,
                format!("Object Lock of bucket {bucket} unknown: {why}{note}"),
            );
        }
        Probe::Known(settings) if settings.enabled => settings,
        Probe::Known(_) | Probe::Absent => {
            return if expect.object_lock_configured {
                Finding::fail(
                    CHECK_OBJECT_LOCK,
                    Severity::High,
                    format!(
                        "BACKUP_S3_OBJECT_LOCK is set but bucket {bucket} has no Object Lock: \
                         S3 refuses uploads with Object Lock retention there, so backups to it \
                         fail"
                    ),
                    format!("enable Object Lock: {enable}; or set BACKUP_S3_OBJECT_LOCK=off"),
                )
            } else {
                Finding::fail(
                    CHECK_OBJECT_LOCK,
                    Severity::Low,
                    format!(
                        "bucket {bucket} has no Object Lock: anyone holding credentials that \
                         may delete (or ransomware using them) can destroy the backups"
                    ),
                    format!(
                        "for immutable backups, enable Object Lock ({enable}) and set \
                         BACKUP_S3_OBJECT_LOCK=governance (or compliance; \
                         BACKUP_S3_OBJECT_LOCK_DAYS defaults to the retention)"
                    ),
                )
            };
        }
    };
    let default = match (&settings.default_mode, settings.default_days) {
        (Some(mode), Some(days)) => format!("default retention {mode} for {days} days"),
        _ => "no default retention".to_owned(),
    };
    if expect.object_lock_configured || settings.default_days.is_some() {
        Finding::pass(
            CHECK_OBJECT_LOCK,
            format!(
                "bucket {bucket} has Object Lock ({default}){}",
                if expect.object_lock_configured {
                    "; backups are uploaded with retention (BACKUP_S3_OBJECT_LOCK)"
                } else {
                    ""
                }
            ),
        )
    } else {
        Finding::fail(
            CHECK_OBJECT_LOCK,
            Severity::Low,
            format!(
                "bucket {bucket} has Object Lock but backups are not locked: \
                 BACKUP_S3_OBJECT_LOCK=off and the bucket has {default}"
            ),
            "set BACKUP_S3_OBJECT_LOCK=governance (or compliance) for immutable backups",
        )
    }
}

/// The key prefix every backup key starts with: `prefix/`, or empty without a prefix.
fn backup_space(expect: &BucketExpectations) -> String {
    match expect.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/"),
        _ => String::new(),
    }
}

/// Whether an enabled rule applies to some backups (its prefix and the backups' overlap).
fn touches_backups(rule: &LifecycleRule, space: &str) -> bool {
    let prefix = rule.prefix.as_deref().unwrap_or_default();
    rule.enabled && !rule.tag_filtered && (space.starts_with(prefix) || prefix.starts_with(space))
}

/// Whether an enabled rule applies to every backup.
fn covers_backups(rule: &LifecycleRule, space: &str) -> bool {
    let prefix = rule.prefix.as_deref().unwrap_or_default();
    rule.enabled && !rule.tag_filtered && space.starts_with(prefix)
}

/// How a rule is named in messages.
fn rule_name(rule: &LifecycleRule) -> String {
    let scope = match &rule.prefix {
        Some(prefix) => format!("prefix {prefix:?}"),
        None => "the whole bucket".to_owned(),
    };
    match &rule.id {
        Some(id) => format!("lifecycle rule {id:?} ({scope})"),
        None => format!("a lifecycle rule without ID ({scope})"),
    }
}

fn lifecycle(bucket: &str, posture: &BucketPosture, expect: &BucketExpectations) -> Vec<Finding> {
    let rules: &[LifecycleRule] = match &posture.lifecycle {
        Probe::Known(rules) => rules,
        Probe::Absent => &[],
        Probe::Unknown(why) => {
            return vec![Finding::unknown(
                CHECK_LIFECYCLE,
                format!("lifecycle rules of bucket {bucket} unknown: {why}"),
            )]
        }
    };
    let space = backup_space(expect);
    let location = format!("s3://{bucket}/{space}");
    let retention = expect.retention_days;
    let edit = format!(
        "`aws s3api get-bucket-lifecycle-configuration --bucket {bucket} > lifecycle.json`, edit \
         it (keep only the Rules list), `aws s3api put-bucket-lifecycle-configuration --bucket \
         {bucket} --lifecycle-configuration file://lifecycle.json`"
    );
    let filter = if space.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({ "Prefix": space })
    };
    let add_rule = |rule: Value| {
        let configuration = serde_json::json!({ "Rules": [rule] });
        if rules.is_empty() {
            format!(
                "aws s3api put-bucket-lifecycle-configuration --bucket {bucket} \
                 --lifecycle-configuration '{configuration}'"
            )
        } else {
            format!(
                "add the rule {rule} to the bucket's lifecycle rules ({edit}; \
                 put-bucket-lifecycle-configuration replaces all rules)"
            )
        }
    };

    let mut findings = Vec::new();
    for rule in rules.iter().filter(|rule| touches_backups(rule, &space)) {
        if let Some(days) = rule.expiration_days.filter(|days| *days < retention) {
            findings.push(Finding::fail(
                CHECK_LIFECYCLE,
                Severity::High,
                format!(
                    "{} expires objects after {days} days, sooner than the {retention}-day \
                     retention (BACKUP_RETENTION_DAYS): it would delete backups under \
                     {location} that the retention keeps",
                    rule_name(rule)
                ),
                format!(
                    "set the rule's Expiration Days to at least {retention}, limit its Filter to \
                     keys that are not backups, or delete it ({edit}); pruning already deletes \
                     backups older than the retention"
                ),
            ));
        }
        if let Some(date) = &rule.expiration_date {
            findings.push(Finding::fail(
                CHECK_LIFECYCLE,
                Severity::High,
                format!(
                    "{} expires every object it covers on {date}, whatever its age: it would \
                     delete all backups under {location}, also the newest",
                    rule_name(rule)
                ),
                format!(
                    "remove the rule's Expiration Date or limit its Filter to keys that are not \
                     backups ({edit})"
                ),
            ));
        }
    }
    if findings.is_empty() {
        findings.push(Finding::pass(
            CHECK_LIFECYCLE,
            format!(
                "no lifecycle rule of bucket {bucket} expires backups under {location} sooner \
                 than the {retention}-day retention"
            ),
        ));
    }

    match rules
        .iter()
        .filter(|rule| covers_backups(rule, &space))
        .find_map(|rule| rule.abort_incomplete_days.map(|days| (rule, days)))
    {
        Some((rule, days)) => findings.push(Finding::pass(
            CHECK_LIFECYCLE,
            format!(
                "{} aborts incomplete multipart uploads after {days} days",
                rule_name(rule)
            ),
        )),
        None => findings.push(Finding::fail(
            CHECK_LIFECYCLE,
            Severity::Low,
            format!(
                "no lifecycle rule of bucket {bucket} aborts incomplete multipart uploads under \
                 {location}: the parts of uploads interrupted by a crash stay, and are billed, \
                 until removed"
            ),
            add_rule(serde_json::json!({
                "ID": "abort-incomplete-uploads",
                "Status": "Enabled",
                "Filter": filter,
                "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 7 },
            })),
        )),
    }

    let versioned = posture.versioning.known() == Some(&Some("Enabled".to_owned()));
    if versioned {
        match rules
            .iter()
            .filter(|rule| covers_backups(rule, &space))
            .find_map(|rule| rule.noncurrent_days.map(|days| (rule, days)))
        {
            Some((rule, days)) => findings.push(Finding::pass(
                CHECK_LIFECYCLE,
                format!(
                    "{} deletes old versions {days} days after they were replaced or deleted",
                    rule_name(rule)
                ),
            )),
            None => findings.push(Finding::fail(
                CHECK_LIFECYCLE,
                Severity::Low,
                format!(
                    "bucket {bucket} keeps versions but no lifecycle rule expires old ones under \
                     {location}: every pruned or overwritten backup stays, and is billed, for \
                     ever"
                ),
                add_rule(serde_json::json!({
                    "ID": "expire-old-versions",
                    "Status": "Enabled",
                    "Filter": filter,
                    "NoncurrentVersionExpiration": { "NoncurrentDays": 30 },
                })),
            )),
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::CheckState;
    use backup_storage::s3::ObjectLockSettings;

    const BUCKET: &str = "backups";

    const TLS_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
         "Resource":["arn:aws:s3:::backups","arn:aws:s3:::backups/*"],
         "Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;

    /// A bucket that passes every check.
    fn good() -> BucketPosture {
        BucketPosture {
            encryption: Probe::Known("aws:kms".to_owned()),
            public_access_block: Probe::Known(PublicAccessBlock::ALL_ON),
            policy: Probe::Known(TLS_ONLY.to_owned()),
            policy_is_public: Probe::Known(false),
            versioning: Probe::Known(Some("Enabled".to_owned())),
            object_lock: Probe::Known(ObjectLockSettings {
                enabled: true,
                default_mode: Some("GOVERNANCE".to_owned()),
                default_days: Some(30),
            }),
            lifecycle: Probe::Known(vec![LifecycleRule {
                id: Some("housekeeping".to_owned()),
                enabled: true,
                prefix: None,
                noncurrent_days: Some(30),
                abort_incomplete_days: Some(7),
                ..Default::default()
            }]),
        }
    }

    fn expect() -> BucketExpectations {
        BucketExpectations {
            retention_days: 30,
            object_lock_configured: true,
            prefix: Some("db".to_owned()),
        }
    }

    fn unknown_everywhere() -> BucketPosture {
        fn why<T>() -> Probe<T> {
            Probe::Unknown("HTTP 501 NotImplemented".to_owned())
        }
        BucketPosture {
            encryption: why(),
            public_access_block: why(),
            policy: why(),
            policy_is_public: why(),
            versioning: why(),
            object_lock: why(),
            lifecycle: why(),
        }
    }

    /// The findings of one check.
    fn of(check: &str, posture: &BucketPosture, expect: &BucketExpectations) -> Vec<Finding> {
        bucket_findings(BUCKET, posture, expect)
            .into_iter()
            .filter(|finding| finding.check == check)
            .collect()
    }

    /// The only finding of one check.
    fn one(check: &str, posture: &BucketPosture, expect: &BucketExpectations) -> Finding {
        let mut findings = of(check, posture, expect);
        assert_eq!(findings.len(), 1, "{check}: {findings:#?}");
        findings.remove(0)
    }

    fn failed(finding: &Finding, severity: Severity) {
        assert_eq!(finding.state, CheckState::Fail, "{finding:#?}");
        assert_eq!(finding.severity, severity, "{finding:#?}");
        assert!(finding.fix.as_deref().is_some_and(|fix| !fix.is_empty()));
    }

    fn passed(finding: &Finding) {
        assert_eq!(finding.state, CheckState::Pass, "{finding:#?}");
        assert_eq!(finding.severity, Severity::Info);
    }

    #[test]
    fn a_well_configured_bucket_passes_every_check() {
        let findings = bucket_findings(BUCKET, &good(), &expect());
        for finding in &findings {
            passed(finding);
        }
        for check in [
            CHECK_ENCRYPTION,
            CHECK_PUBLIC_ACCESS_BLOCK,
            CHECK_POLICY_PUBLIC,
            CHECK_TLS_ONLY,
            CHECK_VERSIONING,
            CHECK_OBJECT_LOCK,
            CHECK_LIFECYCLE,
        ] {
            assert!(findings.iter().any(|f| f.check == check), "{check}");
        }
        // Expiration, aborted uploads, old versions.
        assert_eq!(of(CHECK_LIFECYCLE, &good(), &expect()).len(), 3);
    }

    #[test]
    fn unknown_probes_are_unknown_never_failures() {
        let findings = bucket_findings(BUCKET, &unknown_everywhere(), &expect());
        assert_eq!(findings.len(), 7, "{findings:#?}");
        for finding in &findings {
            assert_eq!(finding.state, CheckState::Unknown, "{finding:#?}");
            assert_eq!(finding.severity, Severity::Info);
            assert!(finding.what.contains("NotImplemented"), "{finding:#?}");
            assert!(!finding.is_at_least(Severity::Low));
        }
        let lock = one(CHECK_OBJECT_LOCK, &unknown_everywhere(), &expect());
        assert!(lock.what.contains("BACKUP_S3_OBJECT_LOCK"), "{lock:#?}");
    }

    #[test]
    fn missing_default_encryption_is_medium() {
        let posture = BucketPosture {
            encryption: Probe::Absent,
            ..good()
        };
        let finding = one(CHECK_ENCRYPTION, &posture, &expect());
        failed(&finding, Severity::Medium);
        assert!(finding.what.contains("encrypted anyway"), "{finding:#?}");
        assert!(finding
            .fix
            .unwrap()
            .contains("aws s3api put-bucket-encryption --bucket backups"));
        passed(&one(CHECK_ENCRYPTION, &good(), &expect()));
    }

    #[test]
    fn public_access_block_absent_or_partly_off_is_high() {
        let absent = BucketPosture {
            public_access_block: Probe::Absent,
            ..good()
        };
        let finding = one(CHECK_PUBLIC_ACCESS_BLOCK, &absent, &expect());
        failed(&finding, Severity::High);
        assert!(finding
            .fix
            .unwrap()
            .contains("aws s3api put-public-access-block --bucket backups"));

        let partly = BucketPosture {
            public_access_block: Probe::Known(PublicAccessBlock {
                restrict_public_buckets: false,
                ..PublicAccessBlock::ALL_ON
            }),
            ..good()
        };
        let finding = one(CHECK_PUBLIC_ACCESS_BLOCK, &partly, &expect());
        failed(&finding, Severity::High);
        assert!(
            finding.what.contains("RestrictPublicBuckets"),
            "{finding:#?}"
        );
        passed(&one(CHECK_PUBLIC_ACCESS_BLOCK, &good(), &expect()));
    }

    #[test]
    fn a_public_policy_is_critical() {
        // S3 says so.
        let reported = BucketPosture {
            policy_is_public: Probe::Known(true),
            ..good()
        };
        failed(
            &one(CHECK_POLICY_PUBLIC, &reported, &expect()),
            Severity::Critical,
        );

        // A statement says so, whatever the status (unknown here).
        for principal in [
            r#""*""#,
            r#"{"AWS":"*"}"#,
            r#"{"AWS":["arn:aws:iam::1:root","*"]}"#,
        ] {
            let policy = format!(
                r#"{{"Statement":[{{"Sid":"Open","Effect":"Allow","Principal":{principal},
                    "Action":"s3:GetObject","Resource":"arn:aws:s3:::backups/*"}}]}}"#
            );
            let posture = BucketPosture {
                policy: Probe::Known(policy),
                policy_is_public: Probe::Unknown("not supported".to_owned()),
                ..good()
            };
            let finding = one(CHECK_POLICY_PUBLIC, &posture, &expect());
            failed(&finding, Severity::Critical);
            assert!(finding.what.contains("\"Open\""), "{finding:#?}");
        }

        // A single statement object (not a list) counts too.
        let single = BucketPosture {
            policy: Probe::Known(
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*"}}"#.to_owned(),
            ),
            ..good()
        };
        let finding = one(CHECK_POLICY_PUBLIC, &single, &expect());
        failed(&finding, Severity::Critical);
        assert!(finding.what.contains("#1"), "{finding:#?}");
    }

    #[test]
    fn restricted_or_denying_statements_are_not_public() {
        let policy = r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
             "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:role/backup"},"Action":"s3:*"},
            {"Effect":"Deny","Principal":"*","Action":"s3:*",
             "Condition":{"Bool":{"aws:SecureTransport":false}}}]}"#;
        let posture = BucketPosture {
            policy: Probe::Known(policy.to_owned()),
            policy_is_public: Probe::Unknown("not supported".to_owned()),
            ..good()
        };
        let finding = one(CHECK_POLICY_PUBLIC, &posture, &expect());
        passed(&finding);
        assert!(finding.what.contains("unknown"), "{finding:#?}");
        // No policy at all is not public either (GetBucketPolicyStatus: NoSuchBucketPolicy).
        let none = BucketPosture {
            policy: Probe::Absent,
            policy_is_public: Probe::Absent,
            ..good()
        };
        passed(&one(CHECK_POLICY_PUBLIC, &none, &expect()));
        // The policy unknown, but S3 says not public.
        let status_only = BucketPosture {
            policy: Probe::Unknown("AccessDenied".to_owned()),
            ..good()
        };
        passed(&one(CHECK_POLICY_PUBLIC, &status_only, &expect()));
    }

    #[test]
    fn tls_only_needs_a_deny_on_secure_transport_false() {
        passed(&one(CHECK_TLS_ONLY, &good(), &expect()));
        // Bool false, a list, BoolIfExists and other cases are accepted.
        for condition in [
            r#"{"Bool":{"aws:SecureTransport":false}}"#,
            r#"{"Bool":{"aws:securetransport":["false"]}}"#,
            r#"{"BoolIfExists":{"aws:SecureTransport":"FALSE"}}"#,
        ] {
            let policy = format!(
                r#"{{"Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:*",
                    "Condition":{condition}}}]}}"#
            );
            let posture = BucketPosture {
                policy: Probe::Known(policy),
                ..good()
            };
            passed(&one(CHECK_TLS_ONLY, &posture, &expect()));
        }

        // Allow instead of Deny, "true" instead of "false", another key: not TLS-only.
        for statement in [
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#,
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#,
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"false"}}}"#,
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject"}"#,
        ] {
            let posture = BucketPosture {
                policy: Probe::Known(format!(r#"{{"Statement":[{statement}]}}"#)),
                ..good()
            };
            let finding = one(CHECK_TLS_ONLY, &posture, &expect());
            failed(&finding, Severity::Medium);
            assert!(finding.fix.unwrap().contains("aws:SecureTransport"));
        }

        // No policy: no TLS-only statement either; the fix is a complete policy.
        let none = BucketPosture {
            policy: Probe::Absent,
            policy_is_public: Probe::Absent,
            ..good()
        };
        let finding = one(CHECK_TLS_ONLY, &none, &expect());
        failed(&finding, Severity::Medium);
        let fix = finding.fix.unwrap();
        assert!(
            fix.starts_with("aws s3api put-bucket-policy --bucket backups --policy '{"),
            "{fix}"
        );
        let document = fix
            .split_once('\'')
            .and_then(|(_, rest)| rest.strip_suffix('\''))
            .unwrap();
        let document: Value = serde_json::from_str(document).unwrap();
        let statements = statements(&document.to_string()).unwrap();
        assert!(denies_plain_http(&statements[0]));
        assert_eq!(
            statements[0]["Resource"][1],
            Value::from("arn:aws:s3:::backups/*")
        );

        // Unknown policy: unknown.
        let unknown = BucketPosture {
            policy: Probe::Unknown("HTTP 403 AccessDenied".to_owned()),
            ..good()
        };
        let finding = one(CHECK_TLS_ONLY, &unknown, &expect());
        assert_eq!(finding.state, CheckState::Unknown);
        assert!(finding.what.contains("AccessDenied"));
    }

    #[test]
    fn a_malformed_policy_is_reported_as_unreadable_not_a_panic() {
        for text in [
            "{not json",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":"Allow everyone"}"#,
            r#"{"Statement":[1, null, "x", {"Effect":7,"Principal":{"AWS":3},"Condition":[]}]}"#,
        ] {
            let posture = BucketPosture {
                policy: Probe::Known(text.to_owned()),
                policy_is_public: Probe::Unknown("not supported".to_owned()),
                ..good()
            };
            let findings = bucket_findings(BUCKET, &posture, &expect());
            let tls = one(CHECK_TLS_ONLY, &posture, &expect());
            let public = one(CHECK_POLICY_PUBLIC, &posture, &expect());
            if text.starts_with(r#"{"Statement":["#) {
                // Readable, with statements of the wrong shape: neither public nor TLS-only.
                passed(&public);
                failed(&tls, Severity::Medium);
                continue;
            }
            for finding in [&tls, &public] {
                assert_eq!(finding.state, CheckState::Unknown, "{text}: {finding:#?}");
                assert!(finding.what.contains("could not be read"), "{finding:#?}");
            }
            assert!(
                !findings.iter().any(|f| f.is_at_least(Severity::Low)),
                "{findings:#?}"
            );
        }
        // With S3 saying "not public", the public check still passes.
        let posture = BucketPosture {
            policy: Probe::Known("{not json".to_owned()),
            ..good()
        };
        passed(&one(CHECK_POLICY_PUBLIC, &posture, &expect()));
    }

    #[test]
    fn versioning_not_enabled_is_medium() {
        passed(&one(CHECK_VERSIONING, &good(), &expect()));
        for (versioning, says) in [
            (Probe::Known(None), "never enabled"),
            (Probe::Known(Some("Suspended".to_owned())), "suspended"),
            (Probe::Absent, "does not keep versions"),
        ] {
            let posture = BucketPosture {
                versioning,
                ..good()
            };
            let finding = one(CHECK_VERSIONING, &posture, &expect());
            failed(&finding, Severity::Medium);
            assert!(finding.what.contains(says), "{finding:#?}");
            assert!(finding
                .fix
                .unwrap()
                .contains("aws s3api put-bucket-versioning --bucket backups"));
        }
    }

    #[test]
    fn object_lock_missing_is_high_when_configured_else_low() {
        passed(&one(CHECK_OBJECT_LOCK, &good(), &expect()));
        for lock in [Probe::Absent, Probe::Known(ObjectLockSettings::default())] {
            let posture = BucketPosture {
                object_lock: lock,
                ..good()
            };
            let configured = one(CHECK_OBJECT_LOCK, &posture, &expect());
            failed(&configured, Severity::High);
            assert!(configured.what.contains("fail"), "{configured:#?}");
            assert!(configured
                .fix
                .unwrap()
                .contains("aws s3api put-object-lock-configuration --bucket backups"));

            let not_configured = BucketExpectations {
                object_lock_configured: false,
                ..expect()
            };
            let advice = one(CHECK_OBJECT_LOCK, &posture, &not_configured);
            failed(&advice, Severity::Low);
            assert!(advice.fix.unwrap().contains("immutable"));
        }
    }

    #[test]
    fn object_lock_enabled_but_unused_is_low() {
        let unused = BucketExpectations {
            object_lock_configured: false,
            ..expect()
        };
        let no_default = BucketPosture {
            object_lock: Probe::Known(ObjectLockSettings {
                enabled: true,
                ..Default::default()
            }),
            ..good()
        };
        failed(&one(CHECK_OBJECT_LOCK, &no_default, &unused), Severity::Low);
        // A default retention locks backups even without BACKUP_S3_OBJECT_LOCK.
        passed(&one(CHECK_OBJECT_LOCK, &good(), &unused));
        // BACKUP_S3_OBJECT_LOCK locks them without a default retention.
        passed(&one(CHECK_OBJECT_LOCK, &no_default, &expect()));
    }

    fn with_rules(rules: Vec<LifecycleRule>) -> BucketPosture {
        BucketPosture {
            lifecycle: Probe::Known(rules),
            ..good()
        }
    }

    fn failures(findings: &[Finding], severity: Severity) -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.state == CheckState::Fail && f.severity == severity)
            .collect()
    }

    #[test]
    fn an_expiration_sooner_than_the_retention_is_high() {
        let expire = |prefix: Option<&str>, days: u32| LifecycleRule {
            id: Some("expire".to_owned()),
            enabled: true,
            prefix: prefix.map(str::to_owned),
            expiration_days: Some(days),
            ..Default::default()
        };
        let mut rules = match good().lifecycle {
            Probe::Known(rules) => rules,
            _ => unreachable!(),
        };
        // Whole bucket, the backups' prefix, part of it, or a shorter prefix covering it.
        for prefix in [None, Some("db/"), Some("db/postgres/"), Some("d")] {
            rules.push(expire(prefix, 7));
            let findings = of(CHECK_LIFECYCLE, &with_rules(rules.clone()), &expect());
            let high = failures(&findings, Severity::High);
            assert_eq!(high.len(), 1, "{prefix:?}: {findings:#?}");
            assert!(high[0].what.contains("7 days"), "{:#?}", high[0]);
            assert!(high[0].what.contains("30-day retention"), "{:#?}", high[0]);
            rules.pop();
        }
        // Long enough, disabled, elsewhere, or for tagged objects only: fine.
        for rule in [
            expire(None, 30),
            expire(None, 400),
            LifecycleRule {
                enabled: false,
                ..expire(None, 1)
            },
            expire(Some("logs/"), 1),
            expire(Some("db-old/"), 1),
            LifecycleRule {
                tag_filtered: true,
                ..expire(None, 1)
            },
        ] {
            rules.push(rule.clone());
            let findings = of(CHECK_LIFECYCLE, &with_rules(rules.clone()), &expect());
            assert!(
                failures(&findings, Severity::High).is_empty(),
                "{rule:?}: {findings:#?}"
            );
            for finding in &findings {
                passed(finding);
            }
            rules.pop();
        }
        // Without a prefix every rule touches the backups.
        let no_prefix = BucketExpectations {
            prefix: None,
            ..expect()
        };
        rules.push(expire(Some("logs/"), 1));
        let findings = of(CHECK_LIFECYCLE, &with_rules(rules.clone()), &no_prefix);
        assert_eq!(
            failures(&findings, Severity::High).len(),
            1,
            "{findings:#?}"
        );
        // A fixed expiration date deletes everything.
        rules.pop();
        rules.push(LifecycleRule {
            expiration_date: Some("2030-01-01T00:00:00Z".to_owned()),
            ..expire(None, 60)
        });
        let findings = of(CHECK_LIFECYCLE, &with_rules(rules), &expect());
        let high = failures(&findings, Severity::High);
        assert_eq!(high.len(), 1, "{findings:#?}");
        assert!(high[0].what.contains("2030-01-01"));
    }

    #[test]
    fn missing_housekeeping_rules_are_low() {
        // No lifecycle configuration on a versioned bucket: two low findings.
        let posture = BucketPosture {
            lifecycle: Probe::Absent,
            ..good()
        };
        let findings = of(CHECK_LIFECYCLE, &posture, &expect());
        assert_eq!(findings.len(), 3, "{findings:#?}");
        passed(&findings[0]);
        let low = failures(&findings, Severity::Low);
        assert_eq!(low.len(), 2, "{findings:#?}");
        assert!(low[0].what.contains("incomplete multipart"));
        let fix = low[0].fix.clone().unwrap();
        assert!(
            fix.starts_with("aws s3api put-bucket-lifecycle-configuration --bucket backups"),
            "{fix}"
        );
        assert!(fix.contains(r#""Prefix":"db/""#), "{fix}");
        assert!(low[1].what.contains("old ones"));
        assert!(low[1]
            .fix
            .clone()
            .unwrap()
            .contains("NoncurrentVersionExpiration"));

        // Unversioned: no old versions to expire, so no finding about them.
        let unversioned = BucketPosture {
            lifecycle: Probe::Absent,
            versioning: Probe::Known(None),
            ..good()
        };
        let findings = of(CHECK_LIFECYCLE, &unversioned, &expect());
        assert_eq!(findings.len(), 2, "{findings:#?}");
        assert_eq!(failures(&findings, Severity::Low).len(), 1);

        // Housekeeping for a part of the backups only does not count; existing rules make the
        // fix an edit rather than a replacement.
        let partial = with_rules(vec![LifecycleRule {
            id: Some("part".to_owned()),
            enabled: true,
            prefix: Some("db/postgres/".to_owned()),
            noncurrent_days: Some(30),
            abort_incomplete_days: Some(7),
            ..Default::default()
        }]);
        let findings = of(CHECK_LIFECYCLE, &partial, &expect());
        let low = failures(&findings, Severity::Low);
        assert_eq!(low.len(), 2, "{findings:#?}");
        assert!(low[0].fix.clone().unwrap().contains("replaces all rules"));
    }

    #[test]
    fn expectations_prefix_slashes_do_not_matter() {
        for prefix in [Some("db"), Some("/db/"), Some("db/")] {
            let expect = BucketExpectations {
                prefix: prefix.map(str::to_owned),
                ..expect()
            };
            assert_eq!(backup_space(&expect), "db/");
        }
        assert_eq!(
            backup_space(&BucketExpectations {
                prefix: Some("/".to_owned()),
                ..expect()
            }),
            ""
        );
    }
}
