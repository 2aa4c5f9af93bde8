//! Running one backup into every destination and reporting the result, shared by the backup
//! binaries: progress bar, a log line per destination, the object name (or `--json`) on stdout,
//! and the exit status (0 everywhere, 1 somewhere, 2 nowhere).

use backup_core::{
    run_backup_to_all, BackupOptions, BackupReport, DestinationResult, Destinations, Source,
};

use crate::common::{self, CommonArgs};
use crate::exit::{CliError, ExitStatus};

/// Runs `source` once into every destination (one pass), with a progress bar labelled
/// `label`. Fails (exit 2) only when the source failed; per-destination failures are in the
/// results.
pub async fn run_to_all(
    common: &CommonArgs,
    destinations: &Destinations,
    source: &mut dyn Source,
    options: &BackupOptions,
    label: &str,
) -> Result<Vec<DestinationResult>, CliError> {
    let sinks = destinations.sinks();
    let progress = common.progress(None, label);
    let results = run_backup_to_all(
        source,
        &sinks,
        options,
        progress.as_ref().map(|(_, f)| f.clone()),
    )
    .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    results.map_err(CliError::failure)
}

/// The destinations' descriptions, joined for a log line.
pub fn describe(destinations: &Destinations) -> String {
    destinations
        .iter()
        .map(|d| d.sink().describe())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The first committed backup, if any.
pub fn committed(results: &[DestinationResult]) -> Option<&BackupReport> {
    results.iter().find_map(|r| r.result.as_ref().ok())
}

/// Logs each destination's outcome, prints the object name (or, with `json`, a document with
/// the object, its manifest, each destination and the `extra` fields), and maps the results
/// plus `more_failures` (later steps that failed on a destination, e.g. the `redis/latest/`
/// copy) to the exit status. `raw` names the raw stream in log lines (`dump`, `RDB`).
pub fn report(
    destinations: &Destinations,
    results: &[DestinationResult],
    raw: &str,
    json: bool,
    mut more_failures: Vec<String>,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<ExitStatus, CliError> {
    let mut failures = Vec::new();
    for (destination, outcome) in destinations.iter().zip(results) {
        match &outcome.result {
            Ok(report) => {
                let m = &report.manifest;
                tracing::info!(
                    "backup complete on {}: {} ({} from {} of {raw}, {:.1}s, key id {})",
                    outcome.destination,
                    report.key,
                    common::human_bytes(m.stored_bytes),
                    common::human_bytes(m.raw_bytes),
                    report.elapsed.as_secs_f64(),
                    m.key_id().unwrap_or("-")
                );
            }
            Err(e) => {
                tracing::error!("backup failed on {}: {e}", outcome.destination);
                failures.push(format!(
                    "{} ({}): {e}",
                    destination.name(),
                    outcome.destination
                ));
            }
        }
    }
    let committed = committed(results);
    if json {
        let per_destination: Vec<serde_json::Value> = destinations
            .iter()
            .zip(results)
            .map(|(d, r)| {
                serde_json::json!({
                    "destination": d.name(),
                    "description": r.destination,
                    "ok": r.result.is_ok(),
                    "error": r.result.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect();
        let mut doc = serde_json::json!({
            "object": committed.map(|r| r.key.clone()),
            "manifest_object": committed.map(|r| r.manifest_key.clone()),
            "destinations": per_destination,
            "elapsed_seconds": committed.map(|r| r.elapsed.as_secs_f64()),
            "manifest": committed.map(|r| &r.manifest),
        });
        if let Some(map) = doc.as_object_mut() {
            map.extend(extra);
        }
        println!("{doc:#}");
    } else if let Some(report) = committed {
        println!("{}", report.key);
    }
    failures.append(&mut more_failures);
    match (committed, failures.is_empty()) {
        (Some(_), true) => Ok(ExitStatus::Success),
        (Some(_), false) => {
            eprintln!(
                "error: backup stored, but not on every destination: {}",
                failures.join("; ")
            );
            Ok(ExitStatus::Partial)
        }
        (None, _) => Err(CliError::failure(anyhow::anyhow!(
            "backup failed on every destination: {}",
            failures.join("; ")
        ))),
    }
}
