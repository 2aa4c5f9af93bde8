//! The backup and restore pipelines.
//!
//! Backup: `Source -> count -> compress -> encrypt -> hash -> Sink writer`, then the source's
//! own completion check, then commit, then the manifest. Restore: `Sink -> verify (size,
//! SHA-256) -> decrypt -> decompress -> RestoreTarget`, after the manifest's HMAC was checked.
//! Every stage is a streaming adapter; memory use does not depend on the backup's size.

use std::time::{Duration, Instant};

use backup_crypto::{EncryptReader, EncryptionKey, CIPHER_NAME, KDF_NAME};
use backup_storage::{LockMode, ObjectWriter, Sink, StorageError, WriteMode};
use bytes::Bytes;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::compression::Compression;
use crate::error::{CoreError, Result};
use crate::hashing::{CountingReader, HashingReader, ProgressFn};
use crate::layout::{claim_key_for, manifest_key_for};
use crate::manifest::{EncryptionInfo, Manifest, MANIFEST_FORMAT_VERSION};
use crate::naming::BackupName;
use crate::source::{ByteStream, Source};

/// This machine's name (`/proc/sys/kernel/hostname`, else `unknown`): run reports and the
/// markers of runs name their host. (The library reads no environment variable.)
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

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
    /// Name prefix, `randevubu` by default (unless the source fixes its own, see
    /// [`Source::name_prefix`](crate::Source::name_prefix)).
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
    /// Threads compressing (gzip and zstd). At least 1.
    pub compression_threads: u32,
}

impl Default for BackupOptions {
    /// Prefix `randevubu`, gzip at its default level, unencrypted, unsigned, the default
    /// PBKDF2 iteration count: add a key with [`encrypted_with`](Self::encrypted_with).
    fn default() -> Self {
        Self {
            name_prefix: crate::DEFAULT_NAME_PREFIX.to_owned(),
            compression: Compression::gzip(),
            key: None,
            signing_key: None,
            iterations: backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
            compression_threads: 1,
        }
    }
}

impl BackupOptions {
    /// Encrypts (and signs the manifest) with `key`.
    pub fn encrypted_with(mut self, key: EncryptionKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Stores the stream unencrypted, with the manifest signed by `key`.
    pub fn signed_with(mut self, key: EncryptionKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Names backups `<prefix>_backup_...`.
    pub fn with_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Compresses with `compression`.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compresses on `threads` threads where the algorithm can (zstd; at least 1).
    pub fn with_compression_threads(mut self, threads: u32) -> Self {
        self.compression_threads = threads.max(1);
        self
    }

    /// Derives the encryption key with `iterations` rounds of PBKDF2.
    pub fn with_iterations(mut self, iterations: u32) -> Self {
        self.iterations = iterations;
        self
    }
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
    let prefix = source
        .name_prefix()
        .unwrap_or(&options.name_prefix)
        .to_owned();
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
    // Backups share each destination's lock (a local directory's `flock`): they never write
    // while backup-prune deletes there, and it waits for them.
    let locks = match lock_all(sinks).await {
        Ok(locks) => locks,
        Err(e) => {
            drop(stream);
            source.finish().await.ok();
            return Err(e);
        }
    };
    let mut claim = match claim_name(kind, &prefix, extension, sinks, options, started_at).await {
        Ok(claim) => claim,
        Err(e) => {
            drop(stream);
            source.finish().await.ok();
            return Err(e);
        }
    };
    let skipped = sinks.iter().map(|_| None).collect();
    let results = backup_under(
        source, stream, sinks, skipped, options, progress, &claim, started, started_at,
    )
    .await;
    claim.release().await;
    drop(locks);
    results
}

/// Takes every destination's shared lock.
async fn lock_all(sinks: &[&dyn Sink]) -> Result<Vec<Option<backup_storage::SinkLock>>> {
    let mut locks = Vec::with_capacity(sinks.len());
    for sink in sinks {
        locks.push(sink.lock(LockMode::Shared, DESTINATION_LOCK_WAIT).await?);
    }
    Ok(locks)
}

/// How long a claim on a fixed object key ([`store_object`]) may stand before another run
/// takes it over when its holder cannot be checked (a run on another host).
pub const FIXED_CLAIM_STALE: Duration = Duration::from_secs(3600);

/// Stores `source` under the fixed object key `key` on every sink of `sinks`, for objects
/// named by what they hold rather than by when they were made (a WAL segment): the pipeline
/// and commit of [`run_backup_to_all`], with the caller's key instead of a dated name.
///
/// On each destination the run first takes the key's claim (`KEY.claim`), taking over a claim
/// whose run is gone (its process is dead on this host, or it is older than
/// [`FIXED_CLAIM_STALE`]). A destination where a live run holds the claim gets
/// [`CoreError::Busy`]; one that already holds the complete object (its manifest exists) gets
/// [`StorageError::AlreadyExists`]: neither is written, and the caller decides (compare the
/// stored manifest, wait). An object there without its manifest is what an interrupted run
/// left behind; holding the claim, this run replaces it.
pub async fn store_object(
    source: &mut dyn Source,
    sinks: &[&dyn Sink],
    key: &str,
    options: &BackupOptions,
    progress: Option<ProgressFn>,
) -> Result<Vec<DestinationResult>> {
    let started = Instant::now();
    let started_at = Utc::now();
    let kind = source.kind();
    let stream = match source.open().await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(CoreError::Source {
                what: format!("{kind} {key}"),
                source: e,
            })
        }
    };
    let locks = match lock_all(sinks).await {
        Ok(locks) => locks,
        Err(e) => {
            drop(stream);
            source.finish().await.ok();
            return Err(e);
        }
    };
    let claim_key = claim_key_for(key);
    let mut claim = ClaimedName {
        key: key.to_owned(),
        body: crate::marker::body(None, started_at),
        held: Vec::with_capacity(sinks.len()),
        creating: None,
    };
    let mut skipped = Vec::with_capacity(sinks.len());
    for &sink in sinks {
        claim.creating = Some(sink);
        let taken =
            crate::marker::take(sink, &claim_key, &claim.body, Some(FIXED_CLAIM_STALE)).await;
        claim.creating = None;
        skipped.push(match taken {
            Ok(Ok(())) => {
                claim.held.push(sink);
                prepare_fixed(sink, key).await.err()
            }
            Ok(Err(held)) => Some(CoreError::Busy {
                key: key.to_owned(),
                destination: sink.describe(),
                holder: held.holder,
            }),
            Err(e) => Some(e),
        });
    }
    let results = if skipped.iter().all(Option::is_some) {
        drop(stream);
        source.finish().await.ok();
        Ok(failed_everywhere(sinks, skipped))
    } else {
        backup_under(
            source, stream, sinks, skipped, options, progress, &claim, started, started_at,
        )
        .await
    };
    claim.release().await;
    drop(locks);
    results
}

/// Makes `key` on `sink` writable for [`store_object`], which holds its claim: refuses a
/// complete object, removes an interrupted run's object.
async fn prepare_fixed(sink: &dyn Sink, key: &str) -> Result<()> {
    if exists(sink, &manifest_key_for(key)).await {
        return Err(StorageError::AlreadyExists {
            key: key.to_owned(),
        }
        .into());
    }
    match sink.delete(key).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long a backup waits for a `backup-prune` to leave a destination, and `backup-prune`
/// for running backups, before giving up on it (see [`Sink::lock`]).
pub const DESTINATION_LOCK_WAIT: Duration = Duration::from_secs(600);

/// A name claimed for a backup on the destinations (see [`CLAIM_SUFFIX`](crate::CLAIM_SUFFIX)).
/// Dropped without [`release`](Self::release) (the run was interrupted), it still removes its
/// claims, with [`Sink::delete_detached`]: those it holds, and one whose creation was in
/// flight (it may have been created after all). The claim's body is unique to the run, so only
/// this run's claim is ever removed.
struct ClaimedName<'a> {
    /// The object key claimed.
    key: String,
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
        let claim_key = claim_key_for(&self.key);
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
        let claim_key = claim_key_for(&self.key);
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
    prefix: &str,
    extension: &str,
    sinks: &[&'a dyn Sink],
    options: &BackupOptions,
    started_at: chrono::DateTime<Utc>,
) -> Result<ClaimedName<'a>> {
    let body = crate::marker::body(None, started_at);
    for _ in 0..NAME_ATTEMPTS {
        let now = Utc::now();
        let name = BackupName::new(
            kind,
            prefix,
            now,
            extension,
            options.compression,
            options.key.is_some(),
        );
        let key = name.key();
        let claim_key = claim_key_for(&key);
        let mut claim = ClaimedName {
            key: key.clone(),
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
    skipped: Vec<Option<CoreError>>,
    options: &BackupOptions,
    progress: Option<ProgressFn>,
    claim: &ClaimedName<'_>,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
) -> Result<Vec<DestinationResult>> {
    let key = claim.key.clone();
    let what = format!(
        "{} backup {}",
        source.kind(),
        key.rsplit('/').next().unwrap_or(&key)
    );

    // Open every destination first: a destination that cannot even start a write fails alone.
    let mut outcomes: Vec<Option<CoreError>> = Vec::with_capacity(sinks.len());
    let mut writers: Vec<Option<Box<dyn ObjectWriter>>> = Vec::with_capacity(sinks.len());
    for (sink, skip) in sinks.iter().zip(skipped) {
        if let Some(error) = skip {
            writers.push(None);
            outcomes.push(Some(error));
            continue;
        }
        match sink.writer_with(&key, WriteMode::Retained).await {
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
    let compressed = options
        .compression
        .encoder_with_threads(counted, options.compression_threads);
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
    let attachments = match embed_attachments(source.take_attachments(), options).await {
        Ok(embedded) => embedded,
        Err(e) => {
            abort_all(&mut writers).await;
            return Err(e);
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
        compression_threads: matches!(options.compression, Compression::Zstd { .. })
            .then_some(options.compression_threads)
            .filter(|t| *t > 1),
        attachments,
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
        .put_with(manifest_key, manifest_json.clone(), WriteMode::Retained)
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

/// Compresses and encrypts each attachment as the object is (`options`), for the manifest.
async fn embed_attachments(
    attachments: Vec<crate::source::Attachment>,
    options: &BackupOptions,
) -> Result<std::collections::BTreeMap<String, crate::manifest::EmbeddedAttachment>> {
    use base64::Engine as _;
    let mut embedded = std::collections::BTreeMap::new();
    let mut total = 0usize;
    for attachment in attachments {
        let plain_bytes = attachment.bytes.len() as u64;
        let reader = std::io::Cursor::new(attachment.bytes);
        let compressed = options.compression.encoder(reader);
        let mut stored: ByteStream = match &options.key {
            Some(k) => Box::new(EncryptReader::new(compressed, k, options.iterations)),
            None => compressed,
        };
        let mut bytes = Vec::new();
        let limit = (crate::manifest::MAX_ATTACHMENT_BYTES - total) as u64 + 1;
        (&mut stored)
            .take(limit)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| CoreError::Config(format!("encoding {}: {e}", attachment.name)))?;
        total += bytes.len();
        if total > crate::manifest::MAX_ATTACHMENT_BYTES {
            return Err(CoreError::Config(format!(
                "the backup's attachments ({}) take more than {} bytes compressed, the most a \
                 manifest holds",
                attachment.name,
                crate::manifest::MAX_ATTACHMENT_BYTES
            )));
        }
        embedded.insert(
            attachment.name,
            crate::manifest::EmbeddedAttachment {
                plain_bytes,
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
            },
        );
    }
    Ok(embedded)
}
