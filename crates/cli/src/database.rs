//! `backup-database`: one PostgreSQL backup to the configured destination.

use std::collections::BTreeMap;

use backup_core::BackupOptions;
use backup_orchestrate::BackupJob;
use backup_sources::postgres::{DumpFormat, PgConnection, PostgresSource};
use clap::{Parser, ValueEnum};

use crate::common::{self, CommonArgs};
use crate::exit::{CliError, ExitStatus};
use crate::outcome;

/// Back up a PostgreSQL database: pg_dump -> gzip/zstd -> AES-256-CBC (openssl-compatible) ->
/// backup directory, with a signed manifest written last as the commit marker.
#[derive(Debug, Parser)]
#[command(
    name = "backup-database",
    version,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct BackupDatabaseArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Compression: gzip (default, `.sql.gz.enc`), zstd (faster, `.sql.zst.enc`) or none
    /// [env: BACKUP_COMPRESSION]
    #[arg(long, value_name = "ALGO")]
    compression: Option<String>,

    /// Compression level (gzip 1-9, zstd 1-19) [env: BACKUP_COMPRESSION_LEVEL]
    #[arg(long, value_name = "N")]
    compression_level: Option<i32>,

    /// pg_dump output format: plain SQL (default, `.sql`) or custom archive (`.dump`)
    #[arg(long, value_enum, default_value_t = FormatArg::Plain)]
    format: FormatArg,

    /// Database to back up [env: POSTGRES_DB]
    #[arg(long, value_name = "NAME")]
    database: Option<String>,

    /// Object name prefix [env: BACKUP_NAME_PREFIX] [default: randevubu]
    #[arg(long, value_name = "PREFIX")]
    name_prefix: Option<String>,

    /// Print the result as JSON (object name, manifest) instead of just the object name
    #[arg(long)]
    json: bool,
}

const AFTER_HELP: &str = "\
Connection: POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD,
or DATABASE_URL. The password reaches pg_dump through its environment, never its arguments.

Output: DIR/database/PREFIX_backup_YYYYMMDD_HHMMSS.sql.gz.enc (UTC) and, written last,
DIR/database/PREFIX_backup_YYYYMMDD_HHMMSS.sql.gz.enc.manifest.json. The object name is printed
on stdout. A failed backup leaves nothing under either name.

Destinations: BACKUP_LOCAL_DIR and/or BACKUP_S3_BUCKET; with both, one pass writes both and
each commits on its own.

Exit codes: 0 success, 1 stored on some destinations but not all, 2 backup failed,
3 usage or configuration error.

Examples:
  # Nightly backup as the old script made it
  BACKUP_LOCAL_DIR=/var/backups/randevubu POSTGRES_DB=randevubu backup-database

  # zstd, faster and smaller; custom-format archive
  backup-database --local-dir /var/backups/randevubu --compression zstd --format custom

  # Emergency decryption with stock tools, no need for this tool
  openssl enc -d -aes-256-cbc -pbkdf2 -pass file:/etc/backup/encryption.key \\
      -in FILE.sql.gz.enc | gunzip | psql -d newdb";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Plain,
    Custom,
}

/// Runs `backup-database` with parsed arguments.
pub async fn run(args: BackupDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let mut extra = BTreeMap::new();
    for (name, value) in [
        ("BACKUP_COMPRESSION", args.compression.clone()),
        (
            "BACKUP_COMPRESSION_LEVEL",
            args.compression_level.map(|l| l.to_string()),
        ),
        ("POSTGRES_DB", args.database.clone()),
        ("BACKUP_NAME_PREFIX", args.name_prefix.clone()),
    ] {
        if let Some(v) = value {
            extra.insert(name.to_owned(), v);
        }
    }
    let settings = args.common.settings(extra)?;
    let destinations = common::open_destinations(&settings, false).await?;
    let key = common::load_key(&settings)?;
    let options = BackupOptions {
        name_prefix: settings.name_prefix().map_err(CliError::usage)?,
        compression: settings.compression().map_err(CliError::usage)?,
        key: Some(key),
        signing_key: None,
        iterations: settings.pbkdf2_iterations().map_err(CliError::usage)?,
    };
    let mut connection = PgConnection::from_env_map(&settings.lookup()).map_err(CliError::usage)?;
    if let Some(db) = &args.database {
        connection = connection.with_dbname(db);
    }
    let format = match args.format {
        FormatArg::Plain => DumpFormat::Plain,
        FormatArg::Custom => DumpFormat::Custom,
    };
    tracing::info!(
        "backing up database {} on {}:{} to {}",
        connection.dbname(),
        connection.host(),
        connection.port(),
        outcome::describe(&destinations)
    );
    let mut source = PostgresSource::new(connection, format);
    let job = BackupJob {
        options,
        publish_latest: None,
    };
    let run = outcome::run_job(&args.common, &destinations, &mut source, &job, "pg_dump").await?;
    outcome::report(&run, "dump", args.json)
}
