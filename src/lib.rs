//! Encrypted, verified backups of PostgreSQL (and, in coming releases, Redis, configuration
//! files and logs) to local disk and S3-compatible storage.
//!
//! This facade re-exports the workspace's library crates so that a service can embed the whole
//! tool with one dependency:
//!
//! - [`core`]: the pipeline ([`core::run_backup`], [`core::restore_backup`]), the `Source` and
//!   `RestoreTarget` traits, manifests, the catalog and configuration;
//! - [`crypto`]: openssl-compatible AES-256-CBC + PBKDF2 streams, key files, key ids;
//! - [`storage`]: the `Sink` trait with local-disk and in-memory sinks;
//! - [`sources`]: PostgreSQL backup (`pg_dump`) and restore (`psql`, one transaction).
//!
//! See `examples/quickstart.rs` for a complete backup, listing, dry run and restore.

pub use backup_core as core;
pub use backup_crypto as crypto;
pub use backup_sources as sources;
pub use backup_storage as storage;
