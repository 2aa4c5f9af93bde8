//! [`MemorySink`]: objects in memory, for tests and embedding.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWrite;

use crate::error::{Result, StorageError};
use crate::key::{validate_key, validate_prefix};
use crate::sink::{ObjectMeta, ObjectReader, ObjectWriter, Sink, WriteMode};

/// Key -> (content, time of commit).
type Objects = BTreeMap<String, (Bytes, DateTime<Utc>)>;

/// A [`Sink`] keeping objects in memory.
///
/// Clones share the same objects, so a test can hand one clone to the code under test and
/// inspect another. A write is buffered in memory until it is committed.
#[derive(Clone, Default)]
pub struct MemorySink {
    objects: Arc<Mutex<Objects>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The objects, even if a thread panicked while holding the lock (every update is a single
    /// map operation, so the map is always consistent).
    fn objects(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySink")
            .field("objects", &self.objects().len())
            .finish()
    }
}

fn not_found(key: &str) -> StorageError {
    StorageError::NotFound {
        key: key.to_owned(),
    }
}

fn meta(key: &str, data: &Bytes, last_modified: DateTime<Utc>) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: data.len() as u64,
        last_modified,
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn describe(&self) -> String {
        "in-memory store".to_owned()
    }

    async fn writer_with(&self, key: &str, mode: WriteMode) -> Result<Box<dyn ObjectWriter>> {
        validate_key(key)?;
        Ok(Box::new(MemoryObjectWriter {
            objects: Arc::clone(&self.objects),
            key: key.to_owned(),
            buffer: Vec::new(),
            mode,
        }))
    }

    async fn get(&self, key: &str) -> Result<ObjectReader> {
        validate_key(key)?;
        let data = match self.objects().get(key) {
            Some((data, _)) => data.clone(),
            None => return Err(not_found(key)),
        };
        Ok(Box::new(io::Cursor::new(data)))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        match self.objects().get(key) {
            Some((data, modified)) => Ok(meta(key, data, *modified)),
            None => Err(not_found(key)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        Ok(self
            .objects()
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (data, modified))| meta(key, data, *modified))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    fn delete_detached(&self, key: &str, expected: Bytes) {
        let mut objects = self.objects();
        if objects.get(key).is_some_and(|(data, _)| *data == expected) {
            objects.remove(key);
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        validate_key(from)?;
        validate_key(to)?;
        let mut objects = self.objects();
        let data = match objects.get(from) {
            Some((data, _)) => data.clone(),
            None => return Err(not_found(from)),
        };
        objects.insert(to.to_owned(), (data, Utc::now()));
        Ok(())
    }
}

/// The [`ObjectWriter`] of a [`MemorySink`]: a buffer inserted into the map on commit.
struct MemoryObjectWriter {
    objects: Arc<Mutex<Objects>>,
    key: String,
    buffer: Vec<u8>,
    mode: WriteMode,
}

impl AsyncWrite for MemoryObjectWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl ObjectWriter for MemoryObjectWriter {
    async fn commit(self: Box<Self>) -> Result<ObjectMeta> {
        let Self {
            objects,
            key,
            buffer,
            mode,
        } = *self;
        let data = Bytes::from(buffer);
        let now = Utc::now();
        let meta = meta(&key, &data, now);
        let mut objects = objects.lock().unwrap_or_else(PoisonError::into_inner);
        if mode.creates() && objects.contains_key(&key) {
            return Err(StorageError::AlreadyExists { key });
        }
        objects.insert(key, (data, now));
        Ok(meta)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
