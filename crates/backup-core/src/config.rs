//! Configuration: command-line flags > environment variables > TOML file > defaults.
//!
//! Every setting has an environment variable name (the old scripts' names where they had one).
//! The TOML file (`--config` or `BACKUP_CONFIG`) is a flat table using the same names in lower
//! case, e.g. `backup_local_dir = "/var/backups/randevubu"` or `postgres_host = "db"`, so one
//! table of names documents both. Unknown names in the file are an error (typos do not
//! silently fall back to defaults). Secrets (`POSTGRES_PASSWORD`, `REDIS_PASSWORD`) are read
//! from the environment only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::compression::Compression;
use crate::error::{CoreError, Result};

/// Default key file, as in the old scripts.
pub const DEFAULT_KEY_FILE: &str = "/etc/backup/encryption.key";

/// Default object-name prefix.
pub const DEFAULT_NAME_PREFIX: &str = "randevubu";

/// Default retention in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Every setting name the tool reads, with a one-line description (used for `--help` and the
/// README, and to reject unknown names in config files).
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "BACKUP_CONFIG",
        "TOML config file (flat table of these names in lower case)",
    ),
    ("BACKUP_LOCAL_DIR", "local backup directory (a destination)"),
    ("BACKUP_S3_BUCKET", "S3 bucket (a destination)"),
    ("BACKUP_S3_PREFIX", "key prefix inside the bucket"),
    (
        "BACKUP_S3_ENDPOINT",
        "S3-compatible endpoint URL (MinIO, Ceph, SeaweedFS, R2)",
    ),
    (
        "BACKUP_S3_FORCE_PATH_STYLE",
        "true for path-style requests (most S3-compatible servers)",
    ),
    (
        "BACKUP_S3_SSE",
        "server-side encryption: AES256 (default), aws:kms or none",
    ),
    ("BACKUP_S3_KMS_KEY_ID", "KMS key for BACKUP_S3_SSE=aws:kms"),
    (
        "BACKUP_S3_STORAGE_CLASS",
        "storage class, e.g. INTELLIGENT_TIERING (default STANDARD)",
    ),
    (
        "BACKUP_S3_PART_SIZE",
        "multipart part size, at least 5MiB (default 8MiB)",
    ),
    (
        "BACKUP_S3_CONCURRENCY",
        "multipart parts uploaded at once (default 4)",
    ),
    (
        "BACKUP_ENCRYPTION_KEY_FILE",
        "key file, first line is the passphrase (default /etc/backup/encryption.key)",
    ),
    (
        "BACKUP_KEYRING_DIR",
        "directory of older key files, to restore backups made with them",
    ),
    (
        "REDIS_TARGET_URL",
        "online restore target (redis://[user:pass@]host:port[/db]) when it is not the source; \
         environment only",
    ),
    (
        "REDIS_TARGET_PASSWORD_FILE",
        "file whose first line is the online restore target's password",
    ),
    (
        "BACKUP_RESTORE_TMP",
        "directory for the private copy a restore verifies before restoring (default: the \
         local backup directory, else the system's temporary directory)",
    ),
    (
        "BACKUP_ALLOW_LEGACY",
        "true lets --latest/--date choose legacy backups (no manifest, cannot be \
         authenticated), for a migration period (default false)",
    ),
    (
        "BACKUP_NAME_PREFIX",
        "object name prefix (default randevubu)",
    ),
    (
        "BACKUP_COMPRESSION",
        "gzip (default), zstd or none; optional level as zstd:9",
    ),
    (
        "BACKUP_COMPRESSION_LEVEL",
        "compression level (gzip 1-9, zstd 1-19)",
    ),
    (
        "BACKUP_PBKDF2_ITERATIONS",
        "PBKDF2 iterations, like openssl -iter (default 10000)",
    ),
    ("BACKUP_RETENTION_DAYS", "days to keep backups (default 30)"),
    ("BACKUP_NOTIFICATION_URL", "webhook notified of results"),
    ("POSTGRES_HOST", "PostgreSQL host (default localhost)"),
    ("POSTGRES_PORT", "PostgreSQL port (default 5432)"),
    ("POSTGRES_USER", "PostgreSQL user (default postgres)"),
    ("POSTGRES_DB", "PostgreSQL database (default postgres)"),
    (
        "POSTGRES_PASSWORD",
        "PostgreSQL password (environment only)",
    ),
    (
        "DATABASE_URL",
        "postgres://user:pass@host:port/db, instead of POSTGRES_*",
    ),
    (
        "PG_BIN_DIR",
        "directory holding pg_dump/psql/pg_restore to use",
    ),
    ("REDIS_HOST", "Redis host (default localhost)"),
    ("REDIS_PORT", "Redis port (default 6379)"),
    (
        "REDIS_USERNAME",
        "Redis ACL user (default: the default user)",
    ),
    ("REDIS_PASSWORD", "Redis password (environment only)"),
    (
        "REDIS_URL",
        "redis://[user:pass@]host:port or rediss:// (TLS), instead of REDIS_* (environment only)",
    ),
    (
        "REDIS_TLS_CA_FILE",
        "extra CA certificate (PEM) to trust for rediss:// connections",
    ),
    (
        "BACKUP_REDIS_ENCRYPT",
        "false stores Redis backups as plain .rdb.gz, as the old script did (default true)",
    ),
    (
        "BACKUP_REDIS_METHOD",
        "replication (default: SYNC, streamed) or file (BGSAVE, then REDIS_RDB_PATH)",
    ),
    (
        "REDIS_RDB_PATH",
        "the server's RDB file, for BACKUP_REDIS_METHOD=file and file-mode restores",
    ),
];

/// Names that may only come from the environment, never from a config file.
const SECRET_SETTINGS: &[&str] = &[
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_TARGET_URL",
];

/// The merged view of flags, environment and config file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    overrides: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    file: BTreeMap<String, String>,
    file_path: Option<PathBuf>,
}

/// Where backups are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSettings {
    /// Local directory.
    pub local_dir: Option<PathBuf>,
    /// S3 bucket.
    pub s3_bucket: Option<String>,
}

impl Settings {
    /// Loads settings from `env` (usually [`std::env::vars`]), the config file named by
    /// `config_file` or `BACKUP_CONFIG`, and flag values in `overrides` (setting name ->
    /// value), which win over everything.
    pub fn load(
        env: impl IntoIterator<Item = (String, String)>,
        config_file: Option<&Path>,
        overrides: BTreeMap<String, String>,
    ) -> Result<Self> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| SETTINGS.iter().any(|(name, _)| name == k) || k.starts_with("AWS_"))
            .collect();
        let path = config_file
            .map(Path::to_path_buf)
            .or_else(|| overrides.get("BACKUP_CONFIG").map(PathBuf::from))
            .or_else(|| {
                env.get("BACKUP_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            });
        let file = match &path {
            Some(p) => read_file(p)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            overrides,
            env,
            file,
            file_path: path,
        })
    }

    /// The value of setting `name` (e.g. `POSTGRES_HOST`); empty values count as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        [&self.overrides, &self.env, &self.file]
            .into_iter()
            .find_map(|m| m.get(name).map(String::as_str).filter(|v| !v.is_empty()))
    }

    /// A lookup closure over [`Settings::get`], for constructors that take one.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name).map(str::to_owned)
    }

    /// The config file that was read, if any.
    pub fn file_path(&self) -> Option<&Path> {
        self.file_path.as_deref()
    }

    /// Configured destinations; an error that says what to set when there are none.
    pub fn destinations(&self) -> Result<DestinationSettings> {
        let d = DestinationSettings {
            local_dir: self.get("BACKUP_LOCAL_DIR").map(PathBuf::from),
            s3_bucket: self.get("BACKUP_S3_BUCKET").map(str::to_owned),
        };
        if d.local_dir.is_none() && d.s3_bucket.is_none() {
            return Err(CoreError::Config(
                "no backup destination configured: set BACKUP_LOCAL_DIR (e.g. /var/backups/randevubu) \
                 or pass --local-dir; BACKUP_S3_BUCKET is the other destination"
                    .to_owned(),
            ));
        }
        Ok(d)
    }

    /// The encryption key file.
    pub fn key_file(&self) -> PathBuf {
        PathBuf::from(
            self.get("BACKUP_ENCRYPTION_KEY_FILE")
                .unwrap_or(DEFAULT_KEY_FILE),
        )
    }

    /// The keyring directory of older keys, if set.
    pub fn keyring_dir(&self) -> Option<PathBuf> {
        self.get("BACKUP_KEYRING_DIR").map(PathBuf::from)
    }

    /// Object-name prefix.
    pub fn name_prefix(&self) -> Result<String> {
        let prefix = self
            .get("BACKUP_NAME_PREFIX")
            .unwrap_or(DEFAULT_NAME_PREFIX);
        let ok = prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok || prefix.starts_with('.') {
            return Err(CoreError::Config(format!(
                "BACKUP_NAME_PREFIX {prefix:?} may only contain letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(prefix.to_owned())
    }

    /// Compression from `BACKUP_COMPRESSION` and `BACKUP_COMPRESSION_LEVEL`.
    pub fn compression(&self) -> Result<Compression> {
        let base: Compression = self
            .get("BACKUP_COMPRESSION")
            .unwrap_or("gzip")
            .parse()
            .map_err(|e| CoreError::Config(format!("BACKUP_COMPRESSION: {e}")))?;
        match self.get("BACKUP_COMPRESSION_LEVEL") {
            None => Ok(base),
            Some(level) => {
                let level: i32 = level.parse().map_err(|_| {
                    CoreError::Config(format!(
                        "BACKUP_COMPRESSION_LEVEL {level:?} is not a number"
                    ))
                })?;
                base.with_level(level)
                    .map_err(|e| CoreError::Config(format!("BACKUP_COMPRESSION_LEVEL: {e}")))
            }
        }
    }

    /// PBKDF2 iterations.
    pub fn pbkdf2_iterations(&self) -> Result<u32> {
        self.parse_number(
            "BACKUP_PBKDF2_ITERATIONS",
            backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
        )
        .and_then(|n| {
            if n == 0 {
                Err(CoreError::Config(
                    "BACKUP_PBKDF2_ITERATIONS must be at least 1".into(),
                ))
            } else {
                Ok(n)
            }
        })
    }

    /// Retention in days.
    pub fn retention_days(&self) -> Result<u32> {
        self.parse_number("BACKUP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    }

    /// A yes/no setting: `true`/`false`, `yes`/`no`, `1`/`0`, `on`/`off` (any case).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "yes" | "1" | "on" => Ok(true),
                "false" | "no" | "0" | "off" => Ok(false),
                _ => Err(CoreError::Config(format!(
                    "{name} must be true or false, got {v:?}"
                ))),
            },
        }
    }

    fn parse_number(&self, name: &str, default: u32) -> Result<u32> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                CoreError::Config(format!("{name} must be a whole number, got {v:?}"))
            }),
        }
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CoreError::Config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let table: toml::Table = text.parse().map_err(|e| {
        CoreError::Config(format!(
            "config file {} is not valid TOML: {e}",
            path.display()
        ))
    })?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !SETTINGS.iter().any(|(n, _)| *n == name) || name == "BACKUP_CONFIG" {
            return Err(CoreError::Config(format!(
                "config file {}: unknown setting {key:?} (known: {})",
                path.display(),
                SETTINGS
                    .iter()
                    .filter(|(n, _)| *n != "BACKUP_CONFIG" && !SECRET_SETTINGS.contains(n))
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if SECRET_SETTINGS.contains(&name.as_str()) {
            return Err(CoreError::Config(format!(
                "config file {}: {key} is a secret; set it in the environment instead",
                path.display()
            )));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(CoreError::Config(format!(
                    "config file {}: {key} must be a string, number or boolean, got {}",
                    path.display(),
                    other.type_str()
                )))
            }
        };
        out.insert(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.toml");
        std::fs::write(
            &file,
            "backup_local_dir = \"/from/file\"\npostgres_host = \"filehost\"\npostgres_port = 6543\n",
        )
        .unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert("BACKUP_LOCAL_DIR".to_owned(), "/from/flag".to_owned());
        let s = Settings::load(
            env(&[
                ("BACKUP_LOCAL_DIR", "/from/env"),
                ("POSTGRES_HOST", "envhost"),
            ]),
            Some(&file),
            overrides,
        )
        .unwrap();
        assert_eq!(s.get("BACKUP_LOCAL_DIR"), Some("/from/flag"));
        assert_eq!(s.get("POSTGRES_HOST"), Some("envhost"));
        assert_eq!(s.get("POSTGRES_PORT"), Some("6543"));
        assert_eq!(s.get("POSTGRES_USER"), None);
    }

    #[test]
    fn config_file_comes_from_backup_config_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(&file, "backup_name_prefix = \"shop\"\n").unwrap();
        let s = Settings::load(
            env(&[("BACKUP_CONFIG", file.to_str().unwrap())]),
            None,
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(s.name_prefix().unwrap(), "shop");
        assert_eq!(s.file_path(), Some(file.as_path()));
    }

    #[test]
    fn unknown_and_secret_names_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(&file, "backup_locl_dir = \"/x\"\n").unwrap();
        let err = Settings::load(env(&[]), Some(&file), BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("backup_locl_dir"), "{err}");
        std::fs::write(&file, "postgres_password = \"hunter2\"\n").unwrap();
        let err = Settings::load(env(&[]), Some(&file), BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("environment"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn missing_destination_says_what_to_set() {
        let s = Settings::load(env(&[]), None, BTreeMap::new()).unwrap();
        let err = s.destinations().unwrap_err().to_string();
        assert!(err.contains("BACKUP_LOCAL_DIR"), "{err}");
    }

    #[test]
    fn compression_and_numbers_are_validated() {
        let s = Settings::load(
            env(&[
                ("BACKUP_COMPRESSION", "zstd"),
                ("BACKUP_COMPRESSION_LEVEL", "9"),
            ]),
            None,
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(s.compression().unwrap(), Compression::Zstd { level: 9 });
        let s = Settings::load(
            env(&[
                ("BACKUP_COMPRESSION", "lz4"),
                ("BACKUP_RETENTION_DAYS", "a month"),
                ("BACKUP_NAME_PREFIX", "../evil"),
            ]),
            None,
            BTreeMap::new(),
        )
        .unwrap();
        assert!(s.compression().is_err());
        assert!(s.retention_days().is_err());
        assert!(s.name_prefix().is_err());
        let s = Settings::load(env(&[]), None, BTreeMap::new()).unwrap();
        assert_eq!(s.retention_days().unwrap(), 30);
        assert_eq!(s.compression().unwrap(), Compression::gzip());
        assert_eq!(s.key_file(), PathBuf::from(DEFAULT_KEY_FILE));
    }
}
