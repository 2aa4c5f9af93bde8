//! The error type of `backup-sources`.
//!
//! Policy: every error says what failed and, where there is one, what the operator can do about
//! it (which variable to check, which flag to pass, which package to install). Errors never
//! contain a password: connection errors name host, port, user and database only.

use std::io;

/// Errors from backup sources and restore targets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Connection settings (environment variables, `DATABASE_URL`) are invalid.
    #[error("invalid PostgreSQL connection settings: {0}")]
    Config(String),

    /// The server could not be reached (refused, timed out, unknown host, ...).
    #[error("cannot connect to PostgreSQL at {endpoint}: {reason}; {hint}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
        /// What to check.
        hint: String,
    },

    /// The server refused the credentials.
    #[error("PostgreSQL at {endpoint} refused user {user:?}: {reason}; {hint}")]
    Authentication {
        /// `host:port`.
        endpoint: String,
        /// The user name.
        user: String,
        /// The server's message.
        reason: String,
        /// What to check.
        hint: String,
    },

    /// The database to back up does not exist.
    #[error(
        "database {database:?} does not exist on PostgreSQL at {endpoint}; check POSTGRES_DB (or \
         the database in DATABASE_URL)"
    )]
    NoSuchDatabase {
        /// `host:port`.
        endpoint: String,
        /// The database name.
        database: String,
    },

    /// A query or statement failed.
    #[error("{what} failed: {reason}")]
    Query {
        /// What was being done.
        what: String,
        /// The server's message (with detail and hint).
        reason: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// No suitable `pg_dump` / `pg_restore` / `psql` was found.
    #[error(
        "no usable PostgreSQL client tools (pg_dump, pg_restore, psql) of version {needed_major} \
         or newer: {found}. The server is PostgreSQL {needed_major}, and pg_dump refuses servers \
         newer than itself. Install them with `apt-get install -y postgresql-client-{needed_major}` \
         (from apt.postgresql.org if your distribution lacks that version), or set PG_BIN_DIR to \
         a directory holding them"
    )]
    ToolsNotFound {
        /// The server's major version: the client tools must be at least this.
        needed_major: u32,
        /// What was found where.
        found: String,
    },

    /// A directory given for the client tools does not hold usable ones.
    #[error("the PostgreSQL client tools in {dir} are unusable: {reason}")]
    ToolsUnusable {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },

    /// A helper program could not be started.
    #[error("could not start {tool} ({path}): {source}")]
    Spawn {
        /// The program (`pg_dump`, `psql`, ...).
        tool: &'static str,
        /// Its path.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper program failed.
    #[error("{tool} failed ({status}){}", stderr_suffix(.stderr))]
    ToolFailed {
        /// The program (`pg_dump`, `psql`, ...).
        tool: &'static str,
        /// How it ended, e.g. `exit status 1`.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },

    /// A helper program working against a server failed: the error with the server it talked
    /// to, so that "the server closed the connection" says which server.
    #[error("{source} (server {endpoint}, database {database:?})")]
    AtServer {
        /// `host:port`.
        endpoint: String,
        /// The database.
        database: String,
        /// The program's failure.
        source: Box<SourceError>,
    },

    /// The database to back up has no user tables: most likely the wrong database (with
    /// `POSTGRES_DB` unset, `postgres`).
    #[error(
        "database {database:?} on {endpoint} has no user tables, so its backup would restore \
         nothing: check POSTGRES_DB (unset, it is \"postgres\"), or back it up anyway with \
         --allow-empty (POSTGRES_ALLOW_EMPTY=true)"
    )]
    EmptyDatabase {
        /// `host:port`.
        endpoint: String,
        /// The database.
        database: String,
    },

    /// `--with-globals` asked for the roles of a backup that holds none.
    #[error(
        "backup {backup} holds no roles or tablespaces (it was made by an earlier version or \
         with POSTGRES_GLOBALS=false): restore it without --with-globals, after creating its \
         roles by hand"
    )]
    NoGlobals {
        /// The backup.
        backup: String,
    },

    /// The dump is incomplete or not a dump (missing completion marker, still compressed, ...).
    #[error("{0}")]
    InvalidDump(String),

    /// Reading the backup stream failed (a verification failure arrives this way too).
    #[error("reading the backup stream failed after {bytes} bytes: {source}")]
    Stream {
        /// Bytes read before the error.
        bytes: u64,
        /// The stream's error.
        #[source]
        source: io::Error,
    },

    /// The restore target database does not exist and `create` was not requested.
    #[error(
        "database {database:?} does not exist; pass --create to create it (or choose an existing \
         database with --target-db)"
    )]
    DatabaseMissing {
        /// The database name.
        database: String,
    },

    /// The restore target database has tables and `replace` was not requested.
    #[error(
        "database {database:?} is not empty: it has {tables} tables or views; refusing to restore \
         over it. Pass --replace to restore into a new database that then takes its name (the \
         current one is kept as {database}_before_restore_YYYYMMDD_HHMMSS), or restore into \
         another database with --target-db NAME --create"
    )]
    DatabaseNotEmpty {
        /// The database name.
        database: String,
        /// How many tables and views it has.
        tables: i64,
    },

    /// The database to be replaced has other sessions.
    #[error(
        "database {database:?} is in use by {sessions} other session(s); stop the application \
         using it, or pass --terminate-connections to disconnect them when the restored database \
         is swapped in"
    )]
    DatabaseInUse {
        /// The database name.
        database: String,
        /// How many other sessions are connected to it.
        sessions: i64,
    },

    /// A database name is unusable.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },

    /// A restore failed; says what state the databases were left in.
    #[error("restore into database {database:?} on {server} failed: {error}; {outcome}")]
    Restore {
        /// The target database.
        database: String,
        /// The server (`host:port`).
        server: String,
        /// What failed.
        #[source]
        error: Box<SourceError>,
        /// What was done about it (rolled back, scratch database dropped, ...).
        outcome: String,
    },

    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A WAL file, or the WAL archive, is not what it must be (a name, a header, a size).
    #[error("{0}")]
    Wal(String),

    /// The source was used out of order (e.g. `finish` before `open`).
    #[error("{0}")]
    Usage(&'static str),
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

/// The text of a `tokio_postgres` error: the server's message with detail and hint, or the
/// client-side error with its causes.
pub(crate) fn pg_error_text(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(" (");
            text.push_str(detail);
            text.push(')');
        }
        if let Some(hint) = db.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl SourceError {
    /// A [`SourceError::Query`] for `what`.
    pub(crate) fn query(what: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Query {
            what: what.into(),
            reason: pg_error_text(&source),
            source,
        }
    }

    /// The SQLSTATE of a failed query, if the server sent one.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            Self::Query { source, .. } => source.code().map(|c| c.code()),
            Self::Restore { error, .. } => error.sql_state(),
            _ => None,
        }
    }
}
