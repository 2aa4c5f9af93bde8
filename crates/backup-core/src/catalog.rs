//! The catalog: which backups of a kind a sink holds, and selecting one to restore.

use std::collections::BTreeSet;
use std::fmt;

use backup_storage::{ObjectMeta, Sink, StorageError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::layout::{
    manifest_key_for, BackupKind, CLAIM_SUFFIX, MANIFEST_SUFFIX, REENCRYPT_SUFFIX,
};
use crate::manifest::{Manifest, MANIFEST_SIZE_LIMIT};
use crate::naming::BackupName;

/// Whether a backup is known to be complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "detail")]
pub enum BackupStatus {
    /// Has a manifest (the commit marker): written completely by this tool.
    Complete,
    /// No manifest, and older than every backup with a manifest on its destination: made by
    /// the old scripts. Cannot be authenticated (only checked by decryption padding,
    /// decompression and the dump's own trailer as it streams), so chosen by `--latest` and
    /// `--date` only when legacy backups are allowed; restorable by name with a warning.
    Legacy,
    /// No manifest, but newer than a backup with a manifest on its destination: made by this
    /// tool and lost its commit marker (a crash, a failed manifest write, a deleted manifest).
    /// Never chosen automatically; restorable only by name with `--allow-unverified`; pruned
    /// after a day.
    Incomplete,
    /// No manifest yet, and a run's claim on its name is still there: a backup being written.
    /// Never chosen, never pruned while the claim is younger than a day.
    #[serde(rename = "in_progress")]
    InProgress,
    /// Has a manifest that cannot be read, or that does not vouch for the object; never
    /// selected automatically.
    Damaged(String),
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Complete => f.write_str("complete"),
            Self::Legacy => f.write_str("legacy"),
            Self::Incomplete => f.write_str("incomplete"),
            Self::InProgress => f.write_str("in progress"),
            Self::Damaged(_) => f.write_str("damaged"),
        }
    }
}

/// One backup in a sink.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    /// The object key.
    pub key: String,
    /// The parsed name (time, compression, encryption).
    pub name: BackupName,
    /// Stored size in bytes.
    pub size: u64,
    /// Completeness.
    pub status: BackupStatus,
    /// The manifest, for complete backups (its HMAC is checked at restore, not here).
    pub manifest: Option<Manifest>,
}

impl BackupEntry {
    /// When the backup was taken (UTC), from its name.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.name.timestamp
    }

    /// The file name without the folder.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// The key id from the manifest, if known.
    pub fn key_id(&self) -> Option<&str> {
        self.manifest.as_ref().and_then(Manifest::key_id)
    }

    /// Whether `--latest` and `--date` may pick this backup: complete ones, and legacy ones
    /// when `allow_legacy`.
    pub fn is_selectable(&self, allow_legacy: bool) -> bool {
        match self.status {
            BackupStatus::Complete => true,
            BackupStatus::Legacy => allow_legacy,
            BackupStatus::Incomplete | BackupStatus::InProgress | BackupStatus::Damaged(_) => false,
        }
    }
}

/// How to pick one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The newest complete backup (or legacy one, where allowed).
    Latest,
    /// The newest complete backup (or legacy one, where allowed) taken on this UTC day.
    Date(NaiveDate),
    /// A backup by object key or file name.
    Name(String),
}

/// Lists the backups of `kind` in `sink`, oldest first.
pub async fn list_backups(sink: &dyn Sink, kind: BackupKind) -> Result<Vec<BackupEntry>> {
    let prefix = format!("{}/", kind.folder());
    let objects = sink.list(&prefix).await?;
    let folder = Folder::new(&prefix, &objects, kind);
    let mut entries = Vec::new();
    for object in &objects {
        // Only the kind's own folder: `redis/latest/` copies are not separate backups.
        if object.key[prefix.len()..].contains('/') {
            continue;
        }
        let Some(name) = BackupName::parse(&object.key, kind) else {
            continue;
        };
        entries.push(entry_from(sink, object, name, &folder).await?);
    }
    entries.sort_by(|a, b| {
        a.timestamp()
            .cmp(&b.timestamp())
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(entries)
}

/// The entry for one object key, or [`CoreError::NoMatch`] when it does not exist.
pub async fn entry_for_key(sink: &dyn Sink, kind: BackupKind, key: &str) -> Result<BackupEntry> {
    let object = match sink.head(key).await {
        Ok(meta) => meta,
        Err(StorageError::NotFound { .. }) => {
            return Err(CoreError::NoMatch(format!(
                "no backup named {key:?} in {}",
                sink.describe()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let name = BackupName::parse(key, kind).ok_or_else(|| {
        CoreError::NoMatch(format!(
            "{key:?} is not a backup name (expected PREFIX_backup_YYYYMMDD_HHMMSS.EXT[.gz|.zst][.enc])"
        ))
    })?;
    let prefix = match key.rfind('/') {
        Some(i) => &key[..=i],
        None => "",
    };
    let listed = sink.list(prefix).await?;
    let folder = Folder::new(prefix, &listed, kind);
    entry_from(sink, &object, name, &folder).await
}

/// What the folder of a backup says about backups without a manifest: which have one, which
/// are claimed by a run in progress, and the time of the oldest backup with a manifest.
struct Folder<'a> {
    manifests: BTreeSet<&'a str>,
    claims: BTreeSet<&'a str>,
    oldest_with_manifest: Option<DateTime<Utc>>,
}

impl<'a> Folder<'a> {
    fn new(prefix: &str, objects: &'a [ObjectMeta], kind: BackupKind) -> Self {
        let direct = |key: &&'a str| !key[prefix.len().min(key.len())..].contains('/');
        let manifests: BTreeSet<&'a str> = objects
            .iter()
            .filter_map(|o| o.key.strip_suffix(MANIFEST_SUFFIX))
            .filter(direct)
            .collect();
        let claims = objects
            .iter()
            .filter_map(|o| o.key.strip_suffix(CLAIM_SUFFIX))
            .filter(direct)
            .collect();
        let oldest_with_manifest = manifests
            .iter()
            .filter_map(|key| BackupName::parse(key, kind))
            .map(|name| name.timestamp)
            .min();
        Self {
            manifests,
            claims,
            oldest_with_manifest,
        }
    }

    /// The status of `key` (named `name`) if it has no manifest. One with a claim, or with the
    /// journal of a re-encryption that has not finished ([`REENCRYPT_SUFFIX`]), is in progress.
    fn unmanifested(&self, key: &str, name: &BackupName) -> BackupStatus {
        if self.claims.contains(key)
            || self
                .manifests
                .contains(format!("{key}{REENCRYPT_SUFFIX}").as_str())
        {
            BackupStatus::InProgress
        } else if self
            .oldest_with_manifest
            .is_some_and(|oldest| name.timestamp > oldest)
        {
            BackupStatus::Incomplete
        } else {
            BackupStatus::Legacy
        }
    }
}

async fn entry_from(
    sink: &dyn Sink,
    object: &ObjectMeta,
    name: BackupName,
    folder: &Folder<'_>,
) -> Result<BackupEntry> {
    let has_manifest = folder.manifests.contains(object.key.as_str());
    let (status, manifest) = if has_manifest {
        let manifest_key = manifest_key_for(&object.key);
        match sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await {
            Ok(bytes) => match Manifest::parse(&manifest_key, &bytes) {
                Ok(m) => match disagreement(&m, &object.key, &name) {
                    None => (BackupStatus::Complete, Some(m)),
                    Some(why) => (BackupStatus::Damaged(why), None),
                },
                Err(e) => (BackupStatus::Damaged(e.to_string()), None),
            },
            Err(e @ StorageError::TooLarge { .. }) => (BackupStatus::Damaged(e.to_string()), None),
            Err(e) => return Err(e.into()),
        }
    } else {
        (folder.unmanifested(&object.key, &name), None)
    };
    Ok(BackupEntry {
        key: object.key.clone(),
        name,
        size: object.size,
        status,
        manifest,
    })
}

/// Why manifest `m` cannot vouch for the object `key` named `name`, if it cannot: it names
/// another object, says the object is (un)encrypted when its name says otherwise, or is not
/// signed although the backup is encrypted (this tool signs every manifest of an encrypted
/// backup; an unsigned one was written by someone without the key). Its signature itself is
/// checked at restore, with the key.
fn disagreement(m: &Manifest, key: &str, name: &BackupName) -> Option<String> {
    if !m.describes(key) {
        return Some(format!(
            "manifest describes {:?}, not this object",
            m.object_key
        ));
    }
    if m.encryption.is_some() != name.encrypted {
        return Some(format!(
            "the manifest says the backup is {}, but its name says it is {}: the manifest was \
             not written by this tool for this object",
            if m.encryption.is_some() {
                "encrypted"
            } else {
                "not encrypted"
            },
            if name.encrypted {
                "encrypted (.enc)"
            } else {
                "not encrypted"
            }
        ));
    }
    if name.encrypted && m.hmac.is_none() {
        return Some(
            "the manifest of an encrypted backup is not signed (no hmac): it was not written \
             by this tool, which signs every such manifest with the key"
                .to_owned(),
        );
    }
    None
}

/// Picks one backup from `entries` (as returned by [`list_backups`]). `--latest` and `--date`
/// pick only complete backups, and legacy ones when `allow_legacy`; a name picks whatever it
/// names (the restore then decides whether it may be restored).
pub fn select<'a>(
    entries: &'a [BackupEntry],
    selection: &Selection,
    allow_legacy: bool,
) -> Result<&'a BackupEntry> {
    match selection {
        Selection::Latest => entries
            .iter()
            .rev()
            .find(|e| e.is_selectable(allow_legacy))
            .ok_or_else(|| CoreError::NoMatch(no_selectable(entries, allow_legacy))),
        Selection::Date(day) => entries
            .iter()
            .rev()
            .filter(|e| e.timestamp().date_naive() == *day)
            .find(|e| e.is_selectable(allow_legacy))
            .ok_or_else(|| {
                let that_day: Vec<BackupEntry> = entries
                    .iter()
                    .filter(|e| e.timestamp().date_naive() == *day)
                    .cloned()
                    .collect();
                if !that_day.is_empty() {
                    return CoreError::NoMatch(format!(
                        "{day} (UTC): {}",
                        no_selectable(&that_day, allow_legacy)
                    ));
                }
                let days: std::collections::BTreeSet<String> = entries
                    .iter()
                    .map(|e| e.timestamp().date_naive().to_string())
                    .collect();
                let days: Vec<String> = days.into_iter().collect();
                CoreError::NoMatch(format!(
                    "no backup taken on {day} (UTC); days with backups: {}",
                    if days.is_empty() {
                        "none".to_owned()
                    } else {
                        days.join(", ")
                    }
                ))
            }),
        Selection::Name(name) => entries
            .iter()
            .find(|e| e.key == *name || e.file_name() == name)
            .ok_or_else(|| {
                CoreError::NoMatch(format!(
                    "no backup named {name:?}; use --list to see the available names"
                ))
            }),
    }
}

/// The backups newer than `selected` that a selection passed over because they cannot be
/// restored as they are (damaged or incomplete), newest first: what a restore of an older
/// backup must name, so that a damaged newest backup is never skipped silently.
pub fn passed_over<'a>(entries: &'a [BackupEntry], selected: &BackupEntry) -> Vec<&'a BackupEntry> {
    entries
        .iter()
        .rev()
        .filter(|e| e.timestamp() > selected.timestamp())
        .filter(|e| {
            matches!(
                e.status,
                BackupStatus::Damaged(_) | BackupStatus::Incomplete
            )
        })
        .collect()
}

/// Why `--latest` found nothing: no backups at all, or none that may be chosen.
fn no_selectable(entries: &[BackupEntry], allow_legacy: bool) -> String {
    if entries.is_empty() {
        return "no backups found".to_owned();
    }
    let legacy = entries
        .iter()
        .filter(|e| e.status == BackupStatus::Legacy)
        .count();
    if legacy > 0 && !allow_legacy {
        format!(
            "no complete backup found; {legacy} legacy backup(s) without a manifest (made by \
             the old scripts) cannot be authenticated and are chosen automatically only with \
             --allow-legacy (or BACKUP_ALLOW_LEGACY=true); or restore one by name with --file"
        )
    } else {
        format!(
            "no complete backup found among {} listed (see --list for their status)",
            entries.len()
        )
    }
}

/// Copies the backup `key` (and its manifest) to `{folder}/latest/` and then removes every
/// other object there, so that the folder holds the newest backup only, as the old scripts
/// kept it. The copy is complete before the older one is removed: a failure half-way leaves
/// the previous copy, or both, never none. Returns the key of the copy.
pub async fn update_latest_copy(sink: &dyn Sink, kind: BackupKind, key: &str) -> Result<String> {
    let file = key.rsplit('/').next().unwrap_or(key);
    let folder = kind.latest_folder();
    let copy = format!("{folder}{file}");
    sink.copy(key, &copy).await?;
    sink.copy(&manifest_key_for(key), &manifest_key_for(&copy))
        .await?;
    let mut stale: Vec<String> = sink
        .list(&folder)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| *k != copy && *k != manifest_key_for(&copy))
        .collect();
    // Manifests first: an interrupted clean-up leaves at worst a legacy-looking object.
    stale.sort_by_key(|k| !k.ends_with(MANIFEST_SUFFIX));
    for old in stale {
        sink.delete(&old).await?;
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_storage::MemorySink;
    use bytes::Bytes;

    async fn put(sink: &MemorySink, key: &str, data: &'static [u8]) {
        sink.put(key, Bytes::from_static(data)).await.unwrap();
    }

    #[tokio::test]
    async fn lists_complete_legacy_and_damaged_backups_oldest_first() {
        let sink = MemorySink::new();
        let legacy = "database/randevubu_backup_20240114_020000.sql.gz.enc";
        let complete = "database/randevubu_backup_20240115_020000.sql.gz.enc";
        let damaged = "database/randevubu_backup_20240116_020000.sql.gz.enc";
        put(&sink, complete, b"x").await;
        put(&sink, legacy, b"y").await;
        put(&sink, damaged, b"z").await;
        put(&sink, &format!("{damaged}{MANIFEST_SUFFIX}"), b"{oops").await;
        put(&sink, "database/README.txt", b"not a backup").await;
        put(&sink, "redis/redis_backup_20240115_020000.rdb.gz", b"r").await;
        let key = backup_crypto::EncryptionKey::from_passphrase("k").unwrap();
        let mut manifest = crate::manifest::tests_support::manifest_for(complete, &key);
        let json = manifest.to_signed_json(Some(&key)).unwrap();
        sink.put(&manifest_key_for(complete), Bytes::from(json))
            .await
            .unwrap();

        let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
        let summary: Vec<(&str, String)> = entries
            .iter()
            .map(|e| (e.file_name(), e.status.to_string()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "randevubu_backup_20240114_020000.sql.gz.enc",
                    "legacy".into()
                ),
                (
                    "randevubu_backup_20240115_020000.sql.gz.enc",
                    "complete".into()
                ),
                (
                    "randevubu_backup_20240116_020000.sql.gz.enc",
                    "damaged".into()
                ),
            ]
        );
        // The key id of a format 3 manifest is derived from its salt: the one it was signed
        // under, never the key's local label.
        let signed_by = entries[1]
            .manifest
            .as_ref()
            .unwrap()
            .mac_kdf
            .clone()
            .unwrap();
        assert_eq!(entries[1].key_id(), signed_by.key_id.as_deref());
        assert_ne!(entries[1].key_id(), Some(key.id().as_str()));

        // --latest skips the damaged one; --date picks the newest of that day, a legacy one
        // only when legacy backups are allowed.
        assert_eq!(
            select(&entries, &Selection::Latest, false).unwrap().key,
            complete
        );
        let day = NaiveDate::from_ymd_opt(2024, 1, 14).unwrap();
        let err = select(&entries, &Selection::Date(day), false).unwrap_err();
        assert!(err.to_string().contains("--allow-legacy"), "{err}");
        assert_eq!(
            select(&entries, &Selection::Date(day), true).unwrap().key,
            legacy
        );
        let missing = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        let err = select(&entries, &Selection::Date(missing), true).unwrap_err();
        assert!(err.to_string().contains("2024-01-14"), "{err}");
        let by_name = Selection::Name("randevubu_backup_20240114_020000.sql.gz.enc".into());
        assert_eq!(select(&entries, &by_name, false).unwrap().key, legacy);
        assert!(select(&entries, &Selection::Name("nope".into()), false).is_err());
    }

    #[tokio::test]
    async fn objects_without_a_manifest_newer_than_a_signed_backup_are_incomplete_or_in_progress() {
        let sink = MemorySink::new();
        let key = backup_crypto::EncryptionKey::from_passphrase("k").unwrap();
        let legacy = "database/randevubu_backup_20240101_020000.sql.gz.enc";
        let complete = "database/randevubu_backup_20240102_020000.sql.gz.enc";
        let lost = "database/randevubu_backup_20240103_020000.sql.gz.enc";
        let running = "database/randevubu_backup_20240104_020000.sql.gz.enc";
        for k in [legacy, complete, lost, running] {
            put(&sink, k, b"x").await;
        }
        let mut manifest = crate::manifest::tests_support::manifest_for(complete, &key);
        let json = manifest.to_signed_json(Some(&key)).unwrap();
        sink.put(&manifest_key_for(complete), Bytes::from(json))
            .await
            .unwrap();
        put(&sink, &crate::layout::claim_key_for(running), b"{}").await;

        let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
        let statuses: Vec<String> = entries.iter().map(|e| e.status.to_string()).collect();
        assert_eq!(
            statuses,
            ["legacy", "complete", "incomplete", "in progress"],
            "{entries:?}"
        );
        // Neither is ever chosen automatically, even with legacy backups allowed.
        assert_eq!(
            select(&entries, &Selection::Latest, true).unwrap().key,
            complete
        );
        // The single-object lookup (--file) agrees with the listing.
        for (k, status) in [
            (legacy, BackupStatus::Legacy),
            (lost, BackupStatus::Incomplete),
            (running, BackupStatus::InProgress),
        ] {
            let entry = entry_for_key(&sink, BackupKind::DATABASE, k).await.unwrap();
            assert_eq!(entry.status, status, "{k}");
        }
    }

    #[tokio::test]
    async fn latest_on_an_empty_sink_says_no_backups() {
        let sink = MemorySink::new();
        let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
        assert!(entries.is_empty());
        assert!(matches!(
            select(&entries, &Selection::Latest, true),
            Err(CoreError::NoMatch(_))
        ));
    }

    #[tokio::test]
    async fn entry_for_key_reports_missing_and_non_backup_objects() {
        let sink = MemorySink::new();
        put(&sink, "database/notes.txt", b"x").await;
        assert!(matches!(
            entry_for_key(
                &sink,
                BackupKind::DATABASE,
                "database/none_backup_20240101_000000.sql.gz"
            )
            .await,
            Err(CoreError::NoMatch(_))
        ));
        assert!(matches!(
            entry_for_key(&sink, BackupKind::DATABASE, "database/notes.txt").await,
            Err(CoreError::NoMatch(_))
        ));
    }
}
