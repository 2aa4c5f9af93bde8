//! The backup and restore pipelines end to end over a MemorySink and a LocalSink, with an
//! in-memory source: round trips, and every kind of damage refused before end-of-file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::{
    list_backups, open_backup, restore_backup, run_backup, BackupKind, BackupOptions, BackupStatus,
    BoxError, ByteStream, Compression, CoreError, MemorySource, RestoreSummary, RestoreTarget,
};
use backup_crypto::{EncryptionKey, Keyring};
use backup_storage::{LocalSink, MemorySink, Sink};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

/// A source of `data`; with `fail`, its producer reports an error after the stream ended.
fn bytes_source(data: Vec<u8>, fail: bool) -> MemorySource {
    let source = MemorySource::new(BackupKind::DATABASE, "sql", data);
    if fail {
        source.failing_with("pg_dump: error: connection lost")
    } else {
        source
    }
}

/// A restore target that keeps what it read, committing (into `committed`) only at EOF.
#[derive(Default)]
struct CollectTarget {
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait]
impl RestoreTarget for CollectTarget {
    async fn restore(&mut self, mut stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        let summary = RestoreSummary {
            plain_bytes: buf.len() as u64,
            notes: vec![],
        };
        *self.committed.lock().unwrap() = Some(buf);
        Ok(summary)
    }
}

fn sample_data(len: usize) -> Vec<u8> {
    // Compressible but not trivial: lines of varying numbers.
    let mut out = Vec::with_capacity(len);
    let mut i: u64 = 0;
    while out.len() < len {
        out.extend_from_slice(
            format!("INSERT INTO t VALUES ({i}, 'row {}');\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn options(key: Option<&EncryptionKey>, compression: Compression) -> BackupOptions {
    BackupOptions {
        name_prefix: "randevubu".into(),
        compression,
        key: key.cloned(),
        signing_key: None,
        iterations: 1000,
        compression_threads: 1,
    }
}

async fn restored(sink: &dyn Sink, keyring: Option<&Keyring>) -> Result<Vec<u8>, CoreError> {
    let entries = list_backups(sink, BackupKind::DATABASE).await?;
    let entry = entries.last().expect("a backup");
    let mut target = CollectTarget::default();
    let committed = target.committed.clone();
    restore_backup(sink, entry, keyring, &mut target, None).await?;
    let data = committed.lock().unwrap().take().expect("committed");
    Ok(data)
}

#[tokio::test]
async fn backup_round_trips_with_every_compression_encrypted_and_plain() {
    let key = EncryptionKey::from_passphrase("correct horse").unwrap();
    let keyring = Keyring::new(key.clone());
    let data = sample_data(3 * 1024 * 1024 + 17);
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        for encrypt in [true, false] {
            let sink = MemorySink::new();
            let mut source = bytes_source(data.clone(), false);
            // Unencrypted backups are signed with the key all the same.
            let options = BackupOptions {
                signing_key: Some(key.clone()),
                ..options(encrypt.then_some(&key), compression)
            };
            let report = run_backup(&mut source, &sink, &options, None)
                .await
                .unwrap();
            assert!(report.manifest.hmac.is_some());
            assert_eq!(report.manifest.raw_bytes, data.len() as u64);
            assert!(report.key.starts_with("database/randevubu_backup_"));
            let suffix = match (compression.suffix(), encrypt) {
                (Some(s), true) => format!(".sql.{s}.enc"),
                (Some(s), false) => format!(".sql.{s}"),
                (None, true) => ".sql.enc".to_owned(),
                (None, false) => ".sql".to_owned(),
            };
            assert!(report.key.ends_with(&suffix), "{} vs {suffix}", report.key);
            let head = sink.head(&report.key).await.unwrap();
            assert_eq!(head.size, report.manifest.stored_bytes);
            assert_eq!(restored(&sink, Some(&keyring)).await.unwrap(), data);
        }
    }
}

#[tokio::test]
async fn failed_source_leaves_no_object_and_no_manifest() {
    let sink = MemorySink::new();
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let mut source = bytes_source(sample_data(10_000), true);
    let err = run_backup(
        &mut source,
        &sink,
        &options(Some(&key), Compression::gzip()),
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    assert!(sink.list("").await.unwrap().is_empty());
}

/// A reader that fails at once.
struct Broken;

impl tokio::io::AsyncRead for Broken {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Err(io::Error::other("server closed the connection")))
    }
}

/// A source whose stream breaks after `good` bytes (a server dying mid-stream).
struct BreaksMidStream {
    good: usize,
}

#[async_trait]
impl backup_core::Source for BreaksMidStream {
    fn kind(&self) -> BackupKind {
        BackupKind::DATABASE
    }

    fn extension(&self) -> &'static str {
        "sql"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        let good = std::io::Cursor::new(sample_data(self.good));
        let broken = Broken;
        Ok(Box::new(tokio::io::AsyncReadExt::chain(good, broken)))
    }

    async fn finish(&mut self) -> Result<backup_core::SourceFacts, BoxError> {
        Ok(backup_core::SourceFacts::default())
    }
}

/// Compression on several threads (pigz-style gzip, libzstd's workers) fails the backup
/// cleanly when its input breaks: nothing is committed, nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_under_threaded_compression_commits_nothing() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    for compression in [Compression::gzip(), Compression::zstd()] {
        for threads in [2, 8] {
            let sink = MemorySink::new();
            let mut source = BreaksMidStream {
                good: 3 * 1024 * 1024 + 5,
            };
            let options = options(Some(&key), compression).with_compression_threads(threads);
            let err = run_backup(&mut source, &sink, &options, None)
                .await
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("server closed the connection")
                    || std::error::Error::source(&err)
                        .is_some_and(|s| s.to_string().contains("server closed")),
                "{compression} x{threads}: {err}"
            );
            assert!(
                sink.list("").await.unwrap().is_empty(),
                "{compression} x{threads}: nothing committed"
            );
        }
    }
}

async fn backed_up(sink: &dyn Sink, key: &EncryptionKey) -> (String, Vec<u8>) {
    let data = sample_data(200_000);
    let mut source = bytes_source(data.clone(), false);
    let report = run_backup(
        &mut source,
        sink,
        &options(Some(key), Compression::gzip()),
        None,
    )
    .await
    .unwrap();
    (report.key, data)
}

async fn rewrite(sink: &dyn Sink, key: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = sink.get_bytes(key, 1 << 30).await.unwrap().to_vec();
    edit(&mut bytes);
    sink.put(key, Bytes::from(bytes)).await.unwrap();
}

#[tokio::test]
async fn tampered_truncated_and_wrongly_keyed_backups_are_refused_before_commit() {
    let key = EncryptionKey::from_passphrase("right key").unwrap();
    let keyring = Keyring::new(key.clone());

    // A flipped byte in the middle: SHA-256 mismatch at the end of the stream.
    let sink = MemorySink::new();
    let (object, _) = backed_up(&sink, &key).await;
    rewrite(&sink, &object, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
    })
    .await;
    let err = restored(&sink, Some(&keyring)).await.unwrap_err();
    assert!(
        matches!(err, CoreError::Integrity { .. } | CoreError::Restore { .. }),
        "{err}"
    );
    assert!(format!("{err:#}").len() > 10);

    // Truncated: the size check refuses it before reading.
    let sink = MemorySink::new();
    let (object, _) = backed_up(&sink, &key).await;
    rewrite(&sink, &object, |b| b.truncate(b.len() - 100)).await;
    let err = restored(&sink, Some(&keyring)).await.unwrap_err();
    assert!(matches!(err, CoreError::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // A modified manifest: the HMAC refuses it.
    let sink = MemorySink::new();
    let (object, _) = backed_up(&sink, &key).await;
    let manifest = backup_core::manifest_key_for(&object);
    rewrite(&sink, &manifest, |b| {
        let text = String::from_utf8(b.clone())
            .unwrap()
            .replace("\"memory\"", "\"evil\"");
        *b = text.into_bytes();
    })
    .await;
    let err = restored(&sink, Some(&keyring)).await.unwrap_err();
    assert!(matches!(err, CoreError::ManifestTampered { .. }), "{err}");

    // The wrong key: its id does not match the manifest's.
    let sink = MemorySink::new();
    backed_up(&sink, &key).await;
    let other = Keyring::new(EncryptionKey::from_passphrase("wrong key").unwrap());
    let err = restored(&sink, Some(&other)).await.unwrap_err();
    assert!(matches!(err, CoreError::KeyNotAvailable { .. }), "{err}");
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let recorded = entries[0].key_id().unwrap().to_owned();
    assert!(err.to_string().contains(&recorded), "{err}");
    assert!(
        err.to_string().contains(other.current().id().as_str()),
        "{err}"
    );

    // No key at all.
    let err = restored(&sink, None).await.unwrap_err();
    assert!(matches!(err, CoreError::KeyRequired { .. }), "{err}");
}

/// The attack of a writer without the key: a plain gzip of their own SQL under an encrypted
/// backup's name, beside an unsigned manifest that says "not encrypted" (with the right size
/// and hash, so that only the signature policy can stop it).
#[tokio::test]
async fn a_forged_unsigned_manifest_is_damaged_and_never_restored() {
    let key = EncryptionKey::from_passphrase("the real key").unwrap();
    let keyring = Keyring::new(key.clone());
    let sink = MemorySink::new();
    let (real, _) = backed_up(&sink, &key).await;

    let evil = b"DROP TABLE bookings;\n-- PostgreSQL database dump complete\n".to_vec();
    let mut gz = Vec::new();
    {
        let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &evil).unwrap();
        enc.finish().unwrap();
    }
    let forged = "database/randevubu_backup_20991231_235959.sql.gz.enc";
    sink.put(forged, Bytes::from(gz.clone())).await.unwrap();
    let real_manifest = sink
        .get_bytes(&backup_core::manifest_key_for(&real), 1 << 20)
        .await
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&real_manifest).unwrap();
    manifest["object_key"] = forged.into();
    manifest["encryption"] = serde_json::Value::Null;
    manifest["stored_bytes"] = gz.len().into();
    manifest["sha256"] = hex::encode(ring::digest::digest(&ring::digest::SHA256, &gz)).into();
    manifest.as_object_mut().unwrap().remove("hmac");
    sink.put(
        &backup_core::manifest_key_for(forged),
        Bytes::from(serde_json::to_vec(&manifest).unwrap()),
    )
    .await
    .unwrap();

    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let listed = entries.iter().find(|e| e.key == forged).unwrap();
    assert!(
        matches!(&listed.status, BackupStatus::Damaged(why) if why.contains("encrypt")),
        "{:?}",
        listed.status
    );
    // --latest passes over it to the real backup.
    let latest =
        backup_core::catalog::select(&entries, &backup_core::Selection::Latest, true).unwrap();
    assert_eq!(latest.key, real);
    // Named explicitly, it is refused, and nothing reaches the target.
    let mut target = CollectTarget::default();
    let committed = target.committed.clone();
    let err = restore_backup(&sink, listed, Some(&keyring), &mut target, None)
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::ManifestInvalid { .. }), "{err}");
    assert!(committed.lock().unwrap().is_none());

    // The same forgery under a plain name (.sql.gz): with a key at hand the unsigned manifest
    // is refused; a signed plain backup restores.
    let plain = "database/randevubu_backup_20991231_235958.sql.gz";
    sink.put(plain, Bytes::from(gz)).await.unwrap();
    manifest["object_key"] = plain.into();
    sink.put(
        &backup_core::manifest_key_for(plain),
        Bytes::from(serde_json::to_vec(&manifest).unwrap()),
    )
    .await
    .unwrap();
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let listed = entries.iter().find(|e| e.key == plain).unwrap();
    assert_eq!(listed.status, BackupStatus::Complete);
    let err = restore_backup(&sink, listed, Some(&keyring), &mut target, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    assert!(committed.lock().unwrap().is_none());
}

#[tokio::test]
async fn an_older_key_from_the_keyring_restores_old_backups() {
    let old = EncryptionKey::from_passphrase("old key").unwrap();
    let new = EncryptionKey::from_passphrase("new key").unwrap();
    let sink = MemorySink::new();
    let (_, data) = backed_up(&sink, &old).await;
    let mut keyring = Keyring::new(new);
    keyring.add(old);
    assert_eq!(restored(&sink, Some(&keyring)).await.unwrap(), data);
}

#[tokio::test]
async fn a_backup_whose_manifest_is_missing_is_listed_as_legacy_and_still_restores() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let (object, data) = backed_up(&sink, &key).await;
    // Re-encrypt with the default iteration count, as the old scripts did.
    let plain = restored(&sink, Some(&Keyring::new(key.clone())))
        .await
        .unwrap();
    assert_eq!(plain, data);
    sink.delete(&backup_core::manifest_key_for(&object))
        .await
        .unwrap();
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    assert_eq!(entries[0].status, BackupStatus::Legacy);
    // Legacy objects are read with openssl's default 10000 iterations, which this backup did
    // not use (1000), so decryption must fail cleanly rather than return garbage.
    let err = restored(&sink, Some(&Keyring::new(key))).await.unwrap_err();
    assert!(matches!(err, CoreError::Restore { .. }), "{err}");
}

#[tokio::test]
async fn open_backup_stream_reports_eof_only_after_verification() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let sink = MemorySink::new();
    let (object, data) = backed_up(&sink, &key).await;
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let opened = open_backup(&sink, &entries[0], Some(&Keyring::new(key.clone())), None)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut stream = opened.stream;
    stream.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, data);
    // Format 3 names the key by an id derived from the manifest's own salt.
    assert_eq!(opened.key_id.as_deref(), entries[0].key_id());
    assert_ne!(opened.key_id.as_deref(), Some(key.id().as_str()));
    assert_eq!(opened.manifest.unwrap().object_key, object);
}

#[tokio::test]
async fn a_legacy_backup_is_decrypted_with_whichever_keyring_key_made_it() {
    use backup_crypto::EncryptReader;
    let old = EncryptionKey::from_passphrase("old key").unwrap();
    let new = EncryptionKey::from_passphrase("new key").unwrap();
    let data = sample_data(100_000);
    // What the old scripts wrote: gzip, then openssl with the default 10000 iterations.
    let gz = Compression::gzip().encoder(std::io::Cursor::new(data.clone()));
    let mut stored = Vec::new();
    EncryptReader::new(gz, &old, backup_crypto::DEFAULT_PBKDF2_ITERATIONS)
        .read_to_end(&mut stored)
        .await
        .unwrap();
    let sink = MemorySink::new();
    sink.put(
        "database/randevubu_backup_20240101_020000.sql.gz.enc",
        Bytes::from(stored),
    )
    .await
    .unwrap();
    let mut keyring = Keyring::new(new.clone());
    keyring.add(old);
    assert_eq!(restored(&sink, Some(&keyring)).await.unwrap(), data);
    // With only the new key, decryption fails cleanly.
    assert!(restored(&sink, Some(&Keyring::new(new))).await.is_err());
}

/// A target that counts the bytes it was given before the stream failed.
#[derive(Default)]
struct WitnessTarget {
    seen: Arc<Mutex<u64>>,
}

#[async_trait]
impl RestoreTarget for WitnessTarget {
    async fn restore(&mut self, mut stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(RestoreSummary::default());
            }
            *self.seen.lock().unwrap() += n as u64;
        }
    }
}

#[tokio::test]
async fn a_damaged_backup_never_feeds_a_single_byte_to_the_target() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let sink = MemorySink::new();
    let (object, _) = backed_up(&sink, &key).await;
    // Damage the very first block, which would otherwise reach the target at once.
    rewrite(&sink, &object, |b| b[20] ^= 0x01).await;
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let mut target = WitnessTarget::default();
    let seen = target.seen.clone();
    let err = restore_backup(
        &sink,
        &entries[0],
        Some(&Keyring::new(key)),
        &mut target,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CoreError::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("nothing was restored"), "{err}");
    assert_eq!(*seen.lock().unwrap(), 0);
}

/// A sink whose writers fail with "No space left on device" after `limit` bytes.
#[derive(Debug)]
struct FullSink {
    inner: MemorySink,
    limit: usize,
}

struct FullWriter {
    inner: Box<dyn backup_storage::ObjectWriter>,
    left: usize,
}

impl tokio::io::AsyncWrite for FullWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if buf.len() > self.left {
            return std::task::Poll::Ready(Err(io::Error::from_raw_os_error(28)));
        }
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            this.left -= n;
        }
        poll
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl backup_storage::ObjectWriter for FullWriter {
    async fn commit(self: Box<Self>) -> backup_storage::Result<backup_storage::ObjectMeta> {
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> backup_storage::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl Sink for FullSink {
    fn describe(&self) -> String {
        "a full disk".into()
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: backup_storage::WriteMode,
    ) -> backup_storage::Result<Box<dyn backup_storage::ObjectWriter>> {
        Ok(Box::new(FullWriter {
            inner: self.inner.writer_with(key, mode).await?,
            left: self.limit,
        }))
    }
    async fn get(&self, key: &str) -> backup_storage::Result<backup_storage::ObjectReader> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<backup_storage::ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<backup_storage::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_storage::Result<()> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> backup_storage::Result<()> {
        self.inner.copy(from, to).await
    }
}

#[tokio::test]
async fn a_full_destination_is_reported_as_a_write_error_and_leaves_nothing() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let sink = FullSink {
        inner: MemorySink::new(),
        limit: 10_000,
    };
    let mut source = bytes_source(sample_data(2_000_000), false);
    let err = run_backup(
        &mut source,
        &sink,
        &options(Some(&key), Compression::gzip()),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CoreError::Write { .. }), "{err}");
    assert!(err.to_string().contains("a full disk"), "{err}");
    assert!(sink.inner.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn one_pass_writes_every_destination_and_each_commits_on_its_own() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let keyring = Keyring::new(key.clone());
    let data = sample_data(2_000_000);
    let good = MemorySink::new();
    let full = FullSink {
        inner: MemorySink::new(),
        limit: 50_000,
    };
    let local_dir = tempfile::tempdir().unwrap();
    let local = LocalSink::new(local_dir.path()).unwrap();
    let mut source = bytes_source(data.clone(), false);
    let results = backup_core::run_backup_to_all(
        &mut source,
        &[&good, &full, &local],
        &options(Some(&key), Compression::gzip()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].result.is_ok(), "{:?}", results[0].result);
    assert!(
        matches!(results[1].result, Err(CoreError::Write { .. })),
        "{:?}",
        results[1].result
    );
    assert_eq!(results[1].destination, "a full disk");
    assert!(results[2].result.is_ok(), "{:?}", results[2].result);
    // The surviving destinations hold identical, complete, restorable backups.
    assert_eq!(restored(&good, Some(&keyring)).await.unwrap(), data);
    assert_eq!(restored(&local, Some(&keyring)).await.unwrap(), data);
    let a = results[0].result.as_ref().unwrap();
    let b = results[2].result.as_ref().unwrap();
    assert_eq!(a.manifest.sha256, b.manifest.sha256);
    // The failed one holds nothing.
    assert!(full.inner.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn when_every_destination_fails_nothing_is_committed_anywhere() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let first = FullSink {
        inner: MemorySink::new(),
        limit: 10_000,
    };
    let second = FullSink {
        inner: MemorySink::new(),
        limit: 70_000,
    };
    let mut source = bytes_source(sample_data(2_000_000), false);
    let results = backup_core::run_backup_to_all(
        &mut source,
        &[&first, &second],
        &options(Some(&key), Compression::gzip()),
        None,
    )
    .await
    .unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Err(CoreError::Write { .. }))));
    assert!(first.inner.list("").await.unwrap().is_empty());
    assert!(second.inner.list("").await.unwrap().is_empty());
}

/// A store whose object changes between two reads: the first `get` returns the bytes the
/// manifest vouches for, every later one a tampered copy (an attacker who can write to the
/// bucket or directory, racing the restore). Counts the reads.
#[derive(Debug)]
struct SwapAfterFirstRead {
    inner: MemorySink,
    key: String,
    tampered: Bytes,
    gets: Arc<Mutex<u32>>,
}

#[async_trait]
impl Sink for SwapAfterFirstRead {
    fn describe(&self) -> String {
        "a store that changes an object after it was read once".into()
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: backup_storage::WriteMode,
    ) -> backup_storage::Result<Box<dyn backup_storage::ObjectWriter>> {
        self.inner.writer_with(key, mode).await
    }
    async fn get(&self, key: &str) -> backup_storage::Result<backup_storage::ObjectReader> {
        if key == self.key {
            let mut gets = self.gets.lock().unwrap();
            *gets += 1;
            if *gets > 1 {
                return Ok(Box::new(io::Cursor::new(self.tampered.clone())));
            }
        }
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<backup_storage::ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<backup_storage::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_storage::Result<()> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> backup_storage::Result<()> {
        self.inner.copy(from, to).await
    }
}

/// A target that records every byte as it arrives (as psql would execute it), not only at EOF.
#[derive(Default)]
struct SeenTarget {
    seen: Arc<Mutex<Vec<u8>>>,
}

#[async_trait]
impl RestoreTarget for SeenTarget {
    async fn restore(&mut self, mut stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            self.seen.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        Ok(RestoreSummary {
            plain_bytes: self.seen.lock().unwrap().len() as u64,
            notes: vec![],
        })
    }
}

#[tokio::test]
async fn a_restore_reads_the_object_once_so_a_change_after_the_check_never_reaches_the_target() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let keyring = Keyring::new(key.clone());
    let inner = MemorySink::new();
    // Unencrypted and uncompressed: the tampered copy is plain chosen text.
    let data = sample_data(300_000);
    let mut source = bytes_source(data.clone(), false);
    let options = BackupOptions {
        signing_key: Some(key.clone()),
        ..options(None, Compression::None)
    };
    let report = run_backup(&mut source, &inner, &options, None)
        .await
        .unwrap();
    let mut evil = data.clone();
    evil[..12].copy_from_slice(b"\\! rm -rf / ");
    let sink = SwapAfterFirstRead {
        inner,
        key: report.key.clone(),
        tampered: Bytes::from(evil),
        gets: Arc::new(Mutex::new(0)),
    };
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let mut target = SeenTarget::default();
    let spool = tempfile::tempdir().unwrap();
    let summary = backup_core::restore_backup_via(
        &sink,
        &entries[0],
        Some(&keyring),
        &mut target,
        None,
        spool.path(),
    )
    .await
    .unwrap();
    assert_eq!(summary.plain_bytes, data.len() as u64);
    assert_eq!(
        *target.seen.lock().unwrap(),
        data,
        "the target saw other bytes"
    );
    assert_eq!(
        *sink.gets.lock().unwrap(),
        1,
        "the object was read more than once"
    );
    // The private copy is unlinked: nothing is left in the spool directory.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_restore_without_room_for_its_private_copy_says_where_to_make_room() {
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let sink = MemorySink::new();
    backed_up(&sink, &key).await;
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let mut target = SeenTarget::default();
    let err = backup_core::restore_backup_via(
        &sink,
        &entries[0],
        Some(&Keyring::new(key)),
        &mut target,
        None,
        std::path::Path::new("/nonexistent/spool"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("BACKUP_RESTORE_TMP"), "{err}");
    assert!(target.seen.lock().unwrap().is_empty());
}

/// A source of a kind core has never heard of, with its own name prefix, as a new component
/// (WAL segments, say) would add it without editing core.
struct SegmentSource(MemorySource);

#[async_trait]
impl backup_core::Source for SegmentSource {
    fn kind(&self) -> BackupKind {
        self.0.kind()
    }
    fn extension(&self) -> &'static str {
        self.0.extension()
    }
    fn name_prefix(&self) -> Option<&str> {
        Some("segments")
    }
    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        self.0.open().await
    }
    async fn finish(&mut self) -> Result<backup_core::SourceFacts, BoxError> {
        self.0.finish().await
    }
}

#[tokio::test]
async fn a_new_kind_of_backup_gets_listing_restore_and_retention_without_editing_core() {
    use backup_core::prune::PruneKind;
    use backup_core::{Destination, Destinations, RestoreRules, RetentionPolicy, Selection};

    let wal = BackupKind::new("wal").unwrap();
    let sink = MemorySink::new();
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let options = BackupOptions::default()
        .encrypted_with(key.clone())
        .with_name_prefix("ignored-the-source-names-its-own");
    let mut keys = Vec::new();
    for round in 0..2u8 {
        let data = sample_data(10_000 + usize::from(round));
        let mut source = SegmentSource(MemorySource::new(wal, "seg", data));
        let report = run_backup(&mut source, &sink, &options, None)
            .await
            .unwrap();
        assert!(
            report.key.starts_with("wal/segments_backup_") && report.key.ends_with(".seg.gz.enc"),
            "{}",
            report.key
        );
        assert_eq!(report.manifest.kind, wal);
        keys.push(report.key);
    }
    let listed = list_backups(&sink, wal).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|e| e.status == BackupStatus::Complete && e.name.kind == wal));

    let destinations = Destinations::new(vec![Destination::new("memory", Box::new(sink.clone()))]);
    let catalog = destinations.catalog(wal, "segments").await.unwrap();
    let chosen = catalog
        .choose(&Selection::Latest, &RestoreRules::default())
        .unwrap();
    assert_eq!(chosen.entry.key, keys[1]);
    let ring = Keyring::new(key);
    let tmp = tempfile::tempdir().unwrap();
    let mut fetched = destinations
        .fetch(&catalog, chosen, Some(&ring), tmp.path(), None)
        .await
        .unwrap();
    let mut target = CollectTarget::default();
    fetched.restore_into(&mut target, None).await.unwrap();
    assert_eq!(
        target.committed.lock().unwrap().as_deref(),
        Some(sample_data(10_001).as_slice())
    );

    // Retention treats it like any kind: with no age rule the newest stays, the older goes.
    let later = chrono::Utc::now() + chrono::TimeDelta::days(60);
    let report = destinations
        .prune(
            &[PruneKind::Backups(wal)],
            &RetentionPolicy::within_days(0),
            later,
            false,
        )
        .await;
    assert_eq!(report.result(), backup_core::RunStatus::Success);
    let left = list_backups(&sink, wal).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        vec![keys[1].clone()]
    );
}

#[tokio::test]
async fn a_fixed_key_is_stored_once_an_interrupted_copy_is_replaced_and_a_live_claim_is_left_alone()
{
    use backup_core::{open_object, store_object};
    let key = EncryptionKey::from_passphrase("k").unwrap();
    let keyring = Keyring::new(key.clone());
    let options = options(Some(&key), Compression::gzip());
    let sink = MemorySink::new();
    let sinks: [&dyn Sink; 1] = [&sink];
    let object = "wal/00000001/000000010000000000000001.gz.enc";
    let data = sample_data(100_000);

    // What an interrupted run leaves: the object without its manifest, and its claim from a
    // process that is gone.
    sink.put(object, Bytes::from_static(b"half of it"))
        .await
        .unwrap();
    let dead = serde_json::json!({
        "host": backup_core::host_name(), "pid": i32::MAX, "started_at": chrono::Utc::now()
    });
    sink.put(&format!("{object}.claim"), Bytes::from(dead.to_string()))
        .await
        .unwrap();
    let mut source = MemorySource::new(BackupKind::WAL, "wal", data.clone());
    let results = store_object(&mut source, &sinks, object, &options, None)
        .await
        .unwrap();
    let report = results[0].result.as_ref().unwrap();
    assert_eq!(report.key, object);
    assert!(
        sink.head(&format!("{object}.claim")).await.is_err(),
        "claim released"
    );
    let mut opened = open_object(&sink, object, Some(&keyring), None)
        .await
        .unwrap();
    let mut plain = Vec::new();
    opened.stream.read_to_end(&mut plain).await.unwrap();
    assert_eq!(plain, data);

    // Stored: a second store is refused there, and nothing is replaced.
    let before = sink.get_bytes(object, u64::MAX).await.unwrap();
    let mut again = MemorySource::new(BackupKind::WAL, "wal", b"other".to_vec());
    let results = store_object(&mut again, &sinks, object, &options, None)
        .await
        .unwrap();
    assert!(
        matches!(
            results[0].result,
            Err(CoreError::Storage(
                backup_storage::StorageError::AlreadyExists { .. }
            ))
        ),
        "{:?}",
        results[0].result
    );
    assert_eq!(sink.get_bytes(object, u64::MAX).await.unwrap(), before);

    // A live run's claim (this process) makes the destination busy; nothing is written.
    let other = "wal/00000001/000000010000000000000002.gz.enc";
    let live = serde_json::json!({
        "host": backup_core::host_name(), "pid": std::process::id(),
        "started_at": chrono::Utc::now()
    });
    sink.put(&format!("{other}.claim"), Bytes::from(live.to_string()))
        .await
        .unwrap();
    let mut source = MemorySource::new(BackupKind::WAL, "wal", data);
    let results = store_object(&mut source, &sinks, other, &options, None)
        .await
        .unwrap();
    assert!(
        matches!(results[0].result, Err(CoreError::Busy { .. })),
        "{:?}",
        results[0].result
    );
    assert!(sink.head(other).await.is_err());
    assert!(
        sink.head(&format!("{other}.claim")).await.is_ok(),
        "its claim stays"
    );
}
