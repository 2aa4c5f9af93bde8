//! WAL retention: every WAL file from the start of the oldest base backup that retention keeps
//! is kept (and every timeline history file); older segments, partial segments and backup
//! labels are deleted. WAL positions rise across timelines (a new timeline starts where its
//! parent was left), so "older" is the segment's position, whatever its timeline. Without a
//! complete base backup nothing is deleted.

use std::collections::BTreeSet;

use backup_core::prune::{PruneKind, PruneReport};
use backup_core::{
    list_backups, BackupKind, BackupStatus, Destinations, RunStatus, CLAIM_SUFFIX, MANIFEST_SUFFIX,
};
use backup_sources::wal::{WalFileName, WalFileType};
use backup_storage::{LockMode, Sink};
use serde::Serialize;

/// What WAL retention did (or would do) on one destination.
#[derive(Debug, Clone, Serialize)]
pub struct WalPrune {
    /// The destination.
    pub destination: String,
    /// The first WAL file kept (the oldest kept base backup's start), and that base backup.
    pub floor: Option<(String, String)>,
    /// WAL files kept.
    pub kept: usize,
    /// WAL files older than the floor: deleted, or to delete in a dry run.
    pub older: Vec<String>,
    /// Objects deleted (files with their manifests).
    pub deleted: usize,
    /// Why listing or deleting failed.
    pub error: Option<String>,
}

impl WalPrune {
    /// The report's lines.
    pub fn text(&self, dry_run: bool) -> String {
        let range = match (self.older.first(), self.older.last()) {
            (Some(first), Some(last)) if first != last => format!(" ({first} to {last})"),
            (Some(only), _) => format!(" ({only})"),
            _ => String::new(),
        };
        let mut out = match &self.floor {
            None => format!(
                "  wal: no complete base backup here, so every WAL file is kept ({} files)\n",
                self.kept
            ),
            Some((first, base)) => format!(
                "  wal: keeping {} files from {first} on (the start of {base}, the oldest base \
                 backup kept), {} {} older{range}\n",
                self.kept,
                if dry_run { "would delete" } else { "deleted" },
                self.older.len()
            ),
        };
        if let Some(e) = &self.error {
            out.push_str(&format!("  wal: FAILED: {e}\n"));
        }
        out
    }
}

/// Applies WAL retention on every destination after `report`, the prune of the base backups
/// (the base backups its plan keeps set the floor; in a real run, those still there).
pub async fn prune_wal(
    destinations: &Destinations,
    report: &PruneReport,
    dry_run: bool,
) -> Vec<WalPrune> {
    let mut out = Vec::new();
    for (i, destination) in destinations.iter().enumerate() {
        let sink = destination.sink();
        let kept_bases: Option<BTreeSet<String>> = report
            .destinations
            .get(i)
            .and_then(|d| {
                d.kinds
                    .iter()
                    .find(|k| k.kind == PruneKind::Backups(BackupKind::BASE))
            })
            .and_then(|k| k.plan.as_ref())
            .map(|plan| plan.to_keep().map(|d| d.entry.key.clone()).collect());
        out.push(prune_one(sink, kept_bases.as_ref(), dry_run).await);
    }
    out
}

/// The overall status of WAL retention.
pub fn wal_prune_status(prunes: &[WalPrune]) -> RunStatus {
    let failed = prunes.iter().filter(|p| p.error.is_some()).count();
    match failed {
        0 => RunStatus::Success,
        n if n == prunes.len() => RunStatus::Failed,
        _ => RunStatus::Partial,
    }
}

/// A segment's position: its log and segment numbers, whatever its timeline.
fn position(name: &WalFileName) -> Option<(u32, u32)> {
    let text = name.as_str();
    Some((
        u32::from_str_radix(text.get(8..16)?, 16).ok()?,
        u32::from_str_radix(text.get(16..24)?, 16).ok()?,
    ))
}

async fn prune_one(
    sink: &dyn Sink,
    kept_bases: Option<&BTreeSet<String>>,
    dry_run: bool,
) -> WalPrune {
    let mut result = WalPrune {
        destination: sink.describe(),
        floor: None,
        kept: 0,
        older: Vec::new(),
        deleted: 0,
        error: None,
    };
    let bases = match list_backups(sink, BackupKind::BASE).await {
        Ok(bases) => bases,
        Err(e) => {
            result.error = Some(format!("listing the base backups failed: {e}"));
            return result;
        }
    };
    // The floor: the oldest start among the complete base backups kept.
    let floor = bases
        .iter()
        .filter(|b| b.status == BackupStatus::Complete)
        .filter(|b| kept_bases.is_none_or(|kept| kept.contains(&b.key)))
        .filter_map(|b| {
            let start = b
                .manifest
                .as_ref()?
                .source
                .details
                .get("wal_start")?
                .as_str()?;
            let name = WalFileName::parse(start).ok()?;
            Some((position(&name)?, name, b.key.clone()))
        })
        .min_by_key(|(position, _, _)| *position);
    let Some((floor_position, floor_name, base)) = floor else {
        result.kept = count_wal(sink).await.unwrap_or(0);
        return result;
    };
    result.floor = Some((floor_name.to_string(), base));
    // Alone on the destination while deleting: pushes finish first.
    let _lock = if dry_run {
        None
    } else {
        match sink
            .lock(LockMode::Exclusive, backup_core::DESTINATION_LOCK_WAIT)
            .await
        {
            Ok(lock) => lock,
            Err(e) => {
                result.error = Some(e.to_string());
                return result;
            }
        }
    };
    let listed = match sink.list(&BackupKind::WAL.prefix()).await {
        Ok(listed) => listed,
        Err(e) => {
            result.error = Some(format!("listing {} failed: {e}", BackupKind::WAL.prefix()));
            return result;
        }
    };
    let mut older_keys = Vec::new();
    let mut older_names = BTreeSet::new();
    let mut kept_names = BTreeSet::new();
    for meta in &listed {
        let object = meta
            .key
            .strip_suffix(MANIFEST_SUFFIX)
            .or_else(|| meta.key.strip_suffix(CLAIM_SUFFIX))
            .unwrap_or(&meta.key);
        let Some((name, _, _)) = WalFileName::from_object_key(object) else {
            continue;
        };
        let old = name.file_type() != WalFileType::History
            && position(&name).is_some_and(|p| p < floor_position);
        if old {
            older_keys.push(meta.key.clone());
            older_names.insert(name.to_string());
        } else if object == meta.key {
            kept_names.insert(name.to_string());
        }
    }
    result.kept = kept_names.len();
    result.older = older_names.into_iter().collect();
    if dry_run {
        return result;
    }
    // Manifests first: a file whose deletion fails half-way is never taken for complete.
    older_keys.sort_by_key(|k| !k.ends_with(MANIFEST_SUFFIX));
    let mut failures = Vec::new();
    for key in older_keys {
        match sink.delete(&key).await {
            Ok(()) => result.deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => failures.push(format!("{key}: {e}")),
        }
    }
    if !failures.is_empty() {
        result.error = Some(format!(
            "{} deletions failed: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    result
}

/// The number of complete WAL files on `sink`.
async fn count_wal(sink: &dyn Sink) -> Option<usize> {
    super::chain::complete_files(sink)
        .await
        .ok()
        .map(|f| f.len())
}

/// Retention over everything: [`Destinations::prune`] of `kinds`, then, when base backups
/// were among them, [`prune_wal`] after them.
#[derive(Debug)]
pub struct Retention {
    /// The prune of the dated kinds.
    pub report: PruneReport,
    /// WAL retention, one per destination (empty when base backups were not pruned).
    pub wal: Vec<WalPrune>,
}

impl Retention {
    /// Applies retention (see [`Retention`]); in a dry run only plans.
    pub async fn apply(
        destinations: &Destinations,
        kinds: &[PruneKind],
        policy: &backup_core::RetentionPolicy,
        now: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Self {
        let report = destinations.prune(kinds, policy, now, dry_run).await;
        let wal = if kinds.contains(&PruneKind::Backups(BackupKind::BASE)) {
            prune_wal(destinations, &report, dry_run).await
        } else {
            Vec::new()
        };
        Self { report, wal }
    }

    /// The report as text: each destination's kinds, then WAL retention.
    pub fn text(&self) -> String {
        let mut out = self.report.text();
        for wal in &self.wal {
            out.push_str(&format!("{}:\n", wal.destination));
            out.push_str(&wal.text(self.report.dry_run));
        }
        out
    }

    /// The report as JSON: the prune's, with `wal` added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.report.to_json();
        if let Some(map) = json.as_object_mut() {
            map.insert(
                "wal".to_owned(),
                serde_json::to_value(&self.wal).unwrap_or_default(),
            );
        }
        json
    }

    /// Success when everything succeeded, failed when everything failed, else partial.
    pub fn result(&self) -> RunStatus {
        let prune = self.report.result();
        if self.wal.is_empty() {
            return prune;
        }
        match (prune, wal_prune_status(&self.wal)) {
            (RunStatus::Success, RunStatus::Success) => RunStatus::Success,
            (RunStatus::Failed, RunStatus::Failed) => RunStatus::Failed,
            _ => RunStatus::Partial,
        }
    }
}
