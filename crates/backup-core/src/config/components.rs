//! Core's components: the pipeline, the local destination, retention and restores.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{check, Component, Config, Section, Setting};
use crate::compression::Compression;
use crate::error::{CoreError, Result};
use crate::retention::RetentionPolicy;

/// Default key file, as in the old scripts.
pub const DEFAULT_KEY_FILE: &str = "/etc/backup/encryption.key";

/// Default object-name prefix.
pub const DEFAULT_NAME_PREFIX: &str = "randevubu";

/// Default retention in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// A compression algorithm at its default level, as `--compression` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CompressionAlgorithm {
    /// gzip (`.gz`), level 6; what the old scripts wrote.
    Gzip,
    /// Zstandard (`.zst`), level 3: faster, smaller.
    Zstd,
    /// No compression.
    None,
}

impl CompressionAlgorithm {
    /// Its name: `gzip`, `zstd` or `none`.
    pub fn name(self) -> &'static str {
        self.compression().name()
    }

    /// The compression at the algorithm's default level.
    pub fn compression(self) -> Compression {
        match self {
            Self::Gzip => Compression::gzip(),
            Self::Zstd => Compression::zstd(),
            Self::None => Compression::None,
        }
    }
}

impl fmt::Display for CompressionAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How backups are made: compression, encryption key, PBKDF2 iterations and object names
/// (`[pipeline]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Compression, with its level.
    pub compression: Compression,
    /// The key file; its first line is the passphrase.
    pub key_file: PathBuf,
    /// Directory of older key files, for restoring backups made with them
    /// (`BACKUP_KEYRING_DIR`); `None`: `keys.d` beside the key file (see
    /// [`keyring_directory`](Self::keyring_directory)).
    pub keyring_dir: Option<PathBuf>,
    /// PBKDF2 iterations (`openssl -iter`).
    pub pbkdf2_iterations: u32,
    /// Object-name prefix (`PREFIX_backup_...`).
    pub name_prefix: String,
    /// Threads compressing a backup (`BACKUP_COMPRESSION_THREADS`; gzip and zstd both use them);
    /// every core by default.
    pub compression_threads: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            compression: Compression::default(),
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            keyring_dir: None,
            pbkdf2_iterations: backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
            name_prefix: DEFAULT_NAME_PREFIX.to_owned(),
            compression_threads: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1),
        }
    }
}

/// The keyring directory's name beside the key file when `BACKUP_KEYRING_DIR` is not set.
pub const DEFAULT_KEYRING: &str = "keys.d";

const PIPELINE: &[Setting] = &[
    Setting::new(
        "BACKUP_COMPRESSION",
        "compression",
        "gzip, zstd or none; optional level as zstd:9",
    )
    .default("gzip"),
    Setting::new(
        "BACKUP_COMPRESSION_LEVEL",
        "compression_level",
        "compression level (gzip 1-9, zstd 1-19)",
    ),
    Setting::new(
        "BACKUP_COMPRESSION_THREADS",
        "compression_threads",
        "threads compressing a backup (gzip and zstd); default: every core",
    ),
    Setting::new(
        "BACKUP_ENCRYPTION_KEY_FILE",
        "key_file",
        "key file, first line is the passphrase",
    )
    .default(DEFAULT_KEY_FILE),
    Setting::new(
        "BACKUP_KEYRING_DIR",
        "keyring_dir",
        "directory of older key files, to restore backups made with them; default: keys.d \
         beside the key file",
    ),
    Setting::new(
        "BACKUP_PBKDF2_ITERATIONS",
        "pbkdf2_iterations",
        "PBKDF2 iterations, like openssl -iter",
    )
    .default("10000"),
    Setting::new(
        "BACKUP_NAME_PREFIX",
        "name_prefix",
        "object name prefix (database backups)",
    )
    .default(DEFAULT_NAME_PREFIX),
];

impl Component for PipelineConfig {
    const SECTION: Section = Section {
        table: "pipeline",
        about: "compression, encryption and object names",
        settings: PIPELINE,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        let defaults = Self::default();
        let mut compression = config
            .parse::<Compression>("BACKUP_COMPRESSION")?
            .unwrap_or(defaults.compression);
        if let Some(level) = config.number::<i32>("BACKUP_COMPRESSION_LEVEL")? {
            compression = compression
                .with_level(level)
                .map_err(|e| CoreError::Config(format!("BACKUP_COMPRESSION_LEVEL: {e}")))?;
        }
        let pbkdf2_iterations = config
            .number("BACKUP_PBKDF2_ITERATIONS")?
            .unwrap_or(defaults.pbkdf2_iterations);
        if pbkdf2_iterations == 0 {
            return Err(CoreError::Config(
                "BACKUP_PBKDF2_ITERATIONS must be at least 1".into(),
            ));
        }
        let compression_threads = match config.number::<u32>("BACKUP_COMPRESSION_THREADS")? {
            Some(0) => {
                return Err(CoreError::Config(
                    "BACKUP_COMPRESSION_THREADS must be at least 1".into(),
                ))
            }
            Some(n) => n,
            None => defaults.compression_threads,
        };
        let name_prefix = config
            .get("BACKUP_NAME_PREFIX")
            .unwrap_or(DEFAULT_NAME_PREFIX)
            .to_owned();
        check_name_prefix(&name_prefix)?;
        Ok(Self {
            compression,
            key_file: config
                .path("BACKUP_ENCRYPTION_KEY_FILE")
                .unwrap_or(defaults.key_file),
            keyring_dir: config.path("BACKUP_KEYRING_DIR"),
            pbkdf2_iterations,
            name_prefix,
            compression_threads,
        })
    }
}

impl PipelineConfig {
    /// The keyring directory: `BACKUP_KEYRING_DIR`, or `keys.d` in the key file's directory
    /// (`/etc/backup/keys.d` beside the default key file), where `backup-key rotate` puts
    /// retired keys.
    pub fn keyring_directory(&self) -> PathBuf {
        match &self.keyring_dir {
            Some(dir) => dir.clone(),
            None => match self.key_file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.join(DEFAULT_KEYRING),
                _ => PathBuf::from(DEFAULT_KEYRING),
            },
        }
    }

    /// The current key (the key file) and the older keys of the keyring directory. A
    /// configured directory must exist; the default one is read when it exists.
    ///
    /// # Errors
    /// When the key file or a file of the keyring is missing, unreadable, empty or too open,
    /// or a configured keyring directory cannot be read.
    pub fn load_keyring(&self) -> Result<backup_crypto::Keyring> {
        let mut keyring =
            backup_crypto::Keyring::new(backup_crypto::EncryptionKey::from_file(&self.key_file)?);
        let dir = self.keyring_directory();
        if self.keyring_dir.is_some() || dir.is_dir() {
            keyring.load_dir(&dir)?;
        }
        Ok(keyring)
    }

    /// The backup options these settings give: name prefix, compression and PBKDF2
    /// iterations; no key yet (add one with
    /// [`BackupOptions::encrypted_with`](crate::BackupOptions::encrypted_with) or
    /// [`signed_with`](crate::BackupOptions::signed_with)).
    pub fn backup_options(&self) -> crate::BackupOptions {
        crate::BackupOptions::default()
            .with_name_prefix(self.name_prefix.clone())
            .with_compression(self.compression)
            .with_compression_threads(self.compression_threads)
            .with_iterations(self.pbkdf2_iterations)
    }
}

/// A name prefix may only hold letters, digits, `-`, `_` and `.`, and not start with `.`.
fn check_name_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && !prefix.starts_with('.')
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(CoreError::Config(format!(
            "BACKUP_NAME_PREFIX {prefix:?} may only contain letters, digits, '-', '_' and '.'"
        )))
    }
}

/// The local backup directory, a destination (`[local]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// The directory; `None`: no local destination.
    pub dir: Option<PathBuf>,
}

impl Component for LocalConfig {
    const SECTION: Section = Section {
        table: "local",
        about: "the local backup directory (a destination)",
        settings: &[Setting::new(
            "BACKUP_LOCAL_DIR",
            "dir",
            "local backup directory (a destination)",
        )],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        Ok(Self {
            dir: config.path("BACKUP_LOCAL_DIR"),
        })
    }
}

/// The retention policy `backup-prune` applies (`[retention]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// The policy.
    pub policy: RetentionPolicy,
}

impl Component for RetentionConfig {
    const SECTION: Section = Section {
        table: "retention",
        about: "what backup-prune keeps (a backup kept by any rule stays)",
        settings: &[
            Setting::new(
                "BACKUP_RETENTION_DAYS",
                "days",
                "keep backups newer than this many days; 0 keeps none by age",
            )
            .default("30"),
            Setting::new("BACKUP_KEEP_LAST", "keep_last", "also keep the N newest"),
            Setting::new(
                "BACKUP_KEEP_DAILY",
                "keep_daily",
                "also keep the newest of each of the N most recent days with backups",
            ),
            Setting::new("BACKUP_KEEP_WEEKLY", "keep_weekly", "the same per ISO week"),
            Setting::new(
                "BACKUP_KEEP_MONTHLY",
                "keep_monthly",
                "the same per calendar month",
            ),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        let mut policy = RetentionPolicy::within_days(
            config
                .number("BACKUP_RETENTION_DAYS")?
                .unwrap_or(DEFAULT_RETENTION_DAYS),
        );
        policy.keep_last = config.number("BACKUP_KEEP_LAST")?;
        policy.keep_daily = config.number("BACKUP_KEEP_DAILY")?;
        policy.keep_weekly = config.number("BACKUP_KEEP_WEEKLY")?;
        policy.keep_monthly = config.number("BACKUP_KEEP_MONTHLY")?;
        Ok(Self { policy })
    }
}

/// How restores choose and stage backups (`[restore]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreConfig {
    /// Where a restore keeps its private, verified copy; `None`: see
    /// [`spool_dir`](Self::spool_dir).
    pub tmp_dir: Option<PathBuf>,
    /// Whether `--latest`/`--date` may choose legacy backups (no manifest).
    pub allow_legacy: bool,
}

impl RestoreConfig {
    /// Where the private copy goes: [`tmp_dir`](Self::tmp_dir), else the local backup
    /// directory when it exists (same disk as the backups, so room for one more), else the
    /// system's temporary directory.
    pub fn spool_dir(&self, local: &LocalConfig) -> PathBuf {
        self.tmp_dir
            .clone()
            .or_else(|| local.dir.clone().filter(|dir| Path::is_dir(dir)))
            .unwrap_or_else(std::env::temp_dir)
    }
}

impl Component for RestoreConfig {
    const SECTION: Section = Section {
        table: "restore",
        about: "how restores choose and stage backups",
        settings: &[
            Setting::new(
                "BACKUP_RESTORE_TMP",
                "tmp_dir",
                "directory for the private copy a restore verifies before restoring \
                 (default: the local backup directory, else the system's temporary directory)",
            ),
            Setting::new(
                "BACKUP_ALLOW_LEGACY",
                "allow_legacy",
                "true lets --latest/--date choose legacy backups (no manifest, cannot be \
                 authenticated), for a migration period",
            )
            .default("false"),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        Ok(Self {
            tmp_dir: config.path("BACKUP_RESTORE_TMP"),
            allow_legacy: config.bool("BACKUP_ALLOW_LEGACY")?.unwrap_or(false),
        })
    }
}

impl FromStr for CompressionAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.parse::<Compression>()? {
            Compression::Gzip { .. } => Ok(Self::Gzip),
            Compression::Zstd { .. } => Ok(Self::Zstd),
            Compression::None => Ok(Self::None),
        }
    }
}
