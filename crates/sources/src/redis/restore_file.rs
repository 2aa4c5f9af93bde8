//! File-mode restore: the verified RDB renamed into place.
//!
//! [`RedisFileRestore`] writes the stream to a temporary file next to the target
//! (`.dump.rdb.restore-<random>`, mode 0600 while it is written) and, at the same time, parses
//! it with [`backup_rdb::RdbSummary::read`]. Only when the stream ended (the pipeline verified
//! it), the whole RDB parsed and its CRC-64 matched, and the file was fsynced, is anything
//! touched:
//!
//! 1. the stop command runs (`sh -c`, output captured; a failure stops the restore here);
//! 2. the previous file is kept as `dump.rdb.before-restore-YYYYMMDD_HHMMSS` (a hard link,
//!    or a copy where links are not possible): a restore never throws the previous data away;
//! 3. the new file gets the previous file's owner, group and mode; without a previous file it
//!    gets mode 0600 and, when the directory belongs to another user (typically `redis` in
//!    `/var/lib/redis`), that user and group, so that the server can read it and nobody else;
//! 4. it is renamed over the target and the directory is fsynced;
//! 5. the start command runs.
//!
//! Any failure before step 4 removes the temporary file and leaves the target as it was.
//!
//! With a Docker container the file is validated the same way in a local temporary file, then
//! `docker stop NAME`, `docker cp NAME:/data/dump.rdb <kept copy>` (when the container has a
//! file), `docker cp TMP NAME:/data/dump.rdb` and `docker start NAME` run. The official
//! `redis` image gives `/data` to the `redis` user when the container starts.
//!
//! Redis stopped with `SHUTDOWN` (or `redis-cli shutdown`) saves its data first when save
//! points are configured, which is why the file is replaced only after the stop command.
//! When append-only persistence is enabled Redis loads the AOF on start and ignores the RDB:
//! see [`aof_warning`].

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};
use backup_rdb::{ParseOptions, RdbError, RdbSummary};
use backup_storage::atomic::{self, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::redis::check::summary_notes;
use crate::redis::connection::{RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;
use crate::stream::tee_to_validator;

/// The infix of the temporary file a restore writes (`.dump.rdb.restore-<random>`).
pub const RESTORE_TEMP_INFIX: &str = ".restore-";
/// The infix of the kept previous file (`dump.rdb.before-restore-YYYYMMDD_HHMMSS`).
pub const KEPT_INFIX: &str = ".before-restore-";
/// Where the official `redis` image keeps its RDB file.
pub const DOCKER_RDB_PATH: &str = "/data/dump.rdb";

/// Size of the chunks read from the stream.
const CHUNK: usize = 256 * 1024;

/// Options of [`RedisFileRestore`].
#[derive(Debug, Clone)]
pub struct FileRestoreOptions {
    /// The target RDB file (e.g. `/var/lib/redis/dump.rdb`); required without
    /// `docker_container`.
    pub rdb_path: Option<PathBuf>,
    /// Shell command run (with `sh -c`) before the file is replaced: stops Redis.
    pub stop_cmd: Option<String>,
    /// Shell command run (with `sh -c`) after the file is replaced: starts Redis.
    pub start_cmd: Option<String>,
    /// Docker container: `docker stop`, `docker cp` to [`docker_rdb_path`](Self::docker_rdb_path),
    /// `docker start`. Excludes `rdb_path`, `stop_cmd` and `start_cmd`.
    pub docker_container: Option<String>,
    /// The `docker` program (default `docker`, looked up in `PATH`).
    pub docker_program: PathBuf,
    /// The RDB file inside the container (default [`DOCKER_RDB_PATH`]).
    pub docker_rdb_path: String,
    /// Docker mode: the local directory for the temporary file and the kept previous file
    /// (default: the system temporary directory).
    pub work_dir: Option<PathBuf>,
    /// The running server, asked (`CONFIG GET appendonly`, 3 seconds at most; a stopped
    /// server is the usual case and no error) before the file is replaced, to warn when it
    /// would load an AOF instead of the restored RDB.
    pub server: Option<RedisConfig>,
    /// The memory budget of the parser that checks the RDB as it is written
    /// ([`ParseOptions::memory_budget`]; `None`: 64 MiB).
    pub parse_memory: Option<u64>,
}

impl Default for FileRestoreOptions {
    fn default() -> Self {
        Self {
            rdb_path: None,
            stop_cmd: None,
            start_cmd: None,
            docker_container: None,
            docker_program: PathBuf::from("docker"),
            docker_rdb_path: DOCKER_RDB_PATH.to_owned(),
            work_dir: None,
            server: None,
            parse_memory: None,
        }
    }
}

impl FileRestoreOptions {
    /// Where the RDB goes, for messages: `container NAME:/data/dump.rdb` or the file's path.
    pub fn destination(&self) -> String {
        match (&self.docker_container, &self.rdb_path) {
            (Some(name), _) => format!("container {name}:{}", self.docker_rdb_path),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => "nowhere (neither an RDB path nor a container given)".to_owned(),
        }
    }
}

/// Writes a verified RDB to a data file.
pub struct RedisFileRestore {
    options: FileRestoreOptions,
}

impl RedisFileRestore {
    /// A file-mode restore target.
    pub fn new(options: FileRestoreOptions) -> Self {
        Self { options }
    }

    async fn run(&self, stream: ByteStream) -> Result<RestoreSummary, RedisError> {
        let o = &self.options;
        // Warn about AOF before anything changes: the target directory and the server.
        let mut client = None;
        if let Some(server) = &o.server {
            let connect = RedisClient::connect(server);
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
                client = Some(c);
            }
        }
        if let Some(warning) = aof_warning(o.rdb_path.as_deref(), client.as_mut()).await {
            tracing::warn!("{warning}");
        }
        drop(client);
        if let Some(container) = &o.docker_container {
            if o.stop_cmd.is_some() || o.start_cmd.is_some() || o.rdb_path.is_some() {
                return Err(RedisError::Config(
                    "a Docker container restore runs docker stop / cp / start itself: it takes \
                     no RDB path, stop or start command"
                        .to_owned(),
                ));
            }
            if container.is_empty() || container.starts_with('-') {
                return Err(RedisError::Config(format!(
                    "invalid Docker container name {container:?}"
                )));
            }
            return self.run_docker(container, stream).await;
        }
        let Some(target) = &o.rdb_path else {
            return Err(RedisError::Config(
                "a file-mode restore needs the RDB path (or a Docker container)".to_owned(),
            ));
        };
        self.run_local(target, stream).await
    }

    async fn run_local(
        &self,
        target: &Path,
        stream: ByteStream,
    ) -> Result<RestoreSummary, RedisError> {
        let o = &self.options;
        let file_name = target
            .file_name()
            .ok_or_else(|| RedisError::Config(format!("{} is not a file path", target.display())))?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir_meta = std::fs::metadata(&dir).map_err(|source| RedisError::File {
            context: "cannot use the target directory".to_owned(),
            path: dir.display().to_string(),
            source,
        })?;
        let old = match std::fs::symlink_metadata(target) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RedisError::Config(format!(
                    "{} is a symbolic link; give the path of the file it points to",
                    target.display()
                )))
            }
            Ok(m) if !m.is_file() => {
                return Err(RedisError::Config(format!(
                    "{} exists and is not a regular file",
                    target.display()
                )))
            }
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(source) => {
                return Err(RedisError::File {
                    context: "cannot inspect".to_owned(),
                    path: target.display().to_string(),
                    source,
                })
            }
        };

        let mut notes = Vec::new();
        if let Some(w) = aof_warning_for_dir(&dir) {
            notes.push(w);
        }
        let temp_path = dir.join(format!(
            ".{file_name}{RESTORE_TEMP_INFIX}{}",
            random_suffix()
        ));
        let (temp, bytes, summary) = write_verified(stream, temp_path, o.parse_memory).await?;

        if let Some(cmd) = &o.stop_cmd {
            run_shell("the stop command", cmd).await?;
            notes.push("ran the stop command".to_owned());
        } else {
            notes.push(
                "no stop command was given: Redis must not be running, or it overwrites the \
                 restored file on its next save or shutdown"
                    .to_owned(),
            );
        }

        let replaced = replace_file(temp, target, &dir, &file_name, &dir_meta, old.as_ref());
        let (uid, gid, mode, kept) = match replaced {
            Ok(r) => r,
            Err(e) => {
                // The target is untouched: bring Redis back with its previous data.
                if let Some(cmd) = &o.start_cmd {
                    if let Err(start) = run_shell("the start command", cmd).await {
                        tracing::warn!("after a failed restore, {start}");
                    }
                }
                return Err(e);
            }
        };
        notes.push(kept.clone());
        notes.push(format!(
            "wrote {bytes} bytes to {} (owner {uid}:{gid}, mode {mode:04o})",
            target.display()
        ));
        notes.extend(summary_notes(&summary));

        if let Some(cmd) = &o.start_cmd {
            if let Err(e) = run_shell("the start command", cmd).await {
                return Err(match e {
                    RedisError::HookFailed {
                        what,
                        status,
                        stderr,
                    } => RedisError::StartFailed {
                        target: target.display().to_string(),
                        kept,
                        what,
                        status,
                        stderr,
                    },
                    other => other,
                });
            }
            notes.push("ran the start command".to_owned());
        }
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes,
        })
    }

    async fn run_docker(
        &self,
        container: &str,
        stream: ByteStream,
    ) -> Result<RestoreSummary, RedisError> {
        let o = &self.options;
        let dir = o.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let temp_path = dir.join(format!(".dump.rdb{RESTORE_TEMP_INFIX}{}", random_suffix()));
        let (temp, bytes, summary) = write_verified(stream, temp_path, o.parse_memory).await?;
        let mut notes = Vec::new();
        let docker = &o.docker_program;
        let inside = format!("{container}:{}", o.docker_rdb_path);

        run_program(docker, &["stop", container], "docker stop").await?;
        notes.push(format!("stopped container {container}"));

        // Keep the container's previous file locally, in a directory of its own created
        // exclusively with mode 0700 (the work directory may be a shared /tmp, where a
        // predictable name could be a planted link), and make the copy 0600.
        let private = dir.join(format!(
            "redis-before-restore-{}-{}",
            timestamp(),
            random_suffix()
        ));
        let aside = private.join(format!("dump.rdb{KEPT_INFIX}{}", timestamp()));
        let aside_str = aside.to_string_lossy().into_owned();
        let kept = match std::fs::DirBuilder::new().mode(0o700).create(&private) {
            Err(e) => format!(
                "the previous file was not copied out: cannot create {} ({e})",
                private.display()
            ),
            Ok(()) => match run_program(docker, &["cp", &inside, &aside_str], "docker cp").await {
                Ok(_) => {
                    if let Err(e) =
                        std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
                    {
                        tracing::warn!("could not make {aside_str} private: {e}");
                    }
                    format!("previous file kept as {aside_str}")
                }
                Err(e) => format!("the previous file could not be copied out ({e})"),
            },
        };
        notes.push(kept.clone());

        let temp_str = temp.path().to_string_lossy().into_owned();
        if let Err(e) = run_program(docker, &["cp", &temp_str, &inside], "docker cp").await {
            // Bring the container back with whatever it had.
            let restart = match run_program(docker, &["start", container], "docker start").await {
                Ok(_) => "the container was started again".to_owned(),
                Err(e2) => format!("starting it again failed too: {e2}"),
            };
            return Err(match e {
                RedisError::HookFailed {
                    what,
                    status,
                    stderr,
                } => RedisError::HookFailed {
                    what,
                    status,
                    stderr: format!("{stderr} ({restart})"),
                },
                other => other,
            });
        }
        notes.push(format!("copied {bytes} bytes to {inside}"));
        drop(temp);
        notes.extend(summary_notes(&summary));

        if let Err(e) = run_program(docker, &["start", container], "docker start").await {
            return Err(match e {
                RedisError::HookFailed {
                    what,
                    status,
                    stderr,
                } => RedisError::StartFailed {
                    target: inside,
                    kept,
                    what,
                    status,
                    stderr,
                },
                other => other,
            });
        }
        notes.push(format!("started container {container}"));
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes,
        })
    }
}

#[async_trait]
impl RestoreTarget for RedisFileRestore {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        self.run(stream).await.map_err(|e| Box::new(e) as BoxError)
    }
}

/// A warning when Redis would load an append-only file instead of a restored RDB: the
/// directory of `rdb_path` holds `appendonlydir/` or `appendonly.aof`, or `server` (when given
/// and reachable) reports `appendonly yes`. `None` when neither is the case.
///
/// [`RedisFileRestore`] logs it before anything changes (asking
/// [`FileRestoreOptions::server`] when given), and puts the files' part in its notes.
pub async fn aof_warning(
    rdb_path: Option<&Path>,
    server: Option<&mut RedisClient>,
) -> Option<String> {
    let mut evidence = Vec::new();
    let dir = rdb_path.map(|p| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    });
    if let Some(dir) = &dir {
        evidence.extend(aof_files(dir));
    }
    if let Some(client) = server {
        if let Ok(Resp::Array(Some(items))) =
            client.command(&[b"CONFIG", b"GET", b"appendonly"]).await
        {
            if matches!(items.get(1), Some(Resp::Bulk(Some(v))) if v.eq_ignore_ascii_case(b"yes")) {
                evidence.push("the server reports appendonly yes".to_owned());
            }
        }
    }
    (!evidence.is_empty()).then(|| aof_text(&evidence, dir.as_deref()))
}

/// The file part of [`aof_warning`], for a data directory.
pub fn aof_warning_for_dir(dir: &Path) -> Option<String> {
    let evidence = aof_files(dir);
    (!evidence.is_empty()).then(|| aof_text(&evidence, Some(dir)))
}

fn aof_files(dir: &Path) -> Vec<String> {
    ["appendonlydir", "appendonly.aof"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.exists())
        .map(|p| format!("{} exists", p.display()))
        .collect()
}

fn aof_text(evidence: &[String], dir: Option<&Path>) -> String {
    let place = dir
        .map(|d| format!(" from {}", d.display()))
        .unwrap_or_default();
    format!(
        "WARNING: append-only persistence (AOF) is in use ({}): Redis loads the AOF instead of \
         the restored RDB when it starts, so the restore would seem to have no effect. Stop \
         Redis, move the AOF (appendonlydir/ or appendonly.aof){place} aside or set \
         `appendonly no` in its configuration (CONFIG SET appendonly no + CONFIG REWRITE) \
         before it starts again, start it so that it loads the RDB, then re-enable AOF \
         (CONFIG SET appendonly yes, which rewrites the AOF from the loaded data, or \
         BGREWRITEAOF)",
        evidence.join("; ")
    )
}

fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{mixed:016x}")
}

fn timestamp() -> String {
    chrono::Local::now().format("%Y%m%d_%H%M%S").to_string()
}

/// Streams `stream` into a new [`TempFile`] at `path` (mode 0600, must not exist) while
/// parsing it; returns the file, the byte count and the parse summary once the stream ended,
/// the RDB parsed completely with a matching checksum, and the file was fsynced. On error the
/// file is gone (the `TempFile` removes itself).
pub(crate) async fn write_verified(
    stream: ByteStream,
    path: PathBuf,
    parse_memory: Option<u64>,
) -> Result<(TempFile, u64, RdbSummary), RedisError> {
    let shown = path.display().to_string();
    let file_err = |context: &str| {
        let context = context.to_owned();
        let path = shown.clone();
        move |source| RedisError::File {
            context,
            path,
            source,
        }
    };
    let (temp, file) = TempFile::create(path.clone(), 0o600).map_err(file_err("cannot create"))?;
    let mut file = tokio::fs::File::from_std(file);
    let options = ParseOptions {
        memory_budget: parse_memory,
        ..ParseOptions::default()
    };
    let (mut tee, check) = tee_to_validator(stream, "the RDB backup", |reader| {
        Box::pin(RdbSummary::read_with(reader, options))
    });
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let rdb_err = |source| RedisError::Rdb {
        context: "the backup is not a valid RDB file, the restore target was left untouched"
            .to_owned(),
        source,
    };
    let task_failed = |e| RedisError::Config(format!("the RDB parser task failed: {e}"));
    loop {
        let n = match tee.read(&mut buf).await {
            Ok(n) => n,
            Err(source) => {
                drop(tee);
                if check.read_error().is_some() || !check.validator_done() {
                    check.abort();
                    return Err(RedisError::Stream { bytes, source });
                }
                // The parser stopped early: it found an error.
                return Err(match check.verdict().await {
                    Ok(Err(e)) => rdb_err(e),
                    Ok(Ok(_)) => rdb_err(RdbError::TrailingData { extra: 1 }),
                    Err(e) => task_failed(e),
                });
            }
        };
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(file_err("cannot write"))?;
        bytes += n as u64;
    }
    drop(tee);
    let summary = match check.verdict().await {
        Ok(result) => result.map_err(rdb_err)?,
        Err(e) => return Err(task_failed(e)),
    };
    file.flush().await.map_err(file_err("cannot write"))?;
    file.sync_all().await.map_err(file_err("cannot fsync"))?;
    Ok((temp, bytes, summary))
}

/// Gives the validated temporary file its owner, group and mode (the previous file's, or 0600
/// and the directory's owner), keeps the previous file aside and renames the temporary file
/// over `target`. Returns `(uid, gid, mode, what happened to the previous file)`. On error
/// the target is as it was.
fn replace_file(
    temp: TempFile,
    target: &Path,
    dir: &Path,
    file_name: &str,
    dir_meta: &std::fs::Metadata,
    old: Option<&std::fs::Metadata>,
) -> Result<(u32, u32, u32, String), RedisError> {
    let temp_meta = std::fs::metadata(temp.path()).map_err(|source| RedisError::File {
        context: "cannot inspect".to_owned(),
        path: temp.path().display().to_string(),
        source,
    })?;
    let (uid, gid, mode) = match old {
        Some(m) => (m.uid(), m.gid(), m.mode() & 0o7777),
        None if dir_meta.uid() != temp_meta.uid() => (dir_meta.uid(), dir_meta.gid(), 0o600),
        None => (temp_meta.uid(), temp_meta.gid(), 0o600),
    };
    if (uid, gid) != (temp_meta.uid(), temp_meta.gid()) {
        std::os::unix::fs::chown(temp.path(), Some(uid), Some(gid)).map_err(|source| {
            RedisError::File {
                context: format!(
                    "cannot give the restored file to uid {uid} gid {gid} (the owner of the {}; \
                     run the restore as root or as that user)",
                    if old.is_some() {
                        "previous file"
                    } else {
                        "directory"
                    }
                ),
                path: temp.path().display().to_string(),
                source,
            }
        })?;
    }
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode)).map_err(
        |source| RedisError::File {
            context: "cannot set the mode of".to_owned(),
            path: temp.path().display().to_string(),
            source,
        },
    )?;

    // Keep the previous file (a hard link: same inode, owner and mode).
    let aside = match old {
        Some(_) => Some(keep_previous(target, dir, file_name)?),
        None => None,
    };
    let temp_shown = temp.path().display().to_string();
    if let Err(source) = temp.rename_to(target) {
        if let Some(aside) = &aside {
            let _ = std::fs::remove_file(aside);
        }
        return Err(RedisError::File {
            context: format!("cannot rename {temp_shown} to"),
            path: target.display().to_string(),
            source,
        });
    }
    if let Err(e) = sync_dir(dir) {
        // The file is in place; only its durability across a crash is in doubt.
        tracing::warn!("{e}");
    }
    let kept = match aside {
        Some(aside) => format!("previous file kept as {}", aside.display()),
        None => format!("there was no previous {}", target.display()),
    };
    Ok((uid, gid, mode, kept))
}

/// Hard-links (or copies) `target` to `<name>.before-restore-<timestamp>[-N]` in `dir`.
fn keep_previous(target: &Path, dir: &Path, file_name: &str) -> Result<PathBuf, RedisError> {
    let stamp = timestamp();
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let aside = dir.join(format!("{file_name}{KEPT_INFIX}{stamp}{suffix}"));
        match std::fs::hard_link(target, &aside) {
            Ok(()) => return Ok(aside),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here: copy, keeping owner and mode.
                if aside.exists() {
                    continue;
                }
                copy_preserving(target, &aside)?;
                return Ok(aside);
            }
        }
    }
    Err(RedisError::Config(format!(
        "cannot find a free name to keep the previous {} aside",
        target.display()
    )))
}

fn copy_preserving(from: &Path, to: &Path) -> Result<(), RedisError> {
    let err = |context: &str, source| RedisError::File {
        context: context.to_owned(),
        path: to.display().to_string(),
        source,
    };
    let meta =
        std::fs::metadata(from).map_err(|e| err("cannot inspect the previous file for", e))?;
    let result = (|| {
        let mut src = std::fs::File::open(from)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        // Best effort for the owner (needs root); the mode is the previous file's.
        let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(to);
        err("cannot keep a copy of the previous file as", e)
    })
}

fn sync_dir(dir: &Path) -> Result<(), RedisError> {
    atomic::sync_dir(dir).map_err(|source| RedisError::File {
        context: "cannot fsync the directory".to_owned(),
        path: dir.display().to_string(),
        source,
    })
}

/// Runs `cmd` with `sh -c`, output captured; an error on a non-zero exit. The command text is
/// not repeated in errors (it may hold credentials).
async fn run_shell(what: &str, cmd: &str) -> Result<String, RedisError> {
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(cmd);
    run_captured(what, &mut command).await
}

async fn run_program(program: &Path, args: &[&str], what: &str) -> Result<String, RedisError> {
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    run_captured(what, &mut command).await
}

async fn run_captured(
    what: &str,
    command: &mut tokio::process::Command,
) -> Result<String, RedisError> {
    use crate::process::{describe_status, run_to_end, stderr_excerpt};
    // Hooks and docker get the environment without the tool's secrets.
    crate::process::scrub_secrets(command);
    let done = run_to_end(command)
        .await
        .map_err(|e| RedisError::HookFailed {
            what: what.to_owned(),
            status: format!("could not run it: {e}"),
            stderr: String::new(),
        })?;
    if done.status.success() {
        return Ok(stderr_excerpt(&done.stdout));
    }
    // What it said on stderr, or on stdout when stderr was empty.
    let said = if done.stderr.trim().is_empty() {
        &done.stdout
    } else {
        &done.stderr
    };
    Err(RedisError::HookFailed {
        what: what.to_owned(),
        status: describe_status(done.status),
        stderr: stderr_excerpt(said),
    })
}
