//! Choosing a backup to restore, shared by `restore-database` and `restore-redis`:
//! `--list | --latest | --date | --file`, `--from`, `--keyring-dir`, and the listing itself.

use std::path::{Path, PathBuf};

use backup_core::config::Config;
use backup_core::{
    human_bytes, BackupKind, Catalog, Destinations, FetchedBackup, LocalConfig, PipelineConfig,
    RestoreConfig, RestoreRules, RestoreSummary, Selection,
};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use crate::common::{self, flag, CommonArgs, FlagValue};
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
    /// [env: BACKUP_KEYRING_DIR] [default: keys.d beside the key file]
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

    /// Machine-readable output: of --list; restore-database also prints its recovery report
    /// as JSON (the other restores refuse it without --list)
    #[arg(long)]
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
    /// Exactly one of `--list`, `--latest`, `--date`, `--file` (clap's group refuses two; this
    /// refuses none, after `--print-config` had its chance to run without one).
    pub fn require_one(&self) -> Result<(), CliError> {
        if self.list || self.latest || self.date.is_some() || self.file.is_some() {
            return Ok(());
        }
        Err(CliError::usage(anyhow::anyhow!(
            "say which backup: --list, --latest, --date YYYY-MM-DD or --file NAME"
        )))
    }

    /// The settings these flags set.
    pub fn flags(&self) -> Vec<FlagValue> {
        let keyring_dir = self.keyring_dir.as_ref().map(|d| d.display());
        vec![
            flag("BACKUP_KEYRING_DIR", "--keyring-dir", keyring_dir),
            flag(
                "BACKUP_ALLOW_LEGACY",
                "--allow-legacy",
                self.allow_legacy.then_some(true),
            ),
        ]
    }
}

/// The start every restore command shares: exactly one selection; then either the listing,
/// printed (`None`), or the chosen backup read once into a private verified copy (which holds
/// the key its manifest was verified with, to decrypt it).
pub async fn fetch_selected(
    common: &CommonArgs,
    args: &SelectionArgs,
    kind: BackupKind,
    prefix: &str,
    config: &Config,
) -> Result<Option<FetchedBackup>, CliError> {
    args.require_one()?;
    if args.json && !args.list && kind != BackupKind::DATABASE {
        return Err(CliError::usage(anyhow::anyhow!(
            "--json goes with --list here (a restore prints its result as text)"
        )));
    }
    let resolved = resolve(kind, prefix, args, config).await?;
    if args.list {
        resolved.print_list(args.json);
        return Ok(None);
    }
    resolved.fetch(common, config).await.map(Some)
}

/// Prints the end every restore command shares: `VERDICT: KEY (SIZE of WHAT[, note])` and the
/// target's notes.
pub fn print_verdict(verdict: &str, fetched: &FetchedBackup, summary: &RestoreSummary, what: &str) {
    let entry = fetched.entry();
    println!(
        "{verdict}: {} ({} of {what}{})",
        entry.key,
        human_bytes(summary.plain_bytes),
        entry.status.note()
    );
    for note in &summary.notes {
        println!("  {note}");
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
    config: &Config,
) -> Result<Resolved, CliError> {
    let restore: RestoreConfig = common::component(config)?;
    let mut rules = RestoreRules {
        allow_legacy: false,
        allow_unverified: args.allow_unverified,
        allow_older: args.allow_older,
    };
    if let Some(path) = args.file.as_deref().map(Path::new).filter(|p| p.is_file()) {
        let (destinations, catalog, name) = Destinations::for_file(path, kind)
            .await
            .map_err(CliError::failure)?;
        return Ok(Resolved {
            destinations,
            catalog,
            selection: Selection::Name(name),
            rules,
        });
    }
    rules.allow_legacy = restore.allow_legacy;
    let selection = match (&args.file, args.date) {
        (Some(name), _) => Selection::Name(name.clone()),
        (None, Some(day)) => Selection::Date(day),
        (None, None) => Selection::Latest,
    };
    let mut destinations = common::open_destinations(config, true).await?;
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
        config: &Config,
    ) -> Result<FetchedBackup, CliError> {
        let pipeline: PipelineConfig = common::component(config)?;
        let restore: RestoreConfig = common::component(config)?;
        let local: LocalConfig = common::component(config)?;
        let chosen = self
            .catalog
            .choose(&self.selection, &self.rules)
            .map_err(CliError::failure)?;
        let keyring = if chosen.entry.name.encrypted {
            Some(common::load_keyring(&pipeline)?)
        } else {
            common::keyring_if_present(&pipeline)?
        };
        let spool = restore.spool_dir(&local);
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
        fetched.map_err(CliError::failure)
    }

    /// Prints the listing as a table or JSON.
    pub fn print_list(&self, json: bool) {
        if json {
            println!("{}", self.catalog.to_json(&self.destinations));
        } else {
            print!("{}", self.catalog.table(&self.destinations));
        }
    }
}
