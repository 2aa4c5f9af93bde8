//! Encrypted, verified backups of PostgreSQL and Redis to local disk and S3-compatible
//! storage, and restores that verify before they commit.
//!
//! This facade re-exports the workspace's library crates so that a service can embed the whole
//! tool with one dependency:
//!
//! - [`core`]: the pipeline ([`core::run_backup`], [`core::run_backup_to_all`]), restores
//!   ([`core::fetch_backup`], [`core::restore_backup`]), the `Source` and `RestoreTarget`
//!   traits, manifests, the catalog, [`core::Destinations`] (listing, choosing and reading
//!   across several destinations), retention and pruning ([`core::prune`]), the key layout
//!   ([`core::layout`]) and typed configuration ([`core::config`]: flags, environment, TOML
//!   file and defaults layered per component);
//! - [`orchestrate`]: backup jobs ([`orchestrate::back_up`]): a source into every destination
//!   with its follow-up steps, and the run's outcome, status and JSON report; the list of
//!   every component's configuration section ([`orchestrate::sections`]);
//! - [`crypto`]: openssl-compatible AES-256-CBC + PBKDF2 streams, key files, keyrings, key ids;
//! - [`storage`]: the `Sink` trait with local-disk, S3 (and S3-compatible) and in-memory sinks;
//! - [`sources`]: sources and targets for PostgreSQL (`pg_dump`; restore by `psql` or
//!   `pg_restore` in one transaction) and Redis (the RDB snapshot by replication or BGSAVE;
//!   restore into a data file or a running server).
//!
//! `examples/embed_backup.rs` and `examples/embed_restore.rs` are a backup and a restore in a
//! few lines each; `examples/quickstart.rs` walks through backup, listing, dry run and
//! restore for PostgreSQL and Redis.

pub use backup_core as core;
pub use backup_crypto as crypto;
pub use backup_orchestrate as orchestrate;
pub use backup_sources as sources;
pub use backup_storage as storage;
