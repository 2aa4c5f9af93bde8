//! The report of a `backup-all` run: what each component did, the checks, the disks, and the
//! exit code; stored as JSON on every destination beside the run's log, and read back by
//! `backup-status`.

use std::collections::BTreeMap;

use backup_core::layout::{REPORTS_FOLDER, RUN_LOGS_FOLDER};
use backup_core::{Destinations, RunStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::{Disk, Health, Verification};
use crate::components::{ComponentResult, Outcome};
use crate::notify::{Notification, Notifier, NotifyStatus};

/// The version of the report's format.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// The largest report `backup-status` reads.
pub const REPORT_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`REPORT_FORMAT_VERSION`].
    pub format_version: u32,
    /// `YYYYMMDD_HHMMSS` of the start, as in the report's and the log's names.
    pub run_id: String,
    /// The host the run ran on.
    pub host: String,
    /// The program and its version.
    pub tool: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How long it took, seconds.
    pub duration_seconds: f64,
    /// `success`, `partial` or `failure`.
    pub status: String,
    /// The exit code: 0 success, 1 partial, 2 failure, 3 unexpected error.
    pub exit_code: i32,
    /// Each component, in order (database, redis, config, logs).
    pub components: Vec<ComponentReport>,
    /// The services' health, checked after the backups.
    #[serde(default)]
    pub health: Vec<Health>,
    /// The backup and log disks.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Retention applied after the backups (`null` when skipped).
    #[serde(default)]
    pub retention: Option<serde_json::Value>,
    /// Warnings of the run (disk space, health, unreadable files, log retention).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The webhook's delivery, when one was due.
    #[serde(default)]
    pub notification: Option<serde_json::Value>,
}

/// What one component did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// `database`, `redis`, `config` or `logs`.
    pub component: String,
    /// `success`, `partial`, `failed` or `skipped`.
    pub status: String,
    /// How long it took, seconds.
    pub elapsed_seconds: f64,
    /// Why it did not succeed.
    #[serde(default)]
    pub error: Option<String>,
    /// Why it was skipped.
    #[serde(default)]
    pub skipped_because: Option<String>,
    /// Bytes read from the source.
    #[serde(default)]
    pub raw_bytes: Option<u64>,
    /// Bytes stored (compressed, encrypted).
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    /// `raw_bytes / stored_bytes`.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// The object stored, per destination where it committed.
    #[serde(default)]
    pub objects: BTreeMap<String, String>,
    /// Destinations where it failed, with the error.
    #[serde(default)]
    pub failed_destinations: BTreeMap<String, String>,
    /// The re-read of each stored copy.
    #[serde(default)]
    pub verification: Vec<Verification>,
    /// The restore drill, when one ran.
    #[serde(default)]
    pub drill: Option<serde_json::Value>,
    /// The backup's manifest (source facts, compression, key id).
    #[serde(default)]
    pub manifest: Option<serde_json::Value>,
    /// The component's warnings (unreadable files, live files, log retention).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ComponentReport {
    /// The report of `result`.
    pub fn new(result: &ComponentResult) -> Self {
        let mut report = Self {
            component: result.name.clone(),
            status: result.status_name().to_owned(),
            elapsed_seconds: result.elapsed.as_secs_f64(),
            error: result.error(),
            skipped_because: None,
            raw_bytes: None,
            stored_bytes: None,
            ratio: None,
            objects: BTreeMap::new(),
            failed_destinations: BTreeMap::new(),
            verification: Vec::new(),
            drill: None,
            manifest: None,
            warnings: Vec::new(),
        };
        match &result.outcome {
            Outcome::Skipped(why) => report.skipped_because = Some(why.clone()),
            Outcome::Ran(run) => {
                report.verification.clone_from(&run.verification);
                report.warnings.clone_from(&run.warnings);
                report.drill = run
                    .drill
                    .as_ref()
                    .and_then(|d| serde_json::to_value(d).ok());
                for (name, outcome) in &run.results {
                    match &outcome.result {
                        Ok(stored) => {
                            report.objects.insert(name.clone(), stored.key.clone());
                        }
                        Err(e) => {
                            report
                                .failed_destinations
                                .insert(name.clone(), e.to_string());
                        }
                    }
                }
                if let Some(committed) = run.committed() {
                    let m = &committed.manifest;
                    report.raw_bytes = Some(m.raw_bytes);
                    report.stored_bytes = Some(m.stored_bytes);
                    report.ratio =
                        (m.stored_bytes > 0).then(|| m.raw_bytes as f64 / m.stored_bytes as f64);
                    report.manifest = serde_json::to_value(m).ok();
                    if let Some(serde_json::Value::Array(found)) = m.source.details.get("warnings")
                    {
                        report
                            .warnings
                            .extend(found.iter().filter_map(|w| w.as_str().map(str::to_owned)));
                    }
                }
            }
            Outcome::Failed(_) | Outcome::TimedOut(_) => {}
        }
        report
    }
}

/// `success`, `partial` or `failure` for a run's status (`failure` when nothing ran).
pub fn status_word(status: Option<RunStatus>) -> &'static str {
    match status {
        Some(RunStatus::Success) => "success",
        Some(RunStatus::Partial) => "partial",
        Some(RunStatus::Failed) | None => "failure",
    }
}

/// `YYYYMMDD_HHMMSS` of `at`, as names carry it.
pub fn run_id(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d_%H%M%S").to_string()
}

/// The report's key: `reports/orchestration/backup_report_YYYYMMDD_HHMMSS.json`.
pub fn report_key(run_id: &str) -> String {
    format!("{REPORTS_FOLDER}backup_report_{run_id}.json")
}

/// The run log's key: `logs/orchestration/backup_YYYYMMDD_HHMMSS.log`.
pub fn run_log_key(run_id: &str) -> String {
    format!("{RUN_LOGS_FOLDER}backup_{run_id}.log")
}

/// Appends `log` to `backup_{run_id}.log` in `dir` (the local log directory, so the run's
/// log is also kept beside the application's), creating it with mode 0640.
///
/// # Errors
/// When the file cannot be opened or written.
pub fn append_run_log(
    dir: &std::path::Path,
    run_id: &str,
    log: &[u8],
) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("backup_{run_id}.log"));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)?;
    file.write_all(log)?;
    file.sync_all()?;
    Ok(path)
}

pub use backup_core::host_name;

impl RunReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// One paragraph for a chat message: the status, each component with its size or error,
    /// and the warnings.
    pub fn text(&self) -> String {
        let headline = match self.status.as_str() {
            "success" => "Backup succeeded",
            "partial" => "Backup PARTIALLY failed",
            _ => "Backup FAILED",
        };
        let parts: Vec<String> = self
            .components
            .iter()
            .map(|c| match (c.status.as_str(), c.stored_bytes, &c.error) {
                ("skipped", ..) => format!("{} skipped", c.component),
                ("success", Some(bytes), _) => format!(
                    "{} ok ({}, {:.0} s)",
                    c.component,
                    backup_core::human_bytes(bytes),
                    c.elapsed_seconds
                ),
                (status, _, Some(error)) => format!("{} {status}: {error}", c.component),
                (status, ..) => format!("{} {status}", c.component),
            })
            .collect();
        let mut text = format!(
            "{headline} on {} (run {}, {:.0} s, exit {}): {}.",
            self.host,
            self.run_id,
            self.duration_seconds,
            self.exit_code,
            parts.join("; ")
        );
        if !self.warnings.is_empty() {
            text.push_str(&format!(" Warnings: {}.", self.warnings.join("; ")));
        }
        text
    }

    /// The closing lines of a run: one per component (status, time, size and object, or the
    /// error or why it was skipped), then the overall status.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .components
            .iter()
            .map(|c| {
                let what = match (&c.skipped_because, &c.error, c.stored_bytes) {
                    (Some(why), ..) => why.clone(),
                    (None, Some(error), _) => error.clone(),
                    (None, None, Some(bytes)) => format!(
                        "{} stored ({})",
                        backup_core::human_bytes(bytes),
                        c.objects.values().next().map_or("", String::as_str)
                    ),
                    (None, None, None) => String::new(),
                };
                format!(
                    "{:<8} {:<8} {:>6.1}s  {what}",
                    c.component, c.status, c.elapsed_seconds
                )
            })
            .collect();
        lines.push(format!(
            "backup-all {} in {:.1}s (exit {}){}",
            self.status,
            self.duration_seconds,
            self.exit_code,
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warning(s)", self.warnings.len())
            }
        ));
        lines
    }

    /// The webhook message: the status, [`text`](Self::text), and per component its status,
    /// figures, objects and error.
    pub fn notification(&self) -> Notification {
        let status = match self.status.as_str() {
            "success" => NotifyStatus::Success,
            "partial" => NotifyStatus::Partial,
            _ => NotifyStatus::Failure,
        };
        let components: Vec<serde_json::Value> = self
            .components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "component": c.component,
                    "status": c.status,
                    "elapsed_seconds": c.elapsed_seconds,
                    "raw_bytes": c.raw_bytes,
                    "stored_bytes": c.stored_bytes,
                    "objects": c.objects,
                    "error": c.error,
                })
            })
            .collect();
        Notification {
            status,
            text: self.text(),
            components: serde_json::Value::Array(components),
        }
    }

    /// Announces the run through `notifier` (as its `BACKUP_NOTIFY_ON` says) and records the
    /// delivery in the report; a failed delivery is a warning, never a failed run.
    pub async fn announce(&mut self, notifier: &Notifier) {
        let delivery = notifier.notify(&self.notification()).await;
        if let Some(error) = &delivery.error {
            self.warnings
                .push(format!("the webhook notification failed: {error}"));
        }
        self.notification = Some(delivery.to_json());
    }

    /// Stores the report and `log` (the run's log lines) on every destination, replacing
    /// nothing (a second run in the same second gets its own names). Returns what failed, one
    /// line per destination and object.
    pub async fn store(&self, destinations: &Destinations, log: &[u8]) -> Vec<String> {
        let mut failed = Vec::new();
        let body = match serde_json::to_vec_pretty(self) {
            Ok(body) => body,
            Err(e) => return vec![format!("the report could not be serialised: {e}")],
        };
        for destination in destinations.iter() {
            let sink = destination.sink();
            for (key, data) in [
                (report_key(&self.run_id), body.clone()),
                (run_log_key(&self.run_id), log.to_vec()),
            ] {
                let written = sink
                    .put_with(&key, data.into(), backup_storage::WriteMode::Create)
                    .await;
                match written {
                    Ok(_) => tracing::debug!("stored {key} on {}", destination.name()),
                    Err(e) => failed.push(format!("{}: {key}: {e}", destination.name())),
                }
            }
        }
        failed
    }
}
