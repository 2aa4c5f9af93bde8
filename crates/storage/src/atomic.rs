//! Atomic file writes, shared by [`LocalSink`](crate::LocalSink) and the restores that replace
//! a file (the Redis data file): a [`TempFile`] created exclusively beside its final name,
//! written, `fsync`ed by its owner, then put in place by one rename ([`TempFile::rename_to`],
//! replacing) or one hard link ([`TempFile::link_to`], never replacing), and the directory
//! `fsync`ed ([`sync_dir`]). Until then the final name is untouched, and a `TempFile` that is
//! dropped (an error, a cancelled task) removes itself.
//!
//! Every step is one short system call made on the calling thread, not in a blocking pool: an
//! operation handed to the pool still happens after its future was cancelled (SIGTERM, a
//! timeout), when nobody is left to clean up after it.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file being written under a temporary name; removed on drop unless it was put in place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    /// Whether `path` is still ours to remove.
    live: bool,
}

impl TempFile {
    /// Creates `path` exclusively (an existing file or a planted link is an error, never
    /// followed) with permissions `mode`, and opens it for writing.
    ///
    /// # Errors
    /// The `open` error.
    pub fn create(path: PathBuf, mode: u32) -> io::Result<(Self, File)> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        Ok((Self { path, live: true }, file))
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file onto `target`, replacing what is there. The directory still needs a
    /// [`sync_dir`] for the rename to survive a power cut.
    ///
    /// # Errors
    /// The `rename` error; the temporary file is then still there (and removed on drop).
    pub fn rename_to(mut self, target: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.live = false;
        Ok(())
    }

    /// Links the file to `target` only if that name is free (`AlreadyExists` otherwise: a
    /// hard link is created atomically or not at all), then removes the temporary name. The
    /// directory still needs a [`sync_dir`].
    ///
    /// # Errors
    /// The `link` error. A temporary name that cannot be removed after the link succeeded is
    /// not an error (the file is in place): it is left to drop and to clean-ups.
    pub fn link_to(mut self, target: &Path) -> io::Result<()> {
        std::fs::hard_link(&self.path, target)?;
        if std::fs::remove_file(&self.path).is_ok() {
            self.live = false;
        }
        Ok(())
    }

    /// Removes the file now.
    ///
    /// # Errors
    /// The `unlink` error, other than "not found".
    pub fn remove(mut self) -> io::Result<()> {
        self.live = false;
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::debug!(temp = %self.path.display(), "removed unfinished file"),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                temp = %self.path.display(),
                %error,
                "could not remove the temporary file of an unfinished write"
            ),
        }
    }
}

/// `fsync`s a directory so that entries created or renamed in it are durable.
///
/// # Errors
/// The `open` or `fsync` error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|handle| handle.sync_all())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_dropped_temp_file_is_removed_and_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dump.rdb");
        std::fs::write(&target, b"old").unwrap();
        let (temp, mut file) = TempFile::create(dir.path().join(".t"), 0o600).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(
            std::fs::metadata(temp.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(temp);
        assert!(!dir.path().join(".t").exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn rename_replaces_and_link_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        std::fs::write(&target, b"old").unwrap();
        let (temp, mut file) = TempFile::create(dir.path().join(".a"), 0o600).unwrap();
        file.write_all(b"new").unwrap();
        let (second, _) = TempFile::create(dir.path().join(".b"), 0o600).unwrap();
        let err = second.link_to(&target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join(".b").exists(), "removed on drop");
        temp.rename_to(&target).unwrap();
        sync_dir(dir.path()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!dir.path().join(".a").exists());
        let (third, _) = TempFile::create(dir.path().join(".c"), 0o600).unwrap();
        third.link_to(&dir.path().join("y")).unwrap();
        assert!(dir.path().join("y").exists() && !dir.path().join(".c").exists());
    }

    #[test]
    fn create_never_follows_or_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".planted")).unwrap();
        let err = TempFile::create(dir.path().join(".planted"), 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            dir.path().join(".planted").exists(),
            "not removed: not ours"
        );
    }
}
