//! Several databases of one server in one run (`POSTGRES_DB=a,b,c`, `--all-databases`).
//!
//! Each database is backed up as its own object, in a series of its own whose name carries the
//! database: `{prefix}_{database}_backup_{timestamp}...` ([`series_prefix`]); one database
//! named alone keeps the old name `{prefix}_backup_...`. Every backup of the run records the
//! run ([`ClusterRun`]: when it started and which databases it backed up) in its manifest, and
//! carries the same capture of the cluster's roles, so each one restores on its own and a
//! restore of the whole cluster knows which databases belonged together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::PostgresConfig;
use super::connection::PgConnection;
use super::globals::{capture, CapturedGlobals};
use super::tools::discover_async;
use crate::error::SourceError;

/// The manifest field (in the source facts) that records the run a backup belongs to.
pub const CLUSTER_RUN_FACT: &str = "cluster_run";

/// Which databases a backup run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSelection {
    /// One database (`POSTGRES_DB=app`): the old object names.
    One(String),
    /// These databases (`POSTGRES_DB=a,b,c`), in this order; names carry the database.
    Several(Vec<String>),
    /// Every database of the server that accepts connections, templates excluded
    /// (`--all-databases`, `POSTGRES_ALL_DATABASES`); names always carry the database, so a
    /// series keeps its name when databases are added.
    All,
}

impl DatabaseSelection {
    /// From `POSTGRES_DB` (names separated by commas) and the all-databases switch.
    ///
    /// # Errors
    /// [`SourceError::Config`] for an empty name in the list (`a,,b`) or a name given twice.
    pub fn parse(postgres_db: &str, all: bool) -> Result<Self, SourceError> {
        if all {
            return Ok(Self::All);
        }
        if !postgres_db.contains(',') {
            return Ok(Self::One(postgres_db.to_owned()));
        }
        let mut names: Vec<String> = Vec::new();
        for name in postgres_db.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(SourceError::Config(format!(
                    "POSTGRES_DB {postgres_db:?} has an empty name in its list; write the \
                     databases separated by commas, e.g. app,billing"
                )));
            }
            if names.iter().any(|n| n == name) {
                return Err(SourceError::Config(format!(
                    "POSTGRES_DB names database {name:?} twice"
                )));
            }
            names.push(name.to_owned());
        }
        Ok(if names.len() == 1 {
            Self::One(names.remove(0))
        } else {
            Self::Several(names)
        })
    }

    /// Whether object names carry the database (every case but [`One`](Self::One)).
    pub fn names_carry_database(&self) -> bool {
        !matches!(self, Self::One(_))
    }
}

/// The series (object name prefix) of `database`'s backups in a run of several databases:
/// `{prefix}_{database}`, where the database name keeps ASCII letters, digits, `.`, `-` and
/// `_` and writes every other byte as `~HH` (so names stay safe in every S3 tool and URL).
pub fn series_prefix(prefix: &str, database: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + database.len());
    out.push_str(prefix);
    out.push('_');
    for b in database.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}

/// The database of a series made by [`series_prefix`] with `prefix`, or `None` when `series`
/// is not one (another prefix, the single-database series itself, or a bad encoding).
pub fn database_of_series(prefix: &str, series: &str) -> Option<String> {
    let encoded = series.strip_prefix(prefix)?.strip_prefix('_')?;
    if encoded.is_empty() {
        return None;
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'~' => {
                let hex = encoded.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_hexdigit() && !h.is_ascii_lowercase())
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(out).ok()?;
    // Only the canonical spelling: one database, one series.
    (series_prefix(prefix, &name) == series).then_some(name)
}

/// What a run of several databases records in each of its backups' manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRun {
    /// When the run started (UTC); the same in every backup of the run.
    pub started: DateTime<Utc>,
    /// Every database the run backs up, in order.
    pub databases: Vec<String>,
}

impl ClusterRun {
    /// The run recorded in a manifest's source facts, if it has one.
    pub fn of_manifest(manifest: &backup_core::Manifest) -> Option<Self> {
        let value = manifest.source.details.get(CLUSTER_RUN_FACT)?;
        serde_json::from_value(value.clone()).ok()
    }
}

/// The databases a run backs up, and those `--all-databases` leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDatabases {
    /// To back up, in order.
    pub databases: Vec<String>,
    /// Found by `--all-databases` without user tables, left out (with `allow_empty` none
    /// is); a database named in `POSTGRES_DB` is never left out (an empty one fails).
    pub skipped_empty: Vec<String>,
}

/// The databases of a server that a backup of all would cover: not templates, accepting
/// connections, in name order, each with its number of user tables.
///
/// # Errors
/// When the server cannot be reached or a database cannot be read.
pub async fn list_databases(conn: &PgConnection) -> Result<Vec<(String, u64)>, SourceError> {
    let client = conn.connect().await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn \
             ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| SourceError::query("listing the databases", e))?;
    drop(client);
    let count = format!("SELECT count(*) FROM ({}) t", super::rows::TABLES);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let client = conn.with_dbname(&name).connect().await?;
        let tables: i64 = client
            .query_one(&count, &[])
            .await
            .map_err(|e| SourceError::query(format!("counting the tables of {name:?}"), e))?
            .get(0);
        out.push((name, u64::try_from(tables).unwrap_or(0)));
    }
    Ok(out)
}

/// The databases `config` selects, asking the server for [`DatabaseSelection::All`].
///
/// # Errors
/// As [`list_databases`]; [`SourceError::Config`] when `--all-databases` finds no database
/// with user tables (and `allow_empty` is off).
pub async fn resolve_databases(config: &PostgresConfig) -> Result<ResolvedDatabases, SourceError> {
    match &config.databases {
        DatabaseSelection::One(db) => Ok(ResolvedDatabases {
            databases: vec![db.clone()],
            skipped_empty: Vec::new(),
        }),
        DatabaseSelection::Several(dbs) => Ok(ResolvedDatabases {
            databases: dbs.clone(),
            skipped_empty: Vec::new(),
        }),
        DatabaseSelection::All => {
            let mut resolved = ResolvedDatabases {
                databases: Vec::new(),
                skipped_empty: Vec::new(),
            };
            for (name, tables) in list_databases(&config.connection).await? {
                if tables == 0 && !config.allow_empty {
                    resolved.skipped_empty.push(name);
                } else {
                    resolved.databases.push(name);
                }
            }
            if resolved.databases.is_empty() {
                return Err(SourceError::Config(format!(
                    "--all-databases found no database with user tables on {} (left out as \
                     empty: {}); back them up anyway with --allow-empty",
                    config.connection.endpoint(),
                    resolved.skipped_empty.join(", ")
                )));
            }
            Ok(resolved)
        }
    }
}

/// Captures the cluster's roles and tablespaces once for a run of several databases (each
/// backup embeds this same capture), with the configured tools or those that match the
/// server.
///
/// # Errors
/// As [`capture`](super::capture_globals), and when the server cannot be reached.
pub async fn capture_cluster_globals(
    config: &PostgresConfig,
) -> Result<CapturedGlobals, SourceError> {
    let client = config.connection.connect().await?;
    let major: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| SourceError::query("reading the server version", e))?
        .get(0);
    drop(client);
    let tools = match config.tools()? {
        Some(tools) => tools,
        None => discover_async(u32::try_from(major / 10_000).unwrap_or(0)).await?,
    };
    capture(&tools, &config.connection, config.role_passwords).await
}

/// One database of a [`DatabaseRunPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDatabase {
    /// The database.
    pub database: String,
    /// The name prefix of its objects: the configured one for a single database, else
    /// [`series_prefix`].
    pub name_prefix: String,
}

/// A database backup run, ready to go: the databases (resolved with the server for
/// `--all-databases`), the name prefix of each, the run record every manifest gets, and the
/// cluster's roles, captured once for all of them.
pub struct DatabaseRunPlan {
    /// The run as manifests record it; `None` for a single database (the old names).
    pub run: Option<ClusterRun>,
    /// The databases, in order.
    pub databases: Vec<PlannedDatabase>,
    /// Left out by `--all-databases` as empty.
    pub skipped_empty: Vec<String>,
    globals: Option<CapturedGlobals>,
}

impl std::fmt::Debug for DatabaseRunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseRunPlan")
            .field("run", &self.run)
            .field("databases", &self.databases)
            .field("skipped_empty", &self.skipped_empty)
            .field("globals_captured", &self.globals.is_some())
            .finish()
    }
}

impl DatabaseRunPlan {
    /// Resolves the databases `config` selects and, when there are several and globals are
    /// configured, captures the roles once (a single database's source captures its own).
    ///
    /// # Errors
    /// As [`resolve_databases`] and [`capture_cluster_globals`].
    pub async fn prepare(config: &PostgresConfig, name_prefix: &str) -> Result<Self, SourceError> {
        let resolved = resolve_databases(config).await?;
        if !config.databases.names_carry_database() {
            return Ok(Self {
                run: None,
                databases: resolved
                    .databases
                    .into_iter()
                    .map(|database| PlannedDatabase {
                        database,
                        name_prefix: name_prefix.to_owned(),
                    })
                    .collect(),
                skipped_empty: resolved.skipped_empty,
                globals: None,
            });
        }
        let globals = if config.globals {
            Some(capture_cluster_globals(config).await?)
        } else {
            None
        };
        Ok(Self {
            run: Some(ClusterRun {
                started: Utc::now(),
                databases: resolved.databases.clone(),
            }),
            databases: resolved
                .databases
                .into_iter()
                .map(|database| PlannedDatabase {
                    name_prefix: series_prefix(name_prefix, &database),
                    database,
                })
                .collect(),
            skipped_empty: resolved.skipped_empty,
            globals,
        })
    }

    /// The source of one planned database: `config`'s settings on that database, with the
    /// run's roles and record.
    ///
    /// # Errors
    /// As [`PostgresConfig::source`].
    pub fn source(
        &self,
        config: &PostgresConfig,
        database: &PlannedDatabase,
        format: super::DumpFormat,
    ) -> Result<super::PostgresSource, SourceError> {
        let config = PostgresConfig {
            connection: config.connection.with_dbname(&database.database),
            ..config.clone()
        };
        let mut source = config.source(format)?;
        if let Some(globals) = &self.globals {
            source = source.with_captured_globals(globals.clone());
        }
        if let Some(run) = &self.run {
            source = source.in_cluster_run(run.clone());
        }
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse() {
        assert_eq!(
            DatabaseSelection::parse("app", false).unwrap(),
            DatabaseSelection::One("app".into())
        );
        assert_eq!(
            DatabaseSelection::parse("app, billing", false).unwrap(),
            DatabaseSelection::Several(vec!["app".into(), "billing".into()])
        );
        assert!(DatabaseSelection::parse("app,", false)
            .unwrap_err()
            .to_string()
            .contains("empty name"));
        assert!(DatabaseSelection::parse("a,b,a", false)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert_eq!(
            DatabaseSelection::parse("app", true).unwrap(),
            DatabaseSelection::All
        );
        assert!(!DatabaseSelection::One("x".into()).names_carry_database());
        assert!(DatabaseSelection::All.names_carry_database());
    }

    #[test]
    fn series_names_round_trip_and_stay_safe() {
        for db in [
            "app",
            "billing_2024",
            "My DB",
            "a/b",
            "x~y",
            "zürich",
            "a_backup_b",
        ] {
            let series = series_prefix("randevubu", db);
            assert!(
                series
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b)),
                "{series}"
            );
            assert_eq!(
                database_of_series("randevubu", &series).as_deref(),
                Some(db)
            );
        }
        assert_eq!(series_prefix("randevubu", "app"), "randevubu_app");
        assert_eq!(series_prefix("p", "My DB"), "p_My~20DB");
        assert_eq!(database_of_series("randevubu", "randevubu"), None);
        assert_eq!(database_of_series("randevubu", "other_app"), None);
        assert_eq!(database_of_series("randevubu", "randevubu_"), None);
        assert_eq!(database_of_series("randevubu", "randevubu_a~2"), None);
        assert_eq!(database_of_series("randevubu", "randevubu_a~2f"), None);
        assert_eq!(database_of_series("randevubu", "randevubu_a b"), None);
        // "~41" is "A", which is written plainly: not the canonical spelling.
        assert_eq!(database_of_series("randevubu", "randevubu_~41"), None);
    }
}
