//! Restoring every database of a run of several (`restore-database --all`) into a server,
//! after its roles: the way back from "complete database loss" onto a new, empty cluster.
//!
//! 1. The newest backup the selection allows among the database series under the name
//!    prefix is fetched and verified first: its signed manifest names the run it belongs to
//!    and every database of that run ([`ClusterRun`]). Only that authenticated list decides
//!    what is restored (a database dropped from the list long ago, whose last backup retention
//!    keeps, is not brought back).
//! 2. Each database of the run gets the same selection in its own series; one whose newest
//!    backup is older than the run (the run failed for it) is restored from that older
//!    backup, with a note. A database with no backup at all stops everything before anything
//!    is written.
//! 3. Every target is checked first ([`PostgresRestore::preflight`]): a database with tables
//!    is refused without `replace`, for all or none.
//! 4. The roles of the newest backup are applied (`with_globals`), then each database is
//!    fetched, verified and restored (created, owned by its recorded owner), and checked
//!    against its manifest ([`RecoveryReport`]). A database that fails is reported and the
//!    others still restored.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use backup_core::{
    Catalog, CoreError, Destinations, FetchedBackup, Listed, ProgressFn, RestoreRules, Selection,
};
use backup_crypto::Keyring;
use backup_sources::postgres::{
    apply_fetched_globals, database_of_series, series_prefix, ClusterRun, GlobalsReport,
    PostgresConfig, RecoveryReport, RestoreOptions,
};
use backup_sources::SourceError;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct ClusterRestoreRequest {
    /// The configured name prefix (`randevubu`): the series are `{prefix}_{database}`.
    pub name_prefix: String,
    /// [`Selection::Latest`] or [`Selection::Date`] (a run, not one object, is chosen).
    pub selection: Selection,
    /// What may be chosen besides complete backups.
    pub rules: RestoreRules,
    /// Apply the roles and tablespaces first.
    pub with_globals: bool,
    /// Fetch, verify and check every backup; touch no database.
    pub dry_run: bool,
    /// Replace databases that have tables (each kept aside, as a single restore does).
    pub replace: bool,
    /// With `replace`: disconnect other sessions.
    pub terminate_connections: bool,
}

/// Why a cluster restore did not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterRestoreError {
    /// Choosing, fetching or verifying a backup failed.
    #[error(transparent)]
    Backup(#[from] CoreError),
    /// The server refused or failed (a target database with tables, roles that cannot be
    /// created).
    #[error(transparent)]
    Postgres(#[from] SourceError),
    /// What was found cannot be restored as a whole; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

/// One database of a [`ClusterRestoreReport`].
#[derive(Debug, Serialize)]
pub struct DatabaseRestore {
    /// The database.
    pub database: String,
    /// The backup restored (or checked).
    pub backup: String,
    /// When that backup started.
    pub backup_time: DateTime<Utc>,
    /// Set when the backup is older than the run (the run failed for this database).
    pub note: Option<String>,
    /// The recovery report of a restore (`None` for a dry run or a failure).
    pub report: Option<RecoveryReport>,
    /// The restore's own notes (created, replaced, kept aside as ...).
    pub notes: Vec<String>,
    /// Why it failed; the other databases were still restored.
    pub error: Option<String>,
}

/// What [`restore_cluster`] did.
#[derive(Debug, Serialize)]
pub struct ClusterRestoreReport {
    /// The run restored, as its newest backup's manifest records it.
    pub run: ClusterRun,
    /// The roles and tablespaces (`with_globals`).
    pub globals: Option<GlobalsReport>,
    /// Each database of the run, in its order.
    pub databases: Vec<DatabaseRestore>,
    /// Databases with backups under the prefix that are not in the run (not restored).
    pub not_in_run: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// How long it all took.
    pub seconds: f64,
}

impl ClusterRestoreReport {
    /// Whether every database was restored (or checked) and matches its manifest.
    pub fn ok(&self) -> bool {
        self.databases.iter().all(|d| {
            d.error.is_none()
                && d.report
                    .as_ref()
                    .is_none_or(|r| r.matches_backup != Some(false))
        })
    }

    /// Whether at least one database was restored (or checked).
    pub fn any_ok(&self) -> bool {
        self.databases.iter().any(|d| d.error.is_none())
    }

    /// For people: one block per database, then the roles.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "run of {} with {} database(s): {}",
            self.run.started.format("%Y-%m-%d %H:%M:%S UTC"),
            self.run.databases.len(),
            self.run.databases.join(", ")
        )];
        if let Some(globals) = &self.globals {
            out.extend(
                globals
                    .lines(self.dry_run)
                    .into_iter()
                    .map(|l| format!("globals: {l}")),
            );
        }
        for d in &self.databases {
            let verdict = match (&d.error, self.dry_run) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, true) => "verified and complete".to_owned(),
                (None, false) => "restored".to_owned(),
            };
            out.push(format!("database {}: {} ({verdict})", d.database, d.backup));
            out.extend(d.note.iter().map(|n| format!("  {n}")));
            out.extend(d.notes.iter().map(|n| format!("  {n}")));
            if let Some(report) = &d.report {
                out.extend(report.lines().into_iter().map(|l| format!("  {l}")));
            }
        }
        if !self.not_in_run.is_empty() {
            out.push(format!(
                "not restored (backups exist, but not in this run): {}",
                self.not_in_run.join(", ")
            ));
        }
        out
    }
}

/// Makes a progress callback for reading a backup of `size` bytes of `database`.
pub type RestoreProgress<'a> = &'a (dyn Fn(&str, u64) -> Option<ProgressFn> + Sync);

/// The database series under `prefix` in `destinations`, by database.
async fn series(
    destinations: &Destinations,
    prefix: &str,
) -> Result<BTreeMap<String, Catalog>, CoreError> {
    let catalogs = destinations
        .catalogs(backup_core::BackupKind::DATABASE, &|p| {
            database_of_series(prefix, p).is_some()
        })
        .await?;
    Ok(catalogs
        .into_iter()
        .filter_map(|(series, c)| database_of_series(prefix, &series).map(|db| (db, c)))
        .collect())
}

/// Restores (or with `dry_run` checks) every database of the newest run the selection
/// allows: the newest backup is fetched and verified first and its manifest names the run's
/// databases; each one's backup is chosen and every target checked before anything is written;
/// then the roles (`with_globals`) and each database, created, restored and compared with its
/// manifest. Fails before writing anything when the run cannot be restored as a whole; after
/// that, a database that fails is in the report and the others are still restored.
///
/// # Errors
/// No series under the prefix, nothing the selection allows, a database of the run without a
/// backup, a manifest that does not name a run or names another database than its object,
/// a target that is refused, roles that cannot be applied.
pub async fn restore_cluster(
    destinations: &Destinations,
    postgres: &PostgresConfig,
    request: &ClusterRestoreRequest,
    keyring: Option<&Keyring>,
    spool: &Path,
    progress: RestoreProgress<'_>,
) -> Result<ClusterRestoreReport, ClusterRestoreError> {
    let started = Instant::now();
    let prefix = &request.name_prefix;
    let catalogs = series(destinations, prefix).await?;
    if catalogs.is_empty() {
        return Err(ClusterRestoreError::Refused(format!(
            "no backups of several databases (named {prefix}_DATABASE_backup_...) in {}; \
             --all restores what backup-database --all-databases or POSTGRES_DB=a,b made; \
             restore one database without --all",
            destinations.describe()
        )));
    }
    // 1. The newest backup the selection allows, over every series.
    let mut anchor: Option<(&str, &Listed)> = None;
    let mut passed = Vec::new();
    for (db, catalog) in &catalogs {
        match catalog.choose(&request.selection, &request.rules) {
            Ok(listed) => {
                if anchor.is_none_or(|(_, a)| listed.entry.timestamp() > a.entry.timestamp()) {
                    anchor = Some((db, listed));
                }
            }
            Err(e) => passed.push(format!("{db}: {e}")),
        }
    }
    let Some((anchor_db, anchor_listed)) = anchor else {
        return Err(ClusterRestoreError::Refused(format!(
            "no backup to restore: {}",
            passed.join("; ")
        )));
    };
    let anchor_catalog = &catalogs[anchor_db];
    let fetched_anchor = fetch(
        destinations,
        anchor_catalog,
        anchor_listed,
        keyring,
        spool,
        progress,
        anchor_db,
    )
    .await?;
    let run = run_of(&fetched_anchor, anchor_db)?;
    // 2. Each database of the run, chosen before anything is written.
    let mut chosen: Vec<(String, &Catalog, &Listed, Option<String>)> = Vec::new();
    let mut missing = Vec::new();
    for db in &run.databases {
        let Some(catalog) = catalogs.get(db) else {
            missing.push(format!(
                "{db}: no backups (series {})",
                series_prefix(prefix, db)
            ));
            continue;
        };
        let listed = if db == anchor_db {
            anchor_listed
        } else {
            match catalog.choose(&request.selection, &request.rules) {
                Ok(listed) => listed,
                Err(e) => {
                    missing.push(format!("{db}: {e}"));
                    continue;
                }
            }
        };
        let note =
            (listed.entry.timestamp() + chrono::TimeDelta::seconds(1) < run.started).then(|| {
                format!(
                    "this backup is older than the run of {} (that run did not back up {db})",
                    run.started.format("%Y-%m-%d %H:%M:%S UTC")
                )
            });
        chosen.push((db.clone(), catalog, listed, note));
    }
    if !missing.is_empty() {
        return Err(ClusterRestoreError::Refused(format!(
            "the run of {} backed up {} database(s), but not every one can be restored ({}); \
             nothing was restored",
            run.started.format("%Y-%m-%d %H:%M:%S UTC"),
            run.databases.len(),
            missing.join("; ")
        )));
    }
    let not_in_run: Vec<String> = catalogs
        .keys()
        .filter(|db| !run.databases.contains(db))
        .cloned()
        .collect();
    // 3. Every target checked before anything is written.
    let options = |db: &str, owner: Option<String>| RestoreOptions {
        target_db: db.to_owned(),
        create: true,
        replace: request.replace,
        terminate_connections: request.terminate_connections,
        owner,
    };
    if !request.dry_run {
        for (db, ..) in &chosen {
            postgres.restore(options(db, None))?.preflight().await?;
        }
    }
    // 4. Roles, then each database.
    let globals = if request.with_globals {
        let server = postgres.connection.with_dbname("postgres");
        Some(apply_fetched_globals(&fetched_anchor, &server, request.dry_run).await?)
    } else {
        None
    };
    let mut anchor_fetched = Some(fetched_anchor);
    let mut databases = Vec::with_capacity(chosen.len());
    for (db, catalog, listed, note) in chosen {
        let db_started = Instant::now();
        let mut result = DatabaseRestore {
            database: db.clone(),
            backup: listed.entry.key.clone(),
            backup_time: listed.entry.timestamp(),
            note,
            report: None,
            notes: Vec::new(),
            error: None,
        };
        let fetched = if db == anchor_db {
            anchor_fetched.take().ok_or_else(|| {
                ClusterRestoreError::Refused(format!("database {db} is twice in the run"))
            })
        } else {
            fetch(destinations, catalog, listed, keyring, spool, progress, &db)
                .await
                .and_then(|f| run_of(&f, &db).map(|_| f))
        };
        match fetched {
            Err(e) => result.error = Some(e.to_string()),
            Ok(mut fetched) => {
                match restore_one(postgres, &mut fetched, &db, request, &options, progress).await {
                    Ok(notes) => {
                        result.notes = notes;
                        if !request.dry_run {
                            let restored = postgres.connection.with_dbname(&db);
                            let seconds = db_started.elapsed().as_secs_f64();
                            match RecoveryReport::check(&restored, &fetched, seconds, None).await {
                                Ok(report) => result.report = Some(report),
                                Err(e) => result.error = Some(e.to_string()),
                            }
                        }
                    }
                    Err(e) => result.error = Some(e.to_string()),
                }
            }
        }
        if let Some(e) = &result.error {
            tracing::error!("database {db}: {e}");
        }
        databases.push(result);
    }
    Ok(ClusterRestoreReport {
        run,
        globals,
        databases,
        not_in_run,
        dry_run: request.dry_run,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn restore_one(
    postgres: &PostgresConfig,
    fetched: &mut FetchedBackup,
    db: &str,
    request: &ClusterRestoreRequest,
    options: &(dyn Fn(&str, Option<String>) -> RestoreOptions + Sync),
    progress: RestoreProgress<'_>,
) -> Result<Vec<String>, ClusterRestoreError> {
    let size = fetched.entry().size;
    let summary = if request.dry_run {
        let mut check = postgres.dump_check()?;
        fetched.restore_into(&mut check, progress(db, size)).await?
    } else {
        let owner = fetched.manifest().and_then(|m| {
            m.source
                .details
                .get("database_owner")
                .and_then(|o| o.as_str())
                .map(str::to_owned)
        });
        tracing::info!("restoring database {db}");
        let mut target = postgres.restore(options(db, owner))?;
        fetched
            .restore_into(&mut target, progress(db, size))
            .await?
    };
    Ok(summary.notes)
}

async fn fetch(
    destinations: &Destinations,
    catalog: &Catalog,
    listed: &Listed,
    keyring: Option<&Keyring>,
    spool: &Path,
    progress: RestoreProgress<'_>,
    db: &str,
) -> Result<FetchedBackup, ClusterRestoreError> {
    let progress = progress(db, listed.entry.size);
    Ok(destinations
        .fetch(catalog, listed, keyring, spool, progress)
        .await?)
}

/// The run `fetched` (verified) belongs to, which must name the database its series does.
fn run_of(fetched: &FetchedBackup, db: &str) -> Result<ClusterRun, ClusterRestoreError> {
    let key = &fetched.entry().key;
    let manifest = fetched.manifest().ok_or_else(|| {
        ClusterRestoreError::Refused(format!(
            "{key} has no manifest, so the databases of its run are not known; restore it on \
             its own with --file"
        ))
    })?;
    if manifest.source.database.as_deref() != Some(db) {
        return Err(ClusterRestoreError::Refused(format!(
            "{key} is named for database {db:?} but its manifest says {:?}; refusing it",
            manifest.source.database
        )));
    }
    let run = ClusterRun::of_manifest(manifest).ok_or_else(|| {
        ClusterRestoreError::Refused(format!(
            "the manifest of {key} does not record the run of several databases it belongs \
             to; restore it on its own with --database {db}"
        ))
    })?;
    if !run.databases.iter().any(|d| d == db) {
        return Err(ClusterRestoreError::Refused(format!(
            "the manifest of {key} records a run without database {db:?}; refusing it"
        )));
    }
    Ok(run)
}
