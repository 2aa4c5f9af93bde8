//! Choosing a backup to restore, shared by `restore-database` and `restore-redis`:
//! `--list | --latest | --date | --file`, `--from`, `--keyring-dir`, and the listing itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{
    catalog, BackupKind, BackupStatus, Catalog, Destination, Destinations, FetchedBackup, Listed,
    RestoreRules, Selection, Settings,
};
use backup_crypto::Keyring;
use backup_storage::LocalSink;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use crate::common::{self, CommonArgs};
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

/// The destinations to read, what they hold, and what was asked for.
pub struct Resolved {
    /// Destinations (local first), or the directory of a `--file PATH`.
    pub destinations: Destinations,
    /// Every backup of the kind, merged across destinations, oldest first.
    pub catalog: Catalog,
    /// The selection.
    pub selection: Selection,
    /// What may be chosen besides complete backups.
    pub rules: RestoreRules,
}

/// Opens the destinations and lists the backups of `kind` whose names start with `prefix`
/// (objects of other names, whoever put them there, are not offered) according to `args`.
/// `--file PATH` naming a file on disk reads it (and its manifest) from its own directory.
pub async fn resolve(
    kind: BackupKind,
    prefix: &str,
    args: &SelectionArgs,
    settings: &Settings,
) -> Result<Resolved, CliError> {
    let mut rules = RestoreRules {
        allow_legacy: false,
        allow_unverified: args.allow_unverified,
        allow_older: args.allow_older,
    };
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
            destinations: Destinations::new(vec![Destination::new("file", Box::new(sink))]),
            catalog: Catalog {
                kind,
                listed: vec![Listed {
                    entry,
                    holders: vec![0],
                }],
            },
            selection: Selection::Name(name),
            rules,
        });
    }
    rules.allow_legacy = settings
        .flag("BACKUP_ALLOW_LEGACY", false)
        .map_err(CliError::usage)?;
    let selection = match (&args.file, args.date) {
        (Some(name), _) => Selection::Name(name.clone()),
        (None, Some(day)) => Selection::Date(day),
        (None, None) => Selection::Latest,
    };
    let mut destinations = common::open_destinations(settings, true).await?;
    if let Some(from) = args.from {
        if !destinations.keep_only(from.name()) {
            return Err(CliError::usage(anyhow::anyhow!(
                "--from {} but that destination is not configured (set {})",
                from.name(),
                from.setting()
            )));
        }
    }
    let catalog = destinations
        .catalog(kind, prefix)
        .await
        .map_err(CliError::failure)?;
    Ok(Resolved {
        destinations,
        catalog,
        selection,
        rules,
    })
}

impl Resolved {
    /// Chooses the backup by the selection and the rules, loads the keys it needs, and reads
    /// it once into a private verified copy: from the first destination holding it (local
    /// before S3), or the next when that copy is missing, damaged or forged.
    pub async fn fetch(
        &self,
        common: &CommonArgs,
        settings: &Settings,
    ) -> Result<(FetchedBackup, Option<Keyring>), CliError> {
        let chosen = self
            .catalog
            .choose(&self.selection, &self.rules)
            .map_err(CliError::failure)?;
        let keyring = if chosen.entry.name.encrypted {
            Some(common::load_keyring(settings)?)
        } else {
            common::keyring_if_present(settings)?
        };
        let spool = common::restore_spool_dir(settings);
        let progress = common.progress(Some(chosen.entry.size), "reading");
        let fetched = self
            .destinations
            .fetch(
                &self.catalog,
                chosen,
                keyring.as_ref(),
                &spool,
                progress.as_ref().map(|(_, f)| f.clone()),
            )
            .await;
        if let Some((bar, _)) = progress {
            bar.finish_and_clear();
        }
        Ok((fetched.map_err(CliError::failure)?, keyring))
    }

    /// Prints the listing as a table or JSON.
    pub fn print_list(&self, json: bool) {
        let listed = &self.catalog.listed;
        if json {
            let rows: Vec<serde_json::Value> = listed
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
                        "locations": self.destinations.holder_names(l),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            return;
        }
        if listed.is_empty() {
            let places: Vec<String> = self
                .destinations
                .iter()
                .map(|d| d.sink().describe())
                .collect();
            println!(
                "no {} backups in {}",
                self.catalog.kind,
                places.join(" or ")
            );
            return;
        }
        println!(
            "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  LOCATION",
            "NAME", "TIME (UTC)", "SIZE", "STATUS", "KEY ID"
        );
        for l in listed {
            let e = &l.entry;
            println!(
                "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  {}",
                printable(e.file_name()),
                e.timestamp().format("%Y-%m-%d %H:%M:%S"),
                common::human_bytes(e.size),
                e.status,
                e.key_id().unwrap_or("-"),
                self.destinations.holder_names(l).join(",")
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
