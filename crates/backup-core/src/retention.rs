//! Retention: which backups to keep, which to delete, and deleting them safely.
//!
//! Pruning is two steps. [`plan`] is pure: given the entries of one kind (or of one prefix of
//! dated objects), a [`RetentionPolicy`] and the current time, it decides for every entry
//! whether to keep or delete it and records the rule(s) that decided ([`Reason`]). [`apply`]
//! carries out a plan's deletions against a [`Sink`]. A dry run is a plan that is printed and
//! never applied.
//!
//! # Rules
//!
//! Time is UTC and an entry's time is the timestamp in its name ([`BackupName::timestamp`](crate::BackupName::timestamp) for
//! backups, [`timestamp_in_name`] for other dated objects). An entry is kept when **any** rule
//! keeps it, and deleted only when none does:
//!
//! - **within N days** ([`RetentionPolicy::within_days`], `BACKUP_RETENTION_DAYS`, default 30):
//!   keeps every entry whose time is later than `now - N days` (strictly: an entry exactly N
//!   days old is not within). `0` keeps nothing by age.
//! - **keep-last N**: keeps the N newest entries.
//! - **keep-daily N**: for each of the N most recent UTC days that have entries, keeps the
//!   newest entry of that day. Days without entries do not count, so with backups missing for a
//!   week, `keep-daily 7` still keeps 7 backups (as restic's `forget --keep-daily`).
//! - **keep-weekly N**: the same per ISO 8601 week (Monday to Sunday, UTC; the week-based year,
//!   so 2024-12-30 is in week 1 of 2025).
//! - **keep-monthly N**: the same per calendar month (UTC).
//!
//! The age limit applies to whole backups: complete (with a signed manifest) and legacy (no
//! manifest, older than every backup with one: made by the old scripts). The keep rules count
//! complete backups only, so unauthenticated objects can never push a signed backup out of
//! keep-last/daily/weekly/monthly. On top of the rules:
//!
//! - The **newest complete backup is always kept**, whatever the policy (even with 0 days and
//!   no keep rule). When there is no complete backup, the newest legacy one is kept instead.
//!   Backups of several series (name prefixes: one per database when several are backed up)
//!   are planned per series ([`plan_series`]): each keeps its newest, and the keep rules count
//!   within it. A series that is no longer written (a database dropped from the list) keeps
//!   its last backup until it is deleted by hand.
//! - **Damaged** entries (a manifest that cannot be read) are never deleted automatically: they
//!   are kept and reported ("damaged, inspect by hand") and are not counted by any rule.
//! - **In progress** entries (a run's claim is on the name, the manifest not yet written) are
//!   always kept: pruning during a backup never deletes it.
//! - **Incomplete** entries (no manifest, but newer than a backup with one: they lost their
//!   commit marker) are kept for a day ([`LEFTOVER_AGE`]), then deleted.
//!
//! # Crash safety
//!
//! [`apply`] deletes a backup's manifest before the object. A crash (or a failed delete)
//! between the two leaves an object without a manifest, which the catalog lists as
//! `incomplete` (or `legacy` when it is the oldest) and the next prune deletes. It never
//! leaves a manifest that vouches for a missing or partial object.
//!
//! Pruning may run while backups are written: a backup holds a claim on its name from before
//! its first byte until after its manifest ([`CLAIM_SUFFIX`]), and an
//! object with a claim is never deleted. Claims that a killed run left behind are removed by
//! [`remove_stale_claims`] after a day.

use std::fmt;

use backup_storage::{Sink, StorageError};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use serde::Serialize;

use crate::catalog::{BackupEntry, BackupStatus};
use crate::config::DEFAULT_RETENTION_DAYS;
use crate::error::{CoreError, Result};
use crate::layout::{manifest_key_for, CLAIM_SUFFIX, MANIFEST_SUFFIX};

/// How long interrupted writes (local temporary files, incomplete multipart uploads) may sit
/// before pruning removes them with [`Sink::remove_incomplete`]: 24 hours, far longer than any
/// backup takes, so a write in progress is never touched.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// What to keep. A backup kept by any rule stays; see the [module docs](self) for the exact
/// meaning of each rule.
///
/// [`Default`] is the tool's default policy: 30 days ([`DEFAULT_RETENTION_DAYS`]), no keep
/// rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    /// Keep entries newer than this many days (`BACKUP_RETENTION_DAYS`). `None`: no age rule.
    pub within_days: Option<u32>,
    /// Keep the N newest entries.
    pub keep_last: Option<u32>,
    /// Keep the newest entry of each of the N most recent UTC days that have entries.
    pub keep_daily: Option<u32>,
    /// Keep the newest entry of each of the N most recent ISO weeks that have entries.
    pub keep_weekly: Option<u32>,
    /// Keep the newest entry of each of the N most recent calendar months that have entries.
    pub keep_monthly: Option<u32>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::within_days(DEFAULT_RETENTION_DAYS)
    }
}

impl RetentionPolicy {
    /// Only the age rule: keep what is newer than `days` days (plus the newest complete backup).
    pub fn within_days(days: u32) -> Self {
        Self {
            within_days: Some(days),
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
        }
    }
}

impl fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(days) = self.within_days {
            parts.push(format!("within {days} days"));
        }
        for (name, value) in [
            ("keep-last", self.keep_last),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
        ] {
            if let Some(n) = value {
                parts.push(format!("{name} {n}"));
            }
        }
        if parts.is_empty() {
            f.write_str("no rules (only the newest complete backup is kept)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One object retention decides about: a backup, or a dated object such as a run report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dated {
    /// The object key.
    pub key: String,
    /// The time in its name (UTC).
    #[serde(rename = "time")]
    pub timestamp: DateTime<Utc>,
    /// Stored size in bytes.
    pub size: u64,
    /// Completeness. Dated objects listed by [`list_dated`] are whole objects and count as
    /// complete.
    #[serde(flatten)]
    pub status: BackupStatus,
    /// The manifest to delete before the object, when there is one.
    pub manifest_key: Option<String>,
}

impl Dated {
    /// The file name without the folder.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl From<&BackupEntry> for Dated {
    fn from(entry: &BackupEntry) -> Self {
        let manifest_key = match entry.status {
            BackupStatus::Legacy | BackupStatus::Incomplete | BackupStatus::InProgress => None,
            BackupStatus::Complete | BackupStatus::Damaged(_) => Some(manifest_key_for(&entry.key)),
        };
        Self {
            key: entry.key.clone(),
            timestamp: entry.timestamp(),
            size: entry.size,
            status: entry.status.clone(),
            manifest_key,
        }
    }
}

/// Anything [`plan`] can decide about: [`BackupEntry`] (from
/// [`list_backups`](crate::list_backups)) and [`Dated`] (from [`list_dated`]).
pub trait AsDated {
    /// This entry as a [`Dated`].
    fn to_dated(&self) -> Dated;
}

impl AsDated for BackupEntry {
    fn to_dated(&self) -> Dated {
        Dated::from(self)
    }
}

impl AsDated for Dated {
    fn to_dated(&self) -> Dated {
        self.clone()
    }
}

/// Keep or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The entry stays.
    Keep,
    /// The entry is deleted (manifest first, then object).
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keep => "keep",
            Self::Delete => "delete",
        })
    }
}

/// Why an entry is kept or deleted. Ranks count from 1 (`daily #1` is the newest day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Kept: the newest complete backup, kept whatever the policy says.
    NewestComplete,
    /// Kept: there is no complete backup and this is the newest legacy one.
    NewestLegacy,
    /// Kept: its manifest is unreadable; never deleted automatically.
    Damaged {
        /// What is wrong with it.
        detail: String,
    },
    /// Kept: a backup still being written (a run's claim is on its name).
    InProgress,
    /// Kept for now: a backup that lost its manifest less than a day ago (it may still be
    /// looked at, or be a run that is just finishing).
    IncompleteRecent,
    /// Deleted: a backup that lost its manifest over a day ago; it cannot be verified and is
    /// never restored automatically.
    IncompleteStale,
    /// Kept: newer than `now - days`.
    WithinDays {
        /// The policy's days.
        days: u32,
    },
    /// Kept by keep-last: the `rank`-th newest entry.
    Last {
        /// 1 for the newest.
        rank: u32,
    },
    /// Kept by keep-daily: the newest entry of the `rank`-th most recent day with entries.
    Daily {
        /// 1 for the most recent day.
        rank: u32,
    },
    /// Kept by keep-weekly: the newest entry of the `rank`-th most recent ISO week.
    Weekly {
        /// 1 for the most recent week.
        rank: u32,
    },
    /// Kept by keep-monthly: the newest entry of the `rank`-th most recent month.
    Monthly {
        /// 1 for the most recent month.
        rank: u32,
    },
    /// Kept: the store protects it until this date (S3 Object Lock); deleting it before would
    /// only hide it behind a delete marker. Deleted by the first prune after the date.
    Locked {
        /// The end of its retention.
        until: DateTime<Utc>,
    },
    /// Deleted: no rule keeps it.
    Expired {
        /// The policy's age limit, if it has one.
        within_days: Option<u32>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NewestComplete => f.write_str("newest complete backup"),
            Self::NewestLegacy => f.write_str("newest backup (none is complete)"),
            Self::Damaged { detail } => write!(f, "damaged, inspect by hand ({detail})"),
            Self::InProgress => f.write_str("being written by a run in progress"),
            Self::IncompleteRecent => f.write_str("incomplete (no manifest), kept for a day"),
            Self::IncompleteStale => {
                f.write_str("incomplete (no manifest) for over a day: cannot be verified")
            }
            Self::WithinDays { days } => write!(f, "within {days} days"),
            Self::Last { rank } => write!(f, "last #{rank}"),
            Self::Daily { rank } => write!(f, "daily #{rank}"),
            Self::Weekly { rank } => write!(f, "weekly #{rank}"),
            Self::Monthly { rank } => write!(f, "monthly #{rank}"),
            Self::Locked { until } => write!(
                f,
                "expired, but locked until {} (Object Lock)",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Self::Expired {
                within_days: Some(days),
            } => write!(f, "older than {days} days and kept by no rule"),
            Self::Expired { within_days: None } => f.write_str("kept by no rule"),
        }
    }
}

/// The decision about one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The entry.
    pub entry: Dated,
    /// Keep or delete.
    pub action: Action,
    /// Every rule that keeps it, or the reason it is deleted.
    pub reasons: Vec<Reason>,
}

impl fmt::Display for Decision {
    /// `keep: newest complete backup, within 30 days` or
    /// `delete: older than 30 days and kept by no rule`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.action)?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// What [`plan`] decided, for every entry, in the order the entries were given (oldest first
/// when they come from [`list_backups`](crate::list_backups) or [`list_dated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    policy: RetentionPolicy,
    now: DateTime<Utc>,
    decisions: Vec<Decision>,
}

impl PrunePlan {
    /// The policy the plan follows.
    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// The time the plan was made for.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Every decision.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The entries to delete.
    pub fn to_delete(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.action == Action::Delete)
    }

    /// The entries to keep.
    pub fn to_keep(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.action == Action::Keep)
    }

    /// The entry kept by the newest-backup guarantee, if there is any whole backup (the
    /// first, for a plan of several series: see [`guaranteed_all`](Self::guaranteed_all)).
    pub fn guaranteed(&self) -> Option<&Decision> {
        self.guaranteed_all().next()
    }

    /// Keeps the entries this plan would delete that `sink` still protects from deletion (S3
    /// Object Lock: the object or its manifest is retained until a later date), with the
    /// reason [`Reason::Locked`]; returns how many. Asks the store about each entry to delete
    /// (one `HeadObject` per object on S3 when a lock is configured; nothing elsewhere).
    ///
    /// # Errors
    /// When the store cannot say.
    pub async fn keep_locked(&mut self, sink: &dyn Sink) -> Result<usize> {
        let mut held = 0;
        for decision in self
            .decisions
            .iter_mut()
            .filter(|d| d.action == Action::Delete)
        {
            let mut until = sink.retained_until(&decision.entry.key).await?;
            if let Some(manifest) = &decision.entry.manifest_key {
                until = until.max(sink.retained_until(manifest).await?);
            }
            if let Some(until) = until.filter(|u| *u > self.now) {
                decision.action = Action::Keep;
                decision.reasons = vec![Reason::Locked { until }];
                held += 1;
            }
        }
        Ok(held)
    }

    /// Every entry kept by the newest-backup guarantee: one per series ([`plan_series`]).
    pub fn guaranteed_all(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| {
            d.reasons
                .iter()
                .any(|r| matches!(r, Reason::NewestComplete | Reason::NewestLegacy))
        })
    }
}

/// [`plan`] for backups of several series: the entries of each name prefix (one series per
/// database when several are backed up, `randevubu_app_backup_...` beside
/// `randevubu_billing_backup_...`) are judged on their own, so every series keeps its newest
/// complete backup and its own keep-last/daily/weekly/monthly counts, and one database's
/// backups never push another's out. Decisions come in the order the entries were given.
pub fn plan_series(
    entries: &[crate::catalog::BackupEntry],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> PrunePlan {
    let mut series: Vec<&str> = entries.iter().map(|e| e.name.prefix.as_str()).collect();
    series.sort_unstable();
    series.dedup();
    let mut decisions: Vec<Option<Decision>> = vec![None; entries.len()];
    for prefix in series {
        let indices: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].name.prefix == prefix)
            .collect();
        let group: Vec<Dated> = indices.iter().map(|&i| entries[i].to_dated()).collect();
        let planned = plan(&group, policy, now);
        for (i, decision) in indices.into_iter().zip(planned.decisions) {
            decisions[i] = Some(decision);
        }
    }
    PrunePlan {
        policy: policy.clone(),
        now,
        decisions: decisions.into_iter().flatten().collect(),
    }
}

/// Decides, for each of `entries`, whether `policy` keeps it at time `now`. Pure: reads
/// nothing, deletes nothing. See the [module docs](self) for the rules.
pub fn plan<E: AsDated>(entries: &[E], policy: &RetentionPolicy, now: DateTime<Utc>) -> PrunePlan {
    let dated: Vec<Dated> = entries.iter().map(AsDated::to_dated).collect();
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); dated.len()];

    // Newest first; equal times ordered by key so the plan does not depend on input order.
    let mut newest_first: Vec<usize> = (0..dated.len()).collect();
    newest_first.sort_by(|&a, &b| {
        dated[b]
            .timestamp
            .cmp(&dated[a].timestamp)
            .then_with(|| dated[b].key.cmp(&dated[a].key))
    });

    let incomplete_cutoff = TimeDelta::from_std(LEFTOVER_AGE)
        .ok()
        .and_then(|age| now.checked_sub_signed(age));
    for (i, entry) in dated.iter().enumerate() {
        match &entry.status {
            BackupStatus::Damaged(detail) => reasons[i].push(Reason::Damaged {
                detail: detail.clone(),
            }),
            BackupStatus::InProgress => reasons[i].push(Reason::InProgress),
            BackupStatus::Incomplete if incomplete_cutoff.is_none_or(|c| entry.timestamp > c) => {
                reasons[i].push(Reason::IncompleteRecent)
            }
            _ => {}
        }
    }

    let newest_with = |status: &BackupStatus| {
        newest_first
            .iter()
            .copied()
            .find(|&i| dated[i].status == *status)
    };
    if let Some(i) = newest_with(&BackupStatus::Complete) {
        reasons[i].push(Reason::NewestComplete);
    } else if let Some(i) = newest_with(&BackupStatus::Legacy) {
        reasons[i].push(Reason::NewestLegacy);
    }

    // The age limit applies to whole backups: complete ones and legacy ones. The keep rules
    // count complete (signed) backups only. Damaged, incomplete and in-progress entries are
    // decided above and never count.
    let whole: Vec<usize> = newest_first
        .iter()
        .copied()
        .filter(|&i| {
            matches!(
                dated[i].status,
                BackupStatus::Complete | BackupStatus::Legacy
            )
        })
        .collect();
    let candidates: Vec<usize> = whole
        .iter()
        .copied()
        .filter(|&i| dated[i].status == BackupStatus::Complete)
        .collect();

    if let Some(days) = policy.within_days {
        // A cutoff before the earliest representable time keeps everything.
        let cutoff = TimeDelta::try_days(i64::from(days)).and_then(|d| now.checked_sub_signed(d));
        for &i in &whole {
            if cutoff.is_none_or(|c| dated[i].timestamp > c) {
                reasons[i].push(Reason::WithinDays { days });
            }
        }
    }
    if let Some(n) = policy.keep_last {
        for (rank, &i) in (1..=n).zip(&candidates) {
            reasons[i].push(Reason::Last { rank });
        }
    }
    keep_per_period(&dated, &candidates, &mut reasons, policy.keep_daily, |t| {
        Period::Day(t.date_naive())
    });
    keep_per_period(&dated, &candidates, &mut reasons, policy.keep_weekly, |t| {
        let week = t.iso_week();
        Period::Week(week.year(), week.week())
    });
    keep_per_period(
        &dated,
        &candidates,
        &mut reasons,
        policy.keep_monthly,
        |t| Period::Month(t.year(), t.month()),
    );

    let decisions = dated
        .into_iter()
        .zip(reasons)
        .map(|(entry, mut reasons)| {
            reasons.sort_by_key(reason_order);
            if reasons.is_empty() {
                let reason = if entry.status == BackupStatus::Incomplete {
                    Reason::IncompleteStale
                } else {
                    Reason::Expired {
                        within_days: policy.within_days,
                    }
                };
                Decision {
                    entry,
                    action: Action::Delete,
                    reasons: vec![reason],
                }
            } else {
                Decision {
                    entry,
                    action: Action::Keep,
                    reasons,
                }
            }
        })
        .collect();
    PrunePlan {
        policy: policy.clone(),
        now,
        decisions,
    }
}

/// A day, ISO week or month: the buckets of the keep-daily/weekly/monthly rules.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Period {
    Day(NaiveDate),
    Week(i32, u32),
    Month(i32, u32),
}

/// Keeps the newest entry of each of the `count` most recent periods that have entries.
/// `candidates` are newest first, so each period's entries are consecutive and its first is
/// its newest.
fn keep_per_period(
    dated: &[Dated],
    candidates: &[usize],
    reasons: &mut [Vec<Reason>],
    count: Option<u32>,
    period_of: impl Fn(DateTime<Utc>) -> Period,
) {
    let Some(count) = count else { return };
    let mut rank = 0;
    let mut current = None;
    for &i in candidates {
        if rank >= count {
            break;
        }
        let period = period_of(dated[i].timestamp);
        if current == Some(period) {
            continue;
        }
        current = Some(period);
        rank += 1;
        reasons[i].push(match period {
            Period::Day(_) => Reason::Daily { rank },
            Period::Week(..) => Reason::Weekly { rank },
            Period::Month(..) => Reason::Monthly { rank },
        });
    }
}

fn reason_order(reason: &Reason) -> u8 {
    match reason {
        Reason::Damaged { .. }
        | Reason::InProgress
        | Reason::IncompleteRecent
        | Reason::Locked { .. } => 0,
        Reason::IncompleteStale => 7,
        Reason::NewestComplete | Reason::NewestLegacy => 1,
        Reason::WithinDays { .. } => 2,
        Reason::Last { .. } => 3,
        Reason::Daily { .. } => 4,
        Reason::Weekly { .. } => 5,
        Reason::Monthly { .. } => 6,
        Reason::Expired { .. } => 7,
    }
}

/// A deletion that did not happen (or happened only half).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteFailure {
    /// The entry.
    pub entry: Dated,
    /// Whether its manifest was deleted before the object's delete failed: the object is then
    /// without a manifest (never restored automatically), deleted by the next prune.
    pub manifest_deleted: bool,
    /// The storage error.
    pub error: String,
}

impl fmt::Display for DeleteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not delete {}: {}", self.entry.key, self.error)?;
        if self.manifest_deleted {
            f.write_str(
                " (its manifest was deleted: the object remains without one and is never \
                 restored automatically; the next prune deletes it)",
            )?;
        }
        Ok(())
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// Entries deleted completely (manifest and object), oldest first.
    pub deleted: Vec<Dated>,
    /// Entries that could not be deleted (completely).
    pub failed: Vec<DeleteFailure>,
}

/// Deletes what `plan` says to delete from `sink`, oldest first: for each entry its manifest,
/// then (only if that succeeded) its object. A failed delete does not stop the others; it is
/// reported in [`PruneOutcome::failed`].
///
/// Before deleting anything it checks that each entry the plan keeps as the newest backup
/// ([`PrunePlan::guaranteed_all`]) is still in `sink`, so a plan made for another destination or
/// from an out-of-date listing deletes nothing: that is the only error, besides a storage error
/// from that check.
pub async fn apply(sink: &dyn Sink, plan: &PrunePlan) -> Result<PruneOutcome> {
    let mut outcome = PruneOutcome::default();
    let doomed: Vec<&Decision> = plan.to_delete().collect();
    if doomed.is_empty() {
        return Ok(outcome);
    }
    for kept in plan.guaranteed_all() {
        let entry = &kept.entry;
        let mut keys = vec![entry.key.as_str()];
        keys.extend(entry.manifest_key.as_deref());
        for key in keys {
            match sink.head(key).await {
                Ok(_) => {}
                Err(StorageError::NotFound { .. }) => {
                    return Err(CoreError::NoMatch(format!(
                        "refusing to prune {}: {key}, which the plan keeps as the newest backup, \
                         is not there (the plan was made for another destination or from an \
                         out-of-date listing); nothing was deleted, list again and retry",
                        sink.describe()
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    for decision in doomed {
        let entry = &decision.entry;
        if let Some(manifest_key) = &entry.manifest_key {
            if let Err(e) = sink.delete(manifest_key).await {
                tracing::warn!("could not delete manifest {manifest_key}: {e}");
                outcome.failed.push(DeleteFailure {
                    entry: entry.clone(),
                    manifest_deleted: false,
                    error: e.to_string(),
                });
                continue;
            }
        }
        match sink.delete(&entry.key).await {
            Ok(()) => {
                tracing::info!("deleted {} ({decision})", entry.key);
                outcome.deleted.push(entry.clone());
            }
            Err(e) => {
                tracing::warn!("could not delete {}: {e}", entry.key);
                outcome.failed.push(DeleteFailure {
                    entry: entry.clone(),
                    manifest_deleted: entry.manifest_key.is_some(),
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(outcome)
}

/// Removes the claims (see [`CLAIM_SUFFIX`]) under `prefix` that are
/// older than `older_than`: left by runs that were killed. Returns the removed keys. A claim
/// that is that old belongs to no run in progress (no backup runs for a day).
pub async fn remove_stale_claims(
    sink: &dyn Sink,
    prefix: &str,
    older_than: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let Some(cutoff) = TimeDelta::from_std(older_than)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
    else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for object in sink.list(prefix).await? {
        if object.key.ends_with(CLAIM_SUFFIX) && object.last_modified < cutoff {
            sink.delete(&object.key).await?;
            tracing::info!("removed the stale claim {} (a killed run's)", object.key);
            removed.push(object.key);
        }
    }
    Ok(removed)
}

/// The first `YYYYMMDD_HHMMSS` timestamp (UTC) in the file-name part of `key` that is not part
/// of a longer run of digits, e.g. 2024-01-15 02:00:00 for
/// `logs/orchestration/backup_20240115_020000.log`.
pub fn timestamp_in_name(key: &str) -> Option<DateTime<Utc>> {
    const LEN: usize = 15;
    let name = key.rsplit('/').next().unwrap_or(key).as_bytes();
    if name.len() < LEN {
        return None;
    }
    (0..=name.len() - LEN).find_map(|start| {
        let window = &name[start..start + LEN];
        let shaped = window.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'_',
            _ => b.is_ascii_digit(),
        });
        let bounded = (start == 0 || !name[start - 1].is_ascii_digit())
            && name.get(start + LEN).is_none_or(|b| !b.is_ascii_digit());
        if !shaped || !bounded {
            return None;
        }
        let text = std::str::from_utf8(window).ok()?;
        let naive = NaiveDateTime::parse_from_str(text, crate::naming::TIMESTAMP_FORMAT).ok()?;
        Some(Utc.from_utc_datetime(&naive))
    })
}

/// Lists the dated objects under `prefix` (recursively), oldest first: every object whose file
/// name has a `YYYYMMDD_HHMMSS` timestamp ([`timestamp_in_name`]), such as run reports under
/// `reports/orchestration/` and run logs `logs/orchestration/backup_YYYYMMDD_HHMMSS.log`.
///
/// Objects without a timestamp are not listed (so never pruned). They are whole objects
/// (written atomically) and count as complete. A `NAME.manifest.json` beside an object is not
/// an entry of its own: it is deleted before its object.
pub async fn list_dated(sink: &dyn Sink, prefix: &str) -> Result<Vec<Dated>> {
    let objects = sink.list(prefix).await?;
    let keys: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut entries: Vec<Dated> = objects
        .iter()
        .filter(|o| !o.key.ends_with(MANIFEST_SUFFIX) && !o.key.ends_with(CLAIM_SUFFIX))
        .filter_map(|o| {
            let timestamp = timestamp_in_name(&o.key)?;
            let manifest_key = manifest_key_for(&o.key);
            Some(Dated {
                key: o.key.clone(),
                timestamp,
                size: o.size,
                status: BackupStatus::Complete,
                manifest_key: keys.contains(manifest_key.as_str()).then_some(manifest_key),
            })
        })
        .collect();
    entries.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
    }

    #[test]
    fn timestamps_are_found_in_names() {
        assert_eq!(
            timestamp_in_name("logs/orchestration/backup_20240115_020000.log"),
            Some(t("2024-01-15 02:00:00"))
        );
        assert_eq!(
            timestamp_in_name("reports/orchestration/20240115_020000_report.json"),
            Some(t("2024-01-15 02:00:00"))
        );
        assert_eq!(
            timestamp_in_name("x/run-123_20240229_235959"),
            Some(t("2024-02-29 23:59:59"))
        );
        for none in [
            "reports/orchestration/latest.json",
            "reports/20240115_020000/summary.json",
            "x/120240115_020000.log",
            "x/20240115_0200001.log",
            "x/20241315_020000.log",
            "x/2024011_020000.log",
            "",
        ] {
            assert_eq!(timestamp_in_name(none), None, "{none}");
        }
    }

    #[test]
    fn policy_describes_itself() {
        assert_eq!(RetentionPolicy::default().to_string(), "within 30 days");
        let p = RetentionPolicy {
            within_days: None,
            keep_last: Some(2),
            keep_daily: None,
            keep_weekly: Some(4),
            keep_monthly: None,
        };
        assert_eq!(p.to_string(), "keep-last 2, keep-weekly 4");
        let none = RetentionPolicy {
            keep_last: None,
            keep_weekly: None,
            ..p
        };
        assert!(none.to_string().starts_with("no rules"), "{none}");
    }
}
