//! The [`Sink`] and [`ObjectWriter`] traits.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::{Result, StorageError};

/// A streaming reader over one stored object.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// What a sink knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key, e.g. `database/randevubu_backup_20240115_020000.sql.gz.enc`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written (committed).
    pub last_modified: DateTime<Utc>,
}

/// Whether a write may replace an object already stored under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Replace what is stored under the key (the `latest/` copy, reports).
    #[default]
    Overwrite,
    /// Create the object only if the key is free, atomically at commit: a commit that finds
    /// the key taken fails with [`StorageError::AlreadyExists`] and replaces nothing (an
    /// exclusive link on local disk, `If-None-Match: *` on S3). Backups and their manifests
    /// are written this way, so that one backup can never replace another.
    Create,
    /// As [`Create`](Self::Create), and the object is kept under the store's retention where
    /// one is configured (S3 Object Lock: the lock's mode and retain-until date are sent with
    /// the upload); elsewhere the same as `Create`. Backups and their manifests are written
    /// this way; markers that are deleted soon after (claims) are not.
    Retained,
}

impl WriteMode {
    /// Whether the write must not replace an existing object ([`Create`](Self::Create) and
    /// [`Retained`](Self::Retained)).
    pub fn creates(self) -> bool {
        matches!(self, Self::Create | Self::Retained)
    }
}

/// How a run holds a destination's lock ([`Sink::lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Backups: any number of them at once.
    Shared,
    /// Retention (`backup-prune`): alone, while no backup writes.
    Exclusive,
}

impl LockMode {
    /// `shared` or `exclusive`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        }
    }
}

/// A destination's lock, held until dropped.
pub struct SinkLock {
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl SinkLock {
    /// A lock that is released when `held` is dropped.
    pub fn new(held: impl std::any::Any + Send + Sync) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl Debug for SinkLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkLock")
    }
}

/// An object store that backups are written to and read from.
///
/// Writes are all-or-nothing: bytes written through [`Sink::writer`] become visible under the
/// key only when [`ObjectWriter::commit`] succeeds. A writer that is dropped or aborted leaves
/// nothing under the key (and no stray temporary object that [`Sink::list`] would return).
#[async_trait]
pub trait Sink: Debug + Send + Sync {
    /// A short human description for messages, e.g. `local directory /var/backups/randevubu`.
    fn describe(&self) -> String;

    /// Starts a streaming write of `key`; `mode` says whether the commit may replace an
    /// object already stored under `key`.
    async fn writer_with(&self, key: &str, mode: WriteMode) -> Result<Box<dyn ObjectWriter>>;

    /// Starts a streaming write of `key`. An existing object under `key` is replaced on commit.
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.writer_with(key, WriteMode::Overwrite).await
    }

    /// Takes the destination's lock in `mode` until the returned guard is dropped, waiting up
    /// to `wait` while another run holds it in a conflicting mode: backups hold it shared,
    /// retention exclusive, so `backup-prune` never deletes while a backup writes and no
    /// backup starts while it deletes. `Ok(None)` where the destination has no lock (the
    /// default; object stores have none — there the claim markers alone keep retention away
    /// from backups in progress).
    ///
    /// # Errors
    /// [`StorageError::Locked`] when `wait` passed; I/O errors.
    async fn lock(&self, mode: LockMode, wait: std::time::Duration) -> Result<Option<SinkLock>> {
        let _ = (mode, wait);
        Ok(None)
    }

    /// Opens `key` for streaming reading. [`StorageError::NotFound`] when absent.
    async fn get(&self, key: &str) -> Result<ObjectReader>;

    /// Metadata of `key`. [`StorageError::NotFound`] when absent.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Every committed object whose key starts with `prefix` (a plain string prefix, as in
    /// S3: `database/` lists that folder recursively), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes `key`. Deleting an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Copies `from` to `to` (replacing `to`), atomically as a write is.
    async fn copy(&self, from: &str, to: &str) -> Result<()>;

    /// Until when `key` is protected from deletion by the store's retention (S3 Object Lock),
    /// if it is protected at all: a deletion before then would not remove it (S3 only hides it
    /// behind a delete marker), so retention plans around it. `Ok(None)` for stores without
    /// retention (the default) and objects without it. S3 asks with `HeadObject` (the answer
    /// carries the date only with the `s3:GetObjectRetention` permission).
    async fn retained_until(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let _ = key;
        Ok(None)
    }

    /// Puts an existing object under the store's retention as a [`WriteMode::Retained`] write
    /// would have (for an object made by [`copy`](Self::copy)); nothing where no retention is
    /// configured (the default).
    async fn retain(&self, key: &str) -> Result<()> {
        let _ = key;
        Ok(())
    }

    /// Deletes `key` without being awaited, but only if its content is exactly `expected`: for
    /// `Drop`, where an interrupted run removes the small markers it made (a backup's claim on
    /// its name), including one whose creation was still in flight when the run was
    /// interrupted, without touching a marker another run made under the same key. Local and
    /// in-memory sinks act at once; S3 starts the requests as a clean-up task
    /// ([`wait_for_cleanups`](crate::wait_for_cleanups)). Failures are logged, never returned:
    /// what is left is removed by pruning later. Sinks that cannot do this keep the default,
    /// which leaves the key for pruning.
    fn delete_detached(&self, key: &str, expected: Bytes) {
        let _ = expected;
        tracing::debug!(
            key,
            "{} cannot delete from Drop; left for pruning",
            self.describe()
        );
    }

    /// Removes what interrupted writes left behind and older than `older_than` (temporary
    /// files of a local sink, incomplete multipart uploads of S3), returning a description of
    /// each removed item. Sinks that cannot leave anything behind keep this default.
    async fn remove_incomplete(&self, older_than: std::time::Duration) -> Result<Vec<String>> {
        let _ = older_than;
        Ok(Vec::new())
    }

    /// Writes a small object from memory in one call (reports), replacing what is there.
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectMeta> {
        self.put_with(key, data, WriteMode::Overwrite).await
    }

    /// Writes a small object from memory in one call with the given [`WriteMode`] (manifests
    /// are written with [`WriteMode::Create`]).
    async fn put_with(&self, key: &str, data: Bytes, mode: WriteMode) -> Result<ObjectMeta> {
        let mut writer = self.writer_with(key, mode).await?;
        if let Err(source) = writer.write_all(&data).await {
            writer.abort().await.ok();
            return Err(StorageError::io("write", key, source));
        }
        writer.commit().await
    }

    /// Reads a small object fully into memory (manifests). Refuses objects over `limit` bytes.
    async fn get_bytes(&self, key: &str, limit: u64) -> Result<Bytes> {
        use tokio::io::AsyncReadExt;
        let reader = self.get(key).await?;
        let mut buf = Vec::new();
        let mut limited = reader.take(limit.saturating_add(1));
        limited
            .read_to_end(&mut buf)
            .await
            .map_err(|source| StorageError::io("read", key, source))?;
        if buf.len() as u64 > limit {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                limit,
            });
        }
        Ok(Bytes::from(buf))
    }
}

/// A write in progress, returned by [`Sink::writer`]. Write the bytes with the
/// [`AsyncWrite`] methods, then [`commit`](ObjectWriter::commit) to publish them or
/// [`abort`](ObjectWriter::abort) to discard them. Dropping an uncommitted writer discards it.
#[async_trait]
pub trait ObjectWriter: AsyncWrite + Send + Unpin {
    /// Makes everything written so far durable and visible under the key, atomically.
    async fn commit(self: Box<Self>) -> Result<ObjectMeta>;

    /// Discards everything written; nothing remains under the key or as a temporary.
    async fn abort(self: Box<Self>) -> Result<()>;
}
