//! `backup-prune`: apply the retention policy to every kind of backup on every destination.

use std::collections::BTreeMap;
use std::fmt;

use backup_core::retention::{self, Action, Decision, LEFTOVER_AGE};
use backup_core::{
    list_backups, list_dated, BackupKind, BackupStatus, PruneOutcome, PrunePlan, RetentionPolicy,
    Settings,
};
use backup_storage::Sink;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::common::{self, CommonArgs};
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

    /// Also keep the N newest backups
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,

    /// Also keep the newest backup of each of the N most recent days that have backups (UTC)
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,

    /// Also keep the newest backup of each of the N most recent ISO weeks that have backups
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,

    /// Also keep the newest backup of each of the N most recent months that have backups
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,

    /// What to prune; repeat for several [default: all]
    #[arg(long, value_enum, value_name = "KIND")]
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

/// A set of objects pruned on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum PruneKind {
    /// PostgreSQL backups under `database/`.
    Database,
    /// Redis backups under `redis/` (not the `redis/latest/` copy).
    Redis,
    /// Configuration backups under `config/`.
    Config,
    /// Log backups under `logs/` (not the run logs under `logs/orchestration/`).
    Logs,
    /// The orchestration's run reports under `reports/orchestration/`.
    Reports,
    /// The orchestration's run logs, `logs/orchestration/backup_YYYYMMDD_HHMMSS.log`.
    RunLogs,
}

impl PruneKind {
    /// Every kind, in the order they are pruned.
    pub const ALL: [PruneKind; 6] = [
        Self::Database,
        Self::Redis,
        Self::Config,
        Self::Logs,
        Self::Reports,
        Self::RunLogs,
    ];

    /// The key prefix the kind lives under.
    pub fn prefix(self) -> String {
        match self.backup_kind() {
            Some(kind) => format!("{}/", kind.folder()),
            None if self == Self::Reports => "reports/orchestration/".to_owned(),
            None => "logs/orchestration/".to_owned(),
        }
    }

    /// The backup kind, for the kinds that are backups (with manifests).
    pub fn backup_kind(self) -> Option<BackupKind> {
        match self {
            Self::Database => Some(BackupKind::Database),
            Self::Redis => Some(BackupKind::Redis),
            Self::Config => Some(BackupKind::Config),
            Self::Logs => Some(BackupKind::Logs),
            Self::Reports | Self::RunLogs => None,
        }
    }
}

impl fmt::Display for PruneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Database => "database",
            Self::Redis => "redis",
            Self::Config => "config",
            Self::Logs => "logs",
            Self::Reports => "reports",
            Self::RunLogs => "run-logs",
        })
    }
}

/// What happened to one kind on one destination.
#[derive(Debug)]
pub struct KindReport {
    /// The kind.
    pub kind: PruneKind,
    /// The plan, when listing succeeded.
    pub plan: Option<PrunePlan>,
    /// What was deleted, in a real run whose plan had deletions.
    pub outcome: Option<PruneOutcome>,
    /// Why listing or applying failed.
    pub error: Option<String>,
}

/// Temporary files and incomplete uploads of interrupted writes.
#[derive(Debug)]
pub struct LeftoverReport {
    /// What was removed (`None` in a dry run).
    pub removed: Option<Vec<String>>,
    /// Why removing them failed.
    pub error: Option<String>,
}

/// Everything done on one destination.
#[derive(Debug)]
pub struct DestinationReport {
    /// The sink's description.
    pub destination: String,
    /// One report per kind.
    pub kinds: Vec<KindReport>,
    /// Leftover clean-up.
    pub leftovers: LeftoverReport,
}

/// How one task (a kind, or the leftover clean-up) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskResult {
    Ok,
    Partial,
    Failed,
}

impl KindReport {
    fn result(&self) -> TaskResult {
        if self.error.is_some() {
            return TaskResult::Failed;
        }
        match &self.outcome {
            Some(o) if o.failed.is_empty() => TaskResult::Ok,
            Some(o) if o.deleted.is_empty() => TaskResult::Failed,
            Some(_) => TaskResult::Partial,
            None => TaskResult::Ok,
        }
    }
}

impl DestinationReport {
    fn results(&self) -> impl Iterator<Item = TaskResult> + '_ {
        let leftovers = if self.leftovers.error.is_some() {
            TaskResult::Failed
        } else {
            TaskResult::Ok
        };
        self.kinds
            .iter()
            .map(KindReport::result)
            .chain(std::iter::once(leftovers))
    }
}

/// The exit status for a run: 0 when every kind and the clean-up succeeded, 2 when all of
/// them failed, 1 otherwise.
pub fn exit_status(reports: &[DestinationReport]) -> ExitStatus {
    let results: Vec<TaskResult> = reports.iter().flat_map(|r| r.results()).collect();
    if results.iter().all(|r| *r == TaskResult::Ok) {
        ExitStatus::Success
    } else if results.iter().all(|r| *r == TaskResult::Failed) {
        ExitStatus::Failure
    } else {
        ExitStatus::Partial
    }
}

/// Prunes `kinds` on `sink` with `policy` as of `now`; in a dry run only plans. Never fails as
/// a whole: each kind's error is in its report.
pub async fn prune_destination(
    sink: &dyn Sink,
    kinds: &[PruneKind],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> DestinationReport {
    let mut reports = Vec::new();
    // Claims of killed runs first, so that what they claimed is judged as incomplete.
    let mut stale_claims = Vec::new();
    let mut claims_error = None;
    if !dry_run {
        for kind in kinds.iter().filter(|k| k.backup_kind().is_some()) {
            match retention::remove_stale_claims(sink, &kind.prefix(), LEFTOVER_AGE, now).await {
                Ok(removed) => stale_claims.extend(removed),
                Err(e) => claims_error = Some(e.to_string()),
            }
        }
    }
    for &kind in kinds {
        let plan = match kind.backup_kind() {
            Some(backup_kind) => list_backups(sink, backup_kind)
                .await
                .map(|entries| retention::plan(&entries, policy, now)),
            None => list_dated(sink, &kind.prefix())
                .await
                .map(|entries| retention::plan(&entries, policy, now)),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!("cannot list {kind} in {}: {e}", sink.describe());
                reports.push(KindReport {
                    kind,
                    plan: None,
                    outcome: None,
                    error: Some(format!("listing {} failed: {e}", kind.prefix())),
                });
                continue;
            }
        };
        let (outcome, error) = if dry_run || plan.to_delete().next().is_none() {
            (None, None)
        } else {
            match retention::apply(sink, &plan).await {
                Ok(outcome) => (Some(outcome), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        reports.push(KindReport {
            kind,
            plan: Some(plan),
            outcome,
            error,
        });
    }
    let leftovers = if dry_run {
        LeftoverReport {
            removed: None,
            error: None,
        }
    } else {
        match sink.remove_incomplete(LEFTOVER_AGE).await {
            Ok(mut removed) => {
                removed.extend(stale_claims);
                LeftoverReport {
                    removed: Some(removed),
                    error: claims_error,
                }
            }
            Err(e) => LeftoverReport {
                removed: None,
                error: Some(e.to_string()),
            },
        }
    };
    DestinationReport {
        destination: sink.describe(),
        kinds: reports,
        leftovers,
    }
}

/// The policy from settings and flags.
fn policy(args: &BackupPruneArgs, settings: &Settings) -> Result<RetentionPolicy, CliError> {
    let mut policy = RetentionPolicy::from_settings(settings).map_err(CliError::usage)?;
    policy.keep_last = args.keep_last;
    policy.keep_daily = args.keep_daily;
    policy.keep_weekly = args.keep_weekly;
    policy.keep_monthly = args.keep_monthly;
    Ok(policy)
}

/// Runs `backup-prune` with parsed arguments.
pub async fn run(args: BackupPruneArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let mut extra = BTreeMap::new();
    if let Some(days) = args.retention_days {
        extra.insert("BACKUP_RETENTION_DAYS".to_owned(), days.to_string());
    }
    let settings = args.common.settings(extra)?;
    let policy = policy(&args, &settings)?;
    let mut kinds = if args.kind.is_empty() {
        PruneKind::ALL.to_vec()
    } else {
        args.kind.clone()
    };
    kinds.sort();
    kinds.dedup();
    let destinations = common::open_destinations(&settings, true).await?;
    let now = Utc::now();
    let mut reports = Vec::new();
    for destination in destinations.iter() {
        let sink = destination.sink();
        reports.push(prune_destination(sink, &kinds, &policy, now, args.dry_run).await);
    }
    let status = exit_status(&reports);
    if args.json {
        println!(
            "{:#}",
            json_report(&reports, &policy, now, args.dry_run, status)
        );
    } else {
        print!("{}", text_report(&reports, &policy, now, args.dry_run));
    }
    Ok(status)
}

fn status_text(status: &BackupStatus) -> String {
    status.to_string()
}

fn decision_line(d: &Decision) -> String {
    format!(
        "    {}  [{}, {}]  {d}",
        d.entry.key,
        status_text(&d.entry.status),
        d.entry.timestamp.format("%Y-%m-%d %H:%M:%S")
    )
}

/// The human-readable report.
pub fn text_report(
    reports: &[DestinationReport],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}policy: {policy} (now {})",
        if dry_run {
            "dry run, nothing is deleted; "
        } else {
            ""
        },
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for report in reports {
        let _ = writeln!(out, "{}:", report.destination);
        for k in &report.kinds {
            let Some(plan) = &k.plan else {
                let _ = writeln!(
                    out,
                    "  {}: FAILED: {}",
                    k.kind,
                    k.error.as_deref().unwrap_or("")
                );
                continue;
            };
            let total = plan.decisions().len();
            let deleting = plan.to_delete().count();
            if total == 0 {
                let _ = writeln!(out, "  {}: nothing to prune ({})", k.kind, k.kind.prefix());
                continue;
            }
            if dry_run {
                let _ = writeln!(
                    out,
                    "  {}: {total} found, would keep {}, delete {deleting}",
                    k.kind,
                    total - deleting
                );
                for d in plan.decisions() {
                    let _ = writeln!(out, "{}", decision_line(d));
                }
                continue;
            }
            let deleted = k.outcome.as_ref().map_or(0, |o| o.deleted.len());
            let _ = writeln!(
                out,
                "  {}: {total} found, kept {}, deleted {deleted}",
                k.kind,
                total - deleted
            );
            if let Some(outcome) = &k.outcome {
                for d in &outcome.deleted {
                    let _ = writeln!(out, "    deleted {}", d.key);
                }
                for f in &outcome.failed {
                    let _ = writeln!(out, "    FAILED: {f}");
                }
            }
            if let Some(e) = &k.error {
                let _ = writeln!(out, "    FAILED: {e}");
            }
            for d in plan.decisions() {
                if let BackupStatus::Damaged(detail) = &d.entry.status {
                    let _ = writeln!(
                        out,
                        "    kept: damaged, inspect by hand: {} ({detail})",
                        d.entry.key
                    );
                }
            }
        }
        let hours = LEFTOVER_AGE.as_secs() / 3600;
        match (&report.leftovers.removed, &report.leftovers.error) {
            (_, Some(e)) => {
                let _ = writeln!(out, "  leftovers: FAILED to remove: {e}");
            }
            (Some(removed), None) if removed.is_empty() => {
                let _ = writeln!(
                    out,
                    "  leftovers: none older than {hours}h (temporary files, incomplete uploads)"
                );
            }
            (Some(removed), None) => {
                let _ = writeln!(
                    out,
                    "  leftovers: removed {} older than {hours}h:",
                    removed.len()
                );
                for item in removed {
                    let _ = writeln!(out, "    removed {item}");
                }
            }
            (None, None) => {
                let _ = writeln!(
                    out,
                    "  leftovers: a real run removes temporary files and incomplete uploads of \
                     interrupted writes older than {hours}h (a dry run cannot list them)"
                );
            }
        }
    }
    out
}

fn decision_json(d: &Decision) -> serde_json::Value {
    let reasons: Vec<serde_json::Value> = d
        .reasons
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
            if let Some(map) = v.as_object_mut() {
                map.insert("text".into(), json!(r.to_string()));
            }
            v
        })
        .collect();
    json!({
        "key": d.entry.key,
        "time": d.entry.timestamp.to_rfc3339(),
        "size": d.entry.size,
        "status": d.entry.status.to_string(),
        "detail": match &d.entry.status { BackupStatus::Damaged(x) => Some(x.clone()), _ => None },
        "action": match d.action { Action::Keep => "keep", Action::Delete => "delete" },
        "reasons": reasons,
        "text": d.to_string(),
    })
}

/// The machine-readable report.
pub fn json_report(
    reports: &[DestinationReport],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
    status: ExitStatus,
) -> serde_json::Value {
    let destinations: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let kinds: Vec<serde_json::Value> = r
                .kinds
                .iter()
                .map(|k| {
                    json!({
                        "kind": k.kind.to_string(),
                        "prefix": k.kind.prefix(),
                        "error": k.error,
                        "decisions": k.plan.as_ref().map(|p| {
                            p.decisions().iter().map(decision_json).collect::<Vec<_>>()
                        }),
                        "deleted": k.outcome.as_ref().map(|o| {
                            o.deleted.iter().map(|d| d.key.clone()).collect::<Vec<_>>()
                        }),
                        "failed": k.outcome.as_ref().map(|o| {
                            o.failed.iter().map(|f| json!({
                                "key": f.entry.key,
                                "manifest_deleted": f.manifest_deleted,
                                "error": f.error,
                            })).collect::<Vec<_>>()
                        }),
                    })
                })
                .collect();
            json!({
                "destination": r.destination,
                "kinds": kinds,
                "leftovers": {
                    "older_than_hours": LEFTOVER_AGE.as_secs() / 3600,
                    "removed": r.leftovers.removed,
                    "error": r.leftovers.error,
                    "note": if dry_run {
                        Some("not removed in a dry run, and not listed: listing them needs a storage API that does not exist yet")
                    } else {
                        None
                    },
                },
            })
        })
        .collect();
    json!({
        "dry_run": dry_run,
        "now": now.to_rfc3339(),
        "policy": policy,
        "exit_code": status as i32,
        "destinations": destinations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_report(deleted: usize, failed: usize, error: bool) -> KindReport {
        let entry = backup_core::Dated {
            key: "database/x_backup_20240101_000000.sql".into(),
            timestamp: Utc::now(),
            size: 1,
            status: BackupStatus::Complete,
            manifest_key: None,
        };
        KindReport {
            kind: PruneKind::Database,
            plan: None,
            outcome: Some(PruneOutcome {
                deleted: vec![entry.clone(); deleted],
                failed: vec![
                    retention::DeleteFailure {
                        entry,
                        manifest_deleted: false,
                        error: "no".into(),
                    };
                    failed
                ],
            }),
            error: error.then(|| "listing failed".to_owned()),
        }
    }

    fn destination(kinds: Vec<KindReport>, leftovers_failed: bool) -> DestinationReport {
        DestinationReport {
            destination: "test".into(),
            kinds,
            leftovers: LeftoverReport {
                removed: None,
                error: leftovers_failed.then(|| "denied".to_owned()),
            },
        }
    }

    #[test]
    fn exit_status_is_0_all_ok_1_partial_2_all_failed() {
        let ok = destination(vec![kind_report(2, 0, false)], false);
        assert_eq!(exit_status(&[ok]), ExitStatus::Success);
        let some_failed = destination(vec![kind_report(2, 1, false)], false);
        assert_eq!(exit_status(&[some_failed]), ExitStatus::Partial);
        let one_kind_failed = destination(
            vec![kind_report(0, 0, false), kind_report(0, 0, true)],
            false,
        );
        assert_eq!(exit_status(&[one_kind_failed]), ExitStatus::Partial);
        let leftovers_failed = destination(vec![kind_report(1, 0, false)], true);
        assert_eq!(exit_status(&[leftovers_failed]), ExitStatus::Partial);
        let all_failed = destination(vec![kind_report(0, 3, false)], true);
        assert_eq!(exit_status(&[all_failed]), ExitStatus::Failure);
    }

    #[tokio::test]
    async fn a_failed_delete_is_reported_with_what_it_left() {
        use backup_storage::MemorySink;
        let sink = MemorySink::new();
        for key in [
            "database/x_backup_20200101_000000.sql",
            "database/x_backup_20200102_000000.sql",
        ] {
            sink.put(key, (&b"x"[..]).into())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let policy = RetentionPolicy::within_days(0);
        let mut report =
            prune_destination(&sink, &[PruneKind::Database], &policy, Utc::now(), true).await;
        assert!(
            report.kinds[0].outcome.is_none(),
            "a dry run applies nothing"
        );
        let plan = report.kinds[0]
            .plan
            .clone()
            .unwrap_or_else(|| panic!("no plan"));
        let doomed = plan
            .to_delete()
            .next()
            .unwrap_or_else(|| panic!("nothing doomed"));
        report.kinds[0].outcome = Some(PruneOutcome {
            deleted: vec![],
            failed: vec![retention::DeleteFailure {
                entry: doomed.entry.clone(),
                manifest_deleted: true,
                error: "permission denied".into(),
            }],
        });
        report.leftovers.removed = Some(vec![]);
        let text = text_report(&[report], &policy, Utc::now(), false);
        assert!(text.contains("deleted 0"), "{text}");
        assert!(
            text.contains("FAILED: could not delete database/x_backup_20200101_000000.sql"),
            "{text}"
        );
        assert!(text.contains("never restored automatically"), "{text}");
    }

    #[test]
    fn kinds_have_their_prefixes() {
        let prefixes: Vec<String> = PruneKind::ALL.iter().map(|k| k.prefix()).collect();
        assert_eq!(
            prefixes,
            vec![
                "database/",
                "redis/",
                "config/",
                "logs/",
                "reports/orchestration/",
                "logs/orchestration/"
            ]
        );
    }
}
