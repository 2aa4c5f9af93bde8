//! Connection settings and a small RESP2 client (TCP or TLS). (Skeleton: being written.)

use std::path::PathBuf;

use crate::redis::error::RedisError;

/// Where and how to connect to Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user (`REDIS_USERNAME`), `None` for the default user.
    pub username: Option<String>,
    /// Password (`REDIS_PASSWORD`), environment only.
    pub password: Option<zeroize::Zeroizing<String>>,
    /// Logical database of the URL (`redis://host/3`), 0 by default.
    pub db: u32,
    /// TLS (`rediss://`).
    pub tls: bool,
    /// Extra CA certificate (PEM) to trust for TLS (`REDIS_TLS_CA_FILE`).
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl RedisConfig {
    /// Reads `REDIS_URL`, or `REDIS_HOST` (default `localhost`), `REDIS_PORT` (6379),
    /// `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS_CA_FILE` through `lookup`.
    ///
    /// # Errors
    /// [`RedisError::Config`] for an invalid URL or port.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, RedisError> {
        let _ = lookup;
        Err(RedisError::Config("not implemented yet".to_owned()))
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Resp>>),
}

/// A connection to Redis: authenticated, ready for commands.
pub struct RedisClient {
    config: RedisConfig,
}

impl RedisClient {
    /// Connects and authenticates.
    ///
    /// # Errors
    /// [`RedisError::Connect`], [`RedisError::Authentication`].
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        Err(RedisError::Config(format!(
            "not implemented yet ({})",
            config.endpoint()
        )))
    }

    /// Sends one command and reads its reply (an error reply is returned as [`Resp::Error`]).
    ///
    /// # Errors
    /// On I/O or protocol errors.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Resp, RedisError> {
        let _ = args;
        Err(RedisError::Config(self.config.endpoint()))
    }
}
