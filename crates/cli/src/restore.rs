//! `restore-database`: list, check and restore PostgreSQL backups.

use backup_core::{human_bytes, BackupKind, PipelineConfig, RestoreTarget};
use backup_sources::postgres::{PgDumpCheck, PostgresConfig, PostgresRestore, RestoreOptions};
use clap::{ArgGroup, Parser};

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::select::{self, SelectionArgs};

/// List, verify and restore PostgreSQL backups made by backup-database (or by the old
/// backup-database.sh). A restore runs in one transaction and commits only after the backup's
/// size, SHA-256 and signed manifest were verified: on any error the target is left as it was.
#[derive(Debug, Parser)]
#[command(
    name = "restore-database",
    version,
    after_help = AFTER_HELP,
    max_term_width = 100,
    group(ArgGroup::new("selection").args(["list", "latest", "date", "file"]))
)]
pub struct RestoreDatabaseArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    select: SelectionArgs,

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
}

const AFTER_HELP: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME.
--latest and --date choose complete backups (a signed manifest vouches for them). Backups
without a manifest made by the old scripts are listed as `legacy`: they cannot be
authenticated, restore by --file NAME (or by --latest/--date with --allow-legacy) and are
checked only by decryption padding, gzip CRC and pg_dump's end marker. An `incomplete` backup
(no manifest, newer than signed ones) restores only by --file NAME --allow-unverified.

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

/// Runs `restore-database` with parsed arguments.
pub async fn run(args: RestoreDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(args.select.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    args.select.require_one()?;
    let pipeline: PipelineConfig = common::component(&config)?;
    let postgres: PostgresConfig = common::component(&config)?;
    let kind = BackupKind::Database;
    let resolved = select::resolve(kind, &pipeline.name_prefix, &args.select, &config).await?;
    if args.select.list {
        resolved.print_list(args.select.json);
        return Ok(ExitStatus::Success);
    }
    let (mut fetched, keyring) = resolved.fetch(&args.common, &config).await?;

    let tools = postgres.tools().map_err(CliError::usage)?;
    let mut target: Box<dyn RestoreTarget> = if args.dry_run {
        let check = PgDumpCheck::new();
        Box::new(match tools {
            Some(tools) => check.with_tools(tools),
            None => check,
        })
    } else {
        let connection = postgres.connection;
        let target_db = args
            .target_db
            .clone()
            .unwrap_or_else(|| connection.dbname().to_owned());
        tracing::info!(
            "restoring into database {target_db} on {}",
            connection.endpoint()
        );
        let restore = PostgresRestore::new(
            connection,
            RestoreOptions {
                target_db,
                create: args.create,
                replace: args.replace,
                terminate_connections: args.terminate_connections,
            },
        );
        Box::new(match tools {
            Some(tools) => restore.with_tools(tools),
            None => restore,
        })
    };
    let action = if args.dry_run {
        "checking"
    } else {
        "restoring"
    };
    let summary = common::restore_into(
        &args.common,
        &mut fetched,
        keyring.as_ref(),
        target.as_mut(),
        action,
    )
    .await?;
    let entry = fetched.entry();
    let verdict = if args.dry_run {
        format!("dry run OK: {} and complete", entry.status.checked_as())
    } else {
        "restore complete".to_owned()
    };
    println!(
        "{verdict}: {} ({} of SQL{})",
        entry.key,
        human_bytes(summary.plain_bytes),
        entry.status.note()
    );
    for note in &summary.notes {
        println!("  {note}");
    }
    Ok(ExitStatus::Success)
}
