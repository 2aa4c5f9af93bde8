//! Backup sources and restore targets: where backups come from and where restores go.
//!
//! Each source implements [`backup_core::Source`] (a byte stream plus facts for the manifest)
//! and each restore target [`backup_core::RestoreTarget`] (apply a verified stream, atomically).
//! Today: [`postgres`] (`pg_dump` / `psql` / `pg_restore`), [`wal`] (PostgreSQL's WAL files,
//! archived one by one) and [`redis`] (the RDB snapshot by replication or `BGSAVE`; restore
//! into a data file or, key by key, a running server).
//! Each has its typed configuration ([`postgres::PostgresConfig`], [`redis::RedisSettings`]:
//! a `backup_core::config::Component` that owns its `[table]` and variables). Configuration
//! and log files and WAL archiving slot in as sibling modules with the same shape, each with
//! a kind of its own (`backup_core::BackupKind::new`).

pub mod error;
pub mod files;
pub mod postgres;
mod process;
pub mod redis;
mod stream;
pub mod wal;

pub use error::SourceError;
