//! The PostgreSQL component's configuration (`[postgres]`, `POSTGRES_*`, `DATABASE_URL`,
//! `PG_BIN_DIR`).

use std::path::PathBuf;

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::CoreError;

use super::check::PgDumpCheck;
use super::cluster::DatabaseSelection;
use super::connection::PgConnection;
use super::dump::{DumpFormat, PostgresSource};
use super::restore::{PostgresRestore, RestoreOptions};
use super::tools::PgTools;
use crate::error::SourceError;

/// Where the database is and which client tools to use (`[postgres]`).
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The connection (password environment-only). With several databases it names the
    /// first; with all of them, the database the list is read from.
    pub connection: PgConnection,
    /// Which databases a backup covers (`POSTGRES_DB`, a comma-separated list, or
    /// `POSTGRES_ALL_DATABASES`).
    pub databases: DatabaseSelection,
    /// The directory of `pg_dump`, `pg_restore` and `psql` (`PG_BIN_DIR`); `None`: the newest
    /// `/usr/lib/postgresql/*/bin`, else `PATH`, at least the server's major version.
    pub bin_dir: Option<PathBuf>,
    /// Back up a database without user tables too (`POSTGRES_ALLOW_EMPTY`); by default such
    /// a backup fails ([`SourceError::EmptyDatabase`]).
    pub allow_empty: bool,
    /// Capture the cluster's roles and tablespaces with each backup (`POSTGRES_GLOBALS`,
    /// default on; see [`PostgresSource::with_globals`]).
    pub globals: bool,
    /// With them the roles' passwords (as stored hashes; `POSTGRES_ROLE_PASSWORDS`, default
    /// on; a server that refuses to show them gets a warning, not a failure).
    pub role_passwords: bool,
}

impl PostgresConfig {
    /// The defaults for the database `connection` names: tools discovered, empty databases
    /// refused, roles captured with their passwords. Set the public fields for the rest.
    pub fn new(connection: PgConnection) -> Self {
        Self {
            databases: DatabaseSelection::One(connection.dbname().to_owned()),
            connection,
            bin_dir: None,
            allow_empty: false,
            globals: true,
            role_passwords: true,
        }
    }

    /// The tools in [`bin_dir`](Self::bin_dir), checked by running `pg_dump --version`, for
    /// the sources' and targets' `with_tools`; `None` when they are to be discovered.
    ///
    /// # Errors
    /// [`SourceError::ToolsUnusable`] when a tool is missing there or does not run.
    pub fn tools(&self) -> Result<Option<PgTools>, SourceError> {
        self.bin_dir.as_ref().map(PgTools::in_dir).transpose()
    }

    /// A backup source for this server, with the configured tools.
    ///
    /// # Errors
    /// As [`tools`](Self::tools).
    pub fn source(&self, format: DumpFormat) -> Result<PostgresSource, SourceError> {
        let mut source =
            PostgresSource::new(self.connection.clone(), format).allowing_empty(self.allow_empty);
        if self.globals {
            source = source.with_globals(self.role_passwords);
        }
        Ok(match self.tools()? {
            Some(tools) => source.with_tools(tools),
            None => source,
        })
    }

    /// A restore into this server, with the configured tools.
    ///
    /// # Errors
    /// As [`tools`](Self::tools).
    pub fn restore(&self, options: RestoreOptions) -> Result<PostgresRestore, SourceError> {
        let restore = PostgresRestore::new(self.connection.clone(), options);
        Ok(match self.tools()? {
            Some(tools) => restore.with_tools(tools),
            None => restore,
        })
    }

    /// The same settings for the databases `postgres_db` names (one, or several separated by
    /// commas), as `--database` gives them; all of them stays all of them.
    ///
    /// # Errors
    /// As [`DatabaseSelection::parse`].
    pub fn selecting(&self, postgres_db: &str) -> Result<Self, SourceError> {
        let all = self.databases == DatabaseSelection::All;
        let databases = DatabaseSelection::parse(postgres_db, all)?;
        let connection = if all {
            self.connection.clone()
        } else {
            connection_for(&databases, self.connection.clone())
        };
        Ok(Self {
            connection,
            databases,
            ..self.clone()
        })
    }

    /// A dry-run check of a dump, with the configured tools (for custom archives).
    ///
    /// # Errors
    /// As [`tools`](Self::tools).
    pub fn dump_check(&self) -> Result<PgDumpCheck, SourceError> {
        let check = PgDumpCheck::new();
        Ok(match self.tools()? {
            Some(tools) => check.with_tools(tools),
            None => check,
        })
    }
}

const POSTGRES: &[Setting] = &[
    Setting::new(
        "DATABASE_URL",
        "url",
        "postgres://user:pass@host:port/db, instead of the settings below",
    )
    .secret(),
    Setting::new("POSTGRES_HOST", "host", "host, or a Unix-socket directory").default("localhost"),
    Setting::new("POSTGRES_PORT", "port", "port").default("5432"),
    Setting::new("POSTGRES_USER", "user", "user").default("postgres"),
    Setting::new(
        "POSTGRES_DB",
        "database",
        "database to back up or restore; several separated by commas (app,billing): each is \
         backed up as its own object named {prefix}_{database}_backup_...",
    )
    .default("postgres"),
    Setting::new(
        "POSTGRES_ALL_DATABASES",
        "all_databases",
        "back up every database of the server (templates and databases without user tables \
         left out), each as its own object; POSTGRES_DB is then only where the list is read",
    )
    .default("false"),
    Setting::new("POSTGRES_PASSWORD", "password", "password").secret(),
    Setting::new(
        "POSTGRES_ALLOW_EMPTY",
        "allow_empty",
        "back up a database without user tables too (by default that fails: it is most \
         likely the wrong database)",
    )
    .default("false"),
    Setting::new(
        "POSTGRES_GLOBALS",
        "globals",
        "capture the cluster's roles and tablespaces (pg_dumpall --globals-only) with each \
         backup, for restore-database --with-globals",
    )
    .default("true"),
    Setting::new(
        "POSTGRES_ROLE_PASSWORDS",
        "role_passwords",
        "capture the roles' password hashes with them (off: --no-role-passwords)",
    )
    .default("true"),
    Setting::new(
        "PG_BIN_DIR",
        "bin_dir",
        "directory of pg_dump, pg_restore and psql (default: the newest \
         /usr/lib/postgresql/*/bin, else PATH)",
    ),
];

impl Component for PostgresConfig {
    const SECTION: Section = Section {
        table: "postgres",
        about: "the PostgreSQL server (password: POSTGRES_PASSWORD or DATABASE_URL, environment \
                only)",
        settings: POSTGRES,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let connection = PgConnection::from_env_map(&config.lookup())
            .map_err(|e| CoreError::Config(e.to_string()))?;
        let all = config.bool("POSTGRES_ALL_DATABASES")?.unwrap_or(false);
        let databases = DatabaseSelection::parse(connection.dbname(), all)
            .map_err(|e| CoreError::Config(e.to_string()))?;
        let connection = connection_for(&databases, connection);
        Ok(Self {
            connection,
            databases,
            bin_dir: config.path("PG_BIN_DIR"),
            allow_empty: config.bool("POSTGRES_ALLOW_EMPTY")?.unwrap_or(false),
            globals: config.bool("POSTGRES_GLOBALS")?.unwrap_or(true),
            role_passwords: config.bool("POSTGRES_ROLE_PASSWORDS")?.unwrap_or(true),
        })
    }
}

/// The connection a selection works through: the one database, the first of several, or for
/// all of them the configured database (`postgres` when that is a list).
fn connection_for(databases: &DatabaseSelection, connection: PgConnection) -> PgConnection {
    match databases {
        DatabaseSelection::One(db) => connection.with_dbname(db),
        DatabaseSelection::Several(dbs) => match dbs.first() {
            Some(first) => connection.with_dbname(first),
            None => connection,
        },
        DatabaseSelection::All if connection.dbname().contains(',') => {
            connection.with_dbname("postgres")
        }
        DatabaseSelection::All => connection,
    }
}
