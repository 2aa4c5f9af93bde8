//! Backup sources and restore targets: where backups come from and where restores go.
//!
//! Each source implements [`backup_core::Source`] (a byte stream plus facts for the manifest)
//! and each restore target [`backup_core::RestoreTarget`] (apply a verified stream, atomically).
//! Today: [`postgres`] (`pg_dump` / `psql` / `pg_restore`) and [`redis`] (the RDB snapshot by
//! replication or `BGSAVE`; restore into a data file or, key by key, a running server).
//! Configuration and log files and WAL archiving slot in as sibling modules with the same
//! shape.

pub mod error;
pub mod postgres;
mod process;
pub mod redis;
mod stream;

pub use error::SourceError;
