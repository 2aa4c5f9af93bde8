//! The restore drill (`--drill`): the backup just made is restored, not only read. A database
//! backup goes into a scratch database `<db>_drill_YYYYMMDD_HHMMSS` (dropped afterwards,
//! whatever happened), whose tables must hold the rows counted in the dump's own snapshot; a
//! Redis backup is parsed to its end and must hold the keys per database its manifest
//! recorded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use backup_core::catalog::entry_for_key;
use backup_core::{restore_backup_via, BackupKind, Destinations, Manifest};
use backup_crypto::Keyring;
use backup_sources::postgres::{
    compare_row_counts, derived_db_name, quote_ident, row_counts, PostgresConfig, RestoreOptions,
};
use backup_sources::redis::RdbCheck;
use serde::{Deserialize, Serialize};

use crate::job::BackupRun;

/// What a drill found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    /// The destination the backup was restored from.
    pub destination: String,
    /// The object restored.
    pub object: String,
    /// The scratch database (database drills).
    pub scratch_database: Option<String>,
    /// Whether everything matched.
    pub ok: bool,
    /// Tables (database) or databases (Redis) compared.
    pub compared: usize,
    /// Rows (database) or keys (Redis) found after the restore.
    pub found: u64,
    /// What did not match, one line each.
    pub differences: Vec<String>,
    /// Why the drill could not be done (restore failed, nothing recorded).
    pub error: Option<String>,
    /// How long it took, seconds.
    pub elapsed_seconds: f64,
}

impl Drill {
    fn new(destination: &str, object: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            object: object.to_owned(),
            scratch_database: None,
            ok: false,
            compared: 0,
            found: 0,
            differences: Vec::new(),
            error: None,
            elapsed_seconds: 0.0,
        }
    }

    /// One line: what failed, or what matched.
    pub fn summary(&self) -> String {
        match (&self.error, self.differences.is_empty()) {
            (Some(e), _) => format!("restore drill failed: {e}"),
            (None, false) => format!(
                "restore drill: the restored data differ from the backup's record: {}",
                self.differences.join("; ")
            ),
            (None, true) => format!(
                "restore drill passed: {} found in {} compared",
                self.found, self.compared
            ),
        }
    }
}

/// The row counts a database backup's manifest recorded (`table_rows`).
pub fn recorded_row_counts(manifest: &Manifest) -> Option<BTreeMap<String, u64>> {
    serde_json::from_value(manifest.source.details.get("table_rows")?.clone()).ok()
}

/// The keys per database a Redis backup's manifest recorded (`keys_per_db`).
pub fn recorded_keys_per_db(manifest: &Manifest) -> Option<BTreeMap<u64, u64>> {
    let recorded: BTreeMap<String, u64> =
        serde_json::from_value(manifest.source.details.get("keys_per_db")?.clone()).ok()?;
    recorded
        .into_iter()
        .map(|(db, n)| Some((db.parse().ok()?, n)))
        .collect()
}

/// Restores `run`'s database backup (from the first destination where it committed) into a
/// scratch database, counts every table's rows there and compares them with `recorded`; the
/// scratch database is dropped afterwards. The result is stored in `run` (a failed drill fails
/// the component).
pub async fn database_drill(
    run: &mut BackupRun,
    destinations: &Destinations,
    postgres: &PostgresConfig,
    keyring: &Keyring,
    spool: &Path,
    recorded: Option<BTreeMap<String, u64>>,
) {
    let started = Instant::now();
    let Some((destination, key)) = committed(run) else {
        return;
    };
    for left in drop_leftover_drills(postgres).await {
        run.warnings.push(left);
    }
    let mut drill = Drill::new(&destination, &key);
    let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
    let scratch = derived_db_name(postgres.connection.dbname(), "drill", &stamp, 0);
    drill.scratch_database = Some(scratch.clone());
    // Dropped even when the drill is cancelled half-way (the component's timeout).
    let mut guard = ScratchGuard {
        postgres: postgres.clone(),
        name: scratch.clone(),
        armed: true,
    };
    let outcome = async {
        let recorded = recorded
            .ok_or("the backup recorded no row counts to compare with (made without the drill)")?;
        let sink = destinations
            .iter()
            .find(|d| d.name() == destination)
            .map(|d| d.sink())
            .ok_or("the destination is gone")?;
        let entry = entry_for_key(sink, BackupKind::DATABASE, &key)
            .await
            .map_err(|e| e.to_string())?;
        let mut target = postgres
            .restore(RestoreOptions::into_database(&scratch).creating())
            .map_err(|e| e.to_string())?;
        tracing::info!("database: restore drill into {scratch}");
        restore_backup_via(sink, &entry, Some(keyring), &mut target, None, spool)
            .await
            .map_err(|e| format!("restoring into {scratch}: {e}"))?;
        let client = postgres
            .connection
            .with_dbname(&scratch)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let found = row_counts(&client).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((recorded, found))
    }
    .await;
    match outcome {
        Ok((recorded, found)) => {
            drill.compared = recorded.len();
            drill.found = found.values().sum();
            drill.differences = compare_row_counts(&recorded, &found);
            drill.ok = drill.differences.is_empty();
        }
        Err(e) => drill.error = Some(e),
    }
    guard.armed = false;
    if let Err(e) = drop_database(postgres, &scratch).await {
        tracing::warn!("database: could not drop the drill database {scratch}: {e}; drop it");
        run.warnings.push(format!(
            "the drill database {scratch} could not be dropped: {e}"
        ));
    }
    finish(run, drill, started, "database");
}

/// Parses `run`'s Redis backup to its end (from the first destination where it committed) and
/// compares its keys per database with `recorded`. The result is stored in `run`.
pub async fn redis_drill(
    run: &mut BackupRun,
    destinations: &Destinations,
    keyring: &Keyring,
    spool: &Path,
    recorded: Option<BTreeMap<u64, u64>>,
    parse_memory: Option<u64>,
) {
    let started = Instant::now();
    let Some((destination, key)) = committed(run) else {
        return;
    };
    let mut drill = Drill::new(&destination, &key);
    let outcome = async {
        let recorded = recorded.ok_or("the backup recorded no key counts to compare with")?;
        let sink = destinations
            .iter()
            .find(|d| d.name() == destination)
            .map(|d| d.sink())
            .ok_or("the destination is gone")?;
        let entry = entry_for_key(sink, BackupKind::REDIS, &key)
            .await
            .map_err(|e| e.to_string())?;
        let mut check = RdbCheck {
            summary: None,
            parse_memory,
        };
        restore_backup_via(sink, &entry, Some(keyring), &mut check, None, spool)
            .await
            .map_err(|e| e.to_string())?;
        let found = check.summary.map(|s| s.keys_per_db).unwrap_or_default();
        Ok::<_, String>((recorded, found))
    }
    .await;
    match outcome {
        Ok((recorded, found)) => {
            drill.compared = recorded.len().max(found.len());
            drill.found = found.values().sum();
            for db in recorded
                .keys()
                .chain(found.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (want, got) = (
                    recorded.get(db).copied().unwrap_or(0),
                    found.get(db).copied().unwrap_or(0),
                );
                if want != got {
                    drill
                        .differences
                        .push(format!("db{db}: {got} keys in the backup, {want} recorded"));
                }
            }
            drill.ok = drill.differences.is_empty();
        }
        Err(e) => drill.error = Some(e),
    }
    finish(run, drill, started, "redis");
}

fn committed(run: &BackupRun) -> Option<(String, String)> {
    run.results.iter().find_map(|(name, r)| {
        r.result
            .as_ref()
            .ok()
            .map(|b| (name.clone(), b.key.clone()))
    })
}

fn finish(run: &mut BackupRun, mut drill: Drill, started: Instant, component: &str) {
    drill.elapsed_seconds = started.elapsed().as_secs_f64();
    if drill.ok {
        tracing::info!("{component}: {}", drill.summary());
    } else {
        tracing::error!("{component}: {}", drill.summary());
    }
    run.drill = Some(Box::new(drill));
}

/// Whether `name` is a drill database of `db`: `<db>_drill_YYYYMMDD_HHMMSS` (or the shortened
/// form [`derived_db_name`] makes for long names, with a `_N` suffix).
fn is_drill_of(name: &str, db: &str) -> bool {
    let stamp_of = |name: &str| -> bool {
        name.len() == 15
            && name
                .char_indices()
                .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() })
    };
    (0..4).any(|n| {
        let example = derived_db_name(db, "drill", "00000000_000000", n);
        let prefix_len =
            example.len() - "_drill_00000000_000000".len() - if n == 0 { 0 } else { 2 };
        name.len() == example.len()
            && name.starts_with(&example[..prefix_len])
            && name[prefix_len..].starts_with("_drill_")
            && stamp_of(&name[prefix_len + 7..prefix_len + 22])
            && (n == 0 || name[prefix_len + 22..] == example[prefix_len + 22..])
    })
}

/// Drops the drill databases an interrupted run left behind (killed before it could drop its
/// own); the run's lock keeps other drills of this configuration away. Returns a warning per
/// database dropped, or that could not be.
async fn drop_leftover_drills(postgres: &PostgresConfig) -> Vec<String> {
    let db = postgres.connection.dbname().to_owned();
    let names: Vec<String> = match postgres.connection.connect().await {
        Ok(client) => match client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE '%\\_drill\\_%'",
                &[],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
            Err(_) => return Vec::new(),
        },
        Err(_) => return Vec::new(),
    };
    let mut warnings = Vec::new();
    for name in names.into_iter().filter(|n| is_drill_of(n, &db)) {
        tracing::warn!("database: dropping {name}, left behind by an interrupted drill");
        warnings.push(match drop_database(postgres, &name).await {
            Ok(()) => format!("dropped {name}, left behind by an interrupted drill"),
            Err(e) => {
                format!("{name}, left behind by an interrupted drill, could not be dropped: {e}")
            }
        });
    }
    warnings
}

/// Drops the scratch database in the background if the drill is dropped before it could.
struct ScratchGuard {
    postgres: PostgresConfig,
    name: String,
    armed: bool,
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (postgres, name) = (self.postgres.clone(), std::mem::take(&mut self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::warn!("the drill was stopped; dropping its database {name}");
            runtime.spawn(async move {
                if let Err(e) = drop_database(&postgres, &name).await {
                    tracing::warn!("could not drop the drill database {name}: {e}; drop it");
                }
            });
        }
    }
}

/// Drops `name`, waiting for the sessions of the drill to go (they end as their clients are
/// dropped).
async fn drop_database(postgres: &PostgresConfig, name: &str) -> Result<(), String> {
    let client = postgres
        .connection
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(name));
    let mut last = String::new();
    for _ in 0..50 {
        match client.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            // 55006: other sessions are still using it.
            Err(e) if e.code().map(|c| c.code()) == Some("55006") => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_drill_makes_count_as_leftovers() {
        assert!(is_drill_of("randevubu_drill_20261126_020000", "randevubu"));
        assert!(!is_drill_of("randevubu_drill_20261126_02000", "randevubu"));
        assert!(!is_drill_of("randevubu_drill_2026112x_020000", "randevubu"));
        assert!(!is_drill_of("other_drill_20261126_020000", "randevubu"));
        assert!(!is_drill_of(
            "randevubu_drill_20261126_020000_keep",
            "randevubu"
        ));
        assert!(!is_drill_of(
            "randevubu_restore_20261126_020000",
            "randevubu"
        ));
        assert!(!is_drill_of("randevubu", "randevubu"));
        let long = "a".repeat(60);
        let made = derived_db_name(&long, "drill", "20261126_020000", 0);
        assert!(is_drill_of(&made, &long), "{made}");
        let second = derived_db_name("randevubu", "drill", "20261126_020000", 2);
        assert!(is_drill_of(&second, "randevubu"), "{second}");
    }
}
