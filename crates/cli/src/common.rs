//! Arguments and set-up shared by the binaries: configuration, destination, keys, logging,
//! progress bars.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{
    Destination, Destinations, FetchedBackup, ProgressFn, RestoreSummary, RestoreTarget, Settings,
};
use backup_crypto::{EncryptionKey, Keyring};
use backup_storage::{LocalSink, S3Config, S3Sink};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::CliError;

/// Options every binary takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML config file (flat table of setting names in lower case) [env: BACKUP_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Local backup directory, the destination [env: BACKUP_LOCAL_DIR]
    #[arg(long, value_name = "DIR")]
    pub local_dir: Option<PathBuf>,

    /// Encryption key file; its first line is the passphrase, as for `openssl -pass file:`
    /// [env: BACKUP_ENCRYPTION_KEY_FILE] [default: /etc/backup/encryption.key]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr; no progress bar
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl CommonArgs {
    /// Loads settings with these flags (and `extra` flag values) on top of the environment.
    pub fn settings(&self, extra: BTreeMap<String, String>) -> Result<Settings, CliError> {
        let mut overrides = extra;
        if let Some(dir) = &self.local_dir {
            overrides.insert("BACKUP_LOCAL_DIR".into(), dir.display().to_string());
        }
        if let Some(file) = &self.key_file {
            overrides.insert(
                "BACKUP_ENCRYPTION_KEY_FILE".into(),
                file.display().to_string(),
            );
        }
        Settings::load(std::env::vars(), self.config.as_deref(), overrides).map_err(CliError::usage)
    }

    /// Starts logging to stderr at the level the flags ask for.
    pub fn init_logging(&self) {
        let default = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "info",
            (false, 1) => "debug",
            (false, _) => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        // A second initialisation (tests calling twice) is harmless: keep the first.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init();
    }

    /// A progress bar on stderr when it is a terminal and not `--quiet`; `total` in bytes.
    pub fn progress(&self, total: Option<u64>, message: &str) -> Option<(ProgressBar, ProgressFn)> {
        if self.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let handle = bar.clone();
        let callback: ProgressFn = Arc::new(move |n| handle.inc(n));
        Some((bar, callback))
    }
}

/// The configured destinations, local first; exit 3 when none is configured or one is
/// misconfigured. With `must_exist` (commands that only read: restores, `--list`, prune), a
/// local directory that does not exist is a configuration error (exit 3: a mistyped path must
/// not read as "no backups"); otherwise it is created by the first write.
pub async fn open_destinations(
    settings: &Settings,
    must_exist: bool,
) -> Result<Destinations, CliError> {
    let configured = settings.destinations().map_err(CliError::usage)?;
    let mut destinations = Destinations::default();
    if let Some(dir) = configured.local_dir {
        let sink = LocalSink::new(&dir).map_err(|e| {
            CliError::usage(anyhow::anyhow!(
                "backup directory (BACKUP_LOCAL_DIR / --local-dir): {e}"
            ))
        })?;
        if must_exist && !sink.exists() {
            return Err(CliError::usage(anyhow::anyhow!(
                "backup directory {} does not exist; check BACKUP_LOCAL_DIR / --local-dir",
                dir.display()
            )));
        }
        destinations.push(Destination::new("local", Box::new(sink)));
    }
    if let Some(config) = S3Config::from_lookup(&settings.lookup()).map_err(CliError::usage)? {
        let sink = S3Sink::new(config).await.map_err(CliError::usage)?;
        destinations.push(Destination::new("s3", Box::new(sink)));
    }
    Ok(destinations)
}

/// Loads the current key from the configured key file (exit 3 when missing, empty or too
/// open), plus older keys from `BACKUP_KEYRING_DIR`.
pub fn load_keyring(settings: &Settings) -> Result<Keyring, CliError> {
    let key = load_key(settings)?;
    let mut keyring = Keyring::new(key);
    if let Some(dir) = settings.keyring_dir() {
        keyring.load_dir(&dir).map_err(CliError::usage)?;
    }
    Ok(keyring)
}

/// The keyring when a key file is present (any problem with a present one is exit 3), or
/// `None` when there is none: for unencrypted backups, whose manifests are signed (and must be
/// verified) only when a key is at hand.
pub fn keyring_if_present(settings: &Settings) -> Result<Option<Keyring>, CliError> {
    if std::fs::symlink_metadata(settings.key_file()).is_err() {
        return Ok(None);
    }
    load_keyring(settings).map(Some)
}

/// Where a restore keeps its private, verified copy of the stored object:
/// `BACKUP_RESTORE_TMP`, else the local backup directory when it exists (same disk as the
/// backups, so room for one more), else the system's temporary directory.
pub fn restore_spool_dir(settings: &Settings) -> PathBuf {
    if let Some(dir) = settings.get("BACKUP_RESTORE_TMP") {
        return PathBuf::from(dir);
    }
    match settings.destinations() {
        Ok(d) => d.local_dir.filter(|dir| dir.is_dir()),
        Err(_) => None,
    }
    .unwrap_or_else(std::env::temp_dir)
}

/// Loads the current key from the configured key file (exit 3 on any problem).
pub fn load_key(settings: &Settings) -> Result<EncryptionKey, CliError> {
    EncryptionKey::from_file(&settings.key_file()).map_err(CliError::usage)
}

/// Restores `fetched` into `target` with a progress bar saying `action` (exit 2 on failure).
pub async fn restore_into(
    common: &CommonArgs,
    fetched: &mut FetchedBackup,
    keyring: Option<&Keyring>,
    target: &mut dyn RestoreTarget,
    action: &str,
) -> Result<RestoreSummary, CliError> {
    let progress = common.progress(Some(fetched.entry().size), action);
    let result = fetched
        .restore_into(keyring, target, progress.as_ref().map(|(_, f)| f.clone()))
        .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    result.map_err(CliError::failure)
}

/// Formats a byte count for people: `1.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
