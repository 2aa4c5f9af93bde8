//! `backup-status`: the newest `backup-all` run, judged for monitoring.

use std::path::PathBuf;
use std::time::Duration;

use backup_orchestrate::{judge, newest_report, newest_wal, parse_duration, prometheus};
use chrono::Utc;
use clap::Parser;

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Say whether backups are healthy: reads the newest backup-all report from the first
/// reachable destination and prints its summary. Exit 0 when the newest run succeeded and is
/// recent, 1 when it was partial, 2 when it failed, is stale or is missing.
#[derive(Debug, Parser)]
#[command(
    name = "backup-status",
    version,
    after_help = crate::help::BACKUP_STATUS,
    max_term_width = 100
)]
pub struct BackupStatusArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// A newest run that ended longer ago than this is stale (exit 2)
    #[arg(long, value_name = "DURATION", default_value = "26h", value_parser = parse_duration)]
    max_age: Duration,

    /// Print the verdict and the newest report as JSON
    #[arg(long)]
    json: bool,

    /// Also write the figures in node_exporter's textfile format to FILE (atomically)
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
}

/// Runs `backup-status` with parsed arguments.
pub async fn run(args: BackupStatusArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(Vec::new())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let destinations = common::open_destinations(&config, true).await?;
    let (found, errors) = newest_report(&destinations).await;
    for error in &errors {
        tracing::warn!("{error}");
    }
    let now = Utc::now();
    let verdict = judge(found.as_ref().map(|f| &f.report), now, args.max_age);
    let wal = newest_wal(&destinations).await;
    let wal_age = wal.as_ref().map(|(_, at)| (now - *at).num_seconds().max(0));
    if let Some(path) = &args.prometheus {
        let mut text = prometheus(found.as_ref(), &verdict, now);
        if let Some((_, at)) = &wal {
            text.push_str(&format!(
                "# HELP backup_wal_newest_archived_timestamp_seconds When the newest WAL file \
                 was stored.\n# TYPE backup_wal_newest_archived_timestamp_seconds gauge\n\
                 backup_wal_newest_archived_timestamp_seconds {}\n",
                at.timestamp()
            ));
        }
        write_atomically(path, &text).map_err(|e| {
            CliError::usage(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?;
    }
    if args.json {
        let doc = serde_json::json!({
            "state": verdict.state,
            "exit_code": verdict.exit_code,
            "message": verdict.message,
            "destination": found.as_ref().map(|f| &f.destination),
            "report_object": found.as_ref().map(|f| &f.key),
            "last_success_at": found.as_ref().and_then(|f| f.last_success_at),
            "report": found.as_ref().map(|f| &f.report),
            "wal": wal.as_ref().map(|(name, at)| serde_json::json!({
                "newest": name, "stored_at": at, "age_seconds": wal_age,
            })),
        });
        println!("{doc:#}");
    } else {
        println!("{}: {}", verdict.state, verdict.message);
        if let Some(found) = &found {
            for c in &found.report.components {
                let detail = c
                    .error
                    .clone()
                    .or_else(|| c.skipped_because.clone())
                    .or_else(|| c.stored_bytes.map(backup_core::human_bytes))
                    .unwrap_or_default();
                println!("  {:<8} {:<8} {detail}", c.component, c.status);
            }
            for warning in &found.report.warnings {
                println!("  warning: {warning}");
            }
        }
        if let (Some((name, _)), Some(age)) = (&wal, wal_age) {
            println!("  wal      newest archived {name}, {age}s ago");
        }
    }
    Ok(match verdict.exit_code {
        0 => ExitStatus::Success,
        1 => ExitStatus::Partial,
        _ => ExitStatus::Failure,
    })
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`, so the
/// collector never reads half a file.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("backup");
    // Not ending in .prom, so the collector skips it while it is written; unique, so the
    // leftover of a killed run is no obstacle.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp_path = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let (temp, mut file) = backup_storage::atomic::TempFile::create(temp_path, 0o644)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    temp.rename_to(path)
}
