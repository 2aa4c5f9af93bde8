//! Backups that meet other runs: the same second, the same name, a prune in the middle. A
//! backup never replaces another, and a backup in progress is never pruned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::retention::{self, RetentionPolicy};
use backup_core::{
    claim_key_for, list_backups, manifest_key_for, restore_backup, run_backup, BackupKind,
    BackupName, BackupOptions, BackupStatus, BoxError, ByteStream, Compression, CoreError,
    MemorySource, RestoreSummary, RestoreTarget, MANIFEST_SUFFIX,
};
use backup_crypto::{EncryptionKey, Keyring};
use backup_storage::{
    MemorySink, ObjectMeta, ObjectReader, ObjectWriter, Sink, StorageError, WriteMode,
};
use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use tokio::io::AsyncReadExt;

/// A source of fixed bytes.
fn bytes_source(data: Vec<u8>) -> MemorySource {
    MemorySource::new(BackupKind::DATABASE, "sql", data)
}
struct ReadAll;

#[async_trait]
impl RestoreTarget for ReadAll {
    async fn restore(&mut self, mut stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok(RestoreSummary {
            plain_bytes: buf.len() as u64,
            notes: vec![],
        })
    }
}

fn key() -> EncryptionKey {
    EncryptionKey::from_passphrase("concurrency test key").unwrap()
}

fn options() -> BackupOptions {
    BackupOptions {
        name_prefix: "randevubu".into(),
        compression: Compression::gzip(),
        key: Some(key()),
        signing_key: None,
        iterations: 1000,
        compression_threads: 1,
    }
}

/// The name a database backup of [`options`] started at `t` would get.
fn name_at(t: chrono::DateTime<Utc>) -> String {
    BackupName::new(
        BackupKind::DATABASE,
        "randevubu",
        t,
        "sql",
        Compression::gzip(),
        true,
    )
    .key()
}

#[tokio::test]
async fn a_taken_name_makes_the_backup_wait_for_the_next_free_second_and_replaces_nothing() {
    let sink = MemorySink::new();
    let t0 = Utc::now();
    // The names of this second and the next three are taken in every way a name can be:
    // a stored object, a run's claim, an orphaned manifest, and an object whose manifest is
    // being written.
    let taken = [
        name_at(t0),
        name_at(t0 + TimeDelta::seconds(1)),
        name_at(t0 + TimeDelta::seconds(2)),
    ];
    sink.put(&taken[0], Bytes::from_static(b"someone else's backup"))
        .await
        .unwrap();
    sink.put(&claim_key_for(&taken[1]), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    sink.put(
        &manifest_key_for(&taken[2]),
        Bytes::from_static(b"{\"orphan\":true}"),
    )
    .await
    .unwrap();
    let before = sink.list("").await.unwrap();

    let report = run_backup(
        &mut bytes_source(b"SELECT 1;\n".to_vec()),
        &sink,
        &options(),
        None,
    )
    .await
    .unwrap();
    assert!(
        !taken.contains(&report.key),
        "{} reused a taken name",
        report.key
    );
    assert!(report.key.as_str() > taken[2].as_str(), "{}", report.key);
    // Everything that was there is still there, unchanged; the run's own claim is gone.
    for meta in &before {
        assert_eq!(sink.head(&meta.key).await.unwrap().size, meta.size);
    }
    assert!(sink
        .head(&claim_key_for(&report.key))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_together_get_distinct_names_and_all_restore() {
    let sink = Arc::new(MemorySink::new());
    let runs = (0..4u8).map(|i| {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            let data = format!("SELECT {i};\n").into_bytes();
            run_backup(&mut bytes_source(data), sink.as_ref(), &options(), None)
                .await
                .map(|r| r.key)
        })
    });
    let mut keys = Vec::new();
    for run in runs {
        keys.push(run.await.unwrap().unwrap());
    }
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{keys:?}");

    let entries = list_backups(sink.as_ref(), BackupKind::DATABASE)
        .await
        .unwrap();
    assert_eq!(entries.len(), 4);
    let keyring = Keyring::new(key());
    for entry in &entries {
        assert_eq!(entry.status, BackupStatus::Complete, "{}", entry.key);
        let summary = restore_backup(sink.as_ref(), entry, Some(&keyring), &mut ReadAll, None)
            .await
            .unwrap();
        assert_eq!(summary.plain_bytes, 10);
    }
    // No claim is left behind.
    assert!(sink
        .list("database/")
        .await
        .unwrap()
        .iter()
        .all(|o| !o.key.ends_with(".claim")));
}

/// What a [`Hooked`] sink does when a writer is opened.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// Before any manifest is written, i.e. when a backup's object is stored and its commit
    /// marker is not: run a prune with a zero-day policy, as `backup-prune --retention-days 0`
    /// running at that moment would.
    PruneBeforeManifest,
    /// When a backup object's writer is opened: store another object under the same key, as a
    /// writer that never claimed the name would (an old version of the tool, or a store
    /// without conditional writes between the claim and the commit).
    RaceTheCommit,
    /// Every `head` fails with an I/O error (a destination that cannot answer).
    HeadFails,
}

/// A memory sink with a [`Hook`].
#[derive(Debug)]
struct Hooked {
    inner: MemorySink,
    hook: Hook,
}

#[async_trait]
impl Sink for Hooked {
    fn describe(&self) -> String {
        format!("a store with the hook {:?}", self.hook)
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: WriteMode,
    ) -> backup_storage::Result<Box<dyn ObjectWriter>> {
        match self.hook {
            Hook::PruneBeforeManifest if key.ends_with(MANIFEST_SUFFIX) => {
                let entries = list_backups(&self.inner, BackupKind::DATABASE)
                    .await
                    .unwrap();
                let plan = retention::plan(&entries, &RetentionPolicy::within_days(0), Utc::now());
                retention::apply(&self.inner, &plan).await.unwrap();
                self.inner.writer_with(key, mode).await
            }
            Hook::RaceTheCommit if key.ends_with(".enc") => {
                let writer = self.inner.writer_with(key, mode).await?;
                self.inner
                    .put(key, Bytes::from_static(b"the other writer's backup"))
                    .await?;
                Ok(writer)
            }
            _ => self.inner.writer_with(key, mode).await,
        }
    }
    async fn get(&self, key: &str) -> backup_storage::Result<ObjectReader> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<ObjectMeta> {
        if matches!(self.hook, Hook::HeadFails) {
            return Err(StorageError::io(
                "stat",
                key,
                io::Error::new(io::ErrorKind::PermissionDenied, "injected failure"),
            ));
        }
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<ObjectMeta>> {
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
async fn a_destination_that_cannot_answer_head_does_not_make_every_name_taken() {
    let sink = Hooked {
        inner: MemorySink::new(),
        hook: Hook::HeadFails,
    };
    let started = Utc::now();
    let report = run_backup(
        &mut bytes_source(b"SELECT 1;\n".to_vec()),
        &sink,
        &options(),
        None,
    )
    .await
    .unwrap();
    // The name of the second the run started in (or the next, if the clock just ticked),
    // not one found after waiting through taken names.
    assert!(
        report.key == name_at(started) || report.key == name_at(started + TimeDelta::seconds(1)),
        "{} was not the name of the start",
        report.key
    );
    assert!(sink.inner.get_bytes(&report.key, 1 << 20).await.is_ok());
}

#[tokio::test]
async fn a_prune_between_object_and_manifest_does_not_delete_the_backup() {
    let sink = Hooked {
        inner: MemorySink::new(),
        hook: Hook::PruneBeforeManifest,
    };
    for i in 0..3 {
        let report = run_backup(
            &mut bytes_source(format!("SELECT {i};\n").into_bytes()),
            &sink,
            &options(),
            None,
        )
        .await
        .unwrap();
        // Reported as made: it is there, with its manifest, and complete.
        let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
        let entry = entries
            .iter()
            .find(|e| e.key == report.key)
            .unwrap_or_else(|| panic!("{} was pruned during its backup", report.key));
        assert_eq!(entry.status, BackupStatus::Complete);
    }
}

#[tokio::test]
async fn a_commit_that_finds_its_name_taken_fails_and_replaces_nothing() {
    let sink = Hooked {
        inner: MemorySink::new(),
        hook: Hook::RaceTheCommit,
    };
    let err = run_backup(
        &mut bytes_source(b"SELECT 1;\n".to_vec()),
        &sink,
        &options(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CoreError::Storage(StorageError::AlreadyExists { .. })),
        "{err:?}"
    );
    let objects = sink.inner.list("").await.unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(
        sink.inner.get_bytes(&objects[0].key, 100).await.unwrap(),
        Bytes::from_static(b"the other writer's backup")
    );
}

/// A source whose bytes the test feeds: the backup stays in progress until the test ends
/// the stream.
struct GatedSource(Option<tokio::io::DuplexStream>);

#[async_trait]
impl backup_core::Source for GatedSource {
    fn kind(&self) -> BackupKind {
        BackupKind::DATABASE
    }

    fn extension(&self) -> &'static str {
        "sql"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        Ok(Box::new(self.0.take().ok_or("opened twice")?))
    }

    async fn finish(&mut self) -> Result<backup_core::SourceFacts, BoxError> {
        Ok(backup_core::SourceFacts::default())
    }
}

/// Backups and backup-prune share a local directory's lock: a prune started while a backup
/// writes waits until the backup committed (and then keeps it, the newest), and a backup
/// started while a prune holds the directory waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_prune_waits_for_a_backup_writing_to_the_same_directory() {
    use backup_core::prune::{prune_destination, PruneKind};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(backup_storage::LocalSink::new(dir.path().join("backups")).unwrap());
    let (mut feed, stream) = tokio::io::duplex(1024);
    let backup = tokio::spawn({
        let sink = Arc::clone(&sink);
        async move {
            let mut source = GatedSource(Some(stream));
            run_backup(&mut source, sink.as_ref(), &options(), None).await
        }
    });
    feed.write_all(b"CREATE TABLE t (x int);\n").await.unwrap();
    // Wait until the backup writes (its claim is there).
    let claimed = async {
        loop {
            let listed = sink.list("database/").await.unwrap_or_default();
            if listed.iter().any(|o| o.key.ends_with(".claim")) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), claimed)
        .await
        .unwrap();
    let policy = RetentionPolicy {
        within_days: None,
        keep_last: Some(1),
        ..RetentionPolicy::default()
    };
    let prune = tokio::spawn({
        let sink = Arc::clone(&sink);
        let policy = policy.clone();
        async move {
            let kinds = [PruneKind::Backups(BackupKind::DATABASE)];
            prune_destination(sink.as_ref(), &kinds, &policy, Utc::now(), false).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        !prune.is_finished(),
        "backup-prune ran while a backup was writing"
    );
    feed.write_all(b"-- end\n").await.unwrap();
    drop(feed);
    let report = backup.await.unwrap().unwrap();
    let pruned = prune.await.unwrap();
    assert!(pruned.kinds.iter().all(|k| k.error.is_none()), "{pruned:?}");
    let entries = list_backups(sink.as_ref(), BackupKind::DATABASE)
        .await
        .unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.key == report.key && e.status == BackupStatus::Complete),
        "the backup is kept: {entries:?}"
    );
    // A prune holding the directory makes a new backup wait.
    let held = sink
        .lock(
            backup_storage::LockMode::Exclusive,
            std::time::Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    let second = tokio::spawn({
        let sink = Arc::clone(&sink);
        async move {
            let mut source = bytes_source(b"SELECT 2;\n".to_vec());
            run_backup(&mut source, sink.as_ref(), &options(), None).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        !second.is_finished(),
        "a backup wrote while backup-prune held the directory"
    );
    drop(held);
    second.await.unwrap().unwrap();
}
