//! `backup-database`: one PostgreSQL backup to the configured destination.

use backup_core::PipelineConfig;
use backup_orchestrate::BackupJob;
use backup_sources::postgres::{DumpFormat, PostgresConfig};
use clap::Parser;

use crate::common::{self, flag, CommonArgs, CompressionArgs, Loaded};
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

    #[command(flatten)]
    compression: CompressionArgs,

    /// pg_dump output format: plain SQL (default, `.sql`) or custom archive (`.dump`)
    #[arg(long, value_enum, default_value_t = DumpFormat::Plain)]
    format: DumpFormat,

    /// Database to back up [env: POSTGRES_DB]
    #[arg(long, value_name = "NAME")]
    database: Option<String>,

    /// Object name prefix [env: BACKUP_NAME_PREFIX] [default: randevubu]
    #[arg(long, value_name = "PREFIX")]
    name_prefix: Option<String>,

    /// Back up the database even if it has no user tables (by default that fails with exit
    /// 2: it is most likely the wrong database, e.g. "postgres" with POSTGRES_DB unset)
    /// [env: POSTGRES_ALLOW_EMPTY]
    #[arg(long)]
    allow_empty: bool,

    /// Capture the cluster's roles without their passwords (for a managed server that does
    /// not show them; it is also done, with a warning, when the server refuses)
    /// [env: POSTGRES_ROLE_PASSWORDS=false]
    #[arg(long)]
    no_role_passwords: bool,

    /// Print the result as JSON (object name, manifest) instead of just the object name
    #[arg(long)]
    json: bool,
}

/// Runs `backup-database` with parsed arguments.
pub async fn run(args: BackupDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let mut flags = args.compression.flags();
    flags.extend([
        flag("POSTGRES_DB", "--database", args.database.as_ref()),
        flag(
            "BACKUP_NAME_PREFIX",
            "--name-prefix",
            args.name_prefix.as_ref(),
        ),
        flag(
            "POSTGRES_ALLOW_EMPTY",
            "--allow-empty",
            args.allow_empty.then_some("true"),
        ),
        flag(
            "POSTGRES_ROLE_PASSWORDS",
            "--no-role-passwords",
            args.no_role_passwords.then_some("false"),
        ),
    ]);
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    let postgres: PostgresConfig = common::component(&config)?;
    let destinations = common::open_destinations(&config, false).await?;
    let options = pipeline
        .backup_options()
        .encrypted_with(common::load_key(&pipeline)?);
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
