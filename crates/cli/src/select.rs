//! Choosing a backup to restore, shared by `restore-database` and `restore-redis`:
//! `--list | --latest | --date | --file`, `--from`, `--keyring-dir`, and the listing itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::Settings;
use backup_core::{
    catalog, list_backups, stored_intact, BackupEntry, BackupKind, BackupStatus, Selection,
};
use backup_storage::{LocalSink, Sink};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use crate::common;
use crate::exit::CliError;

/// Which backup, from where. Each command puts `--list`, `--latest`, `--date` and `--file` in a
/// required group of its own.
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// List the backups: name, UTC time, size, complete/legacy, key id, location
    #[arg(long)]
    pub list: bool,

    /// Restore the newest backup
    #[arg(long)]
    pub latest: bool,

    /// Restore the newest backup taken on this UTC day
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<NaiveDate>,

    /// Restore this backup: an object name from --list, or the path of a backup file
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,

    /// Directory of older key files, to restore backups made with a previous key
    /// [env: BACKUP_KEYRING_DIR]
    #[arg(long, value_name = "DIR")]
    pub keyring_dir: Option<PathBuf>,

    /// Read from this destination only; by default the local copy is used when it is present
    /// and intact, else S3
    #[arg(long, value_enum, value_name = "WHERE")]
    pub from: Option<FromArg>,

    /// Let --latest and --date choose legacy backups (made by the old scripts, without a
    /// manifest), which cannot be authenticated [env: BACKUP_ALLOW_LEGACY]
    #[arg(long)]
    pub allow_legacy: bool,

    /// With --latest: restore the newest intact backup even when a newer one, taken in the
    /// last 26 hours, is damaged or incomplete (without it that is an error)
    #[arg(long)]
    pub allow_older: bool,

    /// With --file: restore a backup listed as `incomplete` (no manifest, so neither its
    /// integrity nor its origin can be checked)
    #[arg(long, requires = "file")]
    pub allow_unverified: bool,

    /// Machine-readable output of --list (refused without it: a restore prints its result as
    /// text)
    #[arg(long, requires = "list")]
    pub json: bool,
}

/// Where `--from` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FromArg {
    /// The local backup directory.
    Local,
    /// The S3 bucket.
    S3,
}

impl FromArg {
    fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Self::Local => "BACKUP_LOCAL_DIR",
            Self::S3 => "BACKUP_S3_BUCKET",
        }
    }
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like 2024-01-15"))
}

impl SelectionArgs {
    /// Adds the settings these flags override to `extra`.
    pub fn add_overrides(&self, extra: &mut BTreeMap<String, String>) {
        if let Some(dir) = &self.keyring_dir {
            extra.insert("BACKUP_KEYRING_DIR".to_owned(), dir.display().to_string());
        }
        if self.allow_legacy {
            extra.insert("BACKUP_ALLOW_LEGACY".to_owned(), "true".to_owned());
        }
    }
}

/// A backup and the destinations (indexes) that hold it.
pub struct Listed {
    /// The backup (as the first destination holding it describes it).
    pub entry: BackupEntry,
    /// Indexes into [`Resolved::destinations`].
    pub holders: Vec<usize>,
}

impl Listed {
    fn new(entry: BackupEntry, holder: usize) -> Self {
        Self {
            entry,
            holders: vec![holder],
        }
    }
}

/// The destinations to read, what they hold, and what was asked for.
pub struct Resolved {
    /// The kind of backup.
    pub kind: BackupKind,
    /// Destinations (local first), or the directory of a `--file PATH`.
    pub destinations: Vec<common::Destination>,
    /// Every backup of the kind, merged across destinations, oldest first.
    pub listed: Vec<Listed>,
    /// The selection.
    pub selection: Selection,
    /// Whether `--latest`/`--date` may choose legacy backups.
    pub allow_legacy: bool,
    /// Whether an `incomplete` backup named by `--file` may be restored.
    pub allow_unverified: bool,
    /// Whether `--latest` may pass over a damaged backup of the last 26 hours.
    pub allow_older: bool,
}

/// How recent a damaged or incomplete backup must be for `--latest` to refuse, without
/// `--allow-older`, to restore an older one instead: a nightly job's last run.
const RECENT_HOURS: i64 = 26;

/// Opens the destinations and lists the backups of `kind` whose names start with `prefix`
/// (objects of other names, whoever put them there, are not offered) according to `args`.
/// `--file PATH` naming a file on disk reads it (and its manifest) from its own directory.
pub async fn resolve(
    kind: BackupKind,
    prefix: &str,
    args: &SelectionArgs,
    settings: &Settings,
) -> Result<Resolved, CliError> {
    let file_path = args.file.as_deref().map(Path::new).filter(|p| p.is_file());
    if let Some(path) = file_path {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::usage(anyhow::anyhow!("--file {path:?} has no file name")))?;
        let sink = LocalSink::new(dir).map_err(CliError::usage)?;
        let entry = catalog::entry_for_key(&sink, kind, &name)
            .await
            .map_err(CliError::failure)?;
        return Ok(Resolved {
            kind,
            destinations: vec![common::Destination {
                name: "file",
                sink: Box::new(sink),
            }],
            listed: vec![Listed::new(entry, 0)],
            selection: Selection::Name(name),
            allow_legacy: false,
            allow_unverified: args.allow_unverified,
            allow_older: args.allow_older,
        });
    }
    let allow_legacy = settings
        .flag("BACKUP_ALLOW_LEGACY", false)
        .map_err(CliError::usage)?;
    let selection = match (&args.file, args.date) {
        (Some(name), _) => Selection::Name(name.clone()),
        (None, Some(day)) => Selection::Date(day),
        (None, None) => Selection::Latest,
    };
    let mut destinations = common::open_destinations(settings, true).await?;
    if let Some(from) = args.from {
        destinations.retain(|d| d.name == from.name());
        if destinations.is_empty() {
            return Err(CliError::usage(anyhow::anyhow!(
                "--from {} but that destination is not configured (set {})",
                from.name(),
                from.setting()
            )));
        }
    }
    let mut listed = list_everywhere(kind, &destinations).await?;
    listed.retain(|l| l.entry.name.prefix == prefix);
    Ok(Resolved {
        kind,
        destinations,
        listed,
        selection,
        allow_legacy,
        allow_unverified: args.allow_unverified,
        allow_older: args.allow_older,
    })
}

impl Resolved {
    /// The selected backup and the destination to read it from: the first holder (local before
    /// S3) whose copy is intact, so a damaged or missing local copy falls back to S3. The entry
    /// is re-read from the chosen destination (its manifest is that destination's).
    pub async fn choose(&self) -> Result<(&dyn Sink, BackupEntry), CliError> {
        let entries: Vec<BackupEntry> = self.listed.iter().map(|l| l.entry.clone()).collect();
        let selected = catalog::select(&entries, &self.selection, self.allow_legacy)
            .map_err(CliError::failure)?;
        self.may_restore(selected)?;
        if self.selection == Selection::Latest {
            self.passing_over(&entries, selected)?;
        }
        let holders = self
            .listed
            .iter()
            .find(|l| l.entry.key == selected.key)
            .map(|l| l.holders.clone())
            .unwrap_or_default();
        let mut last_problem = None;
        for (n, &i) in holders.iter().enumerate() {
            let sink = self.destinations[i].sink.as_ref();
            let entry = catalog::entry_for_key(sink, self.kind, &selected.key)
                .await
                .map_err(CliError::failure)?;
            // With no other copy to fall back to, the restore's own checks say what is wrong.
            if n + 1 == holders.len() {
                return Ok(self.log_choice(sink, entry));
            }
            match stored_intact(sink, &entry).await {
                Ok(true) => return Ok(self.log_choice(sink, entry)),
                Ok(false) => {
                    tracing::warn!(
                        "the copy of {} on {} is damaged; trying the next destination",
                        entry.key,
                        sink.describe()
                    );
                    last_problem = Some(format!("damaged on {}", sink.describe()));
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot read {} on {}: {e}; trying the next destination",
                        entry.key,
                        sink.describe()
                    );
                    last_problem = Some(e.to_string());
                }
            }
        }
        Err(CliError::failure(anyhow::anyhow!(
            "no destination holds an intact copy of {}{}",
            selected.key,
            last_problem.map(|p| format!(" ({p})")).unwrap_or_default()
        )))
    }

    /// Warns about each newer backup `--latest` passed over, and refuses to go on when one of
    /// them is recent, unless `--allow-older`.
    fn passing_over(
        &self,
        entries: &[BackupEntry],
        selected: &BackupEntry,
    ) -> Result<(), CliError> {
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
        let recent = chrono::Utc::now() - chrono::TimeDelta::hours(RECENT_HOURS);
        match skipped.iter().find(|e| e.timestamp() > recent) {
            Some(newest) if !self.allow_older => Err(CliError::failure(anyhow::anyhow!(
                "the newest backup {} ({}) cannot be restored ({}), and the newest intact one, \
                 {}, is older; look at what went wrong with the newest, or restore the older \
                 one with --allow-older",
                newest.key,
                newest.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
                newest.status,
                selected.key
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses what may not be restored as selected, and warns about what cannot be
    /// authenticated.
    fn may_restore(&self, entry: &BackupEntry) -> Result<(), CliError> {
        match entry.status {
            BackupStatus::InProgress => Err(CliError::failure(anyhow::anyhow!(
                "{} is still being written by another run (its claim {} is there and its \
                 manifest is not); wait for that run, or choose another backup",
                entry.key,
                backup_core::claim_key_for(&entry.key)
            ))),
            BackupStatus::Incomplete if !self.allow_unverified => {
                Err(CliError::failure(anyhow::anyhow!(
                    "{} is incomplete: it has no manifest but is newer than backups that have \
                     one, so it was made by this tool and lost its commit marker (a crash, a \
                     failed or deleted manifest). Its integrity and origin cannot be checked. \
                     Restore a complete backup instead, or, if you must, this one by name \
                     with --file {} --allow-unverified",
                    entry.key,
                    entry.file_name()
                )))
            }
            BackupStatus::Incomplete | BackupStatus::Legacy => {
                tracing::warn!(
                    "{} has no manifest ({}): it cannot be authenticated; only its encryption \
                     padding, compression checksum and the dump's own end marker are checked \
                     as it streams",
                    entry.key,
                    entry.status
                );
                Ok(())
            }
            BackupStatus::Complete | BackupStatus::Damaged(_) => Ok(()),
        }
    }

    fn log_choice<'a>(
        &self,
        sink: &'a dyn Sink,
        entry: BackupEntry,
    ) -> (&'a dyn Sink, BackupEntry) {
        tracing::info!(
            "selected {} ({}, {}, {}) from {}",
            entry.key,
            entry.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
            common::human_bytes(entry.size),
            entry.status,
            sink.describe()
        );
        (sink, entry)
    }

    /// Prints the listing as a table or JSON.
    pub fn print_list(&self, json: bool) {
        let locations = |l: &Listed| -> Vec<&'static str> {
            l.holders
                .iter()
                .map(|&i| self.destinations[i].name)
                .collect()
        };
        if json {
            let rows: Vec<serde_json::Value> = self
                .listed
                .iter()
                .map(|l| {
                    let e = &l.entry;
                    serde_json::json!({
                        "name": e.file_name(),
                        "key": e.key,
                        "time": e.timestamp().to_rfc3339(),
                        "size": e.size,
                        "status": e.status.to_string(),
                        "detail": match &e.status { BackupStatus::Damaged(d) => Some(d.clone()), _ => None },
                        "key_id": e.key_id(),
                        "compression": e.name.compression.name(),
                        "encrypted": e.name.encrypted,
                        "locations": locations(l),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            return;
        }
        if self.listed.is_empty() {
            let places: Vec<String> = self
                .destinations
                .iter()
                .map(|d| d.sink.describe())
                .collect();
            println!("no {} backups in {}", self.kind, places.join(" or "));
            return;
        }
        println!(
            "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  LOCATION",
            "NAME", "TIME (UTC)", "SIZE", "STATUS", "KEY ID"
        );
        for l in &self.listed {
            let e = &l.entry;
            println!(
                "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  {}",
                printable(e.file_name()),
                e.timestamp().format("%Y-%m-%d %H:%M:%S"),
                common::human_bytes(e.size),
                e.status,
                e.key_id().unwrap_or("-"),
                locations(l).join(",")
            );
        }
    }
}

/// `name` with control characters escaped (`\n`, `\u{1b}`): an object name is chosen by
/// whoever wrote the object, and must not move the cursor or recolour the terminal.
pub fn printable(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// How a backup with `status` was checked, for the verdict line: only a backup with a signed
/// manifest is "verified".
pub fn checked_as(status: &BackupStatus) -> &'static str {
    match status {
        BackupStatus::Complete => "backup verified",
        _ => "backup read to its end (NOT authenticated: it has no manifest)",
    }
}

/// What to add after the size in a verdict line about a backup with `status`.
pub fn status_note(status: &BackupStatus) -> &'static str {
    match status {
        BackupStatus::Legacy => ", legacy backup without manifest",
        BackupStatus::Incomplete => ", incomplete backup without manifest",
        _ => "",
    }
}

/// Lists every destination and merges by object key (the first destination's entry, i.e. the
/// local one, describes a backup held by several), oldest first.
async fn list_everywhere(
    kind: BackupKind,
    destinations: &[common::Destination],
) -> Result<Vec<Listed>, CliError> {
    let mut merged: Vec<Listed> = Vec::new();
    for (i, d) in destinations.iter().enumerate() {
        let entries = list_backups(d.sink.as_ref(), kind)
            .await
            .map_err(CliError::failure)?;
        for entry in entries {
            match merged.iter_mut().find(|l| l.entry.key == entry.key) {
                Some(listed) => listed.holders.push(i),
                None => merged.push(Listed::new(entry, i)),
            }
        }
    }
    merged.sort_by(|a, b| {
        a.entry
            .timestamp()
            .cmp(&b.entry.timestamp())
            .then_with(|| a.entry.key.cmp(&b.entry.key))
    });
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped_for_the_terminal() {
        assert_eq!(
            printable("x_backup_20240101_000000.sql\u{1b}[2J\n"),
            "x_backup_20240101_000000.sql\\u{1b}[2J\\n"
        );
        assert_eq!(printable("Yılmaz_backup.sql"), "Yılmaz_backup.sql");
    }
}
