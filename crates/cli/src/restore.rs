//! `restore-database`: list, check and restore PostgreSQL backups.

use std::collections::BTreeMap;
use std::path::Path;

use backup_core::{
    catalog, list_backups, restore_backup, stored_intact, BackupEntry, BackupKind, BackupStatus,
    RestoreTarget, Selection,
};
use backup_crypto::Keyring;
use backup_sources::postgres::{PgConnection, PgDumpCheck, PostgresRestore, RestoreOptions};
use backup_storage::{LocalSink, Sink};
use chrono::NaiveDate;
use clap::{ArgGroup, Parser, ValueEnum};

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

    /// Read from this destination only; by default the local copy is used when it is present
    /// and intact, else S3
    #[arg(long, value_enum, value_name = "WHERE")]
    from: Option<FromArg>,

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

/// Where `--from` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FromArg {
    Local,
    S3,
}

impl FromArg {
    fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Self::Local => "BACKUP_LOCAL_DIR",
            Self::S3 => "BACKUP_S3_BUCKET",
        }
    }
}

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
    let (destinations, listed, selection) = if let Some(path) = file_path {
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
        let destinations = vec![common::Destination {
            name: "file",
            sink: Box::new(sink),
        }];
        (
            destinations,
            vec![Listed::new(entry, 0)],
            Selection::Name(name),
        )
    } else {
        let selection = match (&args.file, args.date) {
            (Some(name), _) => Selection::Name(name.clone()),
            (None, Some(day)) => Selection::Date(day),
            (None, None) => Selection::Latest,
        };
        let mut destinations = common::open_destinations(&settings, !args.list).await?;
        if let Some(from) = args.from {
            destinations.retain(|d| d.name == from.name());
            if destinations.is_empty() {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--from {} but that destination is not configured (set {})",
                    from.name(),
                    from.setting()
                )));
            }
        }
        let listed = list_everywhere(&destinations).await?;
        (destinations, listed, selection)
    };

    if args.list {
        print_list(&destinations, &listed, args.json);
        return Ok(ExitStatus::Success);
    }

    let entries: Vec<BackupEntry> = listed.iter().map(|l| l.entry.clone()).collect();
    let entry = catalog::select(&entries, &selection).map_err(CliError::failure)?;
    let holders = &listed
        .iter()
        .find(|l| l.entry.key == entry.key)
        .map(|l| l.holders.clone())
        .unwrap_or_default();
    let source = choose_source(&destinations, holders, entry).await?;
    tracing::info!(
        "selected {} ({}, {}, {}) from {}",
        entry.key,
        entry.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
        common::human_bytes(entry.size),
        entry.status,
        source.0.describe()
    );
    let (sink, entry) = (source.0, &source.1);
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
    restore_selected(&args, sink, entry, keyring.as_ref(), target.as_mut()).await
}

async fn restore_selected(
    args: &RestoreDatabaseArgs,
    sink: &dyn Sink,
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

/// A backup and the destinations (indexes) that hold it.
struct Listed {
    entry: BackupEntry,
    holders: Vec<usize>,
}

impl Listed {
    fn new(entry: BackupEntry, holder: usize) -> Self {
        Self {
            entry,
            holders: vec![holder],
        }
    }
}

/// Lists every destination and merges by object key (the first destination's entry, i.e. the
/// local one, describes a backup held by several), oldest first.
async fn list_everywhere(destinations: &[common::Destination]) -> Result<Vec<Listed>, CliError> {
    let mut merged: Vec<Listed> = Vec::new();
    for (i, d) in destinations.iter().enumerate() {
        let entries = list_backups(d.sink.as_ref(), BackupKind::Database)
            .await
            .map_err(CliError::failure)?;
        for entry in entries {
            match merged.iter_mut().find(|l| l.entry.key == entry.key) {
                Some(listed) => listed.holders.push(i),
                None => merged.push(Listed::new(entry, i)),
            }
        }
    }
    merged.sort_by(|a, b| {
        a.entry
            .timestamp()
            .cmp(&b.entry.timestamp())
            .then_with(|| a.entry.key.cmp(&b.entry.key))
    });
    Ok(merged)
}

/// Picks the destination to restore from: the first holder (local before S3) whose copy is
/// intact, so a damaged or missing local copy falls back to S3. The entry is re-read from the
/// chosen destination (its manifest is that destination's).
async fn choose_source<'a>(
    destinations: &'a [common::Destination],
    holders: &[usize],
    selected: &BackupEntry,
) -> Result<(&'a dyn Sink, BackupEntry), CliError> {
    let mut last_problem = None;
    for (n, &i) in holders.iter().enumerate() {
        let sink = destinations[i].sink.as_ref();
        let entry = catalog::entry_for_key(sink, BackupKind::Database, &selected.key)
            .await
            .map_err(CliError::failure)?;
        // With no other copy to fall back to, the restore's own checks say what is wrong.
        if n + 1 == holders.len() {
            return Ok((sink, entry));
        }
        match stored_intact(sink, &entry).await {
            Ok(true) => return Ok((sink, entry)),
            Ok(false) => {
                tracing::warn!(
                    "the copy of {} on {} is damaged; trying the next destination",
                    entry.key,
                    sink.describe()
                );
                last_problem = Some(format!("damaged on {}", sink.describe()));
            }
            Err(e) => {
                tracing::warn!(
                    "cannot read {} on {}: {e}; trying the next destination",
                    entry.key,
                    sink.describe()
                );
                last_problem = Some(e.to_string());
            }
        }
    }
    Err(CliError::failure(anyhow::anyhow!(
        "no destination holds an intact copy of {}{}",
        selected.key,
        last_problem.map(|p| format!(" ({p})")).unwrap_or_default()
    )))
}

fn print_list(destinations: &[common::Destination], listed: &[Listed], json: bool) {
    let locations = |l: &Listed| -> Vec<&'static str> {
        l.holders.iter().map(|&i| destinations[i].name).collect()
    };
    if json {
        let rows: Vec<serde_json::Value> = listed
            .iter()
            .map(|l| {
                let e = &l.entry;
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
                    "locations": locations(l),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    if listed.is_empty() {
        let places: Vec<String> = destinations.iter().map(|d| d.sink.describe()).collect();
        println!("no database backups in {}", places.join(" or "));
        return;
    }
    println!(
        "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  LOCATION",
        "NAME", "TIME (UTC)", "SIZE", "STATUS", "KEY ID"
    );
    for l in listed {
        let e = &l.entry;
        println!(
            "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  {}",
            e.file_name(),
            e.timestamp().format("%Y-%m-%d %H:%M:%S"),
            common::human_bytes(e.size),
            e.status,
            e.key_id().unwrap_or("-"),
            locations(l).join(",")
        );
    }
}
