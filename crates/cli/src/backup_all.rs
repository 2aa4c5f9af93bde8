//! `backup-all`: the nightly job. The work is `backup_orchestrate::Nightly`; this module parses
//! the flags, takes the lock, shows progress, announces, stores the report and run log, and
//! maps the run to the exit code.

use backup_orchestrate::{append_run_log, Nightly, Notifier, NotifyConfig, RunLock, VerifyMode};
use clap::Parser;

use crate::common::{self, flag, CommonArgs, CompressionArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::runlog::RunLog;

/// Back up everything: PostgreSQL and Redis at the same time, then configuration files and
/// logs; verify each backup on every destination; check the services and disks; apply
/// retention; store a JSON report and the run's log on every destination; notify a webhook.
#[derive(Debug, Parser)]
#[command(
    name = "backup-all",
    version,
    after_help = crate::help::BACKUP_ALL,
    max_term_width = 100
)]
pub struct BackupAllArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    compression: CompressionArgs,

    /// How long one component may take before it is stopped and failed (2h, 90m, seconds)
    /// [env: BACKUP_TIMEOUT_PER_COMPONENT] [default: 2h]
    #[arg(long, value_name = "DURATION")]
    timeout_per_component: Option<String>,

    /// Check of each backup just written, on every destination: hash (re-read, compare size
    /// and SHA-256 with the manifest), full (also decrypt, decompress, parse to the end), none
    /// [env: BACKUP_VERIFY] [default: hash]
    #[arg(long, value_enum, value_name = "MODE")]
    verify: Option<VerifyMode>,

    /// Leave a component out of this run (repeat for several): database, redis, config, logs
    /// [env: BACKUP_SKIP_COMPONENTS (comma-separated)]
    #[arg(long, value_name = "COMPONENT", value_parser = clap::builder::PossibleValuesParser::new(backup_orchestrate::COMPONENTS))]
    skip: Vec<String>,

    /// Restore drill: restore the database backup into a scratch database `<db>_drill_<time>`
    /// (dropped afterwards) and compare every table's row count with the counts taken in the
    /// dump's own snapshot; parse the Redis backup and compare its keys per database with its
    /// manifest. A mismatch fails the component [env: BACKUP_DRILL]
    #[arg(long)]
    drill: bool,

    /// Do not apply the retention policy after the backups [env: BACKUP_PRUNE=false]
    #[arg(long)]
    no_prune: bool,

    /// Print the run's report as JSON on stdout
    #[arg(long)]
    json: bool,
}

/// Runs `backup-all` with parsed arguments.
pub async fn run(args: BackupAllArgs) -> Result<ExitStatus, CliError> {
    let log = RunLog::init(&args.common);
    let mut flags = args.compression.flags();
    flags.extend([
        flag(
            "BACKUP_TIMEOUT_PER_COMPONENT",
            "--timeout-per-component",
            args.timeout_per_component.as_ref(),
        ),
        flag("BACKUP_VERIFY", "--verify", args.verify),
        flag("BACKUP_DRILL", "--drill", args.drill.then_some(true)),
        flag("BACKUP_PRUNE", "--no-prune", args.no_prune.then_some(false)),
        flag(
            "BACKUP_SKIP_COMPONENTS",
            "--skip",
            (!args.skip.is_empty()).then(|| args.skip.join(",")),
        ),
    ]);
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let nightly = Nightly::from_config(&config).map_err(CliError::usage)?;
    let notify: NotifyConfig = common::component(&config)?;
    let keyring = common::load_keyring(&nightly.pipeline)?;
    let destinations = common::open_destinations(&config, false).await?;
    let lock = RunLock::acquire(&nightly.run.lock_path(&nightly.local)).map_err(CliError::usage)?;
    tracing::info!(
        "backup-all started (PID {}, lock {})",
        std::process::id(),
        lock.path().display()
    );
    let progress = |name: &str| log.progress(name);
    let destinations = std::sync::Arc::new(destinations);
    let keyring = std::sync::Arc::new(keyring);
    let mut report = nightly
        .run(std::sync::Arc::clone(&destinations), keyring, &progress)
        .await;
    log.clear_progress();
    if let Some(notifier) = Notifier::new(&notify) {
        report.announce(&notifier).await;
    }
    for line in report.summary_lines() {
        tracing::info!("{line}");
    }
    // The log as it stands now: everything but the storing of itself.
    let lines = log.contents();
    for failure in report.store(&destinations, &lines).await {
        tracing::error!("could not store the run's report or log: {failure}");
    }
    if nightly.files.log_dir.is_dir() {
        match append_run_log(&nightly.files.log_dir, &report.run_id, &lines) {
            Ok(path) => tracing::info!("run log appended to {}", path.display()),
            Err(e) => tracing::warn!(
                "could not append the run log under {}: {e}",
                nightly.files.log_dir.display()
            ),
        }
    }
    if args.json {
        println!("{:#}", report.to_json());
    }
    drop(lock);
    Ok(match report.exit_code {
        0 => ExitStatus::Success,
        1 => ExitStatus::Partial,
        2 => ExitStatus::Failure,
        _ => ExitStatus::Usage,
    })
}
