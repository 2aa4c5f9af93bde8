//! Running backups as jobs, between the command-line binaries and the library crates: one
//! [`Source`](backup_core::Source) into every destination in one pass, the follow-up steps of
//! a committed backup (the `latest/` copy the old scripts kept), and the outcome of the run as
//! the old scripts reported it (exit 0 everywhere, 1 somewhere, 2 nowhere) and as JSON.
//!
//! This is where the nightly orchestration (`backup-all`: several components, run reports,
//! notifications, status) grows; each binary and each embedding service runs its jobs through
//! it, so they all behave and report alike.

mod checks;
mod cluster_restore;
mod components;
mod config;
mod databases;
mod drill;
mod job;
mod lock;
mod nightly;
mod notify;
mod pitr;
mod report;
mod run_config;
pub mod security;
mod status;
mod wal;

pub use backup_core::RunStatus;
pub use checks::{
    disk_usage, postgres_health, redis_health, verify_run, Disk, Health, Verification,
};
pub use cluster_restore::{
    restore_cluster, ClusterRestoreError, ClusterRestoreReport, ClusterRestoreRequest,
    DatabaseRestore, RestoreProgress,
};
pub use components::{
    overall, run_stages, Component, ComponentResult, ComponentWork, Outcome, Plan,
};
pub use config::{sections, NotifyConfig, NotifyOn};
pub use databases::{back_up_databases, databases_json, databases_status, DatabaseBackup};
pub use drill::{database_drill, recorded_keys_per_db, recorded_row_counts, redis_drill, Drill};
pub use job::{back_up, BackupJob, BackupRun};
pub use lock::{LockError, RunLock};
pub use nightly::{Nightly, ProgressFactory};
pub use notify::{Delivery, Notification, Notifier, NotifyStatus};
pub use pitr::{restore_command, restore_pitr, PitrError, PitrReport, PitrRequest};
pub use report::{
    append_run_log, host_name, report_key, run_id, run_log_key, status_word, ComponentReport,
    RunReport, REPORT_FORMAT_VERSION, REPORT_SIZE_LIMIT,
};
pub use run_config::{
    format_duration, parse_duration, RunConfig, VerifyMode, COMPONENTS, DEFAULT_COMPONENT_TIMEOUT,
    LOCK_FILE_NAME,
};
pub use status::{
    judge, newest_report, prometheus, Found, Verdict, DEFAULT_MAX_AGE, SUCCESS_LOOKBACK,
};
pub use wal::{
    newest_wal, prune_wal, wal_prune_status, ArchivedWal, BaseWal, FetchReport, PushReport,
    PushedAhead, ReplayPlan, Retention, WalArchive, WalError, WalPrune,
};
