//! Running one backup job and reporting it, shared by the backup binaries: progress bar, a log
//! line per destination, the object name (or `--json`) on stdout, and the exit status (0
//! everywhere, 1 somewhere, 2 nowhere). The job itself is `backup_orchestrate::back_up`.

use backup_core::{Destinations, Source};
use backup_orchestrate::{
    back_up, databases_json, databases_status, BackupJob, BackupRun, DatabaseBackup, RunStatus,
};
use backup_sources::postgres::DatabaseRunPlan;

use crate::common::CommonArgs;
use crate::exit::{CliError, ExitStatus};

/// Runs `job` with `source` into every destination (one pass), with a progress bar labelled
/// `label`. Fails (exit 2) only when the source failed; per-destination failures are in the
/// run.
pub async fn run_job(
    common: &CommonArgs,
    destinations: &Destinations,
    source: &mut dyn Source,
    job: &BackupJob,
    label: &str,
) -> Result<BackupRun, CliError> {
    let progress = common.progress(None, label);
    let run = back_up(
        source,
        destinations,
        job,
        progress.as_ref().map(|(_, f)| f.clone()),
    )
    .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    run.map_err(CliError::failure)
}

/// Logs each destination's outcome, prints the object name (or, with `json`, the run's JSON
/// document), and maps the run to the exit status. `raw` names the raw stream in log lines
/// (`dump`, `RDB`).
pub fn report(run: &BackupRun, raw: &str, json: bool) -> Result<ExitStatus, CliError> {
    for (_, outcome) in &run.results {
        match &outcome.result {
            Ok(report) => {
                let m = &report.manifest;
                tracing::info!(
                    "backup complete on {}: {} ({} from {} of {raw}, {:.1}s, key id {})",
                    outcome.destination,
                    report.key,
                    backup_core::human_bytes(m.stored_bytes),
                    backup_core::human_bytes(m.raw_bytes),
                    report.elapsed.as_secs_f64(),
                    m.key_id().unwrap_or("-")
                );
            }
            Err(e) => tracing::error!("backup failed on {}: {e}", outcome.destination),
        }
    }
    if json {
        println!("{:#}", run.to_json());
    } else if let Some(report) = run.committed() {
        println!("{}", report.key);
    }
    let failures = run.failures().join("; ");
    match run.status() {
        RunStatus::Success => Ok(ExitStatus::Success),
        RunStatus::Partial => {
            eprintln!("error: backup stored, but not on every destination: {failures}");
            Ok(ExitStatus::Partial)
        }
        RunStatus::Failed => Err(CliError::failure(anyhow::anyhow!(
            "backup failed on every destination: {failures}"
        ))),
    }
}

/// [`report`] for a run of several databases: each database's outcome logged, one object name
/// per line (or the run's JSON document), and the exit status of the whole (0 every database
/// everywhere, 1 some, 2 none).
pub fn report_databases(
    plan: &DatabaseRunPlan,
    backups: &[DatabaseBackup],
    json: bool,
) -> Result<ExitStatus, CliError> {
    let mut failures = Vec::new();
    for backup in backups {
        match &backup.outcome {
            Ok(run) => {
                for (_, outcome) in &run.results {
                    match &outcome.result {
                        Ok(r) => tracing::info!(
                            "database {}: backup complete on {}: {} ({})",
                            backup.database,
                            outcome.destination,
                            r.key,
                            backup_core::human_bytes(r.manifest.stored_bytes)
                        ),
                        Err(e) => tracing::error!(
                            "database {}: backup failed on {}: {e}",
                            backup.database,
                            outcome.destination
                        ),
                    }
                }
                if !run.failures().is_empty() {
                    failures.push(format!(
                        "{}: {}",
                        backup.database,
                        run.failures().join("; ")
                    ));
                }
                if let (false, Some(r)) = (json, run.committed()) {
                    println!("{}", r.key);
                }
            }
            Err(e) => failures.push(format!("{}: {e}", backup.database)),
        }
    }
    if json {
        println!("{:#}", databases_json(plan, backups));
    }
    let failures = failures.join("; ");
    match databases_status(backups) {
        RunStatus::Success => Ok(ExitStatus::Success),
        RunStatus::Partial => {
            eprintln!("error: not every database was backed up everywhere: {failures}");
            Ok(ExitStatus::Partial)
        }
        RunStatus::Failed => Err(CliError::failure(anyhow::anyhow!(
            "no database was backed up: {failures}"
        ))),
    }
}
