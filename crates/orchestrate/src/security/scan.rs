//! The whole scan: its settings (`[security]`), running every check, and the report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::layout::BackupKind;
use backup_core::reencrypt::{key_usage, KeyUsage};
use backup_core::{list_backups, BackupStatus, CoreError, Destinations};
use backup_crypto::Keyring;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CheckState, Finding, Severity};
use crate::notify::{Notification, NotifyStatus};

/// Where security reports are stored on every destination.
pub const SECURITY_REPORTS_FOLDER: &str = "reports/security/";

/// How old the newest backup of a kind may be before it is stale: a nightly run and two hours.
pub const FRESHNESS: Duration = Duration::from_secs(26 * 3600);

/// The settings of `security-scan` (`[security]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Scanner command lines (`BACKUP_SECURITY_SCANNERS`: separated by `;` or new lines),
    /// e.g. `trivy image app:latest --format json`.
    pub scanners: Vec<String>,
    /// How long one scanner may run (`BACKUP_SECURITY_SCANNER_TIMEOUT`).
    pub scanner_timeout: Duration,
    /// The rotation period of the key (`BACKUP_KEY_MAX_AGE_DAYS`).
    pub key_max_age_days: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            scanners: Vec::new(),
            scanner_timeout: Duration::from_secs(600),
            key_max_age_days: super::local::DEFAULT_KEY_MAX_AGE_DAYS,
        }
    }
}

impl Component for SecurityConfig {
    const SECTION: Section = Section {
        table: "security",
        about: "security-scan: vulnerability scanners and the key rotation period",
        settings: &[
            Setting::new(
                "BACKUP_SECURITY_SCANNERS",
                "scanners",
                "scanner command lines with JSON output, separated by ';': trivy image NAME \
                 --format json; grype NAME -o json; cargo audit --json; npm audit --json",
            ),
            Setting::new(
                "BACKUP_SECURITY_SCANNER_TIMEOUT",
                "scanner_timeout",
                "how long one scanner may run: 10m, 1h, or seconds",
            )
            .default("10m"),
            Setting::new(
                "BACKUP_KEY_MAX_AGE_DAYS",
                "key_max_age_days",
                "rotation period of the encryption key, in days",
            )
            .default("90"),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let defaults = Self::default();
        let scanners = config
            .get("BACKUP_SECURITY_SCANNERS")
            .map(|value| {
                value
                    .split([';', '\n'])
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let scanner_timeout = match config.get("BACKUP_SECURITY_SCANNER_TIMEOUT") {
            None => defaults.scanner_timeout,
            Some(value) => crate::run_config::parse_duration(value).map_err(|e| {
                CoreError::Config(format!("BACKUP_SECURITY_SCANNER_TIMEOUT={value:?}: {e}"))
            })?,
        };
        let key_max_age_days = config
            .number::<u32>("BACKUP_KEY_MAX_AGE_DAYS")?
            .unwrap_or(defaults.key_max_age_days);
        if key_max_age_days == 0 {
            return Err(CoreError::Config(
                "BACKUP_KEY_MAX_AGE_DAYS must be at least 1".into(),
            ));
        }
        Ok(Self {
            scanners,
            scanner_timeout,
            key_max_age_days,
        })
    }
}

/// Everything the scan looks at, from the configuration.
#[derive(Debug, Clone)]
pub struct ScanInputs {
    /// The key file.
    pub key_file: PathBuf,
    /// The keyring directory.
    pub keyring_dir: PathBuf,
    /// The user that runs backups (this process's effective user).
    pub euid: u32,
    /// Paths that config and log backups archive.
    pub backed_up: Vec<PathBuf>,
    /// The local backup directory, if configured.
    pub local_dir: Option<PathBuf>,
    /// Whether Redis backups may be unencrypted (`BACKUP_REDIS_ENCRYPT=false`).
    pub redis_plaintext: bool,
    /// Whether an S3 destination is configured, and with Object Lock.
    pub s3: bool,
    /// Whether uploads are locked (`BACKUP_S3_OBJECT_LOCK`).
    pub object_lock: bool,
    /// Whether `backup-all` prunes with these credentials (`BACKUP_PRUNE`).
    pub prune: bool,
    /// The retention days, which lifecycle rules must not undercut.
    pub retention_days: u32,
    /// The kinds of backup that `backup-all` makes (not skipped), for freshness.
    pub kinds: Vec<BackupKind>,
    /// The configuration file, and the settings in it that hold secrets.
    pub config_file: Option<PathBuf>,
    /// See [`Self::config_file`].
    pub config_secrets: Vec<String>,
    /// The `[security]` settings.
    pub security: SecurityConfig,
}

impl ScanInputs {
    /// The inputs `config` gives, for the configuration file `config_file` (whose settings
    /// that hold secrets are `config_secrets`); the effective user is this process's.
    ///
    /// # Errors
    /// When a component's settings are invalid.
    pub fn from_config(
        config: &Config,
        config_file: Option<PathBuf>,
        config_secrets: Vec<String>,
    ) -> backup_core::Result<Self> {
        use backup_sources::files::{FilesConfig, FilesKind};
        let pipeline: backup_core::PipelineConfig = config.component()?;
        let files: FilesConfig = config.component()?;
        let local: backup_core::LocalConfig = config.component()?;
        let s3: backup_core::S3Settings = config.component()?;
        let redis: backup_sources::redis::RedisSettings = config.component()?;
        let run: crate::RunConfig = config.component()?;
        let retention: backup_core::RetentionConfig = config.component()?;
        // COMPONENTS and BUILT_IN name the same four kinds in the same order.
        let kinds = crate::COMPONENTS
            .iter()
            .zip(BackupKind::BUILT_IN)
            .filter(|(name, _)| !run.skip.iter().any(|s| s == *name))
            .map(|(_, kind)| kind)
            .collect();
        Ok(Self {
            key_file: pipeline.key_file.clone(),
            keyring_dir: pipeline.keyring_directory(),
            euid: nix::unistd::geteuid().as_raw(),
            backed_up: [files.paths(FilesKind::Config), files.paths(FilesKind::Logs)].concat(),
            local_dir: local.dir,
            redis_plaintext: !redis.encrypt,
            s3: s3.config.is_some(),
            object_lock: s3.config.as_ref().is_some_and(|c| c.object_lock.is_some()),
            prune: run.prune,
            retention_days: retention.policy.within_days.unwrap_or(0),
            kinds,
            config_file,
            config_secrets,
            security: config.component()?,
        })
    }
}

/// The report of one scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    /// `security_scan_YYYYMMDD_HHMMSS`.
    pub scan_id: String,
    /// The host scanned.
    pub host: String,
    /// When the scan started and ended (UTC).
    pub started_at: DateTime<Utc>,
    /// See [`Self::started_at`].
    pub finished_at: DateTime<Utc>,
    /// Every finding, in the order of the checks.
    pub findings: Vec<Finding>,
    /// The webhook delivery, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<serde_json::Value>,
}

impl ScanReport {
    /// The worst severity of a failed check, if any failed.
    pub fn worst(&self) -> Option<Severity> {
        self.findings
            .iter()
            .filter(|f| f.state == CheckState::Fail)
            .map(|f| f.severity)
            .max()
    }

    /// 0 nothing high or critical, 1 something high, 2 something critical.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Some(Severity::Critical) => 2,
            Some(Severity::High) => 1,
            _ => 0,
        }
    }

    /// The key of the report on a destination:
    /// `reports/security/security_scan_YYYYMMDD_HHMMSS.json`.
    pub fn key(&self) -> String {
        format!("{SECURITY_REPORTS_FOLDER}{}.json", self.scan_id)
    }

    /// The table for people: failures first (worst first), then unknowns, then passes.
    pub fn text(&self) -> String {
        let mut rows: Vec<&Finding> = self.findings.iter().collect();
        rows.sort_by_key(|f| {
            let rank = match f.state {
                CheckState::Fail => 0,
                CheckState::Unknown => 1,
                CheckState::Pass => 2,
            };
            (rank, std::cmp::Reverse(f.severity))
        });
        let mut out = String::new();
        let width = rows.iter().map(|f| f.check.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(out, "{:<8}  {:<width$}  FINDING", "SEVERITY", "CHECK");
        for f in rows {
            let severity = match f.state {
                CheckState::Fail => f.severity.name(),
                CheckState::Unknown => "unknown",
                CheckState::Pass => "ok",
            };
            let _ = writeln!(out, "{severity:<8}  {:<width$}  {}", f.check, f.what);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "{:<8}  {:<width$}  fix: {fix}", "", "");
            }
        }
        let count = |s: Severity| {
            self.findings
                .iter()
                .filter(|f| f.state == CheckState::Fail && f.severity == s)
                .count()
        };
        let _ = writeln!(
            out,
            "\n{} critical, {} high, {} medium, {} low; {} unknown; {} checks passed",
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low),
            self.findings
                .iter()
                .filter(|f| f.state == CheckState::Unknown)
                .count(),
            self.findings
                .iter()
                .filter(|f| f.state == CheckState::Pass)
                .count(),
        );
        out
    }

    /// The webhook message, when something is high or critical.
    pub fn notification(&self) -> Option<Notification> {
        let status = match self.worst()? {
            Severity::Critical => NotifyStatus::Failure,
            Severity::High => NotifyStatus::Partial,
            _ => return None,
        };
        let serious: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.is_at_least(Severity::High))
            .collect();
        let mut text = format!(
            "security-scan on {}: {} high or critical finding(s)",
            self.host,
            serious.len()
        );
        for f in serious.iter().take(10) {
            let _ = write!(text, "\n- [{}] {}: {}", f.severity, f.check, f.what);
        }
        Some(Notification {
            status,
            text,
            components: serde_json::to_value(&serious).unwrap_or_default(),
        })
    }

    /// Stores the report on every destination, replacing nothing; returns what failed.
    pub async fn store(&self, destinations: &Destinations) -> Vec<String> {
        let body = match serde_json::to_vec_pretty(self) {
            Ok(body) => body,
            Err(e) => return vec![format!("the report could not be serialised: {e}")],
        };
        let mut failed = Vec::new();
        for destination in destinations.iter() {
            let written = destination
                .sink()
                .put_with(
                    &self.key(),
                    body.clone().into(),
                    backup_storage::WriteMode::Create,
                )
                .await;
            if let Err(e) = written {
                failed.push(format!("{}: {}: {e}", destination.name(), self.key()));
            }
        }
        failed
    }
}

/// Runs every check. `ring` is the keyring when it could be loaded, `destinations` when any
/// is configured; `bucket` the S3 sink's posture findings (made by the caller, which holds
/// the sink).
pub async fn scan(
    inputs: &ScanInputs,
    ring: Option<&Keyring>,
    destinations: Option<&Destinations>,
    bucket: Vec<Finding>,
    now: DateTime<Utc>,
) -> ScanReport {
    let started_at = Utc::now();
    let mut findings =
        super::local::key_file_findings(&inputs.key_file, inputs.euid, &inputs.backed_up);
    let usage: Option<KeyUsage> = match (ring, destinations) {
        (Some(ring), Some(destinations)) => key_usage(destinations, &BackupKind::BUILT_IN, ring)
            .await
            .ok(),
        _ => None,
    };
    match ring {
        Some(ring) => {
            let since = std::fs::metadata(&inputs.key_file)
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from);
            findings.extend(super::local::keyring_findings(
                ring,
                usage.as_ref(),
                since,
                inputs.security.key_max_age_days,
                now,
            ));
        }
        None => findings.push(Finding::unknown(
            "keyring",
            format!(
                "the keyring (key file and {}) could not be loaded: see the key file findings",
                inputs.keyring_dir.display()
            ),
        )),
    }
    if let Some(dir) = &inputs.local_dir {
        let redis_plaintext = inputs.redis_plaintext;
        let plaintext_ok = move |key: &str| redis_plaintext && key.starts_with("redis/");
        findings.extend(super::local::directory_findings(
            dir,
            inputs.euid,
            &plaintext_ok,
        ));
    }
    findings.extend(super::local::process_findings(inputs.euid));
    findings.extend(super::local::config_file_findings(
        inputs.config_file.as_deref(),
        &inputs.config_secrets,
    ));
    findings.extend(super::local::exposure_findings(
        inputs.s3,
        inputs.object_lock,
        inputs.prune,
    ));
    findings.extend(bucket);
    match destinations {
        Some(destinations) => {
            findings.extend(freshness_findings(destinations, &inputs.kinds, now).await);
            let (found, errors) = crate::status::newest_report(destinations).await;
            let verdict = crate::status::judge(found.as_ref().map(|f| &f.report), now, FRESHNESS);
            findings.push(match verdict.exit_code {
                0 => Finding::pass("freshness.run", verdict.message),
                _ if !errors.is_empty() && found.is_none() => Finding::unknown(
                    "freshness.run",
                    format!("run reports could not be read: {}", errors.join("; ")),
                ),
                _ => Finding::fail(
                    "freshness.run",
                    Severity::High,
                    verdict.message,
                    "see `backup-status` and the newest run log (logs/orchestration/)",
                ),
            });
        }
        None => findings.push(Finding::unknown(
            "freshness",
            "no destination is configured (BACKUP_LOCAL_DIR, BACKUP_S3_BUCKET)",
        )),
    }
    for command in &inputs.security.scanners {
        findings
            .extend(super::scanners::run_scanner(command, inputs.security.scanner_timeout).await);
    }
    ScanReport {
        scan_id: format!("security_scan_{}", started_at.format("%Y%m%d_%H%M%S")),
        host: crate::report::host_name(),
        started_at,
        finished_at: Utc::now(),
        findings,
        notification: None,
    }
}

/// The newest complete backup of each kind, on any destination, against [`FRESHNESS`].
async fn freshness_findings(
    destinations: &Destinations,
    kinds: &[BackupKind],
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let limit = chrono::TimeDelta::from_std(FRESHNESS).unwrap_or(chrono::TimeDelta::hours(26));
    for &kind in kinds {
        let mut newest: Option<DateTime<Utc>> = None;
        let mut errors = Vec::new();
        for destination in destinations.iter() {
            match list_backups(destination.sink(), kind).await {
                Ok(entries) => {
                    let complete = entries
                        .iter()
                        .filter(|e| e.status == BackupStatus::Complete)
                        .map(|e| e.timestamp())
                        .max();
                    newest = newest.max(complete);
                }
                Err(e) => errors.push(format!("{}: {e}", destination.name())),
            }
        }
        let check = format!("freshness.{}", kind.folder());
        out.push(match newest {
            Some(t) if now - t <= limit => Finding::pass(
                check,
                format!(
                    "newest complete {} backup: {}",
                    kind.folder(),
                    t.format("%Y-%m-%d %H:%M UTC")
                ),
            ),
            Some(t) => Finding::fail(
                check,
                Severity::High,
                format!(
                    "the newest complete {} backup is from {} ({} hours ago)",
                    kind.folder(),
                    t.format("%Y-%m-%d %H:%M UTC"),
                    (now - t).num_hours()
                ),
                "check that backup-all runs (cron or the systemd timer) and succeeds: \
                 `backup-status`",
            ),
            None if !errors.is_empty() => {
                Finding::unknown(check, format!("could not list: {}", errors.join("; ")))
            }
            None => Finding::fail(
                check,
                Severity::High,
                format!("there is no complete {} backup", kind.folder()),
                "run backup-all (or skip the component with BACKUP_SKIP_COMPONENTS)",
            ),
        });
    }
    out
}
