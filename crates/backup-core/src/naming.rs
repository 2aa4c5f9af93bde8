//! Object names: `database/randevubu_backup_20240115_020000.sql.gz.enc` and friends.
//!
//! The names are the old scripts' names, kept so that existing buckets, lifecycle rules and
//! habits keep working: `{folder}/{prefix}_backup_{YYYYMMDD_HHMMSS}.{ext}[.{gz|zst}][.enc]`,
//! timestamps in UTC.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::compression::Compression;
use crate::layout::{manifest_key_for, BackupKind, CLAIM_SUFFIX, MANIFEST_SUFFIX};

/// The timestamp format used in object names (UTC).
pub const TIMESTAMP_FORMAT: &str = "%Y%m%d_%H%M%S";

/// A parsed backup object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    /// The kind, from the folder.
    pub kind: BackupKind,
    /// The name prefix, e.g. `randevubu` (`redis` for `redis_backup_...`).
    pub prefix: String,
    /// When the backup started (UTC).
    pub timestamp: DateTime<Utc>,
    /// The raw stream's extension, e.g. `sql`, `dump`, `rdb`.
    pub extension: String,
    /// Compression named by the suffix.
    pub compression: Compression,
    /// Whether the name ends in `.enc`.
    pub encrypted: bool,
}

impl BackupName {
    /// A new name for a backup of `kind` started at `timestamp`.
    pub fn new(
        kind: BackupKind,
        prefix: &str,
        timestamp: DateTime<Utc>,
        extension: &str,
        compression: Compression,
        encrypted: bool,
    ) -> Self {
        Self {
            kind,
            prefix: prefix.to_owned(),
            // Names carry whole seconds; keep the struct equal to what parsing gives back.
            timestamp: truncate_to_seconds(timestamp),
            extension: extension.to_owned(),
            compression,
            encrypted,
        }
    }

    /// The file name without the folder.
    pub fn file_name(&self) -> String {
        let mut name = format!(
            "{}_backup_{}.{}",
            self.prefix,
            self.timestamp.format(TIMESTAMP_FORMAT),
            self.extension
        );
        if let Some(suffix) = self.compression.suffix() {
            name.push('.');
            name.push_str(suffix);
        }
        if self.encrypted {
            name.push_str(".enc");
        }
        name
    }

    /// The full object key, `{folder}/{file name}`.
    pub fn key(&self) -> String {
        format!("{}{}", self.kind.prefix(), self.file_name())
    }

    /// The key of this backup's manifest.
    pub fn manifest_key(&self) -> String {
        manifest_key_for(&self.key())
    }

    /// Parses an object key (`database/x_backup_20240115_020000.sql.gz.enc`) or a bare file
    /// name, in which case the kind is `default_kind`. `None` when it is not a backup name.
    pub fn parse(key: &str, default_kind: BackupKind) -> Option<Self> {
        let kind = BackupKind::of_key(key, default_kind);
        let file = key.rsplit('/').next().unwrap_or(key);
        if file.ends_with(MANIFEST_SUFFIX) || file.ends_with(CLAIM_SUFFIX) {
            return None;
        }
        let (prefix, rest) = file.rsplit_once("_backup_")?;
        if prefix.is_empty() || rest.len() < 15 {
            return None;
        }
        let (stamp, suffixes) = rest.split_at(15);
        let naive = NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).ok()?;
        let mut parts = suffixes.strip_prefix('.')?.split('.');
        let extension = parts.next().filter(|e| !e.is_empty())?.to_owned();
        let mut compression = Compression::None;
        let mut encrypted = false;
        for part in parts {
            match part {
                "gz" if compression == Compression::None && !encrypted => {
                    compression = Compression::gzip()
                }
                "zst" if compression == Compression::None && !encrypted => {
                    compression = Compression::zstd()
                }
                "enc" if !encrypted => encrypted = true,
                _ => return None,
            }
        }
        Some(Self {
            kind,
            prefix: prefix.to_owned(),
            timestamp: Utc.from_utc_datetime(&naive),
            extension,
            compression,
            encrypted,
        })
    }
}

fn truncate_to_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse() {
        let t = Utc.with_ymd_and_hms(2024, 1, 15, 2, 0, 7).unwrap();
        let name = BackupName::new(
            BackupKind::DATABASE,
            "randevubu",
            t,
            "sql",
            Compression::gzip(),
            true,
        );
        assert_eq!(
            name.key(),
            "database/randevubu_backup_20240115_020007.sql.gz.enc"
        );
        assert_eq!(
            name.manifest_key(),
            "database/randevubu_backup_20240115_020007.sql.gz.enc.manifest.json"
        );
        let parsed = BackupName::parse(&name.key(), BackupKind::REDIS).unwrap();
        assert_eq!(parsed.kind, BackupKind::DATABASE);
        assert_eq!(parsed.prefix, "randevubu");
        assert_eq!(parsed.timestamp, t);
        assert_eq!(parsed.extension, "sql");
        assert!(parsed.encrypted);
        assert_eq!(parsed.key(), name.key());
    }

    #[test]
    fn zstd_and_unencrypted_names_parse() {
        let p = BackupName::parse(
            "redis/redis_backup_20240115_020000.rdb.gz",
            BackupKind::DATABASE,
        )
        .unwrap();
        assert_eq!(p.kind, BackupKind::REDIS);
        assert!(!p.encrypted);
        let p = BackupName::parse("x_backup_20240115_020000.sql.zst.enc", BackupKind::DATABASE)
            .unwrap();
        assert!(matches!(p.compression, Compression::Zstd { .. }));
    }

    #[test]
    fn non_backup_names_are_rejected() {
        for bad in [
            "database/randevubu_backup_20240115_020000.sql.gz.enc.manifest.json",
            "database/notes.txt",
            "database/randevubu_backup_2024011_020000.sql.gz",
            "database/randevubu_backup_20241315_020000.sql.gz",
            "database/_backup_20240115_020000.sql.gz",
            "database/randevubu_backup_20240115_020000",
            "database/randevubu_backup_20240115_020000.sql.enc.gz",
            "database/randevubu_backup_20240115_020000.sql.gz.tmp",
            "database/randevubu_backup_20240115_020000.sql.gz.enc.claim",
        ] {
            assert!(
                BackupName::parse(bad, BackupKind::DATABASE).is_none(),
                "{bad}"
            );
        }
    }
}
