//! Running backups as jobs, between the command-line binaries and the library crates: one
//! [`Source`](backup_core::Source) into every destination in one pass, the follow-up steps of
//! a committed backup (the `latest/` copy the old scripts kept), and the outcome of the run as
//! the old scripts reported it (exit 0 everywhere, 1 somewhere, 2 nowhere) and as JSON.
//!
//! This is where the nightly orchestration (`backup-all`: several components, run reports,
//! notifications, status) grows; each binary and each embedding service runs its jobs through
//! it, so they all behave and report alike.

mod components;
mod config;
mod job;

pub use backup_core::RunStatus;
pub use components::{
    overall, run_stages, Component, ComponentResult, ComponentWork, Outcome, Plan,
};
pub use config::{sections, NotifyConfig};
pub use job::{back_up, BackupJob, BackupRun};
