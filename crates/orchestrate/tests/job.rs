//! A backup job into several destinations: what committed where, the follow-up `latest/`
//! copy, the run's status and its JSON report.

use async_trait::async_trait;
use backup_core::{BackupKind, BackupOptions, Destination, Destinations, MemorySource};
use backup_orchestrate::{back_up, BackupJob, RunStatus};
use backup_storage::WriteMode;
use backup_storage::{MemorySink, ObjectMeta, ObjectReader, ObjectWriter, Sink, StorageError};
use bytes::Bytes;

/// A sink that refuses every write (a full or read-only destination).
#[derive(Debug)]
struct Refusing;

#[async_trait]
impl Sink for Refusing {
    fn describe(&self) -> String {
        "refusing".into()
    }
    async fn writer_with(
        &self,
        key: &str,
        _: WriteMode,
    ) -> Result<Box<dyn ObjectWriter>, StorageError> {
        Err(StorageError::io(
            "create",
            key,
            std::io::Error::other("no space left on device"),
        ))
    }
    async fn get(&self, key: &str) -> Result<ObjectReader, StorageError> {
        Err(StorageError::NotFound { key: key.into() })
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        Err(StorageError::NotFound { key: key.into() })
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &str) -> Result<(), StorageError> {
        Ok(())
    }
    async fn copy(&self, _: &str, to: &str) -> Result<(), StorageError> {
        Err(StorageError::io(
            "copy",
            to,
            std::io::Error::other("refused"),
        ))
    }
}

fn source() -> MemorySource {
    MemorySource::new(
        BackupKind::REDIS,
        "rdb",
        Bytes::from_static(b"REDIS0011 snapshot"),
    )
}

fn job() -> BackupJob {
    BackupJob {
        options: BackupOptions::default().with_name_prefix("redis"),
        publish_latest: Some(BackupKind::REDIS),
    }
}

#[tokio::test]
async fn a_run_everywhere_is_success_with_the_latest_copy_on_each_destination() {
    let (a, b) = (MemorySink::new(), MemorySink::new());
    let destinations = Destinations::new(vec![
        Destination::new("local", Box::new(a.clone())),
        Destination::new("s3", Box::new(b.clone())),
    ]);
    let run = back_up(&mut source(), &destinations, &job(), None)
        .await
        .unwrap();
    assert_eq!(run.status(), RunStatus::Success);
    assert_eq!(run.status().exit_code(), 0);
    let key = run.committed().unwrap().key.clone();
    assert!(
        key.starts_with("redis/redis_backup_") && key.ends_with(".rdb.gz"),
        "{key}"
    );
    let latest = run.latest.clone().unwrap();
    for sink in [&a, &b] {
        sink.head(&key).await.unwrap();
        sink.head(&latest).await.unwrap();
    }
    let doc = run.to_json();
    assert_eq!(doc["object"], key.as_str());
    assert_eq!(doc["latest_object"], latest.as_str());
    assert_eq!(doc["destinations"][1]["destination"], "s3");
    assert_eq!(doc["destinations"][1]["ok"], true);

    // Without the copy (--no-latest) the document has the same fields, the copy null.
    let no_latest = BackupJob {
        publish_latest: None,
        ..job()
    };
    let run = back_up(&mut source(), &destinations, &no_latest, None)
        .await
        .unwrap();
    let doc = run.to_json();
    assert!(
        doc.as_object().unwrap().contains_key("latest_object"),
        "{doc}"
    );
    assert!(doc["latest_object"].is_null(), "{doc}");
}

#[tokio::test]
async fn a_destination_that_fails_makes_the_run_partial_and_is_named() {
    let good = MemorySink::new();
    let destinations = Destinations::new(vec![
        Destination::new("local", Box::new(good.clone())),
        Destination::new("s3", Box::new(Refusing)),
    ]);
    let run = back_up(&mut source(), &destinations, &job(), None)
        .await
        .unwrap();
    assert_eq!(run.status(), RunStatus::Partial);
    assert_eq!(run.status().exit_code(), 1);
    let failures = run.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("s3 (refusing): "), "{failures:?}");
    assert!(failures[0].contains("no space left"), "{failures:?}");
    good.head(&run.committed().unwrap().key).await.unwrap();
    assert_eq!(run.to_json()["destinations"][1]["ok"], false);
}

#[tokio::test]
async fn nothing_committed_is_failed_and_a_failed_source_is_an_error() {
    let destinations = Destinations::new(vec![Destination::new("s3", Box::new(Refusing))]);
    let run = back_up(&mut source(), &destinations, &job(), None)
        .await
        .unwrap();
    assert_eq!(run.status(), RunStatus::Failed);
    assert_eq!(run.status().exit_code(), 2);
    assert!(run.latest.is_none());

    let sink = MemorySink::new();
    let destinations = Destinations::new(vec![Destination::new("local", Box::new(sink.clone()))]);
    let mut dying = source().failing_with("redis: connection reset");
    let err = back_up(&mut dying, &destinations, &job(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "nothing left behind"
    );
}
