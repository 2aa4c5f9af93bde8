//! One run at a time: an exclusive `flock` on a lock file that holds the running process's
//! PID. The kernel drops the lock when the process ends, however it ends (`kill -9`, power
//! cut), so a crashed run never leaves a lock behind that blocks the next one; the file itself
//! may stay and is simply locked again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another backup-all run is in progress ({}; lock file {}): wait for it to finish, \
         or stop it",
        match pid { Some(pid) => format!("PID {pid}"), None => "PID not yet written".to_owned() },
        path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's PID, as it wrote it.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The lock of a running run; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: Flock<File>,
}

impl RunLock {
    /// Takes the lock at `path` without waiting, creating the file (mode 0600; a symbolic
    /// link there is refused) and its directory, and writes this process's PID into it.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder's PID when another process holds it;
    /// [`LockError::Io`] when the file cannot be opened or locked.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Mode 0700, as the backup directory it usually is would be made by a backup.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                // The holder's PID, when it has written it yet.
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.lines().next()?.trim().parse().ok());
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        let pid = std::process::id();
        locked.set_len(0).map_err(io)?;
        locked.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(locked, "{pid}").map_err(io)?;
        locked.flush().map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            _file: locked,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/run.lock");
        let first = RunLock::acquire(&path).unwrap();
        let mode = std::fs::metadata(dir.path().join("sub"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        let contents = std::fs::read_to_string(&path).unwrap();
        assert_eq!(contents.trim(), std::process::id().to_string());
        match RunLock::acquire(&path) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        let message = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(
            message.contains(&format!("PID {}", std::process::id())),
            "{message}"
        );
        drop(first);
        RunLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_stale_file_from_a_crashed_run_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        std::fs::write(&path, "4194303\n").unwrap();
        let lock = RunLock::acquire(&path).unwrap();
        assert_eq!(lock.path(), path);
        let contents = std::fs::read_to_string(&path).unwrap();
        assert_eq!(contents.trim(), std::process::id().to_string());
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("run.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(RunLock::acquire(&path), Err(LockError::Io { .. })));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
