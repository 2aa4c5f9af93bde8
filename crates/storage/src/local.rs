//! [`LocalSink`]: objects as files in a directory on local disk.
//!
//! The key `database/x.sql.gz.enc` is the file `<root>/database/x.sql.gz.enc`, so the layout
//! is the one the old scripts used and their backups are listed like any other object.
//!
//! Writes are atomic and durable: bytes go to a temporary file
//! `.tmp-<final name>.<16 lowercase hex>` in the final file's directory (created with mode
//! `0600`), and [`ObjectWriter::commit`] flushes it, `fsync`s it, renames it onto the final
//! name and `fsync`s the directory. A writer that is dropped or aborted removes its temporary
//! file; temporary files left by a crash are never listed and are cleaned up by
//! [`LocalSink::remove_stale_temp_files`]. Folders the sink creates get mode `0700`.

use std::fs::{FileType, Metadata};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use crate::atomic::{self, TempFile};
use crate::error::{Result, StorageError};
use crate::key::{validate_key, validate_prefix, TEMP_PREFIX};
use crate::sink::{LockMode, ObjectMeta, ObjectReader, ObjectWriter, Sink, SinkLock, WriteMode};

/// Size of the read and write buffers: large enough for disk throughput on big backups.
const BUFFER_SIZE: usize = 256 * 1024;
/// Mode of object files (backups are sensitive): owner read/write only.
const FILE_MODE: u32 = 0o600;
/// Mode of the folders the sink creates: owner only.
const DIR_MODE: u32 = 0o700;
/// Number of hex digits of the random part of a temporary file name.
const TEMP_RANDOM_HEX_DIGITS: usize = 16;
/// The longest file name most local file systems accept, in bytes.
const MAX_FILE_NAME: usize = 255;
/// The longest final file name whose temporary name still fits in [`MAX_FILE_NAME`].
const MAX_OBJECT_FILE_NAME: usize = MAX_FILE_NAME - TEMP_PREFIX.len() - 1 - TEMP_RANDOM_HEX_DIGITS;

/// A [`Sink`] storing each object as a file under a root directory (Unix only).
///
/// [`Sink::list`] reports regular files whose relative path is a valid key; it skips
/// temporary files and does not follow symbolic links. Deleting the last object of a folder
/// leaves the (empty) folder in place, so a concurrent write into it never races its removal.
/// Cloning is cheap; clones use the same directory.
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
}

impl LocalSink {
    /// A sink storing objects under `root`. A missing `root` is created (with mode `0700`,
    /// parents included) by the first write, so a run that fails before writing leaves no
    /// empty directory behind; an existing directory's mode is left as it is.
    ///
    /// Refused with [`StorageError::Config`]: a `root` that is not a directory, a symbolic
    /// link to nothing, and a symbolic link to a directory directly under `root` (a
    /// `database` folder that is a link): objects would be written through the link but never
    /// listed (listing does not follow links), so the catalog and pruning would not see them.
    /// `root` itself may be a link.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        check_root(&root)?;
        Ok(Self { root })
    }

    /// Whether the root directory exists (it is created by the first write).
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    /// The directory objects are stored under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds (or would hold) the object `key`, after checking the key.
    ///
    /// Besides [`validate_key`], a local key's file name may be at most 233 bytes (so that its
    /// temporary name fits in 255) and each folder name at most 255 bytes.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        check_local_name_lengths(key)?;
        Ok(self.root.join(key))
    }

    /// Deletes the temporary files of interrupted writes (a crash, a killed process) that were
    /// last modified at least `older_than` ago, anywhere under the root, and returns their
    /// paths, sorted. Only names of the exact temporary pattern are touched; objects and
    /// unrelated files are kept. Symbolic links are not followed.
    ///
    /// Pick `older_than` well above the longest write (e.g. a day): a temporary file of a
    /// write still in progress is indistinguishable from a leftover except by its age.
    pub async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<Vec<PathBuf>> {
        let root = self.root.clone();
        let target = display(&root);
        blocking("remove stale temporary files in", target, move || {
            remove_stale_temp_files_blocking(&root, older_than)
        })
        .await
    }

    /// Creates `dir` and its missing parents (mode `0700`), `fsync`ing the parent of each
    /// created folder so the new entries survive a crash.
    async fn create_dirs(&self, dir: &Path) -> Result<()> {
        if tokio::fs::metadata(dir)
            .await
            .map(|meta| meta.is_dir())
            .unwrap_or(false)
        {
            return Ok(());
        }
        let dir = dir.to_path_buf();
        let target = display(&dir);
        blocking("create directory", target, move || {
            create_dirs_blocking(&dir)
        })
        .await
    }
}

#[async_trait]
impl Sink for LocalSink {
    /// A `flock` on the backup directory itself (no lock file is left behind), shared for
    /// backups, exclusive for retention. Backups create the directory first; retention on a
    /// directory that does not exist has nothing to lock (nor to delete). Locks are per open
    /// directory, so they also order runs within one process.
    async fn lock(&self, mode: LockMode, wait: Duration) -> Result<Option<SinkLock>> {
        match mode {
            LockMode::Shared => self.create_dirs(&self.root).await?,
            LockMode::Exclusive => {
                if !self.exists() {
                    return Ok(None);
                }
            }
        }
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            let root = self.root.clone();
            let held = blocking("lock", display(&self.root), move || {
                try_lock_dir(&root, mode)
            })
            .await?;
            if let Some(held) = held {
                return Ok(Some(SinkLock::new(held)));
            }
            if started.elapsed() >= wait {
                return Err(StorageError::Locked {
                    target: self.describe(),
                    wanted: mode.name(),
                    waited_secs: wait.as_secs(),
                });
            }
            if !told {
                tracing::info!(
                    "waiting (up to {} s) for the {} lock on {}: {}",
                    wait.as_secs(),
                    mode.name(),
                    self.root.display(),
                    match mode {
                        LockMode::Shared => "a backup-prune is deleting there",
                        LockMode::Exclusive => "backups are writing there",
                    }
                );
                told = true;
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn remove_incomplete(&self, older_than: Duration) -> Result<Vec<String>> {
        let removed = self.remove_stale_temp_files(older_than).await?;
        Ok(removed.iter().map(|p| p.display().to_string()).collect())
    }

    async fn writer_with(&self, key: &str, mode: WriteMode) -> Result<Box<dyn ObjectWriter>> {
        let final_path = self.path_of(key)?;
        let (dir, file_name) = split_file_path(&final_path)?;
        self.create_dirs(dir).await?;
        let temp_path = dir.join(temp_file_name(file_name));
        let temp_name = display(&temp_path);
        let (temp, file) = TempFile::create(temp_path, FILE_MODE)
            .map_err(|source| StorageError::io("create", temp_name, source))?;
        tracing::debug!(key, temp = %temp.path().display(), "started local write");
        Ok(Box::new(LocalObjectWriter {
            key: key.to_owned(),
            final_path,
            file: Some(BufWriter::with_capacity(BUFFER_SIZE, File::from_std(file))),
            temp: Some(temp),
            mode,
        }))
    }

    async fn get(&self, key: &str) -> Result<ObjectReader> {
        let path = self.path_of(key)?;
        let file = File::open(&path)
            .await
            .map_err(|source| missing_or_io(key, "open", &path, source))?;
        let meta = file
            .metadata()
            .await
            .map_err(|source| StorageError::io("stat", display(&path), source))?;
        if !meta.is_file() {
            return Err(not_found(key));
        }
        Ok(Box::new(BufReader::with_capacity(BUFFER_SIZE, file)))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path_of(key)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|source| missing_or_io(key, "stat", &path, source))?;
        if !meta.is_file() {
            return Err(not_found(key));
        }
        object_meta(key.to_owned(), &meta, &path)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let root = self.root.clone();
        let owned_prefix = prefix.to_owned();
        let target = format!("{} (prefix {prefix:?})", root.display());
        blocking("list", target, move || list_blocking(&root, &owned_prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                tracing::debug!(key, "deleted local object");
                Ok(())
            }
            Err(source) if is_missing(&source) || source.kind() == io::ErrorKind::IsADirectory => {
                Ok(())
            }
            Err(source) => Err(StorageError::io("delete", display(&path), source)),
        }
    }

    fn delete_detached(&self, key: &str, expected: Bytes) {
        let Ok(path) = self.path_of(key) else {
            return;
        };
        // Markers are small and never rewritten (they are created with `WriteMode::Create`),
        // so equal content means the marker is the caller's.
        let limit = expected.len() as u64 + 1;
        let mut content = Vec::new();
        let read = std::fs::File::open(&path).and_then(|file| {
            std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut content)
        });
        match read {
            Ok(_) if content == expected => match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(key, "deleted local object (detached)"),
                Err(error) if is_missing(&error) => {}
                Err(error) => tracing::warn!(path = %path.display(), %error, "could not delete"),
            },
            Ok(_) => tracing::debug!(key, "not deleted: another run's content"),
            Err(error) if is_missing(&error) => {}
            Err(error) => tracing::warn!(path = %path.display(), %error, "could not read"),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let from_path = self.path_of(from)?;
        self.path_of(to)?;
        let mut reader = self.get(from).await?;
        let mut writer = self.writer(to).await?;
        let mut buf = vec![0; BUFFER_SIZE];
        loop {
            let read = reader
                .read(&mut buf)
                .await
                .map_err(|source| StorageError::io("read", display(&from_path), source))?;
            if read == 0 {
                break;
            }
            writer
                .write_all(&buf[..read])
                .await
                .map_err(|source| StorageError::io("write", to, source))?;
        }
        writer.commit().await?;
        Ok(())
    }
}

/// The [`ObjectWriter`] of a [`LocalSink`]: a buffered [`TempFile`] put in place on commit
/// (removed by its own drop when the writer is dropped unfinished).
struct LocalObjectWriter {
    key: String,
    final_path: PathBuf,
    /// `None` only while committing or aborting.
    file: Option<BufWriter<File>>,
    /// `None` once put in place or removed.
    temp: Option<TempFile>,
    /// Whether the commit may replace an existing file.
    mode: WriteMode,
}

impl LocalObjectWriter {
    fn file(&mut self) -> io::Result<Pin<&mut BufWriter<File>>> {
        match self.file.as_mut() {
            Some(file) => Ok(Pin::new(file)),
            None => Err(io::Error::other(
                "the write was already committed or aborted",
            )),
        }
    }
}

impl AsyncWrite for LocalObjectWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().file() {
            Ok(file) => file.poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().file() {
            Ok(file) => file.poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// Only flushes: the file stays open until [`ObjectWriter::commit`] or
    /// [`ObjectWriter::abort`], so pipelines that shut their writer down still commit.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl ObjectWriter for LocalObjectWriter {
    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        // On any error below the writer is dropped, and the `TempFile` removes itself.
        let (Some(mut file), Some(temp)) = (self.file.take(), self.temp.take()) else {
            let error = io::Error::other("the write was already committed or aborted");
            return Err(StorageError::io("commit", self.key.clone(), error));
        };
        let temp_name = display(temp.path());
        file.flush()
            .await
            .map_err(|source| StorageError::io("write", &temp_name, source))?;
        let file = file.into_inner();
        file.sync_all()
            .await
            .map_err(|source| StorageError::io("fsync", &temp_name, source))?;
        let meta = file
            .metadata()
            .await
            .map_err(|source| StorageError::io("stat", &temp_name, source))?;
        drop(file);
        let target = format!("{temp_name} to {}", self.final_path.display());
        match self.mode {
            WriteMode::Overwrite => temp
                .rename_to(&self.final_path)
                .map_err(|source| StorageError::io("rename", target, source))?,
            // A hard link is created atomically and only if the name is free.
            WriteMode::Create | WriteMode::Retained => match temp.link_to(&self.final_path) {
                Ok(()) => {}
                Err(source) if source.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::AlreadyExists {
                        key: self.key.clone(),
                    });
                }
                Err(source) => return Err(StorageError::io("link", target, source)),
            },
        }
        let (dir, _) = split_file_path(&self.final_path)?;
        sync_dir(dir).await?;
        tracing::debug!(key = %self.key, size = meta.len(), "committed local object");
        object_meta(self.key.clone(), &meta, &self.final_path)
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        if let Some(temp) = self.temp.take() {
            let path = display(temp.path());
            temp.remove()
                .map_err(|source| StorageError::io("remove", path, source))?;
        }
        tracing::debug!(key = %self.key, "aborted local write");
        Ok(())
    }
}

/// The checks of [`LocalSink::new`].
fn check_root(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StorageError::Config(format!(
                "{} is not a directory",
                root.display()
            )))
        }
        Err(error) if is_missing(&error) => {
            if let Ok(target) = std::fs::read_link(root) {
                return Err(StorageError::Config(format!(
                    "{} is a symbolic link to {}, which does not exist: create that \
                     directory, or point the setting at an existing one",
                    root.display(),
                    target.display()
                )));
            }
            // Created by the first write.
            return Ok(());
        }
        Err(source) => return Err(StorageError::io("stat", display(root), source)),
    }
    let entries = std::fs::read_dir(root)
        .map_err(|source| StorageError::io("list directory", display(root), source))?;
    for entry in entries.flatten() {
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && entry.path().is_dir() {
            return Err(StorageError::Config(format!(
                "{} is a symbolic link to a directory: backups would be written through it \
                 but never listed, restored by --latest or pruned. Replace the link by the \
                 directory it points to, or point the backup directory setting at the real \
                 location",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

/// `path` for messages.
fn display(path: &Path) -> String {
    path.display().to_string()
}

fn not_found(key: &str) -> StorageError {
    StorageError::NotFound {
        key: key.to_owned(),
    }
}

/// Whether an error means "no such file" (including a file standing where a folder should be).
fn is_missing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// [`StorageError::NotFound`] for a missing file, else [`StorageError::Io`].
fn missing_or_io(key: &str, op: &'static str, path: &Path, source: io::Error) -> StorageError {
    if is_missing(&source) {
        not_found(key)
    } else {
        StorageError::io(op, display(path), source)
    }
}

/// Runs blocking file-system work off the async threads.
/// How often a waiting [`LocalSink::lock`] tries again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// A non-blocking `flock` of the directory `root` in `mode`; `None` while another open file
/// description holds it in a conflicting mode.
fn try_lock_dir(root: &Path, mode: LockMode) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    let dir = std::fs::File::open(root).map_err(|e| StorageError::io("open", display(root), e))?;
    let arg = match mode {
        LockMode::Shared => FlockArg::LockSharedNonblock,
        LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
    };
    match Flock::lock(dir, arg) {
        Ok(held) => Ok(Some(held)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(StorageError::io(
            "lock",
            display(root),
            io::Error::from(errno),
        )),
    }
}

async fn blocking<T, F>(op: &'static str, target: String, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| StorageError::io(op, target, io::Error::other(join_error)))?
}

/// `fsync`s a directory so that entries created or renamed in it are durable.
async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
    let target = display(&dir);
    blocking("fsync directory", target, move || sync_dir_blocking(&dir)).await
}

fn sync_dir_blocking(dir: &Path) -> Result<()> {
    atomic::sync_dir(dir)
        .map_err(|source| StorageError::io("fsync directory", display(dir), source))
}

fn create_dirs_blocking(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match std::fs::metadata(current) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                let message = format!("{} is not a directory", current.display());
                let source = io::Error::new(io::ErrorKind::NotADirectory, message);
                return Err(StorageError::io("create directory", display(dir), source));
            }
            Err(error) if is_missing(&error) => {
                missing.push(current);
                match current.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => current = parent,
                    _ => break,
                }
            }
            Err(source) => return Err(StorageError::io("stat", display(current), source)),
        }
    }
    for created in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => {}
            // Another writer created it meanwhile.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => {}
            Err(source) => {
                return Err(StorageError::io(
                    "create directory",
                    display(created),
                    source,
                ))
            }
        }
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir_blocking(parent)?;
        }
    }
    Ok(())
}

/// The folder and file name of an object's path.
fn split_file_path(path: &Path) -> Result<(&Path, &str)> {
    match (
        path.parent(),
        path.file_name().and_then(|name| name.to_str()),
    ) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(StorageError::io(
            "split",
            display(path),
            io::Error::other("not a file path"),
        )),
    }
}

/// A fresh temporary name for a write of the file `final_name`:
/// `.tmp-<final name>.<16 lowercase hex>`.
fn temp_file_name(final_name: &str) -> String {
    format!(
        "{TEMP_PREFIX}{final_name}.{:0width$x}",
        rand::random::<u64>(),
        width = TEMP_RANDOM_HEX_DIGITS
    )
}

/// Whether `name` is exactly of the form [`temp_file_name`] makes.
fn is_temp_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let Some((final_name, random)) = rest.rsplit_once('.') else {
        return false;
    };
    !final_name.is_empty()
        && random.len() == TEMP_RANDOM_HEX_DIGITS
        && random
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_local_name_lengths(key: &str) -> Result<()> {
    let invalid = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    let mut segments = key.rsplit('/');
    if segments
        .next()
        .is_some_and(|name| name.len() > MAX_OBJECT_FILE_NAME)
    {
        return invalid("the file name is longer than 233 bytes, too long for a local file");
    }
    if segments.any(|folder| folder.len() > MAX_FILE_NAME) {
        return invalid("a folder name is longer than 255 bytes, too long for a local folder");
    }
    Ok(())
}

fn object_meta(key: String, meta: &Metadata, path: &Path) -> Result<ObjectMeta> {
    let modified = meta
        .modified()
        .map_err(|source| StorageError::io("read modification time of", display(path), source))?;
    Ok(ObjectMeta {
        key,
        size: meta.len(),
        last_modified: DateTime::<Utc>::from(modified),
    })
}

/// Walks the folder `start` (whose path relative to the root is `start_key`, empty or ending
/// in `/`) without following symbolic links. Calls `on_file` with each entry that is not a
/// folder, its file type and its relative path; descends into the folders whose relative path
/// (ending in `/`) `descend` accepts. Entries with non-UTF-8 names are skipped, as are
/// entries that vanish during the walk.
fn walk(
    start: PathBuf,
    start_key: String,
    descend: impl Fn(&str) -> bool,
    mut on_file: impl FnMut(&std::fs::DirEntry, FileType, String) -> Result<()>,
) -> Result<()> {
    let mut pending = vec![(start, start_key)];
    while let Some((dir, dir_key)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if is_missing(&error) => continue,
            Err(source) => return Err(StorageError::io("list directory", display(&dir), source)),
        };
        for entry in entries {
            let entry = entry
                .map_err(|source| StorageError::io("list directory", display(&dir), source))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::debug!(path = %entry.path().display(), "skipping a non-UTF-8 file name");
                continue;
            };
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(error) if is_missing(&error) => continue,
                Err(source) => {
                    return Err(StorageError::io("stat", display(&entry.path()), source))
                }
            };
            let key = format!("{dir_key}{name}");
            if file_type.is_dir() {
                let folder_key = format!("{key}/");
                if descend(&folder_key) {
                    pending.push((entry.path(), folder_key));
                }
            } else {
                on_file(&entry, file_type, key)?;
            }
        }
    }
    Ok(())
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    // Start at the deepest folder the prefix names, refusing to pass through symbolic links.
    let start_key = match prefix.rfind('/') {
        Some(slash) => &prefix[..=slash],
        None => "",
    };
    let mut start = root.to_path_buf();
    for folder in start_key.split('/').filter(|segment| !segment.is_empty()) {
        start.push(folder);
        match std::fs::symlink_metadata(&start) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(Vec::new()),
            Err(error) if is_missing(&error) => return Ok(Vec::new()),
            Err(source) => return Err(StorageError::io("stat", display(&start), source)),
        }
    }
    let mut objects = Vec::new();
    walk(
        start,
        start_key.to_owned(),
        |folder| folder.starts_with(prefix) || prefix.starts_with(folder),
        |entry, file_type, key| {
            if !file_type.is_file() || !key.starts_with(prefix) || validate_key(&key).is_err() {
                // Temporary files, symbolic links, sockets, and names that are not keys.
                return Ok(());
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(error) if is_missing(&error) => return Ok(()),
                Err(source) => {
                    return Err(StorageError::io("stat", display(&entry.path()), source))
                }
            };
            objects.push(object_meta(key, &meta, &entry.path())?);
            Ok(())
        },
    )?;
    objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

fn remove_stale_temp_files_blocking(root: &Path, older_than: Duration) -> Result<Vec<PathBuf>> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    walk(
        root.to_path_buf(),
        String::new(),
        |_| true,
        |entry, file_type, _| {
            let is_temp = entry.file_name().to_str().is_some_and(is_temp_file_name);
            if !file_type.is_file() || !is_temp {
                return Ok(());
            }
            let path = entry.path();
            let modified = match entry.metadata().and_then(|meta| meta.modified()) {
                Ok(modified) => modified,
                Err(error) if is_missing(&error) => return Ok(()),
                Err(source) => return Err(StorageError::io("stat", display(&path), source)),
            };
            // A modification time in the future counts as fresh.
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            if age < older_than {
                return Ok(());
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), ?age, "removed stale temporary file");
                    removed.push(path);
                }
                Err(error) if is_missing(&error) => {}
                Err(source) => return Err(StorageError::io("remove", display(&path), source)),
            }
            Ok(())
        },
    )?;
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_names_are_recognised_and_never_valid_keys() {
        let name = temp_file_name("randevubu_backup_20240115_020000.sql.gz.enc");
        assert!(name.starts_with(".tmp-randevubu_backup_20240115_020000.sql.gz.enc."));
        assert!(is_temp_file_name(&name), "{name}");
        assert!(validate_key(&name).is_err());
        assert!(validate_key(&format!("database/{name}")).is_err());
    }

    #[test]
    fn only_the_exact_temp_pattern_counts_as_temporary() {
        assert!(is_temp_file_name(".tmp-a.0123456789abcdef"));
        for name in [
            ".tmp-notes",
            ".tmp-.0123456789abcdef",
            ".tmp-a.0123456789ABCDEF",
            ".tmp-a.0123456789abcde",
            "a.0123456789abcdef",
            "tmp-a.0123456789abcdef",
        ] {
            assert!(!is_temp_file_name(name), "{name}");
        }
    }

    #[test]
    fn local_file_names_leave_room_for_the_temp_name() {
        let longest = "f".repeat(MAX_OBJECT_FILE_NAME);
        assert!(check_local_name_lengths(&longest).is_ok());
        assert_eq!(temp_file_name(&longest).len(), MAX_FILE_NAME);
        assert!(check_local_name_lengths(&format!("{longest}x")).is_err());
        assert!(check_local_name_lengths(&format!("{}/x", "d".repeat(255))).is_ok());
        assert!(check_local_name_lengths(&format!("{}/x", "d".repeat(256))).is_err());
    }
}
