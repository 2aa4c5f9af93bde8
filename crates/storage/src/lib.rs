//! Where backups live: the [`Sink`] trait and its implementations.
//!
//! A [`Sink`] is a small object store modelled on the `object_store` crate: streaming writes
//! through an [`ObjectWriter`] that becomes visible only on [`ObjectWriter::commit`], streaming
//! reads, `head`, `list` by key prefix, `delete` and `copy`. Keys are `/`-separated relative
//! paths such as `database/randevubu_backup_20240115_020000.sql.gz.enc`.
//!
//! Implementations: [`LocalSink`] (a directory on disk, atomic writes), [`MemorySink`]
//! (for tests and embedding) and, with the default feature `s3`, `S3Sink` (Amazon S3 and
//! S3-compatible stores: streaming multipart uploads, resumable downloads). Every
//! implementation must pass the `conformance` suite (enable the `conformance` feature to use
//! it from another crate's tests).

pub mod atomic;
mod cleanup;
mod error;
mod key;
mod local;
mod memory;
#[cfg(feature = "s3")]
pub mod s3;
mod sink;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use cleanup::wait_for_cleanups;
pub use error::{Result, StorageError};
pub use key::validate_key;
pub use local::LocalSink;
pub use memory::MemorySink;
#[cfg(feature = "s3")]
pub use s3::{part_size_for, S3Config, S3Encryption, S3Sink, READ_RANGE_BYTES};
pub use sink::{LockMode, ObjectMeta, ObjectReader, ObjectWriter, Sink, SinkLock, WriteMode};
