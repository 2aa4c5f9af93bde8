//! The error type of the Redis source and restore targets.
//!
//! Errors never contain a password: they name host, port and user only.

use backup_rdb::RdbError;

/// Errors from Redis backups and restores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Connection settings (`REDIS_*`, `REDIS_URL`) are invalid.
    #[error("invalid Redis connection settings: {0}")]
    Config(String),

    /// The server could not be reached.
    #[error("cannot connect to Redis at {endpoint}: {reason}; {hint}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
        /// What to check.
        hint: String,
    },

    /// The server refused the credentials.
    #[error("Redis at {endpoint} refused the credentials{user}: {reason}; {hint}")]
    Authentication {
        /// `host:port`.
        endpoint: String,
        /// ` of user "name"` or empty.
        user: String,
        /// The server's message.
        reason: String,
        /// What to check.
        hint: String,
    },

    /// The user may not run a command the operation needs (e.g. `SYNC`, `RESTORE`).
    #[error("Redis at {endpoint} does not allow {command} for this user: {reason}; {hint}")]
    Permission {
        /// `host:port`.
        endpoint: String,
        /// The command.
        command: String,
        /// The server's message.
        reason: String,
        /// What to do.
        hint: String,
    },

    /// A command returned an error.
    #[error("Redis at {endpoint}: {command} failed: {reason}")]
    Command {
        /// `host:port`.
        endpoint: String,
        /// The command (name only, never arguments that may hold secrets or data).
        command: String,
        /// The server's message.
        reason: String,
    },

    /// The server sent something that does not follow the protocol.
    #[error("Redis at {endpoint} sent an unexpected reply {context}: {detail}")]
    Protocol {
        /// `host:port`.
        endpoint: String,
        /// What was being read.
        context: String,
        /// What arrived.
        detail: String,
    },

    /// Reading or writing the connection failed.
    #[error("connection to Redis at {endpoint} failed {context}: {source}")]
    Io {
        /// `host:port`.
        endpoint: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The RDB stream or file is invalid.
    #[error("{context}: {source}")]
    Rdb {
        /// Which stream or file.
        context: String,
        /// What is wrong with it.
        #[source]
        source: RdbError,
    },

    /// A local file operation failed.
    #[error("{context} {path}: {source}")]
    File {
        /// What was being done.
        context: String,
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
