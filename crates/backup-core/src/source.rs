//! The [`Source`] and [`RestoreTarget`] traits: the two ends of every pipeline.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::layout::BackupKind;

/// A boxed error from a source or restore target implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed byte stream.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// Facts about what was backed up, recorded in the manifest under `source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceFacts {
    /// The kind of source, e.g. `postgresql`.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Server version, e.g. `15.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Database name, where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Source-specific facts (dump format, tool versions, key counts, ...).
    #[serde(flatten)]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// A small side payload of a backup that belongs with it but not in its stream (a PostgreSQL
/// cluster's roles beside the dump of one database): the pipeline compresses and encrypts it
/// like the object and embeds it in the signed manifest ([`crate::EmbeddedAttachment`]), so it
/// is committed, listed, kept and pruned with the backup; a restore reads it back with
/// [`crate::FetchedBackup::attachment`].
pub struct Attachment {
    /// Its name in the manifest, e.g. `globals.sql`.
    pub name: String,
    /// The plain bytes (wiped when dropped: they may hold password hashes).
    pub bytes: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Something that produces a backup as a byte stream: `pg_dump`, a Redis `SYNC`, a tar of files.
///
/// The pipeline calls [`open`](Source::open), reads the stream to its end, then calls
/// [`finish`](Source::finish), which must report any failure of the producer (a non-zero exit,
/// an error on stderr, a truncated stream). Only when `finish` succeeds is the backup committed.
#[async_trait]
pub trait Source: Send {
    /// Which kind of backup this source makes.
    fn kind(&self) -> BackupKind;

    /// The file-name suffix of the raw stream before compression, e.g. `sql` or `dump`.
    fn extension(&self) -> &'static str;

    /// The name prefix this source's backups always carry (`redis` for `redis_backup_...`,
    /// as the old script named them); `None` (the default) takes
    /// [`BackupOptions::name_prefix`](crate::BackupOptions::name_prefix).
    fn name_prefix(&self) -> Option<&str> {
        None
    }

    /// Starts producing the stream.
    async fn open(&mut self) -> Result<ByteStream, BoxError>;

    /// Waits for the producer to end and reports whether the stream it gave was complete.
    async fn finish(&mut self) -> Result<SourceFacts, BoxError>;

    /// Side payloads to embed in the manifest ([`Attachment`]), taken after a successful
    /// [`finish`](Source::finish). None by default.
    fn take_attachments(&mut self) -> Vec<Attachment> {
        Vec::new()
    }
}

/// Where a restore writes: a database, a Redis data file, a directory.
///
/// [`restore`](RestoreTarget::restore) reads `stream` to its end and applies it. The stream
/// returns end-of-file only after it has been verified (size, SHA-256, HMAC, decryption padding,
/// decompression trailer); a verification failure arrives as a read error. An implementation
/// must therefore commit its changes only after reading end-of-file, and must leave the target
/// as it was on any read error.
#[async_trait]
pub trait RestoreTarget: Send {
    /// Applies the verified stream, atomically.
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError>;
}

/// What a restore (or a dry run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreSummary {
    /// Bytes of plain (decrypted, decompressed) data applied or checked.
    pub plain_bytes: u64,
    /// Human-readable lines describing the outcome (database created, renamed aside, ...).
    pub notes: Vec<String>,
}

/// A [`Source`] of bytes held in memory: for tests of anything that runs sources, and for a
/// service that backs up a blob it already holds. `finish` reports `source_type` `memory`, or
/// the failure given to [`failing_with`](Self::failing_with) (as a producer that died after
/// its stream, e.g. `pg_dump` exiting non-zero).
#[derive(Debug, Clone)]
pub struct MemorySource {
    kind: BackupKind,
    extension: &'static str,
    data: bytes::Bytes,
    failure: Option<String>,
}

impl MemorySource {
    /// A source of `data`, stored as a backup of `kind` named `..._backup_TIME.<extension>`.
    pub fn new(kind: BackupKind, extension: &'static str, data: impl Into<bytes::Bytes>) -> Self {
        Self {
            kind,
            extension,
            data: data.into(),
            failure: None,
        }
    }

    /// The same source, whose `finish` fails with `message` after the whole stream was read.
    pub fn failing_with(mut self, message: impl Into<String>) -> Self {
        self.failure = Some(message.into());
        self
    }
}

#[async_trait]
impl Source for MemorySource {
    fn kind(&self) -> BackupKind {
        self.kind
    }

    fn extension(&self) -> &'static str {
        self.extension
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        Ok(Box::new(std::io::Cursor::new(self.data.clone())))
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        if let Some(message) = &self.failure {
            return Err(message.clone().into());
        }
        Ok(SourceFacts {
            source_type: "memory".into(),
            ..SourceFacts::default()
        })
    }
}
