//! `backup-database`: one PostgreSQL backup to the configured destination.

use backup_core::PipelineConfig;
use backup_orchestrate::{back_up_databases, BackupJob};
use backup_sources::postgres::{DatabaseRunPlan, DumpFormat, PhysicalSource, PostgresConfig};
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

    /// Database to back up; several separated by commas (app,billing), each its own object
    /// named PREFIX_DATABASE_backup_... [env: POSTGRES_DB]
    #[arg(long, value_name = "NAME[,NAME...]")]
    database: Option<String>,

    /// Back up every database of the server, each as its own object named
    /// PREFIX_DATABASE_backup_... (templates, and databases without user tables unless
    /// --allow-empty, left out) [env: POSTGRES_ALL_DATABASES]
    #[arg(long, conflicts_with = "database")]
    all_databases: bool,

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

    /// A physical base backup of the whole cluster instead of a dump: pg_basebackup's tar to
    /// base/PREFIX_backup_YYYYMMDD_HHMMSS.tar.gz.enc, its WAL left to the archive that
    /// backup-wal push fills (the server must archive with it); restore with
    /// restore-database --pitr
    #[arg(long, conflicts_with_all = ["format", "database", "all_databases", "allow_empty"])]
    physical: bool,

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
            "POSTGRES_ALL_DATABASES",
            "--all-databases",
            args.all_databases.then_some("true"),
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
    if args.physical {
        let job = BackupJob {
            options,
            publish_latest: None,
        };
        let label = format!("{} base backup", job.options.name_prefix);
        let mut source = PhysicalSource::new(postgres.connection.clone(), label);
        if let Some(tools) = postgres.tools().map_err(CliError::usage)? {
            source = source.with_tools(tools);
        }
        let run = outcome::run_job(
            &args.common,
            &destinations,
            &mut source,
            &job,
            "pg_basebackup",
        )
        .await?;
        return outcome::report(&run, "base backup", args.json);
    }
    // The flag names the database even when DATABASE_URL names another.
    let postgres = match &args.database {
        Some(db) => postgres.selecting(db).map_err(CliError::usage)?,
        None => postgres,
    };
    let plan = DatabaseRunPlan::prepare(&postgres, &options.name_prefix)
        .await
        .map_err(CliError::failure)?;
    let job = BackupJob {
        options,
        publish_latest: None,
    };
    let label = |db: &str| format!("pg_dump {db}");
    match plan.databases.as_slice() {
        [single] if plan.run.is_none() => {
            tracing::info!(
                "backing up database {} on {} to {}",
                single.database,
                postgres.connection.endpoint(),
                destinations.describe()
            );
            let mut source = plan
                .source(&postgres, single, args.format)
                .map_err(CliError::usage)?;
            let run = outcome::run_job(
                &args.common,
                &destinations,
                &mut source,
                &job,
                &label(&single.database),
            )
            .await?;
            outcome::report(&run, "dump", args.json)
        }
        _ => {
            if !plan.skipped_empty.is_empty() {
                tracing::warn!(
                    "left out, without user tables: {} (back them up with --allow-empty)",
                    plan.skipped_empty.join(", ")
                );
            }
            let progress = args.common.progress(None, "pg_dump");
            let factory = |db: &str| {
                progress.as_ref().map(|(bar, f)| {
                    bar.set_message(label(db));
                    f.clone()
                })
            };
            let backups =
                back_up_databases(&plan, &postgres, args.format, &destinations, &job, &factory)
                    .await;
            if let Some((bar, _)) = progress {
                bar.finish_and_clear();
            }
            outcome::report_databases(&plan, &backups, args.json)
        }
    }
}
