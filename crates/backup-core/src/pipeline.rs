//! The backup and restore pipelines.
//!
//! Backup: `Source -> count -> compress -> encrypt -> hash -> Sink writer`, then the source's
//! own completion check, then commit, then the manifest. Restore: `Sink -> verify (size,
//! SHA-256) -> decrypt -> decompress -> RestoreTarget`, after the manifest's HMAC was checked.
//! Every stage is a streaming adapter; memory use does not depend on the backup's size.

use std::time::{Duration, Instant};

use backup_crypto::{DecryptReader, EncryptReader, EncryptionKey, Keyring, CIPHER_NAME, KDF_NAME};
use backup_storage::{ObjectWriter, Sink, StorageError, WriteMode};
use bytes::Bytes;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::catalog::{BackupEntry, BackupStatus};
use crate::compression::Compression;
use crate::error::{CoreError, Result};
use crate::hashing::{
    CountingReader, HashingReader, IntegrityError, ProgressFn, StreamDigest, VerifyingReader,
};
use crate::manifest::{EncryptionInfo, Manifest, MANIFEST_FORMAT_VERSION, MANIFEST_SIZE_LIMIT};
use crate::naming::{claim_key_for, manifest_key_for, BackupName};
use crate::source::{ByteStream, RestoreSummary, RestoreTarget, Source};

/// Name and version written into manifests.
pub const TOOL_NAME: &str = concat!("randevubu-backup ", env!("CARGO_PKG_VERSION"));

/// Size of the copy buffer between the pipeline and the sink.
const COPY_BUFFER: usize = 256 * 1024;

/// How many successive seconds are tried for a backup's name when the one it started in is
/// taken (another run of the same kind and prefix in the same second).
const NAME_ATTEMPTS: u32 = 120;

/// How a backup is made.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Name prefix, `randevubu` by default.
    pub name_prefix: String,
    /// Compression.
    pub compression: Compression,
    /// Encryption key; `None` stores the compressed stream unencrypted.
    pub key: Option<EncryptionKey>,
    /// Key that signs the manifest of an unencrypted backup (`key` is `None`), so that a
    /// restore with the key can tell it from a forged one. Encrypted backups are signed with
    /// `key`; an unencrypted backup without a signing key gets an unsigned manifest.
    pub signing_key: Option<EncryptionKey>,
    /// PBKDF2 iterations (openssl's `-iter`).
    pub iterations: u32,
}

/// A committed backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Key of the stored object.
    pub key: String,
    /// Key of its manifest.
    pub manifest_key: String,
    /// The manifest as written.
    pub manifest: Manifest,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

/// Runs one backup of `source` into `sink`.
///
/// Nothing is left under the final name unless everything succeeded: the object is committed
/// only after the source reported a complete stream, and the manifest, written last, marks the
/// backup complete. If the manifest cannot be written the object is deleted again.
pub async fn run_backup(
    source: &mut dyn Source,
    sink: &dyn Sink,
    options: &BackupOptions,
    progress: Option<ProgressFn>,
) -> Result<BackupReport> {
    let mut results = run_backup_to_all(source, &[sink], options, progress).await?;
    match results.pop() {
        Some(only) => only.result,
        None => Err(CoreError::Config("no destination given".to_owned())),
    }
}

/// What became of a backup on one destination of [`run_backup_to_all`].
#[derive(Debug)]
pub struct DestinationResult {
    /// The destination's description ([`Sink::describe`]).
    pub destination: String,
    /// The committed backup there, or why it failed there.
    pub result: Result<BackupReport>,
}

/// Runs one backup of `source` into every sink of `sinks` in a single pass: the source is read
/// once, and each compressed, encrypted chunk is written to every destination.
///
/// Each destination commits on its own: one that fails while writing is aborted and dropped
/// from the pass while the others go on, and each gets its own [`DestinationResult`]. The
/// call itself fails (committing nothing anywhere) only when the source fails, or when every
/// destination failed before the end of the stream.
pub async fn run_backup_to_all(
    source: &mut dyn Source,
    sinks: &[&dyn Sink],
    options: &BackupOptions,
    progress: Option<ProgressFn>,
) -> Result<Vec<DestinationResult>> {
    let started = Instant::now();
    let started_at = Utc::now();
    let (kind, extension) = (source.kind(), source.extension());
    // The source first: a source that cannot start (an unreachable server) fails before
    // anything, not even a claim or a folder, is written anywhere.
    let stream = match source.open().await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(CoreError::Source {
                what: format!("{kind} backup"),
                source: e,
            })
        }
    };
    let mut claim = match claim_name(kind, extension, sinks, options, started_at).await {
        Ok(claim) => claim,
        Err(e) => {
            drop(stream);
            source.finish().await.ok();
            return Err(e);
        }
    };
    let results = backup_under(
        source, stream, sinks, options, progress, &claim, started, started_at,
    )
    .await;
    claim.release().await;
    results
}

/// A name claimed for a backup on the destinations (see [`CLAIM_SUFFIX`](crate::CLAIM_SUFFIX)).
/// Dropped without [`release`](Self::release) (the run was interrupted), it still removes its
/// claims, with [`Sink::delete_detached`]: those it holds, and one whose creation was in
/// flight (it may have been created after all). The claim's body is unique to the run, so only
/// this run's claim is ever removed.
struct ClaimedName<'a> {
    name: BackupName,
    /// The claim's content: unique to this run.
    body: Bytes,
    /// The destinations on which this run holds the claim.
    held: Vec<&'a dyn Sink>,
    /// A destination where the claim is being created.
    creating: Option<&'a dyn Sink>,
}

impl ClaimedName<'_> {
    /// Removes this run's claims: after the manifests were written, or after a failure. A
    /// claim stays in `held` until its deletion returned, so an interruption meanwhile still
    /// removes it on drop.
    async fn release(&mut self) {
        let claim_key = claim_key_for(&self.name.key());
        while let Some(&sink) = self.held.last() {
            if let Err(error) = sink.delete(&claim_key).await {
                tracing::warn!(
                    destination = %sink.describe(),
                    %error,
                    "could not remove the claim {claim_key}; backup-prune removes it after a day"
                );
            }
            self.held.pop();
        }
    }
}

impl Drop for ClaimedName<'_> {
    fn drop(&mut self) {
        let claim_key = claim_key_for(&self.name.key());
        for sink in std::mem::take(&mut self.held)
            .into_iter()
            .chain(self.creating.take())
        {
            sink.delete_detached(&claim_key, self.body.clone());
        }
    }
}

/// Chooses the backup's name and claims it on every destination: the name of the current
/// second, or, when another run of the same kind and prefix holds or has stored that name, of
/// the next second, waited for (a name is never in the future: names sort in the order the
/// runs claimed them, so retention never takes a newer backup for an older one). A claim is
/// an object created only if absent
/// ([`WriteMode::Create`]); a name counts as free on a destination once its claim was created
/// there and neither the object nor its manifest exists (checked after the claim, so that a
/// run that finished in between is seen). A destination that cannot be reached is left
/// unclaimed: its write fails on its own later.
async fn claim_name<'a>(
    kind: crate::BackupKind,
    extension: &str,
    sinks: &[&'a dyn Sink],
    options: &BackupOptions,
    started_at: chrono::DateTime<Utc>,
) -> Result<ClaimedName<'a>> {
    let body = Bytes::from(
        serde_json::json!({
            "tool": TOOL_NAME,
            "pid": std::process::id(),
            "started_at": started_at,
            "run": hex::encode(ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new())
                .map(|r| r.expose())
                .unwrap_or_default()),
        })
        .to_string(),
    );
    for _ in 0..NAME_ATTEMPTS {
        let now = Utc::now();
        let name = BackupName::new(
            kind,
            &options.name_prefix,
            now,
            extension,
            options.compression,
            options.key.is_some(),
        );
        let key = name.key();
        let claim_key = claim_key_for(&key);
        let mut claim = ClaimedName {
            name,
            body: body.clone(),
            held: Vec::with_capacity(sinks.len()),
            creating: None,
        };
        let mut taken = false;
        for &sink in sinks {
            claim.creating = Some(sink);
            let created = sink
                .put_with(&claim_key, body.clone(), WriteMode::Create)
                .await;
            claim.creating = None;
            match created {
                Ok(_) => claim.held.push(sink),
                Err(StorageError::AlreadyExists { .. }) => {
                    taken = true;
                    break;
                }
                Err(error) => {
                    tracing::debug!(destination = %sink.describe(), %error, "could not claim {key}");
                    continue;
                }
            }
            if exists(sink, &key).await || exists(sink, &manifest_key_for(&key)).await {
                taken = true;
                break;
            }
        }
        if !taken {
            return Ok(claim);
        }
        tracing::debug!("backup name {key} is taken; waiting for the next second");
        claim.release().await;
        let into_second = u64::from(now.timestamp_subsec_millis());
        tokio::time::sleep(Duration::from_millis(1000 - into_second.min(999))).await;
    }
    Err(CoreError::Config(format!(
        "could not find a free backup name in the {NAME_ATTEMPTS} seconds after {started_at}: \
         every name is taken or claimed by another run"
    )))
}

/// Whether `key` is known to exist on `sink`. A destination that cannot answer does not make
/// the name count as taken (every name would be, and the run would wait for nothing): the
/// exclusive commit ([`WriteMode::Create`]) still refuses to replace anything there, and the
/// destination's own write reports its trouble.
async fn exists(sink: &dyn Sink, key: &str) -> bool {
    match sink.head(key).await {
        Ok(_) => true,
        Err(StorageError::NotFound { .. }) => false,
        Err(error) => {
            tracing::debug!(destination = %sink.describe(), %error, "cannot check {key}");
            false
        }
    }
}

/// The body of [`run_backup_to_all`] once the name is claimed.
#[allow(clippy::too_many_arguments)]
async fn backup_under(
    source: &mut dyn Source,
    stream: ByteStream,
    sinks: &[&dyn Sink],
    options: &BackupOptions,
    progress: Option<ProgressFn>,
    claim: &ClaimedName<'_>,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
) -> Result<Vec<DestinationResult>> {
    let name = &claim.name;
    let key = name.key();
    let what = format!("{} backup {}", source.kind(), name.file_name());

    // Open every destination first: a destination that cannot even start a write fails alone.
    let mut outcomes: Vec<Option<CoreError>> = Vec::with_capacity(sinks.len());
    let mut writers: Vec<Option<Box<dyn ObjectWriter>>> = Vec::with_capacity(sinks.len());
    for sink in sinks {
        match sink.writer_with(&key, WriteMode::Create).await {
            Ok(w) => {
                writers.push(Some(w));
                outcomes.push(None);
            }
            Err(e) => {
                writers.push(None);
                outcomes.push(Some(e.into()));
            }
        }
    }
    if writers.iter().all(Option::is_none) {
        drop(stream);
        source.finish().await.ok();
        return Ok(failed_everywhere(sinks, outcomes));
    }

    let (counted, raw_counter) = CountingReader::new(stream, progress);
    let compressed = options.compression.encoder(counted);
    let stored: ByteStream = match &options.key {
        Some(k) => Box::new(EncryptReader::new(compressed, k, options.iterations)),
        None => compressed,
    };
    let mut hashed = HashingReader::new(stored);

    let copied = copy_to_all(&mut hashed, &mut writers, &mut outcomes, &key, sinks).await;
    // Always reap the source. When the stream broke on the reading side, the source's own
    // error (pg_dump's stderr) is the explanation.
    let finished = source.finish().await;
    if copied.is_ok() && writers.iter().all(Option::is_none) {
        // Every destination failed: their errors say why (the source stopped early because
        // nobody was reading any more, which is no news).
        return Ok(failed_everywhere(sinks, outcomes));
    }
    let facts = match (copied, finished) {
        (Ok(()), Ok(facts)) => facts,
        (_, Err(e)) => {
            abort_all(&mut writers).await;
            return Err(CoreError::Source { what, source: e });
        }
        (Err(e), Ok(_)) => {
            abort_all(&mut writers).await;
            return Err(CoreError::Source {
                what,
                source: Box::new(e),
            });
        }
    };
    let digest = hashed.digest();
    let mut manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        kind: source.kind(),
        object_key: key.clone(),
        started_at,
        finished_at: Utc::now(),
        source: facts,
        compression: options.compression,
        encryption: options.key.as_ref().map(|k| EncryptionInfo {
            cipher: CIPHER_NAME.to_owned(),
            kdf: KDF_NAME.to_owned(),
            iterations: options.iterations,
            key_id: k.id().to_string(),
        }),
        raw_bytes: raw_counter.get(),
        stored_bytes: digest.size,
        sha256: digest.sha256.clone(),
        tool: TOOL_NAME.to_owned(),
        hmac: None,
        mac_kdf: None,
    };
    let signer = options.key.as_ref().or(options.signing_key.as_ref());
    let manifest_json = Bytes::from(manifest.to_signed_json(signer)?);
    let manifest_key = manifest_key_for(&key);

    let mut results = Vec::with_capacity(sinks.len());
    for ((sink, writer), outcome) in sinks.iter().zip(writers).zip(outcomes) {
        let result = match (writer, outcome) {
            (Some(writer), None) => commit_one(
                *sink,
                writer,
                &key,
                &manifest_key,
                &manifest_json,
                digest.size,
            )
            .await
            .map(|()| BackupReport {
                key: key.clone(),
                manifest_key: manifest_key.clone(),
                manifest: manifest.clone(),
                elapsed: started.elapsed(),
            }),
            (_, Some(e)) => Err(e),
            (None, None) => Err(CoreError::Config("destination was not written".to_owned())),
        };
        results.push(DestinationResult {
            destination: sink.describe(),
            result,
        });
    }
    Ok(results)
}

/// Commits the object on one destination, checks its size, then writes the manifest; undoes
/// the object if the manifest cannot be written (it would pass for a legacy backup).
async fn commit_one(
    sink: &dyn Sink,
    writer: Box<dyn ObjectWriter>,
    key: &str,
    manifest_key: &str,
    manifest_json: &Bytes,
    size: u64,
) -> Result<()> {
    let meta = writer.commit().await?;
    if meta.size != size {
        sink.delete(key).await.ok();
        return Err(CoreError::Integrity {
            key: key.to_owned(),
            detail: format!(
                "{} stored {} bytes but {size} were written",
                sink.describe(),
                meta.size
            ),
        });
    }
    if let Err(e) = sink
        .put_with(manifest_key, manifest_json.clone(), WriteMode::Create)
        .await
    {
        sink.delete(key).await.ok();
        return Err(e.into());
    }
    Ok(())
}

fn failed_everywhere(
    sinks: &[&dyn Sink],
    outcomes: Vec<Option<CoreError>>,
) -> Vec<DestinationResult> {
    sinks
        .iter()
        .zip(outcomes)
        .map(|(sink, outcome)| DestinationResult {
            destination: sink.describe(),
            result: Err(outcome
                .unwrap_or_else(|| CoreError::Config("destination was not written".to_owned()))),
        })
        .collect()
}

async fn abort_all(writers: &mut [Option<Box<dyn ObjectWriter>>]) {
    for writer in writers.iter_mut() {
        if let Some(w) = writer.take() {
            w.abort().await.ok();
        }
    }
}

/// Copies the stream to every live writer with a large buffer (tokio's `copy` uses 8 KiB, too
/// small for fast sinks). A writer that fails is aborted and its error recorded; the copy goes
/// on for the others, and stops early once none is left. Errors returned are read errors.
async fn copy_to_all(
    reader: &mut HashingReader<ByteStream>,
    writers: &mut [Option<Box<dyn ObjectWriter>>],
    outcomes: &mut [Option<CoreError>],
    key: &str,
    sinks: &[&dyn Sink],
) -> std::io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = reader.read(&mut buf).await?;
        let chunk = &buf[..n];
        for i in 0..writers.len() {
            let Some(writer) = writers[i].as_mut() else {
                continue;
            };
            let written = if n == 0 {
                writer.flush().await
            } else {
                writer.write_all(chunk).await
            };
            if let Err(e) = written {
                if let Some(w) = writers[i].take() {
                    w.abort().await.ok();
                }
                outcomes[i] = Some(CoreError::Write {
                    key: key.to_owned(),
                    destination: sinks[i].describe(),
                    source: e,
                });
            }
        }
        if n == 0 || writers.iter().all(Option::is_none) {
            return Ok(());
        }
    }
}

/// A backup opened for reading: the verified plain stream and what was checked up front.
pub struct OpenedBackup {
    /// Decrypted, decompressed bytes. Returns end-of-file only after the stored bytes matched
    /// the manifest's size and SHA-256 (complete backups) and decryption and decompression
    /// ended cleanly; any mismatch is a read error.
    pub stream: ByteStream,
    /// The manifest, HMAC-verified, for complete backups.
    pub manifest: Option<Manifest>,
    /// Id of the key used to decrypt, if encrypted.
    pub key_id: Option<String>,
}

/// Opens `entry` for restore: checks the manifest's HMAC with the key it names (from
/// `keyring`), checks the stored size, and builds the verifying, decrypting, decompressing
/// stream. Legacy backups (no manifest) are decrypted with the keyring's current key and the
/// default iteration count, as the old scripts wrote them. `progress` is told of stored bytes
/// as they are read (out of `entry.size`).
pub async fn open_backup(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    progress: Option<ProgressFn>,
) -> Result<OpenedBackup> {
    let prepared = prepare(sink, entry, keyring).await?;
    let reader = sink.get(&entry.key).await?;
    open_stream(reader, prepared, &entry.key, keyring, progress)
}

/// What was checked of a backup before any of its bytes are read, and how to read them.
struct Prepared {
    /// Size and SHA-256 the stored bytes must have (complete backups).
    expected: Option<StreamDigest>,
    compression: Compression,
    /// Key id and iterations, if encrypted.
    encryption: Option<(String, u32)>,
    /// The HMAC-verified manifest (complete backups).
    manifest: Option<Manifest>,
}

/// The checks of [`open_backup`] that need no read of the object: the manifest's HMAC, the
/// key, the stored size.
async fn prepare(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
) -> Result<Prepared> {
    let key = entry.key.as_str();
    let (expected, compression, encryption, manifest) = match &entry.status {
        BackupStatus::Damaged(reason) => {
            return Err(CoreError::ManifestInvalid {
                key: manifest_key_for(key),
                reason: reason.clone(),
            })
        }
        BackupStatus::Complete => {
            let manifest_key = manifest_key_for(key);
            let bytes = sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await?;
            let unverified = Manifest::parse(&manifest_key, &bytes)?;
            let manifest = match (&unverified.encryption, keyring) {
                (Some(info), Some(ring)) => {
                    let k = find_key(ring, key, &info.key_id)?;
                    Manifest::parse_verified(&manifest_key, &bytes, k)?
                }
                (Some(_), None) => {
                    return Err(CoreError::KeyRequired {
                        key: key.to_owned(),
                    })
                }
                // With a key at hand, every manifest must carry a valid signature: unencrypted
                // backups are signed too (by any key of the ring: no key id is recorded).
                (None, Some(_)) if unverified.hmac.is_none() => {
                    return Err(CoreError::ManifestInvalid {
                        key: manifest_key,
                        reason: "it is not signed, but a key is configured: every manifest this \
                                 tool writes while a key is at hand is signed with it, so this \
                                 one may be forged; refusing to restore"
                            .to_owned(),
                    });
                }
                (None, Some(ring)) => {
                    let verified = ring
                        .keys()
                        .find_map(|k| Manifest::parse_verified(&manifest_key, &bytes, k).ok());
                    verified.ok_or_else(|| CoreError::ManifestTampered {
                        key: manifest_key.clone(),
                    })?
                }
                // No key at all (an unencrypted backup restored without one): nothing to check
                // the signature with; the caller says so.
                (None, None) => unverified,
            };
            if !manifest.describes(key) {
                return Err(CoreError::ManifestInvalid {
                    key: manifest_key,
                    reason: format!("it describes {:?}", manifest.object_key),
                });
            }
            let head = sink.head(key).await?;
            if head.size != manifest.stored_bytes {
                return Err(CoreError::Integrity {
                    key: key.to_owned(),
                    detail: format!(
                        "stored object has {} bytes, its manifest records {} (truncated?)",
                        head.size, manifest.stored_bytes
                    ),
                });
            }
            let encryption = manifest
                .encryption
                .as_ref()
                .map(|e| (e.key_id.clone(), e.iterations));
            (
                Some(manifest.stored_digest()),
                manifest.compression,
                encryption,
                Some(manifest),
            )
        }
        BackupStatus::InProgress => {
            return Err(CoreError::NoMatch(format!(
                "{key} is still being written by another run (its claim is there, its \
                 manifest is not)"
            )))
        }
        // Incomplete backups are restored only when asked for by name (the caller's policy);
        // like legacy ones they are checked only as they stream.
        BackupStatus::Legacy | BackupStatus::Incomplete => {
            let encryption = if entry.name.encrypted {
                let ring = keyring.ok_or_else(|| CoreError::KeyRequired {
                    key: key.to_owned(),
                })?;
                let k = legacy_key(sink, key, ring, entry.name.compression).await?;
                Some((k.id().to_string(), backup_crypto::DEFAULT_PBKDF2_ITERATIONS))
            } else {
                None
            };
            (None, entry.name.compression, encryption, None)
        }
    };
    Ok(Prepared {
        expected,
        compression,
        encryption,
        manifest,
    })
}

/// The verifying, decrypting, decompressing stream over `reader`, the stored bytes of `key`.
fn open_stream(
    reader: backup_storage::ObjectReader,
    prepared: Prepared,
    key: &str,
    keyring: Option<&Keyring>,
    progress: Option<ProgressFn>,
) -> Result<OpenedBackup> {
    let Prepared {
        expected,
        compression,
        encryption,
        manifest,
    } = prepared;
    let (counted, _) = CountingReader::new(reader, progress);
    let stored = VerifyingReader::new(counted, expected);
    let decrypted: ByteStream = match (&encryption, keyring) {
        (Some((key_id, iterations)), Some(ring)) => {
            let k = find_key(ring, key, key_id)?;
            Box::new(DecryptReader::new(stored, k, *iterations))
        }
        (Some(_), None) => {
            return Err(CoreError::KeyRequired {
                key: key.to_owned(),
            })
        }
        (None, _) => Box::new(stored),
    };
    Ok(OpenedBackup {
        stream: compression.decoder(decrypted),
        manifest,
        key_id: encryption.map(|(id, _)| id),
    })
}

/// Finds which key of `ring` a legacy (manifest-less) object was encrypted with, by decrypting
/// its first block with each and looking for the compression format's magic bytes. With one
/// key there is nothing to choose; with none matching, the current key is used and decryption
/// fails later with a clear error.
async fn legacy_key<'a>(
    sink: &dyn Sink,
    object: &str,
    ring: &'a Keyring,
    compression: Compression,
) -> Result<&'a EncryptionKey> {
    let magic: &[u8] = match compression {
        Compression::Gzip { .. } => &[0x1f, 0x8b],
        Compression::Zstd { .. } => &[0x28, 0xb5, 0x2f, 0xfd],
        Compression::None => return Ok(ring.current()),
    };
    if ring.keys().nth(1).is_none() {
        return Ok(ring.current());
    }
    // Header (16 bytes) and two blocks: the reader releases the first block.
    let mut head = Vec::with_capacity(48);
    sink.get(object)
        .await?
        .take(48)
        .read_to_end(&mut head)
        .await
        .map_err(|e| backup_storage::StorageError::io("read", object, e))?;
    for candidate in ring.keys() {
        let mut first = [0u8; 4];
        let mut reader = DecryptReader::new(
            &head[..],
            candidate,
            backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
        );
        if reader.read_exact(&mut first[..magic.len()]).await.is_ok()
            && &first[..magic.len()] == magic
        {
            return Ok(candidate);
        }
    }
    Ok(ring.current())
}

fn find_key<'a>(ring: &'a Keyring, object: &str, key_id: &str) -> Result<&'a EncryptionKey> {
    ring.keys()
        .find(|k| k.id().as_str() == key_id)
        .ok_or_else(|| CoreError::KeyNotAvailable {
            key: object.to_owned(),
            needed: key_id.to_owned(),
            available: ring
                .keys()
                .map(|k| k.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Restores `entry` into `target`, with the private copy of the stored object in the system's
/// temporary directory; see [`restore_backup_via`].
pub async fn restore_backup(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    target: &mut dyn RestoreTarget,
    progress: Option<ProgressFn>,
) -> Result<RestoreSummary> {
    restore_backup_via(
        sink,
        entry,
        keyring,
        target,
        progress,
        &std::env::temp_dir(),
    )
    .await
}

/// Restores `entry` into `target`: [`open_backup`]'s checks, then the stream, which the
/// target commits only at its verified end.
///
/// A complete backup is read from the destination **once**: into a private copy (an unlinked
/// `0600` temporary file in `spool_dir`, whose free space is checked first), hashed on the
/// way, and only when its size and SHA-256 match the HMAC-verified manifest is the first byte
/// decrypted and handed to the target, from that copy. So no byte that was not authenticated
/// reaches the target (psql executes what it reads, and CBC lets someone who can write the
/// object but has no key flip plaintext bits, e.g. into a `\!` shell command), and a change of
/// the stored object after the check cannot reach it either. Legacy and incomplete backups
/// (no manifest) have nothing to check against and stream straight from the destination.
/// `progress` is told of stored bytes as they are read.
pub async fn restore_backup_via(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    target: &mut dyn RestoreTarget,
    progress: Option<ProgressFn>,
    spool_dir: &std::path::Path,
) -> Result<RestoreSummary> {
    let prepared = prepare(sink, entry, keyring).await?;
    let reader: backup_storage::ObjectReader = match &prepared.expected {
        Some(expected) => {
            tracing::info!(
                "reading {} into a private copy in {} and verifying its SHA-256 before restoring",
                entry.key,
                spool_dir.display()
            );
            Box::new(verified_copy(sink, &entry.key, expected, spool_dir, progress).await?)
        }
        None => {
            let (counted, _) = CountingReader::new(sink.get(&entry.key).await?, progress);
            Box::new(counted)
        }
    };
    let opened = open_stream(reader, prepared, &entry.key, keyring, None)?;
    target
        .restore(opened.stream)
        .await
        .map_err(|source| CoreError::Restore {
            key: entry.key.clone(),
            source,
        })
}

/// Bytes of free space kept in reserve beyond the object's size when making a private copy.
const SPOOL_RESERVE: u64 = 64 * 1024 * 1024;

/// Copies `key` from `sink` into an unlinked private temporary file in `dir`, checking size
/// and SHA-256 against `expected` on the way; returns the file, rewound, once they matched.
async fn verified_copy(
    sink: &dyn Sink,
    key: &str,
    expected: &StreamDigest,
    dir: &std::path::Path,
    progress: Option<ProgressFn>,
) -> Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let no_room = |detail: String| {
        CoreError::Config(format!(
            "cannot make the private copy of {key} ({} bytes) that a restore verifies before \
         restoring: {detail}; set BACKUP_RESTORE_TMP to a directory with room",
            expected.size
        ))
    };
    let stats =
        nix::sys::statvfs::statvfs(dir).map_err(|e| no_room(format!("{}: {e}", dir.display())))?;
    // The field types differ between platforms (u32 on some, u64 on Linux x86-64).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stats.blocks_available()).saturating_mul(u64::from(stats.fragment_size()));
    if free < expected.size.saturating_add(SPOOL_RESERVE) {
        return Err(no_room(format!("{} has {free} bytes free", dir.display())));
    }
    let file =
        tempfile::tempfile_in(dir).map_err(|e| no_room(format!("{}: {e}", dir.display())))?;
    let mut file = tokio::fs::File::from_std(file);
    let (counted, _) = CountingReader::new(sink.get(key).await?, progress);
    let mut verifying = VerifyingReader::new(counted, Some(expected.clone()));
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match verifying.read(&mut buf).await {
            Ok(n) => n,
            Err(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<IntegrityError>()) =>
            {
                return Err(CoreError::Integrity {
                    key: key.to_owned(),
                    detail: format!("{e}; nothing was restored"),
                })
            }
            Err(e) => return Err(backup_storage::StorageError::io("read", key, e).into()),
        };
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| backup_storage::StorageError::io("write the private copy of", key, e))?;
    }
    file.flush()
        .await
        .map_err(|e| backup_storage::StorageError::io("write the private copy of", key, e))?;
    file.rewind()
        .await
        .map_err(|e| backup_storage::StorageError::io("rewind the private copy of", key, e))?;
    Ok(file)
}

/// Whether `entry` is intact in `sink`: for a complete backup, the stored bytes match its
/// manifest's size and SHA-256 (the manifest's HMAC is checked by the restore itself); a
/// legacy backup only has to be there. Used to choose among destinations that hold a copy.
pub async fn stored_intact(sink: &dyn Sink, entry: &BackupEntry) -> Result<bool> {
    match &entry.manifest {
        Some(manifest) => Ok(stored_mismatch(sink, &entry.key, &manifest.stored_digest())
            .await?
            .is_none()),
        None => match sink.head(&entry.key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        },
    }
}

/// Reads `key` to the end and describes how it differs from `expected`, if it does.
async fn stored_mismatch(
    sink: &dyn Sink,
    key: &str,
    expected: &StreamDigest,
) -> Result<Option<String>> {
    let reader = sink.get(key).await?;
    let mut verifying = VerifyingReader::new(reader, Some(expected.clone()));
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match verifying.read(&mut buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<IntegrityError>()) =>
            {
                return Ok(Some(e.to_string()))
            }
            Err(e) => return Err(backup_storage::StorageError::io("read", key, e).into()),
        }
    }
}
