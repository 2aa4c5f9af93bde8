//! Backing up the databases of a [`DatabaseRunPlan`] one after the other, each as a job of its
//! own (its own object, manifest and result), for `backup-database` and embedders.

use backup_core::{CoreError, Destinations, ProgressFn, RunStatus};
use backup_sources::postgres::{DatabaseRunPlan, DumpFormat, PostgresConfig};

use crate::job::{back_up, BackupJob, BackupRun};

/// What became of one database of a run.
#[derive(Debug)]
pub struct DatabaseBackup {
    /// The database.
    pub database: String,
    /// Its job, or why it could not start or failed before committing anywhere.
    pub outcome: Result<BackupRun, CoreError>,
}

impl DatabaseBackup {
    /// The status of this database's backup.
    pub fn status(&self) -> RunStatus {
        match &self.outcome {
            Ok(run) => run.status(),
            Err(_) => RunStatus::Failed,
        }
    }
}

/// Backs up every database of `plan` in turn with `job` (its name prefix replaced by each
/// database's), each into every destination. `progress` makes each database's progress
/// callback from its name. One database failing does not stop the others.
pub async fn back_up_databases(
    plan: &DatabaseRunPlan,
    postgres: &PostgresConfig,
    format: DumpFormat,
    destinations: &Destinations,
    job: &BackupJob,
    progress: &(dyn Fn(&str) -> Option<ProgressFn> + Sync),
) -> Vec<DatabaseBackup> {
    let mut out = Vec::with_capacity(plan.databases.len());
    for planned in &plan.databases {
        tracing::info!(
            "backing up database {} on {}",
            planned.database,
            postgres.connection.endpoint()
        );
        let mut job = job.clone();
        job.options.name_prefix = planned.name_prefix.clone();
        let outcome = match plan.source(postgres, planned, format) {
            Ok(mut source) => {
                back_up(&mut source, destinations, &job, progress(&planned.database)).await
            }
            Err(e) => Err(CoreError::Config(e.to_string())),
        };
        if let Err(e) = &outcome {
            tracing::error!("the backup of database {} failed: {e}", planned.database);
        }
        out.push(DatabaseBackup {
            database: planned.database.clone(),
            outcome,
        });
    }
    out
}

/// The status of a run of several databases: success when every one succeeded, failed when
/// none committed anywhere, else partial.
pub fn databases_status(backups: &[DatabaseBackup]) -> RunStatus {
    let statuses: Vec<RunStatus> = backups.iter().map(DatabaseBackup::status).collect();
    if statuses.iter().all(|s| *s == RunStatus::Success) {
        RunStatus::Success
    } else if statuses.iter().all(|s| *s == RunStatus::Failed) {
        RunStatus::Failed
    } else {
        RunStatus::Partial
    }
}

/// The run as JSON: per database its run's document (as one database's `--json`) or its
/// error, and the databases left out as empty.
pub fn databases_json(plan: &DatabaseRunPlan, backups: &[DatabaseBackup]) -> serde_json::Value {
    let databases: Vec<serde_json::Value> = backups
        .iter()
        .map(|b| {
            serde_json::json!({
                "database": b.database,
                "status": crate::report::status_word(Some(b.status())),
                "error": b.outcome.as_ref().err().map(ToString::to_string),
                "run": b.outcome.as_ref().ok().map(BackupRun::to_json),
            })
        })
        .collect();
    serde_json::json!({
        "run": plan.run,
        "status": crate::report::status_word(Some(databases_status(backups))),
        "databases": databases,
        "skipped_empty": plan.skipped_empty,
    })
}
