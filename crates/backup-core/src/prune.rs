//! `backup-prune`'s work: the retention policy applied to every kind of backup (and the
//! orchestration's reports and run logs) on every destination, with stale claims, temporary
//! files and incomplete uploads of interrupted runs cleaned up, and the report of it all.

use std::fmt;

use backup_storage::{LockMode, Sink};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::catalog::{list_backups, BackupStatus};
use crate::destinations::Destinations;
use crate::error::{CoreError, Result};
use crate::layout::{BackupKind, REPORTS_FOLDER, RUN_LOGS_FOLDER};
use crate::pipeline::DESTINATION_LOCK_WAIT as LOCK_WAIT;
use crate::retention::{
    self, list_dated, Action, Decision, PruneOutcome, PrunePlan, RetentionPolicy, LEFTOVER_AGE,
};
use crate::RunStatus;

/// A set of objects pruned on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PruneKind {
    /// The backups of a kind under its folder (not its `latest/` copy, not the run logs under
    /// `logs/orchestration/`).
    Backups(BackupKind),
    /// The orchestration's run reports under `reports/orchestration/`.
    Reports,
    /// The orchestration's run logs, `logs/orchestration/backup_YYYYMMDD_HHMMSS.log`.
    RunLogs,
}

impl PruneKind {
    /// Every kind the tool makes, in the order they are pruned.
    pub const ALL: [PruneKind; 7] = [
        Self::Backups(BackupKind::DATABASE),
        Self::Backups(BackupKind::REDIS),
        Self::Backups(BackupKind::CONFIG),
        Self::Backups(BackupKind::LOGS),
        Self::Backups(BackupKind::BASE),
        Self::Reports,
        Self::RunLogs,
    ];

    /// The names `--kind` takes, in the order of [`PruneKind::ALL`].
    pub const NAMES: [&'static str; 7] = [
        "database", "redis", "config", "logs", "base", "reports", "run-logs",
    ];

    /// The key prefix the kind lives under.
    pub fn prefix(self) -> String {
        match self {
            Self::Backups(kind) => kind.prefix(),
            Self::Reports => REPORTS_FOLDER.to_owned(),
            Self::RunLogs => RUN_LOGS_FOLDER.to_owned(),
        }
    }

    /// The backup kind, for the kinds that are backups (with manifests).
    pub fn backup_kind(self) -> Option<BackupKind> {
        match self {
            Self::Backups(kind) => Some(kind),
            Self::Reports | Self::RunLogs => None,
        }
    }

    /// The kind's name, as `--kind` takes it: the backup kind's folder, `reports` or
    /// `run-logs`.
    pub fn name(&self) -> &str {
        match self {
            Self::Backups(kind) => kind.folder(),
            Self::Reports => "reports",
            Self::RunLogs => "run-logs",
        }
    }
}

impl fmt::Display for PruneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PruneKind {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.to_string() == s)
            .ok_or_else(|| {
                CoreError::Config(format!(
                    "unknown kind {s:?}; one of {}",
                    Self::NAMES.join(", ")
                ))
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

/// Everything a prune run did, on every destination.
#[derive(Debug)]
pub struct PruneReport {
    /// The policy applied.
    pub policy: RetentionPolicy,
    /// The time the ages were measured from.
    pub now: DateTime<Utc>,
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// One report per destination.
    pub destinations: Vec<DestinationReport>,
}

impl PruneReport {
    /// [`RunStatus::Success`] when every kind and the clean-up succeeded everywhere,
    /// [`RunStatus::Failed`] when all of them failed, [`RunStatus::Partial`] otherwise.
    pub fn result(&self) -> RunStatus {
        let results: Vec<TaskResult> = self
            .destinations
            .iter()
            .flat_map(DestinationReport::results)
            .collect();
        if results.iter().all(|r| *r == TaskResult::Ok) {
            RunStatus::Success
        } else if results.iter().all(|r| *r == TaskResult::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        }
    }
}

impl Destinations {
    /// Prunes `kinds` with `policy` as of `now` on every destination, one after the other; in
    /// a dry run only plans. Never fails as a whole: each kind's error is in its report.
    pub async fn prune(
        &self,
        kinds: &[PruneKind],
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> PruneReport {
        let mut destinations = Vec::new();
        for destination in self.iter() {
            destinations
                .push(prune_destination(destination.sink(), kinds, policy, now, dry_run).await);
        }
        PruneReport {
            policy: policy.clone(),
            now,
            dry_run,
            destinations,
        }
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
    // Alone on the destination while deleting: running backups finish first, new ones wait.
    let _lock = if dry_run {
        None
    } else {
        match sink.lock(LockMode::Exclusive, LOCK_WAIT).await {
            Ok(lock) => lock,
            Err(e) => {
                tracing::error!("{e}");
                return DestinationReport {
                    destination: sink.describe(),
                    kinds: kinds
                        .iter()
                        .map(|&kind| KindReport {
                            kind,
                            plan: None,
                            outcome: None,
                            error: Some(e.to_string()),
                        })
                        .collect(),
                    leftovers: LeftoverReport {
                        removed: None,
                        error: None,
                    },
                };
            }
        }
    };
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
                .map(|entries| retention::plan_series(&entries, policy, now)),
            None => list_dated(sink, &kind.prefix())
                .await
                .map(|entries| retention::plan(&entries, policy, now)),
        };
        // What the store still locks is kept, not deleted (in the dry run's plan too).
        let plan = match plan {
            Ok(mut plan) if plan.to_delete().next().is_some() => {
                plan.keep_locked(sink).await.map(|_| plan)
            }
            other => other,
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

impl PruneReport {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let (reports, policy, now, dry_run) =
            (&self.destinations, &self.policy, self.now, self.dry_run);
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
                    for reason in &d.reasons {
                        if let crate::retention::Reason::Locked { .. } = reason {
                            let _ = writeln!(out, "    kept: {} ({reason})", d.entry.key);
                        }
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

impl PruneReport {
    /// The machine-readable report.
    pub fn to_json(&self) -> serde_json::Value {
        let (reports, policy, now, dry_run) =
            (&self.destinations, &self.policy, self.now, self.dry_run);
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
            "exit_code": self.result().exit_code(),
            "destinations": destinations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dated;

    fn kind_report(deleted: usize, failed: usize, error: bool) -> KindReport {
        let entry = Dated {
            key: "database/x_backup_20240101_000000.sql".into(),
            timestamp: Utc::now(),
            size: 1,
            status: BackupStatus::Complete,
            manifest_key: None,
        };
        KindReport {
            kind: PruneKind::Backups(BackupKind::DATABASE),
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

    fn report(destinations: Vec<DestinationReport>) -> PruneReport {
        PruneReport {
            policy: RetentionPolicy::within_days(30),
            now: Utc::now(),
            dry_run: false,
            destinations,
        }
    }

    fn exit_status(destinations: [DestinationReport; 1]) -> RunStatus {
        report(destinations.into()).result()
    }

    #[test]
    fn exit_status_is_0_all_ok_1_partial_2_all_failed() {
        let ok = destination(vec![kind_report(2, 0, false)], false);
        assert_eq!(exit_status([ok]), RunStatus::Success);
        let some_failed = destination(vec![kind_report(2, 1, false)], false);
        assert_eq!(exit_status([some_failed]), RunStatus::Partial);
        let one_kind_failed = destination(
            vec![kind_report(0, 0, false), kind_report(0, 0, true)],
            false,
        );
        assert_eq!(exit_status([one_kind_failed]), RunStatus::Partial);
        let leftovers_failed = destination(vec![kind_report(1, 0, false)], true);
        assert_eq!(exit_status([leftovers_failed]), RunStatus::Partial);
        let all_failed = destination(vec![kind_report(0, 3, false)], true);
        assert_eq!(exit_status([all_failed]), RunStatus::Failed);
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
        let mut report = prune_destination(
            &sink,
            &[PruneKind::Backups(BackupKind::DATABASE)],
            &policy,
            Utc::now(),
            true,
        )
        .await;
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
        let text = PruneReport {
            policy,
            now: Utc::now(),
            dry_run: false,
            destinations: vec![report],
        }
        .text();
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
                "base/",
                "reports/orchestration/",
                "logs/orchestration/"
            ]
        );
    }
}
