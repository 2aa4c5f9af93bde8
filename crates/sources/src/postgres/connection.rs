//! Connection settings: from the environment (the old scripts' variables) or `DATABASE_URL`,
//! handed to child processes through their environment only.

use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use tokio::process::Command;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use crate::error::{pg_error_text, SourceError};

/// Seconds a connection attempt may take (`PGCONNECT_TIMEOUT` for the tools too).
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

/// `application_name` of our sessions, so DBAs can see them in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "backup";

/// Environment variables that would change where a child process connects or as whom; removed
/// from the inherited environment before ours are set.
const CONNECTION_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
];

/// Where and as whom to connect to PostgreSQL.
///
/// The password is kept in memory that is zeroed on drop, is never printed by `Debug`, and
/// reaches child processes (`pg_dump`, `psql`) only through their environment (`PGPASSWORD`),
/// never their arguments. Connections are made without TLS for now (`NoTls`); TLS support is
/// a later addition.
#[derive(Clone)]
pub struct PgConnection {
    host: String,
    port: u16,
    user: String,
    password: Option<Zeroizing<String>>,
    dbname: String,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_some() {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .field("dbname", &self.dbname)
            .finish()
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn decode(part: &str, what: &str) -> Result<String, SourceError> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SourceError::Config(format!("DATABASE_URL: the {what} is not valid UTF-8")))
}

fn parse_port(value: &str, from: &str) -> Result<u16, SourceError> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SourceError::Config(format!("{from} {value:?} is not a port number")))
}

impl PgConnection {
    /// Settings for `host:port`, user and database, without a password.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dbname: dbname.into(),
        }
    }

    /// The same settings with a password.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Zeroizing::new(password.into()));
        self
    }

    /// Reads the settings from the process environment; see [`from_env_map`](Self::from_env_map).
    ///
    /// # Errors
    /// As [`from_env_map`](Self::from_env_map).
    pub fn from_env() -> Result<Self, SourceError> {
        Self::from_env_map(&|name| std::env::var(name).ok())
    }

    /// Reads the settings from variables looked up with `get`.
    ///
    /// `DATABASE_URL` (`postgres://` or `postgresql://user:password@host:port/db`, parts
    /// percent-decoded; a `host` query parameter may name a Unix-socket directory) wins when
    /// set; parts it lacks come from the variables below. Otherwise `POSTGRES_HOST` (default
    /// `localhost`; a path starting with `/` is a Unix-socket directory), `POSTGRES_PORT`
    /// (5432), `POSTGRES_USER` (`postgres`), `POSTGRES_PASSWORD` (none) and `POSTGRES_DB`
    /// (`postgres`). Empty values count as unset. Other URL parameters (such as Prisma's
    /// `schema`) are ignored.
    ///
    /// # Errors
    /// [`SourceError::Config`] when the URL or the port is malformed.
    pub fn from_env_map(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SourceError> {
        let var = |name: &str| non_empty(get(name));
        let mut conn = Self {
            host: var("POSTGRES_HOST").unwrap_or_else(|| "localhost".to_owned()),
            port: match var("POSTGRES_PORT") {
                Some(p) => parse_port(&p, "POSTGRES_PORT")?,
                None => 5432,
            },
            user: var("POSTGRES_USER").unwrap_or_else(|| "postgres".to_owned()),
            password: var("POSTGRES_PASSWORD").map(Zeroizing::new),
            dbname: var("POSTGRES_DB").unwrap_or_else(|| "postgres".to_owned()),
        };
        if let Some(raw) = var("DATABASE_URL").map(Zeroizing::new) {
            conn.apply_url(&raw)?;
        }
        Ok(conn)
    }

    fn apply_url(&mut self, raw: &str) -> Result<(), SourceError> {
        // Never echo the URL itself: it may hold the password.
        let url = url::Url::parse(raw).map_err(|e| {
            SourceError::Config(format!(
                "DATABASE_URL is not a valid URL ({e}); expected \
                 postgres://user:password@host:port/database"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(SourceError::Config(format!(
                "DATABASE_URL has scheme {:?}; expected postgres:// or postgresql://",
                url.scheme()
            )));
        }
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            self.host = decode(host, "host")?;
        }
        if let Some(port) = url.port() {
            self.port = port;
        }
        if !url.username().is_empty() {
            self.user = decode(url.username(), "user name")?;
        }
        if let Some(password) = url.password() {
            self.password = Some(Zeroizing::new(decode(password, "password")?));
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            self.dbname = decode(path, "database name")?;
        }
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "host" if !value.is_empty() => self.host = value.into_owned(),
                "port" if !value.is_empty() => {
                    self.port = parse_port(&value, "DATABASE_URL port parameter")?
                }
                "user" if !value.is_empty() => self.user = value.into_owned(),
                "dbname" if !value.is_empty() => self.dbname = value.into_owned(),
                "password" => self.password = Some(Zeroizing::new(value.into_owned())),
                other => tracing::debug!("DATABASE_URL parameter {other:?} ignored"),
            }
        }
        Ok(())
    }

    /// The same settings for another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.dbname = dbname.to_owned();
        other
    }

    /// Host name, address, or Unix-socket directory.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port (also names the Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// User name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('/') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The libpq environment for a child process: `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
    /// `PGPASSWORD` (when set), `PGCONNECT_TIMEOUT` and `PGAPPNAME`.
    ///
    /// Child processes get all connection settings this way and nothing secret in their
    /// arguments, where any local user could read it (`ps`, `/proc/PID/cmdline`).
    pub fn pg_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
        ];
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD", password.as_str().to_owned()));
        }
        env.push(("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS.to_string()));
        env.push(("PGAPPNAME", APPLICATION_NAME.to_owned()));
        env
    }

    /// Applies [`pg_env`](Self::pg_env) to `cmd`, first removing inherited secrets (the
    /// tool's and the cloud SDKs' passwords, keys and tokens: the child gets only its own
    /// `PGPASSWORD`) and inherited variables that would change the connection (`PGSERVICE`,
    /// `PGHOSTADDR`, a stray `PGPASSWORD`, ...).
    pub fn apply_env(&self, cmd: &mut Command) {
        crate::process::scrub_secrets(cmd);
        for name in CONNECTION_ENV {
            cmd.env_remove(name);
        }
        for (name, value) in self.pg_env() {
            cmd.env(name, value);
        }
    }

    /// A `tokio_postgres` configuration for these settings.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            config.host_path(&self.host);
        } else {
            config.host(&self.host);
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(APPLICATION_NAME)
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS));
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        config
    }

    /// Connects (without TLS) and spawns the connection task on the current Tokio runtime.
    ///
    /// # Errors
    /// A [`SourceError::Connect`], [`SourceError::Authentication`] or
    /// [`SourceError::NoSuchDatabase`] that says what to check; never containing the password.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, SourceError> {
        let (client, connection) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| self.connect_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// Classifies a connection failure into an error that says what to check.
    pub(crate) fn connect_error(&self, e: &tokio_postgres::Error) -> SourceError {
        let endpoint = self.endpoint();
        if let Some(code) = e.code() {
            let reason = pg_error_text(e);
            if *code == SqlState::INVALID_PASSWORD {
                return SourceError::Authentication {
                    endpoint,
                    user: self.user.clone(),
                    reason,
                    hint: "check POSTGRES_PASSWORD (or the password in DATABASE_URL) and \
                           POSTGRES_USER"
                        .to_owned(),
                };
            }
            if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return SourceError::Authentication {
                    endpoint,
                    user: self.user.clone(),
                    reason,
                    hint: "check POSTGRES_USER and the server's pg_hba.conf (it may not allow \
                           this user, database or client address, or may require TLS)"
                        .to_owned(),
                };
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return SourceError::NoSuchDatabase {
                    endpoint,
                    database: self.dbname.clone(),
                };
            }
            return SourceError::Connect {
                endpoint,
                reason,
                hint: "the server refused the connection; see its message".to_owned(),
            };
        }
        let text = pg_error_text(e);
        let io_kind = {
            let mut cause = std::error::Error::source(e);
            let mut kind = None;
            while let Some(c) = cause {
                if let Some(io) = c.downcast_ref::<std::io::Error>() {
                    kind = Some(io.kind());
                    break;
                }
                cause = c.source();
            }
            kind
        };
        let check = "check POSTGRES_HOST and POSTGRES_PORT (or DATABASE_URL)";
        let (reason, hint) = match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => (
                "connection refused".to_owned(),
                format!("is PostgreSQL running and listening there? {check}"),
            ),
            Some(std::io::ErrorKind::TimedOut) => (
                format!("no answer within {CONNECT_TIMEOUT_SECS} s"),
                format!("is the host reachable (firewall, network)? {check}"),
            ),
            Some(std::io::ErrorKind::NotFound) if self.host.starts_with('/') => (
                "no server socket in that directory".to_owned(),
                format!("is PostgreSQL running? {check}"),
            ),
            _ if text.contains("password missing") => {
                return SourceError::Authentication {
                    endpoint,
                    user: self.user.clone(),
                    reason: "the server asks for a password but none is configured".to_owned(),
                    hint: "set POSTGRES_PASSWORD (or put the password in DATABASE_URL)".to_owned(),
                };
            }
            _ if text.contains("timeout") || text.contains("timed out") => (
                format!("no answer within {CONNECT_TIMEOUT_SECS} s"),
                format!("is the host reachable (firewall, network)? {check}"),
            ),
            _ => (text, check.to_owned()),
        };
        SourceError::Connect {
            endpoint,
            reason,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<PgConnection, SourceError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PgConnection::from_env_map(&|k| map.get(k).cloned())
    }

    fn env_value(conn: &PgConnection, name: &str) -> Option<String> {
        conn.pg_env()
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn defaults_match_the_old_scripts() {
        let c = from(&[]).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.dbname()),
            ("localhost", 5432, "postgres", "postgres")
        );
        assert!(!c.has_password());
        assert_eq!(env_value(&c, "PGPASSWORD"), None);
    }

    #[test]
    fn postgres_variables_are_read_and_empty_ones_ignored() {
        let c = from(&[
            ("POSTGRES_HOST", "db.internal"),
            ("POSTGRES_PORT", "6543"),
            ("POSTGRES_USER", "app"),
            ("POSTGRES_PASSWORD", "s3cret"),
            ("POSTGRES_DB", "randevubu"),
            ("DATABASE_URL", ""),
        ])
        .unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.dbname()),
            ("db.internal", 6543, "app", "randevubu")
        );
        assert_eq!(env_value(&c, "PGPASSWORD").as_deref(), Some("s3cret"));
        assert_eq!(env_value(&c, "PGHOST").as_deref(), Some("db.internal"));
        assert_eq!(env_value(&c, "PGPORT").as_deref(), Some("6543"));
        assert_eq!(env_value(&c, "PGUSER").as_deref(), Some("app"));
        assert_eq!(env_value(&c, "PGDATABASE").as_deref(), Some("randevubu"));
        assert_eq!(env_value(&c, "PGCONNECT_TIMEOUT").as_deref(), Some("10"));
        assert_eq!(
            env_value(&c, "PGAPPNAME").as_deref(),
            Some(APPLICATION_NAME)
        );
    }

    #[test]
    fn database_url_wins_and_is_percent_decoded() {
        let c = from(&[
            (
                "DATABASE_URL",
                "postgresql://app%40corp:p%40ss%3Aw%2Frd@db.example.com:6000/rand%C3%A9vubu?schema=public",
            ),
            ("POSTGRES_HOST", "ignored"),
            ("POSTGRES_PASSWORD", "ignored-too"),
        ])
        .unwrap();
        assert_eq!(c.host(), "db.example.com");
        assert_eq!(c.port(), 6000);
        assert_eq!(c.user(), "app@corp");
        assert_eq!(c.dbname(), "randévubu");
        assert_eq!(env_value(&c, "PGPASSWORD").as_deref(), Some("p@ss:w/rd"));
    }

    #[test]
    fn database_url_gaps_fall_back_to_variables() {
        let c = from(&[
            ("DATABASE_URL", "postgres://db"),
            ("POSTGRES_PASSWORD", "from-env"),
            ("POSTGRES_DB", "appdb"),
        ])
        .unwrap();
        assert_eq!((c.host(), c.port(), c.user()), ("db", 5432, "postgres"));
        assert_eq!(c.dbname(), "appdb");
        assert_eq!(env_value(&c, "PGPASSWORD").as_deref(), Some("from-env"));
    }

    #[test]
    fn database_url_can_name_a_socket_directory_and_ipv6() {
        let c = from(&[("DATABASE_URL", "postgres://%2Fvar%2Frun%2Fpostgresql/app")]).unwrap();
        assert_eq!(c.host(), "/var/run/postgresql");
        let c = from(&[("DATABASE_URL", "postgres:///app?host=/tmp&port=5433")]).unwrap();
        assert_eq!((c.host(), c.port(), c.dbname()), ("/tmp", 5433, "app"));
        let c = from(&[("DATABASE_URL", "postgres://u@[::1]:5433/app")]).unwrap();
        assert_eq!(c.host(), "::1");
        assert_eq!(c.endpoint(), "[::1]:5433");
    }

    #[test]
    fn bad_settings_are_config_errors_without_the_password() {
        for vars in [
            vec![("DATABASE_URL", "mysql://u:hunter2@h/db")],
            vec![("DATABASE_URL", "postgres://u:hunter2@h:notaport/db")],
            vec![("POSTGRES_PORT", "99999")],
        ] {
            let err = from(&vars).unwrap_err();
            assert!(matches!(err, SourceError::Config(_)), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = PgConnection::new("h", 1, "u", "d").with_password("hunter2");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        let other = c.with_dbname("other");
        assert_eq!(other.dbname(), "other");
        assert!(other.has_password());
        assert!(!format!("{:?}", other.config()).contains("hunter2"));
    }
}
