//! The configured destinations taken together: one listing merged across them, choosing a
//! backup by the restore rules, and reading it once from the first destination whose copy
//! verifies (the next one when it does not).
//!
//! ```no_run
//! # async fn demo(keyring: &backup_crypto::Keyring) -> backup_core::Result<()> {
//! use backup_core::{BackupKind, Destination, Destinations, RestoreRules, Selection};
//! use backup_storage::LocalSink;
//!
//! let destinations = Destinations::new(vec![Destination::new(
//!     "local",
//!     Box::new(LocalSink::new("/var/backups/randevubu")?),
//! )]);
//! let catalog = destinations.catalog(BackupKind::DATABASE, "randevubu").await?;
//! let chosen = catalog.choose(&Selection::Latest, &RestoreRules::default())?;
//! let tmp = std::env::temp_dir();
//! let fetched = destinations.fetch(&catalog, chosen, Some(keyring), &tmp, None).await?;
//! println!("{} read from {}", fetched.entry().key, fetched.destination());
//! # Ok(()) }
//! ```

use std::path::Path;

use backup_crypto::Keyring;
use backup_storage::{LocalSink, S3Sink, Sink, StorageError};
use chrono::{TimeDelta, Utc};

use crate::catalog::{self, list_backups, BackupEntry, BackupStatus, Selection};
use crate::config::{LocalConfig, S3Settings};
use crate::error::{CoreError, Result};
use crate::hashing::ProgressFn;
use crate::layout::{claim_key_for, BackupKind};
use crate::pipeline::DestinationResult;
use crate::restore::{fetch_backup, FetchedBackup};

/// One configured destination: a sink and the short name a user picks it by (`local`, `s3`).
pub struct Destination {
    name: String,
    sink: Box<dyn Sink>,
}

impl Destination {
    /// A destination called `name`.
    pub fn new(name: impl Into<String>, sink: Box<dyn Sink>) -> Self {
        Self {
            name: name.into(),
            sink,
        }
    }

    /// The short name (`local`, `s3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink.
    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("sink", &self.sink.describe())
            .finish()
    }
}

/// The configured destinations, in order of preference for reading (local before S3).
#[derive(Debug, Default)]
pub struct Destinations {
    items: Vec<Destination>,
}

/// A backup and the destinations that hold it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The backup, as the first destination holding it describes it.
    pub entry: BackupEntry,
    /// Indexes into the [`Destinations`], in their order.
    pub holders: Vec<usize>,
}

/// Every backup of a kind (and name prefix) across the destinations, oldest first.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The kind listed.
    pub kind: BackupKind,
    /// The backups, merged by object key, oldest first.
    pub listed: Vec<Listed>,
}

/// What a restore may choose besides complete, signed backups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreRules {
    /// `--latest` and `--date` may choose legacy backups (no manifest, made by the old
    /// scripts), which cannot be authenticated.
    pub allow_legacy: bool,
    /// A backup named explicitly may be restored although it is `incomplete`.
    pub allow_unverified: bool,
    /// `--latest` may pass over a damaged or incomplete backup of the last
    /// [`RECENT_HOURS`] hours and restore an older one.
    pub allow_older: bool,
}

/// How recent a damaged or incomplete backup must be for `--latest` to refuse, unless
/// [`RestoreRules::allow_older`], to restore an older one instead: a nightly job's last run.
pub const RECENT_HOURS: i64 = 26;

impl Destinations {
    /// The destinations `items`, in order of preference for reading.
    pub fn new(items: Vec<Destination>) -> Self {
        Self { items }
    }

    /// Opens the configured destinations, local first: the directory of [`LocalConfig`]
    /// (created by the first write) and the bucket of [`S3Settings`] (its client built from
    /// the AWS credential chain). With `must_exist` (commands that only read: restores,
    /// listings, pruning) a local directory that does not exist is a configuration error: a
    /// mistyped path must not read as "no backups".
    ///
    /// # Errors
    /// [`CoreError::Config`] when no destination is configured or the local directory is
    /// unusable; the storage crate's errors for an S3 client that cannot be built.
    pub async fn open(local: &LocalConfig, s3: &S3Settings, must_exist: bool) -> Result<Self> {
        if local.dir.is_none() && s3.config.is_none() {
            return Err(CoreError::Config(
                "no backup destination configured: set BACKUP_LOCAL_DIR (e.g. \
                 /var/backups/randevubu) or pass --local-dir; BACKUP_S3_BUCKET is the other \
                 destination"
                    .to_owned(),
            ));
        }
        let mut destinations = Self::default();
        if let Some(dir) = &local.dir {
            let sink = LocalSink::new(dir).map_err(|e| {
                CoreError::Config(format!(
                    "backup directory (BACKUP_LOCAL_DIR / --local-dir): {e}"
                ))
            })?;
            if must_exist && !sink.exists() {
                return Err(CoreError::Config(format!(
                    "backup directory {} does not exist; check BACKUP_LOCAL_DIR / --local-dir",
                    dir.display()
                )));
            }
            destinations.push(Destination::new("local", Box::new(sink)));
        }
        if let Some(config) = &s3.config {
            let sink = S3Sink::new(config.clone()).await?;
            destinations.push(Destination::new("s3", Box::new(sink)));
        }
        Ok(destinations)
    }

    /// Adds a destination after the others.
    pub fn push(&mut self, destination: Destination) {
        self.items.push(destination);
    }

    /// The destinations, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.items.iter()
    }

    /// The sinks, in order.
    pub fn sinks(&self) -> Vec<&dyn Sink> {
        self.items.iter().map(Destination::sink).collect()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The destinations' descriptions joined for a message: `/var/backups and s3://bucket`.
    pub fn describe(&self) -> String {
        self.items
            .iter()
            .map(|d| d.sink().describe())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Keeps only the destination called `name`; false (and none left) when there is none.
    pub fn keep_only(&mut self, name: &str) -> bool {
        self.items.retain(|d| d.name == name);
        !self.items.is_empty()
    }

    /// Lists the backups of `kind` on every destination and merges them by object key, oldest
    /// first. Only names that start with `prefix` (the configured name prefix) are listed:
    /// objects of other names, whoever put them there, are not offered for restore.
    pub async fn catalog(&self, kind: BackupKind, prefix: &str) -> Result<Catalog> {
        let mut catalogs = self.catalogs(kind, &|p| p == prefix).await?;
        Ok(catalogs.remove(prefix).unwrap_or(Catalog {
            kind,
            listed: Vec::new(),
        }))
    }

    /// [`catalog`](Self::catalog) of every series (name prefix) of `kind` that `accept`
    /// takes, from one listing of each destination: one database's backups beside another's
    /// (`randevubu_app_backup_...`, `randevubu_billing_backup_...`). Only series with
    /// backups are in the map.
    ///
    /// # Errors
    /// As [`catalog`](Self::catalog).
    pub async fn catalogs(
        &self,
        kind: BackupKind,
        accept: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<std::collections::BTreeMap<String, Catalog>> {
        let mut listed: Vec<Listed> = Vec::new();
        for (i, d) in self.items.iter().enumerate() {
            for entry in list_backups(d.sink(), kind).await? {
                if !accept(&entry.name.prefix) {
                    continue;
                }
                match listed.iter_mut().find(|l| l.entry.key == entry.key) {
                    Some(l) => l.holders.push(i),
                    None => listed.push(Listed {
                        entry,
                        holders: vec![i],
                    }),
                }
            }
        }
        listed.sort_by(|a, b| {
            a.entry
                .timestamp()
                .cmp(&b.entry.timestamp())
                .then_with(|| a.entry.key.cmp(&b.entry.key))
        });
        let mut catalogs = std::collections::BTreeMap::new();
        for l in listed {
            catalogs
                .entry(l.entry.name.prefix.clone())
                .or_insert_with(|| Catalog {
                    kind,
                    listed: Vec::new(),
                })
                .listed
                .push(l);
        }
        Ok(catalogs)
    }

    /// After a backup: on each destination where it committed (`results`, in the order of
    /// the destinations, as [`run_backup_to_all`](crate::run_backup_to_all) returns them),
    /// makes `{kind}/latest/` hold a copy of it and nothing else, as the old scripts kept
    /// `redis/latest/` (see [`catalog::update_latest_copy`]). Returns, per destination where
    /// the backup committed, its name and the copy's key or why the copy failed.
    pub async fn publish_latest(
        &self,
        kind: BackupKind,
        results: &[DestinationResult],
    ) -> Vec<(&str, Result<String>)> {
        let mut published = Vec::new();
        for (destination, result) in self.items.iter().zip(results) {
            let Ok(report) = &result.result else {
                continue;
            };
            let copy = catalog::update_latest_copy(destination.sink(), kind, &report.key).await;
            published.push((destination.name(), copy));
        }
        published
    }

    /// The names of the destinations holding `listed`.
    pub fn holder_names(&self, listed: &Listed) -> Vec<&str> {
        listed
            .holders
            .iter()
            .filter_map(|&i| self.items.get(i).map(Destination::name))
            .collect()
    }

    /// The newest complete backup of `kind` named `prefix_...`, read once into a private
    /// verified copy in `spool_dir`: [`catalog`](Self::catalog), [`Catalog::choose`] with
    /// [`Selection::Latest`] and the default [`RestoreRules`], then [`fetch`](Self::fetch).
    pub async fn fetch_latest(
        &self,
        kind: BackupKind,
        prefix: &str,
        keyring: Option<&Keyring>,
        spool_dir: &Path,
    ) -> Result<FetchedBackup> {
        let catalog = self.catalog(kind, prefix).await?;
        let chosen = catalog.choose(&Selection::Latest, &RestoreRules::default())?;
        self.fetch(&catalog, chosen, keyring, spool_dir, None).await
    }

    /// Reads `listed` once, into a private verified copy in `spool_dir` (see
    /// [`fetch_backup`]), from the first destination that holds it; when that copy cannot be
    /// read or fails verification (a missing, truncated, damaged or forged copy), from the
    /// next one. Nothing has reached any restore target when this returns. Each destination's
    /// own manifest is used for its copy.
    pub async fn fetch(
        &self,
        catalog: &Catalog,
        listed: &Listed,
        keyring: Option<&Keyring>,
        spool_dir: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<FetchedBackup> {
        let key = &listed.entry.key;
        let mut problems = Vec::new();
        for (n, &i) in listed.holders.iter().enumerate() {
            let Some(destination) = self.items.get(i) else {
                continue;
            };
            let sink = destination.sink();
            let attempt = async {
                let entry = catalog::entry_for_key(sink, catalog.kind, key).await?;
                fetch_backup(sink, &entry, keyring, spool_dir, progress.clone()).await
            };
            match attempt.await {
                Ok(fetched) => return Ok(fetched),
                Err(e) if !falls_back(&e) => return Err(e),
                // The last copy's own error says best what is wrong.
                Err(e) if n + 1 == listed.holders.len() && problems.is_empty() => return Err(e),
                Err(e) => {
                    if n + 1 < listed.holders.len() {
                        tracing::warn!(
                            "the copy of {key} on {} cannot be used: {e}; trying the next \
                             destination",
                            sink.describe()
                        );
                    }
                    problems.push(format!("{}: {e}", destination.name));
                }
            }
        }
        Err(CoreError::NotRestorable(format!(
            "no destination holds a usable copy of {key} ({})",
            problems.join("; ")
        )))
    }
}

/// Whether a failure to fetch one destination's copy lets the next destination be tried:
/// everything that is about that copy (missing, unreadable, damaged, forged), not what would
/// fail the same way everywhere (no room for the private copy, no key).
fn falls_back(error: &CoreError) -> bool {
    !matches!(
        error,
        CoreError::Config(_)
            | CoreError::Storage(StorageError::Config(_))
            | CoreError::KeyRequired { .. }
    )
}

impl Catalog {
    /// The backups themselves, oldest first.
    pub fn entries(&self) -> Vec<BackupEntry> {
        self.listed.iter().map(|l| l.entry.clone()).collect()
    }

    /// Chooses the backup to restore: [`catalog::select`], then the rules. A backup being
    /// written is refused; an incomplete one only with `allow_unverified` (by name); one
    /// without a manifest is restored with a warning that it cannot be authenticated. With
    /// [`Selection::Latest`], every newer backup passed over (damaged, incomplete) is named in
    /// a warning, and a recent one (the last [`RECENT_HOURS`] hours) stops the restore unless
    /// `allow_older`.
    pub fn choose(&self, selection: &Selection, rules: &RestoreRules) -> Result<&Listed> {
        let entries = self.entries();
        let selected = catalog::select(&entries, selection, rules.allow_legacy)?;
        may_restore(selected, rules)?;
        if *selection == Selection::Latest {
            passing_over(&entries, selected, rules)?;
        }
        let chosen = self
            .listed
            .iter()
            .find(|l| l.entry.key == selected.key)
            .ok_or_else(|| CoreError::NoMatch(format!("{} is not listed", selected.key)))?;
        tracing::info!(
            "selected {} ({}, {} bytes, {})",
            chosen.entry.key,
            chosen.entry.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
            chosen.entry.size,
            chosen.entry.status,
        );
        Ok(chosen)
    }
}

/// Refuses what may not be restored under `rules`, and warns about what cannot be
/// authenticated.
fn may_restore(entry: &BackupEntry, rules: &RestoreRules) -> Result<()> {
    match entry.status {
        BackupStatus::InProgress => Err(CoreError::NotRestorable(format!(
            "{} is still being written by another run (its claim {} is there and its manifest \
             is not); wait for that run, or choose another backup",
            entry.key,
            claim_key_for(&entry.key)
        ))),
        BackupStatus::Incomplete if !rules.allow_unverified => {
            Err(CoreError::NotRestorable(format!(
                "{} is incomplete: it has no manifest but is newer than backups that have one, \
                 so it was made by this tool and lost its commit marker (a crash, a failed or \
                 deleted manifest). Its integrity and origin cannot be checked. Restore a \
                 complete backup instead, or, if you must, this one by name with --file {} \
                 --allow-unverified",
                entry.key,
                entry.file_name()
            )))
        }
        BackupStatus::Incomplete | BackupStatus::Legacy => {
            tracing::warn!(
                "{} has no manifest ({}): it cannot be authenticated; only its encryption \
                 padding, compression checksum and the dump's own end marker are checked as it \
                 streams",
                entry.key,
                entry.status
            );
            Ok(())
        }
        BackupStatus::Complete | BackupStatus::Damaged(_) => Ok(()),
    }
}

/// Warns about each newer backup `--latest` passed over, and refuses to go on when one of them
/// is recent, unless `rules.allow_older`.
fn passing_over(
    entries: &[BackupEntry],
    selected: &BackupEntry,
    rules: &RestoreRules,
) -> Result<()> {
    let skipped = catalog::passed_over(entries, selected);
    for e in &skipped {
        let detail = match &e.status {
            BackupStatus::Damaged(d) => format!("damaged: {d}"),
            other => other.to_string(),
        };
        tracing::warn!(
            "--latest passed over the newer backup {} ({}): {detail}",
            e.key,
            e.timestamp().format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    let recent = Utc::now() - TimeDelta::hours(RECENT_HOURS);
    match skipped.iter().find(|e| e.timestamp() > recent) {
        Some(newest) if !rules.allow_older => Err(CoreError::NotRestorable(format!(
            "the newest backup {} ({}) cannot be restored ({}), and the newest intact one, {}, \
             is older; look at what went wrong with the newest, or restore the older one with \
             --allow-older",
            newest.key,
            newest.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
            newest.status,
            selected.key
        ))),
        _ => Ok(()),
    }
}
