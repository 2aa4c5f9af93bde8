//! `restore-database`: list, check and restore PostgreSQL backups.

use std::collections::BTreeMap;
use std::path::Path;

use backup_core::{
    catalog, list_backups, restore_backup, BackupEntry, BackupKind, BackupStatus, RestoreTarget,
    Selection,
};
use backup_crypto::Keyring;
use backup_sources::postgres::{PgConnection, PgDumpCheck, PostgresRestore, RestoreOptions};
use backup_storage::{LocalSink, Sink};
use chrono::NaiveDate;
use clap::{ArgGroup, Parser};

use crate::common::{self, CommonArgs};
use crate::exit::{CliError, ExitStatus};

/// List, verify and restore PostgreSQL backups made by backup-database (or by the old
/// backup-database.sh). A restore runs in one transaction and commits only after the backup's
/// size, SHA-256 and signed manifest were verified: on any error the target is left as it was.
#[derive(Debug, Parser)]
#[command(
    name = "restore-database",
    version,
    after_help = AFTER_HELP,
    max_term_width = 100,
    group(ArgGroup::new("selection").required(true).args(["list", "latest", "date", "file"]))
)]
pub struct RestoreDatabaseArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// List the backups: name, UTC time, size, complete/legacy, key id
    #[arg(long)]
    list: bool,

    /// Restore the newest backup
    #[arg(long)]
    latest: bool,

    /// Restore the newest backup taken on this UTC day
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    date: Option<NaiveDate>,

    /// Restore this backup: an object name from --list, or the path of a backup file
    #[arg(long, value_name = "NAME")]
    file: Option<String>,

    /// Download, verify, decrypt and decompress to the end and check the dump is complete;
    /// touches no database
    #[arg(long)]
    dry_run: bool,

    /// Database to restore into [default: POSTGRES_DB]
    #[arg(long, value_name = "NAME")]
    target_db: Option<String>,

    /// Create the target database if it does not exist
    #[arg(long)]
    create: bool,

    /// Allow restoring over a database that has tables: restore into a scratch database, then
    /// rename the old one to NAME_before_restore_YYYYMMDD_HHMMSS and the scratch one to NAME
    #[arg(long)]
    replace: bool,

    /// With --replace: disconnect other sessions from the target database before renaming it
    #[arg(long, requires = "replace")]
    terminate_connections: bool,

    /// Directory of older key files, to restore backups made with a previous key
    /// [env: BACKUP_KEYRING_DIR]
    #[arg(long, value_name = "DIR")]
    keyring_dir: Option<std::path::PathBuf>,

    /// Machine-readable output (with --list)
    #[arg(long)]
    json: bool,
}

const AFTER_HELP: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME.
Backups without a manifest (made by the old scripts) are listed as `legacy`; they restore by
--file or --latest and are checked by decryption padding, gzip CRC and pg_dump's end marker.

Exit codes: 0 success, 2 restore failed (target unchanged), 3 usage or configuration error.

Examples:
  # What is there?
  restore-database --list
  restore-database --list --json

  # Check the newest backup end to end without touching any database
  restore-database --latest --dry-run

  # Disaster recovery into a new database
  restore-database --latest --target-db randevubu_restored --create

  # Put last Monday's backup in place of the live database, keeping the old one aside
  restore-database --date 2024-01-15 --target-db randevubu --replace --terminate-connections

  # A file copied from elsewhere (its .manifest.json beside it is used when present)
  restore-database --file /tmp/randevubu_backup_20240115_020000.sql.gz.enc --target-db scratch --create";

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like 2024-01-15"))
}

/// Runs `restore-database` with parsed arguments.
pub async fn run(args: RestoreDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let mut extra = BTreeMap::new();
    if let Some(dir) = &args.keyring_dir {
        extra.insert("BACKUP_KEYRING_DIR".to_owned(), dir.display().to_string());
    }
    let settings = args.common.settings(extra)?;

    // `--file PATH` names a file on disk: read it (and its manifest) from its own directory.
    let file_path = args.file.as_deref().map(Path::new).filter(|p| p.is_file());
    let (sink, entries, selection) = if let Some(path) = file_path {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::usage(anyhow::anyhow!("--file {path:?} has no file name")))?;
        let sink = LocalSink::new(dir).map_err(CliError::failure)?;
        let entry = catalog::entry_for_key(&sink, BackupKind::Database, &name)
            .await
            .map_err(CliError::failure)?;
        (sink, vec![entry], Selection::Name(name))
    } else {
        let selection = match (&args.file, args.date) {
            (Some(name), _) => Selection::Name(name.clone()),
            (None, Some(day)) => Selection::Date(day),
            (None, None) => Selection::Latest,
        };
        let sink = common::local_sink(&settings, !args.list)?;
        let entries = list_backups(&sink, BackupKind::Database)
            .await
            .map_err(CliError::failure)?;
        (sink, entries, selection)
    };

    if args.list {
        print_list(&sink, &entries, args.json);
        return Ok(ExitStatus::Success);
    }

    let entry = catalog::select(&entries, &selection).map_err(CliError::failure)?;
    tracing::info!(
        "selected {} ({}, {}, {})",
        entry.key,
        entry.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
        common::human_bytes(entry.size),
        entry.status
    );
    let keyring = if entry.name.encrypted {
        Some(common::load_keyring(&settings)?)
    } else {
        None
    };

    let mut target: Box<dyn RestoreTarget> = if args.dry_run {
        Box::new(PgDumpCheck::new())
    } else {
        let connection = PgConnection::from_env_map(&settings.lookup()).map_err(CliError::usage)?;
        let target_db = args
            .target_db
            .clone()
            .unwrap_or_else(|| connection.dbname().to_owned());
        tracing::info!(
            "restoring into database {target_db} on {}:{}",
            connection.host(),
            connection.port()
        );
        Box::new(PostgresRestore::new(
            connection,
            RestoreOptions {
                target_db,
                create: args.create,
                replace: args.replace,
                terminate_connections: args.terminate_connections,
            },
        ))
    };
    restore_selected(&args, &sink, entry, keyring.as_ref(), target.as_mut()).await
}

async fn restore_selected(
    args: &RestoreDatabaseArgs,
    sink: &LocalSink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    target: &mut dyn RestoreTarget,
) -> Result<ExitStatus, CliError> {
    let action = if args.dry_run {
        "checking"
    } else {
        "restoring"
    };
    let progress = args.common.progress(Some(entry.size), action);
    let result = restore_backup(
        sink,
        entry,
        keyring,
        target,
        progress.as_ref().map(|(_, f)| f.clone()),
    )
    .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    let summary = result.map_err(CliError::failure)?;
    let verdict = if args.dry_run {
        "dry run OK: backup verified and complete"
    } else {
        "restore complete"
    };
    println!(
        "{verdict}: {} ({} of SQL{})",
        entry.key,
        common::human_bytes(summary.plain_bytes),
        match &entry.status {
            BackupStatus::Legacy => ", legacy backup without manifest",
            _ => "",
        }
    );
    for note in &summary.notes {
        println!("  {note}");
    }
    Ok(ExitStatus::Success)
}

fn print_list(sink: &dyn Sink, entries: &[BackupEntry], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.file_name(),
                    "key": e.key,
                    "time": e.timestamp().to_rfc3339(),
                    "size": e.size,
                    "status": e.status.to_string(),
                    "detail": match &e.status { BackupStatus::Damaged(d) => Some(d.clone()), _ => None },
                    "key_id": e.key_id(),
                    "compression": e.name.compression.name(),
                    "encrypted": e.name.encrypted,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    if entries.is_empty() {
        println!("no database backups in {}", sink.describe());
        return;
    }
    println!(
        "{:<48}  {:<19}  {:>10}  {:<8}  KEY ID",
        "NAME", "TIME (UTC)", "SIZE", "STATUS"
    );
    for e in entries {
        println!(
            "{:<48}  {:<19}  {:>10}  {:<8}  {}",
            e.file_name(),
            e.timestamp().format("%Y-%m-%d %H:%M:%S"),
            common::human_bytes(e.size),
            e.status,
            e.key_id().unwrap_or("-")
        );
    }
}
