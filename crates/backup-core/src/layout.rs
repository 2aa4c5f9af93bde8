//! The key layout of a destination, in one place: which folder holds which kind of backup,
//! where a backup's manifest and claim live, the `latest/` copy, and the orchestration's run
//! reports and logs.
//!
//! ```text
//! database/randevubu_backup_20240115_020000.sql.gz.enc          a backup ({kind}/{name})
//! database/randevubu_backup_20240115_020000.sql.gz.enc.manifest.json   its manifest, written last
//! database/randevubu_backup_20240115_020000.sql.gz.enc.claim    its run's claim, while it is written
//! redis/latest/redis_backup_20240115_020000.rdb.gz.enc          the newest backup, copied ({kind}/latest/)
//! reports/orchestration/...                                     run reports
//! logs/orchestration/backup_20240115_020000.log                 run logs
//! ```
//!
//! A kind is open: a new source names its own ([`BackupKind::new`]) and gets the same
//! listing, restore and retention as the built-in ones.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CoreError, Result};

/// Suffix of the manifest stored beside each backup object.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Suffix of the claim a backup in progress holds on its name (`NAME.claim`): created
/// exclusively before the first byte is written, removed after the manifest. Two runs can
/// never write the same name, and an object whose claim is still there is a backup in
/// progress, never a finished or legacy one.
pub const CLAIM_SUFFIX: &str = ".claim";

/// Suffix of the re-encrypted copy of a backup staged by `backup-key reencrypt`
/// (`NAME.reencrypt`) before it replaces the backup; its signed manifest
/// (`NAME.reencrypt.manifest.json`) is the journal that lets an interrupted run finish. A
/// backup with a journal is a backup being written (never chosen, never pruned) until then.
pub const REENCRYPT_SUFFIX: &str = ".reencrypt";

/// The key of the marker a `backup-key reencrypt` run holds on a destination while it runs
/// (one run at a time per destination).
pub const REENCRYPT_RUN_KEY: &str = "reencrypt.run";

/// Where the orchestration's run reports live.
pub const REPORTS_FOLDER: &str = "reports/orchestration/";

/// Where the orchestration's run logs live (`backup_YYYYMMDD_HHMMSS.log`).
pub const RUN_LOGS_FOLDER: &str = "logs/orchestration/";

/// The folder under a kind's folder that holds a copy of its newest backup.
pub const LATEST: &str = "latest";

/// The longest kind name.
pub const MAX_KIND_LEN: usize = 24;

/// A kind of backup: the folder its objects live under (`database`, `redis`, ...). Small and
/// `Copy`; built-in kinds are constants, a new source makes its own with [`BackupKind::new`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupKind {
    name: [u8; MAX_KIND_LEN],
    len: u8,
}

impl BackupKind {
    /// PostgreSQL dumps, under `database/`.
    pub const DATABASE: Self = Self::constant("database");
    /// Redis RDB snapshots, under `redis/`.
    pub const REDIS: Self = Self::constant("redis");
    /// Configuration files, under `config/`.
    pub const CONFIG: Self = Self::constant("config");
    /// Log files, under `logs/`.
    pub const LOGS: Self = Self::constant("logs");
    /// PostgreSQL WAL files, under `wal/{timeline}/` (named by PostgreSQL, not dated).
    pub const WAL: Self = Self::constant("wal");
    /// PostgreSQL physical base backups (`pg_basebackup` tar streams), under `base/`.
    pub const BASE: Self = Self::constant("base");
    /// The kinds the tool itself makes with dated names (the nightly job's kinds).
    pub const BUILT_IN: [Self; 4] = [Self::DATABASE, Self::REDIS, Self::CONFIG, Self::LOGS];

    /// A kind named `name`: 1 to [`MAX_KIND_LEN`] lower-case ASCII letters, digits, `-` or
    /// `_`, starting with a letter, and not a folder the layout uses otherwise (`latest`,
    /// `reports`).
    ///
    /// # Errors
    /// [`CoreError::Config`] for any other name.
    pub fn new(name: &str) -> Result<Self> {
        if !Self::valid(name) {
            return Err(CoreError::Config(format!(
                "{name:?} is not a kind of backup: use 1 to {MAX_KIND_LEN} lower-case letters, \
                 digits, '-' or '_', starting with a letter (and not latest or reports)"
            )));
        }
        Ok(Self::constant(name))
    }

    const fn valid(name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_KIND_LEN || !bytes[0].is_ascii_lowercase() {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return false;
            }
            i += 1;
        }
        !matches!(bytes, b"latest" | b"reports")
    }

    /// For the constants: checked at compile time.
    const fn constant(name: &str) -> Self {
        assert!(Self::valid(name), "invalid kind name");
        let bytes = name.as_bytes();
        let mut out = [0u8; MAX_KIND_LEN];
        let mut i = 0;
        while i < bytes.len() {
            out[i] = bytes[i];
            i += 1;
        }
        Self {
            name: out,
            len: bytes.len() as u8,
        }
    }

    /// The folder (key prefix without the slash) that holds this kind; also its name.
    pub fn folder(&self) -> &str {
        // Only ever built from a valid (ASCII) name.
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The key prefix of its backups, `{folder}/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.folder())
    }

    /// The folder holding the copy of its newest backup: `redis/latest/`.
    pub fn latest_folder(&self) -> String {
        format!("{}/{LATEST}/", self.folder())
    }

    /// The kind of an object `key`, judged by its folder: the kind whose folder (or whose
    /// `latest/` folder) holds it, when that is `default` or a built-in kind; else (a bare
    /// file name, an unknown folder) `default`.
    pub fn of_key(key: &str, default: Self) -> Self {
        let Some((folders, _)) = key.rsplit_once('/') else {
            return default;
        };
        let mut parts = folders.rsplit('/');
        let mut folder = parts.next().unwrap_or_default();
        if folder == LATEST {
            folder = parts.next().unwrap_or_default();
        }
        if folder == default.folder() {
            return default;
        }
        Self::BUILT_IN
            .into_iter()
            .find(|kind| kind.folder() == folder)
            .unwrap_or(default)
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder())
    }
}

impl fmt::Debug for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKind({:?})", self.folder())
    }
}

impl std::str::FromStr for BackupKind {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for BackupKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.folder())
    }
}

impl<'de> Deserialize<'de> for BackupKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// The manifest key for an object key (`KEY.manifest.json`).
pub fn manifest_key_for(key: &str) -> String {
    format!("{key}{MANIFEST_SUFFIX}")
}

/// The claim key for an object key (see [`CLAIM_SUFFIX`]).
pub fn claim_key_for(key: &str) -> String {
    format!("{key}{CLAIM_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_are_their_folders() {
        assert_eq!(BackupKind::DATABASE.folder(), "database");
        assert_eq!(BackupKind::REDIS.to_string(), "redis");
        assert_eq!(BackupKind::REDIS.latest_folder(), "redis/latest/");
        assert_eq!(BackupKind::LOGS.prefix(), "logs/");
    }

    #[test]
    fn a_new_source_names_its_own_kind() {
        let wal = BackupKind::new("wal").unwrap();
        assert_eq!(wal.folder(), "wal");
        assert_eq!(BackupKind::of_key("wal/x_backup_1.gz", wal), wal);
        assert_eq!("wal".parse::<BackupKind>().unwrap(), wal);
        for bad in [
            "", "Wal", "1wal", "wal/x", "../x", "latest", "reports", "w a l",
        ] {
            assert!(BackupKind::new(bad).is_err(), "{bad:?}");
        }
        assert!(BackupKind::new(&"x".repeat(MAX_KIND_LEN + 1)).is_err());
        assert!(BackupKind::new(&"x".repeat(MAX_KIND_LEN)).is_ok());
    }

    #[test]
    fn the_kind_of_a_key_is_its_folder() {
        let db = BackupKind::DATABASE;
        assert_eq!(BackupKind::of_key("redis/a", db), BackupKind::REDIS);
        assert_eq!(BackupKind::of_key("redis/latest/a", db), BackupKind::REDIS);
        assert_eq!(BackupKind::of_key("prefix/redis/a", db), BackupKind::REDIS);
        assert_eq!(
            BackupKind::of_key("a", BackupKind::REDIS),
            BackupKind::REDIS
        );
        assert_eq!(BackupKind::of_key("elsewhere/a", db), db);
    }

    #[test]
    fn kinds_round_trip_through_json_and_refuse_bad_names() {
        let json = serde_json::to_string(&BackupKind::DATABASE).unwrap();
        assert_eq!(json, "\"database\"");
        let back: BackupKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, BackupKind::DATABASE);
        assert!(serde_json::from_str::<BackupKind>("\"../etc\"").is_err());
        assert!(serde_json::from_str::<BackupKind>(&format!("\"{}\"", "a".repeat(100))).is_err());
    }
}
