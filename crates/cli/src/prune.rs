//! `backup-prune`: apply the retention policy to every kind of backup on every destination.

use backup_core::prune::PruneKind;
use backup_core::RetentionConfig;
use backup_orchestrate::Retention;
use chrono::Utc;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Parser;

use crate::common::{self, flag, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Delete old backups by the retention policy: BACKUP_RETENTION_DAYS (default 30) plus optional
/// keep-last/daily/weekly/monthly rules, per kind of backup. A backup kept by any rule stays;
/// the newest complete backup of each kind is never deleted; damaged backups are never deleted.
#[derive(Debug, Parser)]
#[command(
    name = "backup-prune",
    version,
    after_help = crate::help::BACKUP_PRUNE,
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

/// Runs `backup-prune` with parsed arguments.
pub async fn run(args: BackupPruneArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let flags = vec![
        flag(
            "BACKUP_RETENTION_DAYS",
            "--retention-days",
            args.retention_days,
        ),
        flag("BACKUP_KEEP_LAST", "--keep-last", args.keep_last),
        flag("BACKUP_KEEP_DAILY", "--keep-daily", args.keep_daily),
        flag("BACKUP_KEEP_WEEKLY", "--keep-weekly", args.keep_weekly),
        flag("BACKUP_KEEP_MONTHLY", "--keep-monthly", args.keep_monthly),
    ];
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let policy = common::component::<RetentionConfig>(&config)?.policy;
    // In the order of PruneKind::ALL, each once.
    let asked = |k: &PruneKind| args.kind.is_empty() || args.kind.contains(k);
    let kinds: Vec<PruneKind> = PruneKind::ALL.into_iter().filter(asked).collect();
    let destinations = common::open_destinations(&config, true).await?;
    let report = Retention::apply(&destinations, &kinds, &policy, Utc::now(), args.dry_run).await;
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.text());
    }
    Ok(report.result().into())
}

/// `--kind`: one of [`PruneKind::NAMES`], shown in `--help` and in errors.
fn kind_parser() -> impl TypedValueParser<Value = PruneKind> {
    let values = PruneKind::NAMES.map(PossibleValue::new);
    PossibleValuesParser::new(values).try_map(|name| name.parse::<PruneKind>())
}
