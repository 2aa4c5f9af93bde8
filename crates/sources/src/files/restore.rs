//! Restoring a files archive into a directory, safely: nothing is written until the whole
//! archive has been read and every entry checked ([`check_then_extract`]: a first pass over
//! the verified private copy checks, a second writes). Refused: absolute names, `..`, links
//! whose target leaves the directory, an entry reached through a link (in the archive or on
//! disk), hard links and special files, and (without `overwrite`) any file that exists.
//! Each file is written to a temporary name and renamed into place, with its mode, mtime and
//! (as root) owner.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, FetchedBackup, ProgressFn, RestoreSummary, RestoreTarget};
use backup_storage::atomic::TempFile;
use tokio_util::io::SyncIoBridge;

/// How a files restore writes.
#[derive(Debug, Clone)]
pub struct FilesRestoreOptions {
    /// The directory the archive's names are restored under (created if missing).
    pub target_dir: PathBuf,
    /// Replace files that exist (otherwise an existing file stops the restore before anything
    /// is written, listing them).
    pub overwrite: bool,
}

/// One entry of the plan: what would be written where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A directory.
    Directory(PathBuf),
    /// A file of this many bytes; `true` when it replaces an existing one.
    File(PathBuf, u64, bool),
    /// A symbolic link to the target.
    Link(PathBuf, PathBuf),
}

impl std::fmt::Display for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(p) => write!(f, "directory {}", p.display()),
            Self::File(p, n, false) => write!(f, "file {} ({n} bytes)", p.display()),
            Self::File(p, n, true) => write!(f, "file {} ({n} bytes, replacing)", p.display()),
            Self::Link(p, t) => write!(f, "link {} -> {}", p.display(), t.display()),
        }
    }
}

/// Checks a whole archive without writing: the plan, or the first reason to refuse it.
pub struct FilesCheck {
    options: FilesRestoreOptions,
    /// The plan, once the archive was read to its end.
    pub plan: Vec<Planned>,
}

impl FilesCheck {
    /// A check against `options` (its target and overwrite rule).
    pub fn new(options: FilesRestoreOptions) -> Self {
        Self {
            options,
            plan: Vec::new(),
        }
    }
}

#[async_trait]
impl RestoreTarget for FilesCheck {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let options = self.options.clone();
        let stream = backup_core::read_ahead(stream);
        let (plan, bytes) =
            tokio::task::spawn_blocking(move || walk(SyncIoBridge::new(stream), &options, None))
                .await??;
        let replacing = plan
            .iter()
            .filter(|p| matches!(p, Planned::File(_, _, true)))
            .count();
        let mut notes = vec![format!(
            "{} entries checked: every name stays inside {}",
            plan.len(),
            self.options.target_dir.display()
        )];
        if replacing > 0 {
            notes.push(format!("{replacing} existing file(s) would be replaced"));
        }
        self.plan = plan;
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes,
        })
    }
}

/// Writes an archive that [`FilesCheck`] accepted.
pub struct FilesExtract {
    options: FilesRestoreOptions,
    fresh: bool,
}

impl FilesExtract {
    /// An extraction into `options.target_dir`.
    pub fn new(options: FilesRestoreOptions) -> Self {
        Self {
            options,
            fresh: false,
        }
    }

    /// An extraction into `dir`, an empty directory this process made for it and nobody else
    /// writes to: a staging directory that is moved into place whole afterwards (a
    /// point-in-time restore's). Every entry is checked as by [`FilesExtract::new`], but each
    /// file is written under its own name (there is nothing to replace and nobody to see it
    /// half-written), and the files are synced by a few threads while the extraction goes on
    /// rather than one by one in its way; the extraction returns once every file and directory
    /// is on disk. After a failure the directory holds what was written until then, for its
    /// maker to remove.
    pub fn into_fresh_directory(dir: PathBuf) -> Self {
        Self {
            options: FilesRestoreOptions {
                target_dir: dir,
                overwrite: false,
            },
            fresh: true,
        }
    }
}

#[async_trait]
impl RestoreTarget for FilesExtract {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let options = self.options.clone();
        let target = options.target_dir.clone();
        let fresh = self.fresh;
        let stream = backup_core::read_ahead(stream);
        let (plan, bytes) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&options.target_dir)?;
            let mut writer = Writer {
                dirs: Vec::new(),
                syncer: fresh.then(Syncer::start),
            };
            let result = walk(SyncIoBridge::new(stream), &options, Some(&mut writer));
            // Directory modes last (a read-only directory would refuse its own files).
            for (dir, mode) in writer.dirs.iter().rev() {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode));
            }
            let synced = match writer.syncer {
                Some(syncer) => {
                    let mut dirs: Vec<PathBuf> = writer.dirs.into_iter().map(|(d, _)| d).collect();
                    dirs.push(options.target_dir.clone());
                    syncer.finish(&dirs)
                }
                None => Ok(()),
            };
            let walked = result?;
            synced?;
            Ok::<_, io::Error>(walked)
        })
        .await??;
        let files = plan
            .iter()
            .filter(|p| matches!(p, Planned::File(..)))
            .count();
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes: vec![format!(
                "{files} files, {} entries in all, restored under {}",
                plan.len(),
                target.display()
            )],
        })
    }
}

/// What an extraction keeps while it writes.
struct Writer {
    /// The directories created, with their archived modes (set last).
    dirs: Vec<(PathBuf, u32)>,
    /// Into a fresh directory: the threads that sync the files written.
    syncer: Option<Syncer>,
}

/// Threads that sync the files handed to them ([`FilesExtract::into_fresh_directory`]).
struct Syncer {
    tx: std::sync::mpsc::SyncSender<(std::fs::File, PathBuf)>,
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
}

/// Threads syncing files; several, so that the file system can commit them together.
const SYNC_THREADS: usize = 4;
/// Written files waiting for a sync thread (open descriptors).
const SYNC_QUEUE: usize = 64;

impl Syncer {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(std::fs::File, PathBuf)>(SYNC_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = (0..SYNC_THREADS)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || -> io::Result<()> {
                    loop {
                        let next = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return Err(io::Error::other("a sync thread failed")),
                        };
                        let Ok((file, path)) = next else {
                            return Ok(()); // Every file was handed out.
                        };
                        file.sync_all().map_err(|e| {
                            io::Error::new(e.kind(), format!("syncing {}: {e}", path.display()))
                        })?;
                    }
                })
            })
            .collect();
        Self { tx, threads }
    }

    /// Hands `file` (written in full) to the sync threads.
    fn sync(&self, file: std::fs::File, path: PathBuf) -> io::Result<()> {
        self.tx
            .send((file, path))
            .map_err(|_| io::Error::other("the threads syncing the restored files stopped"))
    }

    /// Waits until every file handed over is synced, then syncs `dirs` (their entries).
    fn finish(self, dirs: &[PathBuf]) -> io::Result<()> {
        drop(self.tx);
        let mut first = Ok(());
        for thread in self.threads {
            let result = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a sync thread panicked")));
            if first.is_ok() {
                first = result;
            }
        }
        first?;
        for dir in dirs {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io::Error::new(e.kind(), format!("syncing {}: {e}", dir.display())))?;
        }
        Ok(())
    }
}

/// Checks the whole archive (nothing written), then extracts it: two passes over the fetched
/// private copy. `progress` counts the stored bytes of both passes.
///
/// # Errors
/// The check's (nothing written) or the extraction's (the files written until then stay,
/// each complete: files are renamed into place whole).
pub async fn check_then_extract(
    fetched: &mut FetchedBackup,
    options: FilesRestoreOptions,
    progress: Option<ProgressFn>,
) -> backup_core::Result<RestoreSummary> {
    let mut check = FilesCheck::new(options.clone());
    fetched.restore_into(&mut check, progress.clone()).await?;
    let mut extract = FilesExtract::new(options);
    fetched.restore_into(&mut extract, progress).await
}

/// Reads every entry: checks it, and with `write` (the directories created, with their modes,
/// collected there) writes it. Returns the plan and the archive's size.
fn walk<R: Read>(
    input: R,
    options: &FilesRestoreOptions,
    mut write: Option<&mut Writer>,
) -> io::Result<(Vec<Planned>, u64)> {
    let mut counted = Counted { inner: input, n: 0 };
    let mut archive = tar::Archive::new(&mut counted);
    let mut plan = Vec::new();
    let mut links: BTreeSet<PathBuf> = BTreeSet::new();
    let mut existing = Vec::new();
    let root = &options.target_dir;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let name = safe_name(&raw)?;
        // Nothing may be reached through a link the archive made.
        if let Some(link) = name.ancestors().skip(1).find(|a| links.contains(*a)) {
            return Err(refused(format!(
                "{} lies under {}, a link in the archive",
                raw.display(),
                link.display()
            )));
        }
        let dest = root.join(&name);
        check_ancestors_on_disk(root, &name)?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        match header.entry_type() {
            tar::EntryType::Directory => {
                if let Some(writer) = write.as_deref_mut() {
                    create_dir(&dest)?;
                    writer.dirs.push((dest.clone(), mode));
                }
                plan.push(Planned::Directory(name));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| refused(format!("{}: a link without a target", raw.display())))?
                    .into_owned();
                check_link(&name, &target)?;
                links.insert(name.clone());
                let exists = std::fs::symlink_metadata(&dest).is_ok();
                if exists && !options.overwrite {
                    existing.push(name.clone());
                }
                if write.is_some() {
                    write_link(&dest, &target, options.overwrite)?;
                }
                plan.push(Planned::Link(name, target));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = header.size()?;
                let exists = std::fs::symlink_metadata(&dest).is_ok();
                if exists && !options.overwrite {
                    existing.push(name.clone());
                }
                if let Some(writer) = write.as_deref_mut() {
                    match &writer.syncer {
                        Some(syncer) => write_fresh_file(&mut entry, &dest, &header, syncer)?,
                        None => write_file(&mut entry, &dest, &header, options.overwrite)?,
                    }
                } else {
                    io::copy(&mut entry, &mut io::sink())?;
                }
                plan.push(Planned::File(name, size, exists));
            }
            other => {
                return Err(refused(format!(
                    "{}: a {other:?} entry; only files, directories and symbolic links are \
                     restored",
                    raw.display()
                )))
            }
        }
    }
    // The whole stream, to its verified end.
    io::copy(&mut counted, &mut io::sink())?;
    if !existing.is_empty() {
        let shown: Vec<String> = existing
            .iter()
            .take(10)
            .map(|p| p.display().to_string())
            .collect();
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} file(s) exist under {} ({}{}); nothing was written: pass --overwrite to \
                 replace them, or restore into an empty directory",
                existing.len(),
                root.display(),
                shown.join(", "),
                if existing.len() > 10 { ", ..." } else { "" }
            ),
        ));
    }
    Ok((plan, counted.n))
}

fn refused(detail: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refused: {detail}; nothing was written"),
    )
}

/// `raw` as a relative path of normal components only.
fn safe_name(raw: &Path) -> io::Result<PathBuf> {
    let mut name = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::Normal(p) => name.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(format!("{} is an absolute name", raw.display())))
            }
            Component::ParentDir => {
                return Err(refused(format!("{} contains '..'", raw.display())))
            }
        }
    }
    if name.as_os_str().is_empty() {
        return Err(refused(format!("{:?} names nothing", raw.display())));
    }
    Ok(name)
}

/// A link's target must be relative and stay inside the target directory, resolved from the
/// link's own folder.
fn check_link(name: &Path, target: &Path) -> io::Result<()> {
    if target.is_absolute() {
        return Err(refused(format!(
            "{} links to the absolute path {}",
            name.display(),
            target.display()
        )));
    }
    let mut depth: i64 = name.components().count() as i64 - 1;
    for part in target.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(refused(format!(
                "{} links to {}, outside the target directory",
                name.display(),
                target.display()
            )));
        }
    }
    Ok(())
}

/// No existing folder on the way to `name` under `root` may be a link (it could lead anywhere).
fn check_ancestors_on_disk(root: &Path, name: &Path) -> io::Result<()> {
    let mut path = root.to_path_buf();
    let parts: Vec<_> = name.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refused(format!(
                    "{} is a link on disk; {} would be written through it",
                    path.display(),
                    name.display()
                )))
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(refused(format!(
                    "{} exists and is not a directory",
                    path.display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

fn create_dir(dest: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(refused(format!(
            "{} exists and is not a directory",
            dest.display()
        ))),
        Err(_) => std::fs::DirBuilder::new().recursive(true).create(dest),
    }
}

fn parent_of(dest: &Path) -> io::Result<&Path> {
    dest.parent()
        .ok_or_else(|| io::Error::other(format!("{} has no folder", dest.display())))
}

/// `.NAME.restore-PID-RANDOM` beside `dest`; the leftovers of earlier restores of `dest` whose
/// process is gone (killed half-way through the file) are removed first.
fn temp_name(dest: &Path) -> io::Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no name", dest.display())))?
        .to_string_lossy()
        .into_owned();
    let dir = parent_of(dest)?;
    remove_stale_temps(dir, &name);
    Ok(dir.join(format!(
        ".{name}.restore-{}-{:016x}",
        std::process::id(),
        rand_u64()
    )))
}

/// Removes `.NAME.restore-PID-RANDOM` files in `dir` whose process no longer runs: what a
/// restore killed while writing `NAME` left behind. Anything else is never touched.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.restore-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, random)) = rest.split_once('-') else {
            continue;
        };
        let ours = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let running = Path::new("/proc").join(pid.to_string()).exists();
        let is_file = entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink());
        if ours && !running && is_file && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(
                "removed {}, left by a restore that was stopped",
                entry.path().display()
            );
        }
    }
}

fn rand_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn write_file<R: Read>(
    entry: &mut R,
    dest: &Path,
    header: &tar::Header,
    overwrite: bool,
) -> io::Result<()> {
    std::fs::create_dir_all(parent_of(dest)?)?;
    let (temp, mut file) = TempFile::create(temp_name(dest)?, 0o600)?;
    io::copy(entry, &mut file)?;
    file.sync_all()?;
    set_attributes(&file, header)?;
    drop(file);
    if overwrite {
        temp.rename_to(dest)
    } else {
        temp.link_to(dest)
    }
}

/// Buffer of a file written into a fresh directory: whole pages to the file system.
const FRESH_WRITE_BUFFER: usize = 1024 * 1024;

/// A file of a fresh directory ([`FilesExtract::into_fresh_directory`]): written under its
/// name (which must not exist) and handed to the sync threads.
fn write_fresh_file<R: Read>(
    entry: &mut R,
    dest: &Path,
    header: &tar::Header,
    syncer: &Syncer,
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(parent_of(dest)?)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dest.display())))?;
    let mut out = io::BufWriter::with_capacity(FRESH_WRITE_BUFFER, file);
    io::copy(entry, &mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    set_attributes(&file, header)?;
    syncer.sync(file, dest.to_owned())
}

/// The archived mode, mtime and (as root) owner.
fn set_attributes(file: &std::fs::File, header: &tar::Header) -> io::Result<()> {
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    // As root the owner is the archived one; otherwise the file stays ours.
    if let (Ok(uid), Ok(gid)) = (header.uid(), header.gid()) {
        let (uid, gid) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
        let _ = std::os::unix::fs::fchown(file, uid, gid);
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Ok(mtime) = header.mtime() {
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))?;
    }
    Ok(())
}

fn write_link(dest: &Path, target: &Path, overwrite: bool) -> io::Result<()> {
    std::fs::create_dir_all(parent_of(dest)?)?;
    let temp = temp_name(dest)?;
    std::os::unix::fs::symlink(target, &temp)?;
    let placed = if overwrite {
        std::fs::rename(&temp, dest)
    } else if std::fs::symlink_metadata(dest).is_ok() {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", dest.display()),
        ))
    } else {
        std::fs::rename(&temp, dest)
    };
    if placed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    placed
}

/// Counts the bytes read.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
