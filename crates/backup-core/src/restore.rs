//! Restores: checking a backup before any of its bytes are used, reading it once from its
//! destination into a private verified copy, and handing that to a [`RestoreTarget`].

use backup_crypto::{DecryptReader, EncryptionKey, Keyring};
use backup_storage::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::catalog::{BackupEntry, BackupStatus};
use crate::compression::Compression;
use crate::error::{CoreError, Result};
use crate::hashing::{CountingReader, IntegrityError, ProgressFn, StreamDigest, VerifyingReader};
use crate::layout::manifest_key_for;
use crate::manifest::{Manifest, MANIFEST_SIZE_LIMIT};
use crate::source::{ByteStream, RestoreSummary, RestoreTarget};

/// Size of the copy buffer when reading a stored object.
const COPY_BUFFER: usize = 256 * 1024;

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
    open_stream(reader, prepared, progress)
}

/// Opens the complete object `key` on `sink`, one stored under a fixed name rather than a
/// dated backup name (a WAL segment): the checks of [`open_backup`] for a complete backup
/// (its manifest's HMAC with the key that signed it, that the manifest describes `key`, the
/// stored size), then the verifying, decrypting, decompressing stream. A missing manifest is
/// [`CoreError::Storage`] with [`backup_storage::StorageError::NotFound`].
pub async fn open_object(
    sink: &dyn Sink,
    key: &str,
    keyring: Option<&Keyring>,
    progress: Option<ProgressFn>,
) -> Result<OpenedBackup> {
    let prepared = prepare_complete(sink, key, keyring).await?;
    let reader = sink.get(key).await?;
    open_stream(reader, prepared, progress)
}

/// What was checked of a backup before any of its bytes are read, and how to read them.
#[derive(Debug, Clone)]
struct Prepared {
    /// Size and SHA-256 the stored bytes must have (complete backups).
    expected: Option<StreamDigest>,
    compression: Compression,
    /// How to decrypt, if encrypted.
    encryption: Option<Decryption>,
    /// The HMAC-verified manifest (complete backups).
    manifest: Option<Manifest>,
}

/// The key that decrypts a backup, the id its manifest names it by, and the iterations.
#[derive(Debug, Clone)]
struct Decryption {
    key: EncryptionKey,
    id: String,
    iterations: u32,
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
        BackupStatus::Complete => return prepare_complete(sink, key, keyring).await,
        BackupStatus::InProgress => {
            return Err(CoreError::NoMatch(format!(
                "{key} is still being written by another run (its claim, or the journal of a \
                 re-encryption, is there, its manifest is not); if no run is writing it, run \
                 `backup-key reencrypt` again to finish an interrupted re-encryption"
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
                Some(Decryption {
                    key: k.clone(),
                    id: k.id().to_string(),
                    iterations: backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
                })
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

/// The manifest of the complete object `key` on `sink`, checked: with a keyring, its HMAC
/// must verify with one of its keys (an unsigned manifest is refused, it may be forged), and
/// it must describe `key`. Without a keyring an unencrypted object's manifest is read as it
/// is (nothing could check it). Returns the key that signed it, if any.
///
/// # Errors
/// [`CoreError::Storage`] with `NotFound` when there is no manifest;
/// [`CoreError::KeyRequired`], [`CoreError::ManifestInvalid`],
/// [`CoreError::ManifestTampered`], [`CoreError::KeyNotAvailable`] as the checks fail.
pub async fn read_verified_manifest<'k>(
    sink: &dyn Sink,
    key: &str,
    keyring: Option<&'k Keyring>,
) -> Result<(Manifest, Option<&'k EncryptionKey>)> {
    let manifest_key = manifest_key_for(key);
    let bytes = sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await?;
    let unverified = Manifest::parse(&manifest_key, &bytes)?;
    let (manifest, signer) = match (&unverified.encryption, keyring) {
        (Some(_), None) => {
            return Err(CoreError::KeyRequired {
                key: key.to_owned(),
            })
        }
        // With a key at hand, every manifest must carry a valid signature: unencrypted
        // backups are signed too.
        (None, Some(_)) if unverified.hmac.is_none() => {
            return Err(CoreError::ManifestInvalid {
                key: manifest_key,
                reason: "it is not signed, but a key is configured: every manifest this \
                         tool writes while a key is at hand is signed with it, so this \
                         one may be forged; refusing to restore"
                    .to_owned(),
            });
        }
        (_, Some(ring)) => {
            let (manifest, signer) = Manifest::parse_verified_by(key, &manifest_key, &bytes, ring)?;
            (manifest, Some(signer))
        }
        // No key at all (an unencrypted backup restored without one): nothing to check
        // the signature with; the caller says so.
        (None, None) => (unverified, None),
    };
    if !manifest.describes(key) {
        return Err(CoreError::ManifestInvalid {
            key: manifest_key,
            reason: format!("it describes {:?}", manifest.object_key),
        });
    }
    Ok((manifest, signer))
}

/// The checks of a complete backup (one with a manifest) that need no read of the object.
async fn prepare_complete(
    sink: &dyn Sink,
    key: &str,
    keyring: Option<&Keyring>,
) -> Result<Prepared> {
    let (manifest, signer) = read_verified_manifest(sink, key, keyring).await?;
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
    let encryption = match (&manifest.encryption, signer) {
        (Some(e), Some(k)) => Some(Decryption {
            key: k.clone(),
            id: e.key_id.clone(),
            iterations: e.iterations,
        }),
        (Some(_), None) => {
            return Err(CoreError::KeyRequired {
                key: key.to_owned(),
            })
        }
        (None, _) => None,
    };
    Ok(Prepared {
        expected: Some(manifest.stored_digest()),
        compression: manifest.compression,
        encryption,
        manifest: Some(manifest),
    })
}

/// The verifying, decrypting, decompressing stream over `reader`, the stored bytes.
fn open_stream(
    reader: backup_storage::ObjectReader,
    prepared: Prepared,
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
    let decrypted: ByteStream = match &encryption {
        Some(d) => Box::new(DecryptReader::new(stored, &d.key, d.iterations)),
        None => Box::new(stored),
    };
    Ok(OpenedBackup {
        stream: compression.decoder(decrypted),
        manifest,
        key_id: encryption.map(|d| d.id),
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

/// Restores `entry` into `target`: [`fetch_backup`] (the checks and the one read of the
/// stored object), then [`FetchedBackup::restore_into`], which the target commits only at
/// its verified end. `progress` is told of stored bytes as they are read from `sink`.
pub async fn restore_backup_via(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    target: &mut dyn RestoreTarget,
    progress: Option<ProgressFn>,
    spool_dir: &std::path::Path,
) -> Result<RestoreSummary> {
    let mut fetched = fetch_backup(sink, entry, keyring, spool_dir, progress).await?;
    fetched.restore_into(target, None).await
}

/// A backup read from its destination, once, into a private copy, and verified: what a
/// restore reads from (see [`fetch_backup`]). It can be restored more than once (a check of
/// the target, then the restore) without reading the destination again. The copy is an
/// unlinked temporary file: it disappears with this value, however the program ends.
#[derive(Debug)]
pub struct FetchedBackup {
    entry: BackupEntry,
    destination: String,
    prepared: Prepared,
    file: std::fs::File,
}

impl FetchedBackup {
    /// The backup, as the destination it was read from describes it.
    pub fn entry(&self) -> &BackupEntry {
        &self.entry
    }

    /// The description of the destination it was read from.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The HMAC-verified manifest (complete backups).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.prepared.manifest.as_ref()
    }

    /// The attachment `name` of the backup ([`crate::Attachment`]), decrypted and decompressed
    /// from the verified manifest; `None` when the backup has no such attachment (or no
    /// manifest).
    ///
    /// # Errors
    /// When it does not decode, decrypt or decompress to its recorded size.
    pub async fn attachment(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        use base64::Engine as _;
        /// The most plain bytes an attachment may claim.
        const MAX_PLAIN: u64 = 256 * 1024 * 1024;
        let Some(embedded) = self
            .prepared
            .manifest
            .as_ref()
            .and_then(|m| m.attachments.get(name))
        else {
            return Ok(None);
        };
        let damaged = |detail: String| CoreError::Integrity {
            key: format!("{} (attachment {name})", self.entry.key),
            detail,
        };
        let stored = base64::engine::general_purpose::STANDARD
            .decode(&embedded.data)
            .map_err(|e| damaged(format!("not base64: {e}")))?;
        let stored = std::io::Cursor::new(stored);
        let decrypted: ByteStream = match &self.prepared.encryption {
            Some(d) => Box::new(DecryptReader::new(stored, &d.key, d.iterations)),
            None => Box::new(stored),
        };
        let mut plain = zeroize::Zeroizing::new(Vec::new());
        let limit = embedded.plain_bytes.min(MAX_PLAIN) + 1;
        self.prepared
            .compression
            .decoder(decrypted)
            .take(limit)
            .read_to_end(&mut plain)
            .await
            .map_err(|e| damaged(e.to_string()))?;
        if plain.len() as u64 != embedded.plain_bytes {
            return Err(damaged(format!(
                "{} bytes instead of the {} recorded",
                plain.len(),
                embedded.plain_bytes
            )));
        }
        Ok(Some(plain))
    }

    /// Streams the private copy, decrypted and decompressed, into `target`, which commits only
    /// at the stream's verified end. `progress` is told of stored bytes as they are read from
    /// the copy.
    pub async fn restore_into(
        &mut self,
        target: &mut dyn RestoreTarget,
        progress: Option<ProgressFn>,
    ) -> Result<RestoreSummary> {
        use std::io::Seek;
        let key = self.entry.key.clone();
        let copy_error =
            |e| backup_storage::StorageError::io("read the private copy of", key.clone(), e);
        let mut file = self.file.try_clone().map_err(copy_error)?;
        file.rewind().map_err(copy_error)?;
        // Large reads: each read of a tokio file is a trip to a blocking thread.
        let buffered =
            tokio::io::BufReader::with_capacity(COPY_BUFFER, tokio::fs::File::from_std(file));
        let (counted, _) = CountingReader::new(buffered, progress);
        let opened = open_stream(Box::new(counted), self.prepared.clone(), None)?;
        target
            .restore(opened.stream)
            .await
            .map_err(|source| CoreError::Restore { key, source })
    }
}

/// Reads `entry` from `sink` once, into a private copy in `spool_dir`, after [`open_backup`]'s
/// checks that need no read (the manifest's HMAC, the key, the stored size).
///
/// The copy is an unlinked `0600` temporary file in `spool_dir`, whose free space is checked
/// first. A complete backup is hashed on the way, and only when its size and SHA-256 match the
/// HMAC-verified manifest is it returned; so no byte that was not authenticated reaches a
/// target (psql executes what it reads, and CBC lets someone who can write the object but has
/// no key flip plaintext bits, e.g. into a `\!` shell command), and a change of the stored
/// object after the check cannot reach one either. Legacy and incomplete backups (no
/// manifest) have nothing to check against: they are copied as they are, and checked only as
/// they stream (decryption padding, compression checksum, the dump's own end marker).
/// `progress` is told of stored bytes as they are read.
pub async fn fetch_backup(
    sink: &dyn Sink,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
    spool_dir: &std::path::Path,
    progress: Option<ProgressFn>,
) -> Result<FetchedBackup> {
    let prepared = prepare(sink, entry, keyring).await?;
    tracing::info!(
        "reading {} from {} into a private copy in {}{}",
        entry.key,
        sink.describe(),
        spool_dir.display(),
        if prepared.expected.is_some() {
            " and verifying its SHA-256 before restoring"
        } else {
            ""
        }
    );
    let size = prepared
        .expected
        .as_ref()
        .map_or(entry.size, |expected| expected.size);
    let file = private_copy(
        sink,
        &entry.key,
        size,
        prepared.expected.clone(),
        spool_dir,
        progress,
    )
    .await?;
    Ok(FetchedBackup {
        entry: entry.clone(),
        destination: sink.describe(),
        prepared,
        file,
    })
}

/// Bytes of free space kept in reserve beyond the object's size when making a private copy.
const SPOOL_RESERVE: u64 = 64 * 1024 * 1024;

/// Copies `key` (`size` bytes) from `sink` into an unlinked private temporary file in `dir`,
/// checking size and SHA-256 against `expected` on the way when given; returns the file once
/// they matched.
async fn private_copy(
    sink: &dyn Sink,
    key: &str,
    size: u64,
    expected: Option<StreamDigest>,
    dir: &std::path::Path,
    progress: Option<ProgressFn>,
) -> Result<std::fs::File> {
    let no_room = |detail: String| {
        CoreError::Config(format!(
            "cannot make the private copy of {key} ({size} bytes) that a restore verifies \
             before restoring: {detail}; set BACKUP_RESTORE_TMP to a directory with room"
        ))
    };
    let stats =
        nix::sys::statvfs::statvfs(dir).map_err(|e| no_room(format!("{}: {e}", dir.display())))?;
    // The field types differ between platforms (u32 on some, u64 on Linux x86-64).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stats.blocks_available()).saturating_mul(u64::from(stats.fragment_size()));
    if free < size.saturating_add(SPOOL_RESERVE) {
        return Err(no_room(format!("{} has {free} bytes free", dir.display())));
    }
    let file =
        tempfile::tempfile_in(dir).map_err(|e| no_room(format!("{}: {e}", dir.display())))?;
    // A full disk (or quota) is this machine's problem, not the destination's: say where, and
    // what to set, and do not try the backup's other destinations.
    let write_error = |e: std::io::Error| -> CoreError {
        if matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) {
            no_room(format!(
                "{} filled up while the copy was written ({e})",
                dir.display()
            ))
        } else {
            backup_storage::StorageError::io("write the private copy of", key, e).into()
        }
    };
    let mut copy = tokio::fs::File::from_std(file.try_clone().map_err(write_error)?);
    let (counted, _) = CountingReader::new(sink.get(key).await?, progress);
    let mut verifying = VerifyingReader::new(counted, expected);
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
        copy.write_all(&buf[..n]).await.map_err(write_error)?;
    }
    copy.flush().await.map_err(write_error)?;
    Ok(file)
}
