//! PostgreSQL: backups with `pg_dump`, restores with `psql` (and `pg_restore` for custom
//! archives) in one transaction, dry-run checks.
//!
//! Connection settings come from the old scripts' environment variables or `DATABASE_URL`
//! ([`PgConnection`]) and reach the child processes through their environment only, never
//! their arguments. Client tools are found by [`PgTools::discover`], which insists on a
//! version at least as new as the server's.

mod apply;
mod check;
mod cluster;
mod config;
mod connection;
mod dump;
mod globals;
mod physical;
mod pitr;
mod report;
mod restore;
mod restrict;
mod rows;
mod tools;

pub use apply::{pg_restore_args, psql_args};
pub use check::PgDumpCheck;
pub use cluster::{
    capture_cluster_globals, database_of_series, list_databases, resolve_databases, series_prefix,
    ClusterRun, DatabaseRunPlan, DatabaseSelection, PlannedDatabase, ResolvedDatabases,
    CLUSTER_RUN_FACT,
};
pub use config::PostgresConfig;
pub use connection::{PgConnection, APPLICATION_NAME, CONNECT_TIMEOUT_SECS};
pub use dump::{pg_dump_args, DumpFormat, PostgresSource};
pub use globals::{
    apply as apply_globals, apply_fetched as apply_fetched_globals, capture as capture_globals,
    plan as plan_globals, CapturedGlobals, GlobalsReport, GLOBALS_ATTACHMENT, MAX_GLOBALS_BYTES,
};
pub use physical::{
    pg_basebackup_args, ArchiverStatus, BackupPositions, PhysicalSource, ServerArchiving,
    DEFAULT_ARCHIVE_WAIT, PHYSICAL_SOURCE_TYPE,
};
pub use pitr::{DataDirectory, PitrTarget, RecoveryOutcome};
pub use report::RecoveryReport;
pub use restore::{
    derived_db_name, quote_ident, validate_db_name, PostgresRestore, RestoreOptions, ASIDE_INFIX,
    MAX_DB_NAME_BYTES, SCRATCH_INFIX,
};
pub use rows::{compare_row_counts, row_counts};
pub use tools::{PgTools, DEBIAN_ROOT};

/// The comment `pg_dump` writes at the end of a complete plain dump (and `pg_restore` at the
/// end of the SQL it makes from an archive). A dump without it is truncated.
pub const DUMP_COMPLETE_MARKER: &str = "-- PostgreSQL database dump complete";

/// The first bytes of a `pg_dump` custom-format archive.
pub const CUSTOM_MAGIC: &[u8] = b"PGDMP";
