//! `backup-database`: one PostgreSQL backup to the configured destination.

use backup_core::{BackupOptions, CompressionAlgorithm, PipelineConfig};
use backup_orchestrate::BackupJob;
use backup_sources::postgres::{DumpFormat, PostgresConfig};
use clap::Parser;

use crate::common::{self, flag, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::outcome;

/// Back up a PostgreSQL database: pg_dump -> gzip/zstd -> AES-256-CBC (openssl-compatible) ->
/// backup directory, with a signed manifest written last as the commit marker.
#[derive(Debug, Parser)]
#[command(
    name = "backup-database",
    version,
    after_help = crate::help::BACKUP_DATABASE,
    max_term_width = 100
)]
pub struct BackupDatabaseArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Compression: gzip (`.sql.gz.enc`), zstd (faster, `.sql.zst.enc`) or none
    /// [env: BACKUP_COMPRESSION] [default: gzip]
    #[arg(long, value_enum, value_name = "ALGO")]
    compression: Option<CompressionAlgorithm>,

    /// Compression level (gzip 1-9, zstd 1-19) [env: BACKUP_COMPRESSION_LEVEL]
    #[arg(long, value_name = "N")]
    compression_level: Option<i32>,

    /// pg_dump output format: plain SQL (default, `.sql`) or custom archive (`.dump`)
    #[arg(long, value_enum, default_value_t = DumpFormat::Plain)]
    format: DumpFormat,

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

/// Runs `backup-database` with parsed arguments.
pub async fn run(args: BackupDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let flags = vec![
        flag("BACKUP_COMPRESSION", "--compression", args.compression),
        flag(
            "BACKUP_COMPRESSION_LEVEL",
            "--compression-level",
            args.compression_level,
        ),
        flag("POSTGRES_DB", "--database", args.database.as_ref()),
        flag(
            "BACKUP_NAME_PREFIX",
            "--name-prefix",
            args.name_prefix.as_ref(),
        ),
    ];
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    let postgres: PostgresConfig = common::component(&config)?;
    let destinations = common::open_destinations(&config, false).await?;
    let options = BackupOptions {
        name_prefix: pipeline.name_prefix.clone(),
        compression: pipeline.compression,
        key: Some(common::load_key(&pipeline)?),
        signing_key: None,
        iterations: pipeline.pbkdf2_iterations,
    };
    // The flag names the database even when DATABASE_URL names another.
    let connection = match &args.database {
        Some(db) => postgres.connection.with_dbname(db),
        None => postgres.connection.clone(),
    };
    tracing::info!(
        "backing up database {} on {} to {}",
        connection.dbname(),
        connection.endpoint(),
        outcome::describe(&destinations)
    );
    let postgres = PostgresConfig {
        connection,
        ..postgres
    };
    let mut source = postgres.source(args.format).map_err(CliError::usage)?;
    let job = BackupJob {
        options,
        publish_latest: None,
    };
    let run = outcome::run_job(&args.common, &destinations, &mut source, &job, "pg_dump").await?;
    outcome::report(&run, "dump", args.json)
}
