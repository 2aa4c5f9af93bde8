//! The spool directory of `backup-wal`: what was pushed ahead (`push/{name}`, holding the
//! SHA-256 of the file stored) and what was fetched ahead (`fetch/{name}`, the verified WAL
//! file itself). Everything in it is written to a hidden temporary name and renamed, so a
//! record or a file is there whole or not at all.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_sources::wal::{WalConfig, WalFileName};

/// The spool directory's name beside the WAL files when none is configured.
pub const DEFAULT_SPOOL_NAME: &str = "backup_wal_spool";

/// How long a record of a push ahead is trusted; PostgreSQL asks for the file within seconds.
const PUSHED_RECORD_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub(super) struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool for WAL files in `wal_dir` (the directory of PostgreSQL's `%p`).
    pub fn new(config: &WalConfig, wal_dir: &Path) -> Self {
        Self {
            dir: config
                .spool_dir
                .clone()
                .unwrap_or_else(|| wal_dir.join(DEFAULT_SPOOL_NAME)),
        }
    }

    fn sub(&self, which: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(which);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(dir)
    }

    /// The SHA-256 recorded for `name` pushed ahead, if any (and recent).
    pub fn pushed(&self, name: &WalFileName) -> Option<String> {
        let path = self.dir.join("push").join(name.as_str());
        let meta = std::fs::metadata(&path).ok()?;
        let age = meta.modified().ok()?.elapsed().unwrap_or_default();
        if age > PUSHED_RECORD_LIFETIME {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let sha = text.trim();
        (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
    }

    /// Records that `name` with SHA-256 `sha` is stored everywhere.
    pub fn record_pushed(&self, name: &WalFileName, sha: &str) -> std::io::Result<()> {
        let dir = self.sub("push")?;
        write_atomically(&dir, name.as_str(), format!("{sha}\n").as_bytes())
    }

    /// Forgets the record of `name`, and records older than their lifetime.
    pub fn forget_pushed(&self, name: &WalFileName) {
        let dir = self.dir.join("push");
        let _ = std::fs::remove_file(dir.join(name.as_str()));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > PUSHED_RECORD_LIFETIME);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Names pushed ahead (recorded), for choosing what to push next.
    pub fn pushed_names(&self) -> BTreeSet<String> {
        names_in(&self.dir.join("push"))
    }

    /// Where a file fetched ahead is kept, creating the directory.
    pub fn fetch_dir(&self) -> std::io::Result<PathBuf> {
        self.sub("fetch")
    }

    /// The file fetched ahead for `name`, if there.
    pub fn fetched(&self, name: &WalFileName) -> Option<PathBuf> {
        let path = self.dir.join("fetch").join(name.as_str());
        path.is_file().then_some(path)
    }

    /// Names fetched ahead.
    pub fn fetched_names(&self) -> BTreeSet<String> {
        names_in(&self.dir.join("fetch"))
    }

    /// Deletes the files fetched ahead that are not in `keep`, and leftover temporary files.
    pub fn prune_fetched(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("fetch")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The names of the finished entries of `dir` (not the hidden temporary ones).
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `bytes` to `dir/name` through a hidden temporary file, fsynced, then renamed.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_record_holds_a_hash_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(&WalConfig::default(), dir.path());
        let name = WalFileName::parse("000000010000000000000001").unwrap();
        assert_eq!(spool.pushed(&name), None);
        let sha = "ab".repeat(32);
        spool.record_pushed(&name, &sha).unwrap();
        assert_eq!(spool.pushed(&name), Some(sha));
        assert!(spool.pushed_names().contains(name.as_str()));
        // A damaged record is no record.
        std::fs::write(
            dir.path()
                .join(DEFAULT_SPOOL_NAME)
                .join("push")
                .join(name.as_str()),
            "zz",
        )
        .unwrap();
        assert_eq!(spool.pushed(&name), None);
        spool.forget_pushed(&name);
        assert!(spool.pushed_names().is_empty());
    }

    #[test]
    fn files_fetched_ahead_outside_the_window_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(&WalConfig::default(), dir.path());
        let fetch = spool.fetch_dir().unwrap();
        for n in ["A", "B", ".B.tmp"] {
            std::fs::write(fetch.join(n), n).unwrap();
        }
        assert_eq!(
            spool.fetched_names(),
            ["A", "B"].into_iter().map(String::from).collect()
        );
        spool.prune_fetched(&["B".to_owned()].into_iter().collect());
        assert_eq!(std::fs::read_dir(&fetch).unwrap().count(), 1);
        assert!(fetch.join("B").exists());
    }
}
