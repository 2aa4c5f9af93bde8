//! Drop-in binaries for the old backup scripts, and what they share.
//!
//! Each binary's `main` only parses its arguments, calls into this crate (which calls the
//! library crates) and maps the result to the scripts' exit codes: 0 success, 1 partial
//! failure, 2 failure, 3 usage, configuration or unexpected error. Each command module
//! ([`database`], [`restore`], [`redis_backup`], [`redis_restore`], [`prune`]) turns its
//! arguments into library objects and calls the library: what a backup, a restore or a prune
//! does lives in `backup-core` and `backup-sources`, where a service can embed it.

pub mod backup_all;
pub mod common;
pub mod database;
pub mod exit;
pub mod files_backup;
pub mod files_restore;
pub mod help;
pub mod keys;
pub mod multicall;
pub mod outcome;
pub mod prune;
pub mod redis_backup;
pub mod redis_restore;
pub mod restore;
pub mod restore_all;
pub mod restore_pitr;
pub mod runlog;
pub mod security;
pub mod select;
pub mod status;
pub mod wal;

pub use exit::{CliError, ExitStatus};
