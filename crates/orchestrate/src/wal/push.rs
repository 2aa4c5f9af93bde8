//! `backup-wal push`: storing WAL files (see [`WalArchive`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backup_core::{
    manifest_key_for, read_verified_manifest, store_object, BackupKind, CoreError, Manifest,
};
use backup_sources::wal::{recorded_plain_sha256, WalFileName, WalFileSource};
use backup_storage::{Sink, StorageError};
use futures_util::StreamExt;
use serde::Serialize;

use super::spool::Spool;
use super::{error_text, WalArchive, WalError};

/// How long a push waits for another run that holds a file's claim (a push of the same file
/// that is still running) before it gives up; PostgreSQL tries again.
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The WAL file.
    pub file: String,
    /// The object key it is stored under (with this run's compression and encryption).
    pub key: String,
    /// Destinations it was written to by this run.
    pub stored: Vec<String>,
    /// Destinations that already held it with the same contents.
    pub already: Vec<String>,
    /// Whether an earlier run had pushed it ahead (its recorded hash matched).
    pub pushed_ahead_earlier: bool,
    /// The files pushed ahead by this run.
    pub ahead: Vec<PushedAhead>,
    /// Seconds taken.
    pub seconds: f64,
}

/// A file pushed ahead.
#[derive(Debug, Clone, Serialize)]
pub struct PushedAhead {
    /// The WAL file.
    pub file: String,
    /// `None` when it is stored everywhere; else why not (PostgreSQL's own call retries it).
    pub error: Option<String>,
}

/// What one destination holds under a WAL file's name.
enum Stored {
    /// Nothing complete.
    Nothing,
    /// The same contents.
    Same,
    /// Other contents, with their SHA-256.
    Other(String),
}

impl WalArchive {
    /// Pushes the WAL file at `path` (PostgreSQL's `%p`; its file name is the WAL name) to
    /// every destination, and the next files ready beside it (see [`WalArchive`]).
    ///
    /// # Errors
    /// [`WalError::NotStored`] when a destination does not hold it at the end,
    /// [`WalError::Conflict`] when one holds other contents under its name,
    /// [`WalError::Source`] when it is not a WAL file or cannot be read.
    pub async fn push(&self, path: &Path) -> Result<PushReport, WalError> {
        let started = Instant::now();
        let name = wal_name_of(path)?;
        let wal_dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        let spool = Spool::new(&self.config, &wal_dir);
        let source = WalFileSource::prepare(path, name.clone()).await?;
        let ours = source.digest().sha256.clone();
        let key = name.object_key(self.options.compression, self.options.key.is_some());
        let recorded = spool.pushed(&name);
        let ahead_names = self.ready_after(&wal_dir, &name, &spool);

        let current = async {
            if recorded.as_deref() == Some(ours.as_str()) {
                return Ok((Vec::new(), Vec::new(), true));
            }
            let (stored, already) = self.push_source(source).await?;
            Ok::<_, WalError>((stored, already, false))
        };
        let ahead = futures_util::stream::iter(ahead_names)
            .map(|ahead| self.push_ahead(&wal_dir, ahead, &spool))
            .buffer_unordered(self.config.push_concurrency.max(1))
            .collect::<Vec<_>>();
        let (current, ahead, history) =
            tokio::join!(current, ahead, self.push_history(&wal_dir, &name, &spool));
        let (stored, already, pushed_ahead_earlier) = current?;
        history?;
        spool.forget_pushed(&name);
        Ok(PushReport {
            file: name.to_string(),
            key,
            stored,
            already,
            pushed_ahead_earlier,
            ahead,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The files after `name` that PostgreSQL has ready to archive (`archive_status/*.ready`
    /// beside `wal_dir`'s files) and that were not pushed ahead yet, oldest first, at most
    /// `push_concurrency - 1`.
    fn ready_after(&self, wal_dir: &Path, name: &WalFileName, spool: &Spool) -> Vec<PathBuf> {
        let wanted = self.config.push_concurrency.saturating_sub(1);
        if wanted == 0 {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(wal_dir.join("archive_status")) else {
            return Vec::new();
        };
        let pushed = spool.pushed_names();
        let mut ready: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".ready")
                    .map(str::to_owned)
            })
            .filter(|n| n != name.as_str() && !pushed.contains(n))
            .filter(|n| WalFileName::parse(n).is_ok())
            .collect();
        ready.sort();
        ready.truncate(wanted);
        ready.into_iter().map(|n| wal_dir.join(n)).collect()
    }

    /// Makes sure the history file of `name`'s timeline is archived: a cluster promoted
    /// while it did not archive (a point-in-time restore runs with `archive_mode = off`) never
    /// marked it ready, and without it the archive cannot be followed onto its timeline.
    /// Pushed (idempotently) from beside the WAL files when it is there and not recorded as
    /// pushed in the spool.
    async fn push_history(
        &self,
        wal_dir: &Path,
        name: &WalFileName,
        spool: &Spool,
    ) -> Result<(), WalError> {
        if name.timeline() <= 1 || name.file_type() == backup_sources::wal::WalFileType::History {
            return Ok(());
        }
        let history = WalFileName::history(name.timeline());
        let path = wal_dir.join(history.as_str());
        if spool.pushed(&history).is_some() || !path.is_file() {
            return Ok(());
        }
        let source = WalFileSource::prepare(&path, history.clone()).await?;
        let sha = source.digest().sha256.clone();
        self.push_source(source).await?;
        if let Err(e) = spool.record_pushed(&history, &sha) {
            tracing::debug!("cannot record the push of {history}: {e}");
        }
        Ok(())
    }

    /// Pushes a file ahead and records it in the spool once stored everywhere.
    async fn push_ahead(&self, _wal_dir: &Path, path: PathBuf, spool: &Spool) -> PushedAhead {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = async {
            let name = wal_name_of(&path)?;
            let source = WalFileSource::prepare(&path, name.clone()).await?;
            let sha = source.digest().sha256.clone();
            self.push_source(source).await?;
            spool.record_pushed(&name, &sha).map_err(|source| {
                WalError::Source(backup_sources::SourceError::Io {
                    what: format!("recording the push of {name} in the spool directory"),
                    source,
                })
            })
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!("pushing {file} ahead failed (PostgreSQL's own call retries it): {e}");
        }
        PushedAhead {
            file,
            error: result.err().map(|e| error_text(&e)),
        }
    }

    /// Stores `source` on every destination that does not hold it yet; returns the
    /// destinations written and those that held it already.
    async fn push_source(
        &self,
        mut source: WalFileSource,
    ) -> Result<(Vec<String>, Vec<String>), WalError> {
        let name = source.name().clone();
        let ours = source.digest().sha256.clone();
        let key = name.object_key(self.options.compression, self.options.key.is_some());
        let mut already = Vec::new();
        let mut pending = Vec::new();
        let mut failures = Vec::new();
        for destination in self.destinations.iter() {
            match self.stored(destination.sink(), &name, &ours).await {
                Ok(Stored::Same) => already.push(destination.name().to_owned()),
                Ok(Stored::Other(stored)) => {
                    return Err(WalError::Conflict {
                        name: name.to_string(),
                        destination: destination.sink().describe(),
                        stored,
                        ours,
                    })
                }
                Ok(Stored::Nothing) => pending.push(destination),
                Err(e) => failures.push(format!("{}: {}", destination.name(), error_text(&e))),
            }
        }
        let mut stored = Vec::new();
        let deadline = Instant::now() + BUSY_WAIT;
        while !pending.is_empty() {
            let sinks: Vec<&dyn Sink> = pending.iter().map(|d| d.sink()).collect();
            let results = store_object(&mut source, &sinks, &key, &self.options, None).await?;
            let mut busy = Vec::new();
            for (destination, result) in pending.into_iter().zip(results) {
                match result.result {
                    Ok(_) => stored.push(destination.name().to_owned()),
                    Err(CoreError::Storage(StorageError::AlreadyExists { .. })) => {
                        // Stored meanwhile by another run: the same file, or a conflict.
                        match self.stored(destination.sink(), &name, &ours).await {
                            Ok(Stored::Same) => already.push(destination.name().to_owned()),
                            Ok(Stored::Other(other)) => {
                                return Err(WalError::Conflict {
                                    name: name.to_string(),
                                    destination: destination.sink().describe(),
                                    stored: other,
                                    ours,
                                })
                            }
                            Ok(Stored::Nothing) => busy.push(destination),
                            Err(e) => {
                                failures.push(format!("{}: {}", destination.name(), error_text(&e)))
                            }
                        }
                    }
                    Err(CoreError::Busy { .. }) if Instant::now() < deadline => {
                        busy.push(destination)
                    }
                    Err(e) => failures.push(format!("{}: {}", destination.name(), error_text(&e))),
                }
            }
            if !busy.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            pending = busy;
        }
        if !failures.is_empty() {
            return Err(WalError::NotStored {
                name: name.to_string(),
                failures: failures.join("; "),
            });
        }
        Ok((stored, already))
    }

    /// What `sink` holds under `name`: a complete object (any compression or encryption) whose
    /// signed manifest records the plain file's SHA-256, compared with `ours`.
    async fn stored(
        &self,
        sink: &dyn Sink,
        name: &WalFileName,
        ours: &str,
    ) -> Result<Stored, WalError> {
        let Some((key, manifest)) = self.complete_copy(sink, name).await? else {
            return Ok(Stored::Nothing);
        };
        let recorded =
            recorded_plain_sha256(&manifest.source).ok_or_else(|| WalError::Unusable {
                name: name.to_string(),
                failures: format!(
                    "the manifest of {key} on {} records no SHA-256 of the file",
                    sink.describe()
                ),
            })?;
        Ok(if recorded == ours {
            Stored::Same
        } else {
            Stored::Other(recorded.to_owned())
        })
    }

    /// The complete copy of `name` on `sink`, with its verified manifest: an object of the
    /// file's name (any compression or encryption suffix) whose manifest is there, is signed
    /// by a key of the keyring, describes a WAL file of that name, and whose object has the
    /// size the manifest records.
    pub(super) async fn complete_copy(
        &self,
        sink: &dyn Sink,
        name: &WalFileName,
    ) -> Result<Option<(String, Manifest)>, WalError> {
        let listed = sink
            .list(&format!("{}{}", name.folder(), name.as_str()))
            .await
            .map_err(CoreError::from)?;
        let keys: std::collections::BTreeSet<&str> =
            listed.iter().map(|m| m.key.as_str()).collect();
        for meta in &listed {
            let Some((file, _, _)) = WalFileName::from_object_key(&meta.key) else {
                continue;
            };
            if &file != name || !keys.contains(manifest_key_for(&meta.key).as_str()) {
                continue;
            }
            let (manifest, _) =
                read_verified_manifest(sink, &meta.key, self.keyring.as_ref()).await?;
            let recorded_file = manifest
                .source
                .details
                .get("wal_file")
                .and_then(|v| v.as_str());
            if manifest.kind != BackupKind::WAL || recorded_file != Some(name.as_str()) {
                return Err(WalError::Unusable {
                    name: name.to_string(),
                    failures: format!(
                        "the signed manifest of {} on {} describes {} {:?}, not this WAL file",
                        meta.key,
                        sink.describe(),
                        manifest.kind,
                        recorded_file.unwrap_or("?")
                    ),
                });
            }
            if meta.size != manifest.stored_bytes {
                return Err(WalError::Unusable {
                    name: name.to_string(),
                    failures: format!(
                        "{} on {} has {} bytes, its manifest records {}: damaged; delete it and \
                         its manifest so that the next push stores it again",
                        meta.key,
                        sink.describe(),
                        meta.size,
                        manifest.stored_bytes
                    ),
                });
            }
            return Ok(Some((meta.key.clone(), manifest)));
        }
        Ok(None)
    }
}

/// The WAL name of the file at `path`.
fn wal_name_of(path: &Path) -> Result<WalFileName, WalError> {
    let file = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        backup_sources::SourceError::Wal(format!("{} does not name a WAL file", path.display()))
    })?;
    Ok(WalFileName::parse(file)?)
}
