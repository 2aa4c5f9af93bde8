//! `backup-prune`: apply the retention policy to every kind of backup on every destination.

use backup_core::prune::PruneKind;
use backup_core::RetentionConfig;
use chrono::Utc;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Parser;

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Delete old backups by the retention policy: BACKUP_RETENTION_DAYS (default 30) plus optional
/// keep-last/daily/weekly/monthly rules, per kind of backup. A backup kept by any rule stays;
/// the newest complete backup of each kind is never deleted; damaged backups are never deleted.
#[derive(Debug, Parser)]
#[command(
    name = "backup-prune",
    version,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct BackupPruneArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Print the plan (each backup: keep or delete, and why); delete nothing
    #[arg(long)]
    dry_run: bool,

    /// Machine-readable output (one JSON document on stdout)
    #[arg(long)]
    json: bool,

    /// Keep backups newer than DAYS days; 0 keeps none by age [env: BACKUP_RETENTION_DAYS]
    /// [default: 30]
    #[arg(long, value_name = "DAYS")]
    retention_days: Option<u32>,

    /// Also keep the N newest backups [env: BACKUP_KEEP_LAST]
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,

    /// Also keep the newest backup of each of the N most recent days that have backups (UTC)
    /// [env: BACKUP_KEEP_DAILY]
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,

    /// Also keep the newest backup of each of the N most recent ISO weeks that have backups
    /// [env: BACKUP_KEEP_WEEKLY]
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,

    /// Also keep the newest backup of each of the N most recent months that have backups
    /// [env: BACKUP_KEEP_MONTHLY]
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,

    /// What to prune; repeat for several [default: all]
    #[arg(long, value_name = "KIND", value_parser = kind_parser())]
    kind: Vec<PruneKind>,
}

const AFTER_HELP: &str = "\
Rules (times are UTC, from the timestamp in each name; a backup kept by any rule stays):
  --retention-days N  keeps backups newer than now - N days (BACKUP_RETENTION_DAYS, default 30)
  --keep-last N       keeps the N newest
  --keep-daily N      keeps the newest backup of each of the N most recent days that have backups
  --keep-weekly N     the same per ISO week (Monday-Sunday)
  --keep-monthly N    the same per calendar month
The newest complete backup of each kind is always kept (the newest legacy one if none is
complete); the keep rules count complete backups only. Damaged backups (unreadable manifest)
are never deleted: inspect them by hand. A backup being written (its run's .claim is there) is
never deleted; one that lost its manifest (incomplete) is deleted once it is a day old.
Each kind is pruned on its own: database, redis, config, logs, plus the orchestration's run
reports (reports/orchestration/) and run logs (logs/orchestration/), on every configured
destination (BACKUP_LOCAL_DIR, BACKUP_S3_BUCKET). A backup's manifest is
deleted before its object, so an interrupted prune leaves at worst an object without its
manifest (incomplete, deleted by the next prune), never a manifest without its backup.
Temporary files and claims of interrupted runs older than 24 hours are removed too (not in a
dry run). It may run while backups are being written.

Exit codes: 0 success, 1 some deletions failed and others succeeded, 2 pruning failed,
3 usage or configuration error.

Examples:
  # What would go with the configured retention? Nothing is deleted.
  BACKUP_LOCAL_DIR=/var/backups/randevubu backup-prune --dry-run

  # Nightly, after the backups: 30 days, plus 7 dailies, 4 weeklies and 12 monthlies
  backup-prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12

  # Only the newest 10 database backups, whatever their age
  backup-prune --kind database --retention-days 0 --keep-last 10

  # For scripts
  backup-prune --dry-run --json";

/// Runs `backup-prune` with parsed arguments.
pub async fn run(args: BackupPruneArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let number = |n: Option<u32>| n.map(|n| n.to_string());
    let flags = vec![
        (
            "BACKUP_RETENTION_DAYS",
            "--retention-days",
            number(args.retention_days),
        ),
        ("BACKUP_KEEP_LAST", "--keep-last", number(args.keep_last)),
        ("BACKUP_KEEP_DAILY", "--keep-daily", number(args.keep_daily)),
        (
            "BACKUP_KEEP_WEEKLY",
            "--keep-weekly",
            number(args.keep_weekly),
        ),
        (
            "BACKUP_KEEP_MONTHLY",
            "--keep-monthly",
            number(args.keep_monthly),
        ),
    ];
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let policy = common::component::<RetentionConfig>(&config)?.policy;
    let mut kinds = if args.kind.is_empty() {
        PruneKind::ALL.to_vec()
    } else {
        args.kind.clone()
    };
    kinds.sort();
    kinds.dedup();
    let destinations = common::open_destinations(&config, true).await?;
    let report = destinations
        .prune(&kinds, &policy, Utc::now(), args.dry_run)
        .await;
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.text());
    }
    Ok(report.result().into())
}

/// `--kind`: one of [`PruneKind::NAMES`], shown in `--help` and in errors.
fn kind_parser() -> impl TypedValueParser<Value = PruneKind> {
    let values = PruneKind::ALL.map(|k| PossibleValue::new(k.name()));
    PossibleValuesParser::new(values).try_map(|name| name.parse::<PruneKind>())
}
