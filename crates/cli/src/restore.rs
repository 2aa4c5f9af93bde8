//! `restore-database`: list, check and restore PostgreSQL backups.

use backup_core::{BackupKind, PipelineConfig, RestoreTarget};
use backup_sources::postgres::{
    apply_fetched_globals, series_prefix, PostgresConfig, RecoveryReport, RestoreOptions,
};
use clap::{ArgGroup, Parser};

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::restore_all;
use crate::select::{self, SelectionArgs};

/// List, verify and restore PostgreSQL backups made by backup-database (or by the old
/// backup-database.sh). A restore runs in one transaction and commits only after the backup's
/// size, SHA-256 and signed manifest were verified: on any error the target is left as it was.
#[derive(Debug, Parser)]
#[command(
    name = "restore-database",
    version,
    after_help = crate::help::RESTORE_DATABASE,
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

    /// Restore every database of the newest run of several (backup-database --all-databases
    /// or POSTGRES_DB=a,b) that --latest or --date chooses, each into the database of its
    /// name (created, owned by its recorded owner); with --with-globals the roles first. Every
    /// target is checked before anything is written
    #[arg(long, conflicts_with_all = ["target_db", "create", "database", "file"])]
    all: bool,

    /// With backups of several databases: restore this one's (the backups named
    /// PREFIX_NAME_backup_...), into the database NAME unless --target-db says otherwise
    #[arg(long, value_name = "NAME")]
    database: Option<String>,

    /// Database to restore into [default: --database, else POSTGRES_DB]
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

    /// First recreate the roles (with their passwords, settings and memberships) and
    /// tablespaces the backup captured, so that the restored objects keep their owners and
    /// grants on a new server; roles that exist are left unchanged. With --dry-run: only
    /// decrypt them and say what would be created
    #[arg(long)]
    with_globals: bool,

    #[command(flatten)]
    pitr: crate::restore_pitr::PitrArgs,
}

/// Runs `restore-database` with parsed arguments.
pub async fn run(args: RestoreDatabaseArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(args.select.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    if args.select.json && args.dry_run {
        return Err(CliError::usage(anyhow::anyhow!(
            "--json prints the recovery report of a restore, or with --list the listing; a dry \
             run prints text"
        )));
    }
    if args.pitr.requested() {
        return crate::restore_pitr::run(&args.common, &args.pitr, args.select.json, &config).await;
    }
    let pipeline: PipelineConfig = common::component(&config)?;
    let postgres: PostgresConfig = common::component(&config)?;
    if args.select.list && args.database.is_none() {
        return restore_all::print_list(&args.select, &pipeline.name_prefix, &config).await;
    }
    if args.all {
        args.select.require_one()?;
        let all = restore_all::AllArgs {
            dry_run: args.dry_run,
            with_globals: args.with_globals,
            replace: args.replace,
            terminate_connections: args.terminate_connections,
        };
        return restore_all::run(&args.common, &args.select, all, &config).await;
    }
    let prefix = match (&args.database, postgres.databases.names_carry_database()) {
        (Some(db), _) => series_prefix(&pipeline.name_prefix, db),
        (None, false) => pipeline.name_prefix.clone(),
        (None, true) => {
            return Err(CliError::usage(anyhow::anyhow!(
                "the configuration backs up several databases (POSTGRES_DB with commas or \
                 POSTGRES_ALL_DATABASES): say which to restore with --database NAME, or restore \
                 them all with --all"
            )))
        }
    };
    let selected = select::fetch_selected(
        &args.common,
        &args.select,
        BackupKind::DATABASE,
        &prefix,
        &config,
    )
    .await?;
    let Some(mut fetched) = selected else {
        return Ok(ExitStatus::Success);
    };
    let started = std::time::Instant::now();
    let globals = if args.with_globals {
        // Roles first: the restore's ALTER ... OWNER TO and GRANT statements need them.
        let server = postgres.connection.with_dbname("postgres");
        let report = apply_fetched_globals(&fetched, &server, args.dry_run)
            .await
            .map_err(CliError::failure)?;
        Some(report)
    } else {
        None
    };
    let target_db = match (&args.target_db, &args.database) {
        (Some(db), _) | (None, Some(db)) => db.clone(),
        (None, None) => postgres.connection.dbname().to_owned(),
    };
    let mut target: Box<dyn RestoreTarget> = if args.dry_run {
        Box::new(postgres.dump_check().map_err(CliError::usage)?)
    } else {
        let on = postgres.connection.endpoint();
        tracing::info!("restoring into database {target_db} on {on}");
        let options = RestoreOptions {
            target_db: target_db.clone(),
            create: args.create,
            replace: args.replace,
            terminate_connections: args.terminate_connections,
            owner: None,
        };
        Box::new(postgres.restore(options).map_err(CliError::usage)?)
    };
    let action = if args.dry_run {
        "checking"
    } else {
        "restoring"
    };
    let target = target.as_mut();
    let mut summary = common::restore_into(&args.common, &mut fetched, target, action).await?;
    if args.dry_run {
        if let Some(report) = globals {
            let lines = report.lines(true).into_iter();
            summary.notes.extend(lines.map(|l| format!("globals: {l}")));
        }
        let checked = fetched.entry().status.checked_as();
        let verdict = format!("dry run OK: {checked} and complete");
        select::print_verdict(&verdict, &fetched, &summary, "SQL");
        return Ok(ExitStatus::Success);
    }
    let restored = postgres.connection.with_dbname(&target_db);
    let seconds = started.elapsed().as_secs_f64();
    let report = RecoveryReport::check(&restored, &fetched, seconds, globals)
        .await
        .map_err(CliError::failure)?;
    if report.matches_backup == Some(false) {
        tracing::warn!(
            "the restored database does not match what the backup recorded: {}",
            report.differences.join("; ")
        );
    }
    if args.select.json {
        let json = serde_json::to_string_pretty(&report).map_err(CliError::failure)?;
        println!("{json}");
        return Ok(ExitStatus::Success);
    }
    summary.notes.extend(report.lines());
    let verdict = "restore complete".to_owned();
    select::print_verdict(&verdict, &fetched, &summary, "SQL");
    Ok(ExitStatus::Success)
}
