//! `backup-wal fetch`: restoring WAL files for a recovery (see [`WalArchive`]).

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use backup_core::{open_object, CoreError, HashingReader};
use backup_sources::wal::{recorded_plain_sha256, WalFileName, WalFileType};
use backup_storage::Sink;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::spool::Spool;
use super::{error_text, WalArchive, WalError};

/// Segments fetched ahead at the same time: enough to keep a few cores decrypting and
/// decompressing, few enough that memory stays small (about 12 MiB each).
const DOWNLOADS_AT_ONCE: usize = 4;

/// Bytes per write of a fetched WAL file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// What a fetch did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    /// The WAL file.
    pub file: String,
    /// The destination it came from (`spool` when fetched ahead by an earlier call).
    pub from: String,
    /// Plain bytes written.
    pub bytes: u64,
    /// Segments fetched ahead by this call.
    pub ahead: Vec<String>,
    /// Seconds taken.
    pub seconds: f64,
}

impl WalArchive {
    /// Fetches the WAL file `name` (PostgreSQL's `%f`) into `target` (its `%p`), verified,
    /// by rename; then, for a segment, the next segments ahead into the spool directory.
    ///
    /// # Errors
    /// [`WalError::NotFound`] when every destination answered and none holds it (the end of
    /// the archive); [`WalError::Unusable`] when a copy exists but none verifies, or a
    /// destination could not be asked; [`WalError::Source`] for a bad name or a target that
    /// cannot be written.
    pub async fn fetch(&self, name: &str, target: &Path) -> Result<FetchReport, WalError> {
        let started = Instant::now();
        let name = WalFileName::parse(name)?;
        let wal_dir = target.parent().unwrap_or(Path::new(".")).to_owned();
        let spool = Spool::new(&self.config, &wal_dir);
        let (from, bytes) = match spool.fetched(&name) {
            Some(path) => {
                let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                std::fs::rename(&path, target).map_err(|source| io(target, source))?;
                ("spool".to_owned(), bytes)
            }
            None => self.fetch_to(&name, target).await?,
        };
        let ahead = self
            .fetch_ahead(&name, bytes, &spool, from != "spool")
            .await;
        Ok(FetchReport {
            file: name.to_string(),
            from,
            bytes,
            ahead,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Fetches the segments after `name` (a segment of `segment_size` bytes) into the spool:
    /// the window of `fetch_ahead - 1` segments is refilled, in parallel, when the file asked
    /// for was not there (`missed`) or when half of the window is gone. Files outside the
    /// window (older segments, another timeline) are deleted. Failures are left to
    /// PostgreSQL's own call for the file.
    async fn fetch_ahead(
        &self,
        name: &WalFileName,
        segment_size: u64,
        spool: &Spool,
        missed: bool,
    ) -> Vec<String> {
        let window_len = self.config.fetch_ahead.saturating_sub(1) as u64;
        let number = match name.file_type() {
            WalFileType::Segment if segment_size.is_power_of_two() => {
                name.segment_number(segment_size)
            }
            _ => None,
        };
        let Some(number) = number.filter(|_| window_len > 0) else {
            return Vec::new();
        };
        let window: Vec<WalFileName> = (1..=window_len)
            .map(|i| WalFileName::segment(name.timeline(), number + i, segment_size))
            .collect();
        let keep: BTreeSet<String> = window.iter().map(|n| n.to_string()).collect();
        spool.prune_fetched(&keep);
        let present = spool.fetched_names();
        let missing: Vec<&WalFileName> = window
            .iter()
            .filter(|n| !present.contains(n.as_str()))
            .collect();
        if missing.is_empty() || (!missed && (missing.len() as u64) * 2 < window_len) {
            return Vec::new();
        }
        let Ok(dir) = spool.fetch_dir() else {
            return Vec::new();
        };
        futures_util::stream::iter(missing)
            .map(|next| {
                let path = dir.join(next.as_str());
                async move {
                    match self.fetch_to(next, &path).await {
                        Ok(_) => Some(next.to_string()),
                        Err(e) if e.is_not_found() => None,
                        Err(e) => {
                            tracing::warn!("fetching {next} ahead failed: {e}");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(DOWNLOADS_AT_ONCE)
            .filter_map(|fetched| async move { fetched })
            .collect()
            .await
    }

    /// Fetches `name` from the first destination with a usable copy into `target`.
    pub(super) async fn fetch_to(
        &self,
        name: &WalFileName,
        target: &Path,
    ) -> Result<(String, u64), WalError> {
        let mut failures = Vec::new();
        for destination in self.destinations.iter() {
            let sink = destination.sink();
            let copy = match self.complete_copy(sink, name).await {
                Ok(Some((key, _))) => key,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("{}: {}", destination.name(), error_text(&e)));
                    continue;
                }
            };
            match self.download(sink, &copy, target).await {
                Ok(bytes) => {
                    if !failures.is_empty() {
                        tracing::warn!(
                            "{name}: used the copy on {} after: {}",
                            destination.name(),
                            failures.join("; ")
                        );
                    }
                    return Ok((destination.name().to_owned(), bytes));
                }
                Err(e) => failures.push(format!("{}: {}", destination.name(), error_text(&e))),
            }
        }
        if failures.is_empty() {
            return Err(WalError::NotFound {
                name: name.to_string(),
                searched: self.destinations.describe(),
            });
        }
        Err(WalError::Unusable {
            name: name.to_string(),
            failures: failures.join("; "),
        })
    }

    /// Streams the verified object `key` from `sink`, decrypted and decompressed, into a
    /// hidden temporary file beside `target`, checks the plain SHA-256 its manifest records,
    /// and renames it to `target`. Nothing is left behind on failure.
    async fn download(&self, sink: &dyn Sink, key: &str, target: &Path) -> Result<u64, WalError> {
        let opened = open_object(sink, key, self.keyring.as_ref(), None).await?;
        let expected = opened
            .manifest
            .as_ref()
            .and_then(|m| recorded_plain_sha256(&m.source))
            .map(str::to_owned)
            .ok_or_else(|| CoreError::ManifestInvalid {
                key: backup_core::manifest_key_for(key),
                reason: "it records no SHA-256 of the WAL file".to_owned(),
            })?;
        let tmp = temporary_beside(target);
        let result = async {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|source| io(&tmp, source))?;
            // Whole MiBs per write: each write of a tokio file is a trip to a blocking
            // thread, and 8 KiB writes made a segment cost thousands of them.
            let mut file =
                tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
            let mut plain = HashingReader::new(opened.stream);
            tokio::io::copy(&mut plain, &mut file)
                .await
                .map_err(|source| CoreError::Integrity {
                    key: key.to_owned(),
                    detail: format!("reading it failed: {source}"),
                })?;
            file.flush().await.map_err(|source| io(&tmp, source))?;
            let file = file.into_inner();
            file.sync_all().await.map_err(|source| io(&tmp, source))?;
            let digest = plain.digest();
            if digest.sha256 != expected {
                return Err(CoreError::Integrity {
                    key: key.to_owned(),
                    detail: format!(
                        "the restored file's SHA-256 is {}, its manifest records {expected}",
                        digest.sha256
                    ),
                }
                .into());
            }
            std::fs::rename(&tmp, target).map_err(|source| io(target, source))?;
            Ok::<_, WalError>(digest.size)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// A hidden temporary name beside `target`, unique to this process and call.
fn temporary_beside(target: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{file}.{}.{n}.backup-wal", std::process::id()))
}

fn io(path: &Path, source: std::io::Error) -> WalError {
    WalError::Source(backup_sources::SourceError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}
