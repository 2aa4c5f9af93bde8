//! One backup job: a source into every destination, then its follow-up steps.

use crate::checks::Verification;
use crate::drill::Drill;
use backup_core::{
    run_backup_to_all, BackupKind, BackupOptions, BackupReport, CoreError, DestinationResult,
    Destinations, ProgressFn, RunStatus, Source,
};

/// What to run besides the backup itself.
#[derive(Debug, Clone, Default)]
pub struct BackupJob {
    /// How the backup is made (name prefix, compression, keys).
    pub options: BackupOptions,
    /// Copy the committed backup to `<kind>/latest/` on each destination where it committed,
    /// replacing the previous copy (as `backup-redis.sh` kept `redis/latest/`).
    pub publish_latest: Option<BackupKind>,
}

/// What became of one job.
#[derive(Debug)]
pub struct BackupRun {
    /// Per destination, in the order of the [`Destinations`]: its name and its result.
    pub results: Vec<(String, DestinationResult)>,
    /// The key of the `latest/` copy, when one was made.
    pub latest: Option<String>,
    /// Follow-up steps that failed, one line each (`s3: redis/latest/ copy: ...`).
    pub step_failures: Vec<String>,
    /// Whether the job asked for a `latest/` copy.
    pub latest_requested: bool,
    /// The re-read of each stored copy, when the job's caller verified them
    /// ([`verify_run`](crate::verify_run)).
    pub verification: Vec<Verification>,
    /// Warnings of the follow-up steps (a log file retention could not delete).
    pub warnings: Vec<String>,
    /// The restore drill, when one ran ([`database_drill`](crate::database_drill),
    /// [`redis_drill`](crate::redis_drill)); a failed one fails the run.
    pub drill: Option<Box<Drill>>,
}

/// Runs `job` with `source` into every destination (one pass over the source), then its
/// follow-up steps. Fails only when the source failed (nothing is committed anywhere then);
/// what failed on single destinations is in the [`BackupRun`].
pub async fn back_up(
    source: &mut dyn Source,
    destinations: &Destinations,
    job: &BackupJob,
    progress: Option<ProgressFn>,
) -> Result<BackupRun, CoreError> {
    let sinks = destinations.sinks();
    let results = run_backup_to_all(source, &sinks, &job.options, progress).await?;
    let mut latest = None;
    let mut step_failures = Vec::new();
    if let Some(kind) = job.publish_latest {
        for (name, copy) in destinations.publish_latest(kind, &results).await {
            match copy {
                Ok(copy) => {
                    tracing::info!("updated {copy} on {name}");
                    latest.get_or_insert(copy);
                }
                Err(e) => {
                    let folder = kind.latest_folder();
                    tracing::error!("could not update {folder} on {name}: {e}");
                    step_failures.push(format!("{name}: {folder} copy: {e}"));
                }
            }
        }
    }
    let names = destinations.iter().map(|d| d.name().to_owned());
    Ok(BackupRun {
        results: names.zip(results).collect(),
        latest,
        step_failures,
        latest_requested: job.publish_latest.is_some(),
        verification: Vec::new(),
        warnings: Vec::new(),
        drill: None,
    })
}

impl BackupRun {
    /// The first committed backup, if any.
    pub fn committed(&self) -> Option<&BackupReport> {
        self.results
            .iter()
            .find_map(|(_, r)| r.result.as_ref().ok())
    }

    /// Every failure, one line each: destinations where the backup failed, then follow-up
    /// steps.
    pub fn failures(&self) -> Vec<String> {
        let failed = self.results.iter().filter_map(|(name, r)| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("{name} ({}): {e}", r.destination))
        });
        let drill = self.drill.as_ref().filter(|d| !d.ok).map(|d| d.summary());
        failed
            .chain(self.step_failures.iter().cloned())
            .chain(drill)
            .collect()
    }

    /// [`RunStatus::Success`] when committed everywhere with every follow-up step done,
    /// [`RunStatus::Partial`] when committed somewhere, [`RunStatus::Failed`] when nowhere
    /// or when the restore drill failed (the backup does not restore as it should).
    pub fn status(&self) -> RunStatus {
        if self.drill.as_ref().is_some_and(|d| !d.ok) {
            return RunStatus::Failed;
        }
        match (self.committed(), self.failures().is_empty()) {
            (Some(_), true) => RunStatus::Success,
            (Some(_), false) => RunStatus::Partial,
            (None, _) => RunStatus::Failed,
        }
    }

    /// The run as one JSON document: the object, its manifest, each destination, and the
    /// `latest/` copy (`latest_object`, `null` when none was made or asked for: the same
    /// fields whatever the flags).
    pub fn to_json(&self) -> serde_json::Value {
        let committed = self.committed();
        let per_destination: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "destination": name,
                    "description": r.destination,
                    "ok": r.result.is_ok(),
                    "error": r.result.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect();
        serde_json::json!({
            "object": committed.map(|r| r.key.clone()),
            "manifest_object": committed.map(|r| r.manifest_key.clone()),
            "destinations": per_destination,
            "elapsed_seconds": committed.map(|r| r.elapsed.as_secs_f64()),
            "manifest": committed.map(|r| &r.manifest),
            "latest_object": self.latest,
            "verification": self.verification,
            "warnings": self.warnings,
            "drill": self.drill,
        })
    }
}
