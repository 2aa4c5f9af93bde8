//! Local log retention after a log backup: log files older than the configured number of days
//! are deleted, never one that a process still has open.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What [`prune_old_logs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPrune {
    /// Files deleted.
    pub removed: Vec<PathBuf>,
    /// Files old enough but kept because a process has them open.
    pub kept_open: Vec<PathBuf>,
    /// Files that could not be deleted, with why.
    pub failed: Vec<String>,
}

/// Runs [`prune_old_logs`] on `dir` and logs what it did: each file kept because it is open,
/// and how many were deleted. Returns the warnings (files that could not be deleted, or `dir`
/// unreadable), one line each, for the caller's report.
pub fn apply_log_retention(dir: &Path, days: u32, now: SystemTime) -> Vec<String> {
    match prune_old_logs(dir, days, now) {
        Ok(pruned) => {
            for path in &pruned.kept_open {
                tracing::info!("kept {} (older than {days} days, but open)", path.display());
            }
            tracing::info!(
                "log retention: deleted {} local log file(s) older than {days} days",
                pruned.removed.len()
            );
            pruned
                .failed
                .iter()
                .map(|f| format!("log retention: {f}"))
                .collect()
        }
        Err(e) => vec![format!("log retention: {}: {e}", dir.display())],
    }
}

/// Deletes regular files under `dir` (recursively, never following links) last modified more
/// than `days` days before `now`, except those some process has open (found through
/// `/proc/*/fd`). `days` of 0 deletes nothing: today's logs are never pruned.
///
/// # Errors
/// When `dir` cannot be read at all.
pub fn prune_old_logs(dir: &Path, days: u32, now: SystemTime) -> io::Result<LogPrune> {
    let mut out = LogPrune::default();
    if days == 0 {
        return Ok(out);
    }
    let cutoff = now
        .checked_sub(Duration::from_secs(u64::from(days) * 24 * 60 * 60))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let open = open_files();
    let mut stack = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(current) = stack.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if first => return Err(e),
            Err(e) => {
                out.failed
                    .push(format!("{}: cannot list it ({e})", current.display()));
                continue;
            }
        };
        first = false;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() || meta.modified().map_or(true, |m| m >= cutoff) {
                continue;
            }
            if open.contains(&(meta.dev(), meta.ino())) {
                out.kept_open.push(path);
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => out.removed.push(path),
                Err(e) => out.failed.push(format!("{}: {e}", path.display())),
            }
        }
    }
    out.removed.sort();
    out.kept_open.sort();
    Ok(out)
}

/// Device and inode of every file any process (that we may look at) has open.
fn open_files() -> BTreeSet<(u64, u64)> {
    let mut open = BTreeSet::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return open;
    };
    for process in processes.flatten() {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // `metadata` follows the magic link to the open file itself.
            if let Ok(meta) = std::fs::metadata(fd.path()) {
                if meta.is_file() {
                    open.insert((meta.dev(), meta.ino()));
                }
            }
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, days: u64) {
        let when = SystemTime::now() - Duration::from_secs(days * 24 * 60 * 60);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
    }

    #[test]
    fn old_logs_go_open_and_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nginx");
        std::fs::create_dir(&sub).unwrap();
        for name in ["old.log", "open.log", "recent.log"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(sub.join("old.log.1"), b"x").unwrap();
        age(&dir.path().join("old.log"), 10);
        age(&dir.path().join("open.log"), 10);
        age(&sub.join("old.log.1"), 40);
        age(&dir.path().join("recent.log"), 2);
        let target = dir.path().join("old.log");
        std::os::unix::fs::symlink(&target, dir.path().join("link.log")).unwrap();
        let _held = std::fs::File::open(dir.path().join("open.log")).unwrap();

        let pruned = prune_old_logs(dir.path(), 7, SystemTime::now()).unwrap();
        assert_eq!(
            pruned.removed,
            vec![dir.path().join("nginx/old.log.1"), target.clone()]
        );
        assert_eq!(pruned.kept_open, vec![dir.path().join("open.log")]);
        assert!(dir.path().join("recent.log").exists());
        assert!(std::fs::symlink_metadata(dir.path().join("link.log")).is_ok());

        std::fs::write(dir.path().join("fresh.log"), b"x").unwrap();
        let nothing = prune_old_logs(dir.path(), 0, SystemTime::now()).unwrap();
        assert_eq!(nothing, LogPrune::default());
        assert!(prune_old_logs(&dir.path().join("missing"), 7, SystemTime::now()).is_err());
    }
}
