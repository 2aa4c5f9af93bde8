//! Arguments and set-up shared by the binaries: configuration, destinations, keys, logging,
//! progress bars.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use backup_core::config::{Component, Config};
use backup_core::{
    Destinations, FetchedBackup, LocalConfig, PipelineConfig, ProgressFn, RestoreSummary,
    RestoreTarget, S3Settings,
};
use backup_crypto::{EncryptionKey, Keyring};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::{CliError, ExitStatus};

/// Options every binary takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML config file, one table per component: `[local]`, `[s3]`, `[pipeline]`,
    /// `[retention]`, `[restore]`, `[postgres]`, `[redis]`, `[files]`, `[notify]` (see
    /// --print-config) [env: BACKUP_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Local backup directory, the destination [env: BACKUP_LOCAL_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub local_dir: Option<PathBuf>,

    /// Encryption key file; its first line is the passphrase, as for `openssl -pass file:`
    /// [env: BACKUP_ENCRYPTION_KEY_FILE] [default: /etc/backup/encryption.key]
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Print the effective configuration as TOML (every setting with its value and where it
    /// came from: flag, environment, file or default; secrets redacted), check it, and exit
    #[arg(long, global = true)]
    pub print_config: bool,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr; no progress bar
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The compression flags of the backup commands.
#[derive(Debug, Clone, Args)]
pub struct CompressionArgs {
    /// Compression: gzip (`.gz`, the old scripts' format), zstd (`.zst`, faster and smaller) or
    /// none [env: BACKUP_COMPRESSION] [default: gzip]
    #[arg(long, value_enum, value_name = "ALGO")]
    pub compression: Option<backup_core::CompressionAlgorithm>,

    /// Compression level (gzip 1-9, zstd 1-19) [env: BACKUP_COMPRESSION_LEVEL]
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,

    /// Threads compressing: gzip (pigz's scheme) and zstd (libzstd's workers) run on this many;
    /// the output stays one ordinary gzip member or zstd frame
    /// [env: BACKUP_COMPRESSION_THREADS] [default: every core]
    #[arg(long, value_name = "N")]
    pub compression_threads: Option<u32>,
}

impl CompressionArgs {
    /// The settings these flags set.
    pub fn flags(&self) -> Vec<FlagValue> {
        vec![
            flag("BACKUP_COMPRESSION", "--compression", self.compression),
            flag(
                "BACKUP_COMPRESSION_LEVEL",
                "--compression-level",
                self.compression_level,
            ),
            flag(
                "BACKUP_COMPRESSION_THREADS",
                "--compression-threads",
                self.compression_threads,
            ),
        ]
    }
}

/// A flag that sets a setting: its variable, the flag's name, and its value when given.
pub type FlagValue = (&'static str, &'static str, Option<String>);

/// The [`FlagValue`] of flag `name` for the setting `env`.
pub fn flag(env: &'static str, name: &'static str, value: Option<impl ToString>) -> FlagValue {
    (env, name, value.map(|v| v.to_string()))
}

/// What [`CommonArgs::load`] found: the configuration to run with, or `--print-config` done.
pub enum Loaded {
    /// Run with this configuration.
    Run(Box<Config>),
    /// The configuration was printed; exit with this status.
    Printed(ExitStatus),
}

impl CommonArgs {
    /// The configuration of every component: `flags` (and this struct's) over the environment
    /// over the config file over defaults. Deprecation warnings of the file are logged. With
    /// `--print-config` it is printed and checked instead (exit 0, or 3 listing the problems).
    pub fn load(&self, flags: Vec<FlagValue>) -> Result<Loaded, CliError> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let mut config = Config::load(&backup_orchestrate::sections(), env, self.config.as_deref())
            .map_err(CliError::usage)?;
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let own = [
            ("BACKUP_LOCAL_DIR", "--local-dir", path(&self.local_dir)),
            (
                "BACKUP_ENCRYPTION_KEY_FILE",
                "--key-file",
                path(&self.key_file),
            ),
        ];
        for (env, flag, value) in own.into_iter().chain(flags) {
            if let Some(value) = value {
                config.set_flag(env, flag, value).map_err(CliError::usage)?;
            }
        }
        if !self.print_config {
            return Ok(Loaded::Run(Box::new(config)));
        }
        print!("{}", config.render());
        let problems = config.problems();
        if problems.is_empty() {
            return Ok(Loaded::Printed(ExitStatus::Success));
        }
        Err(CliError::usage(anyhow::anyhow!(
            "the configuration is invalid:\n  {}",
            problems.join("\n  ")
        )))
    }

    /// The level the flags ask for (`RUST_LOG` overrides).
    pub fn log_filter(&self) -> tracing_subscriber::EnvFilter {
        let default = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "info",
            (false, 1) => "debug",
            (false, _) => "trace",
        };
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    }

    /// Starts logging to stderr at the level the flags ask for.
    pub fn init_logging(&self) {
        let filter = self.log_filter();
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

/// Component `C` of `config` (exit 3 when its settings are invalid).
pub fn component<C: Component>(config: &Config) -> Result<C, CliError> {
    config.component().map_err(CliError::usage)
}

/// The configured destinations, local first; exit 3 when none is configured or one is
/// misconfigured. With `must_exist` (commands that only read: restores, `--list`, prune), a
/// local directory that does not exist is a configuration error (exit 3: a mistyped path must
/// not read as "no backups"); otherwise it is created by the first write.
pub async fn open_destinations(
    config: &Config,
    must_exist: bool,
) -> Result<Destinations, CliError> {
    let local: LocalConfig = component(config)?;
    let s3: S3Settings = component(config)?;
    Destinations::open(&local, &s3, must_exist)
        .await
        .map_err(CliError::usage)
}

/// Loads the current key from the configured key file (exit 3 when missing, empty or too
/// open), plus older keys from the keyring directory ([`PipelineConfig::load_keyring`]).
pub fn load_keyring(pipeline: &PipelineConfig) -> Result<Keyring, CliError> {
    pipeline.load_keyring().map_err(CliError::usage)
}

/// The keyring when a key file is present (any problem with a present one is exit 3), or
/// `None` when there is none: for unencrypted backups, whose manifests are signed (and must be
/// verified) only when a key is at hand.
pub fn keyring_if_present(pipeline: &PipelineConfig) -> Result<Option<Keyring>, CliError> {
    if std::fs::symlink_metadata(&pipeline.key_file).is_err() {
        return Ok(None);
    }
    load_keyring(pipeline).map(Some)
}

/// Loads the current key from the configured key file (exit 3 on any problem).
pub fn load_key(pipeline: &PipelineConfig) -> Result<EncryptionKey, CliError> {
    EncryptionKey::from_file(&pipeline.key_file).map_err(CliError::usage)
}

/// Runs `work` with a progress bar on stderr over `total` bytes, saying `action` (exit 2 on
/// failure).
pub async fn with_progress<T, F>(
    common: &CommonArgs,
    total: u64,
    action: &str,
    work: impl FnOnce(Option<ProgressFn>) -> F,
) -> Result<T, CliError>
where
    F: std::future::Future<Output = backup_core::Result<T>>,
{
    let progress = common.progress(Some(total), action);
    let result = work(progress.as_ref().map(|(_, f)| f.clone())).await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    result.map_err(CliError::failure)
}

/// Restores `fetched` into `target` with a progress bar saying `action` (exit 2 on failure).
pub async fn restore_into(
    common: &CommonArgs,
    fetched: &mut FetchedBackup,
    target: &mut dyn RestoreTarget,
    action: &str,
) -> Result<RestoreSummary, CliError> {
    let total = fetched.entry().size;
    with_progress(common, total, action, |progress| {
        fetched.restore_into(target, progress)
    })
    .await
}
