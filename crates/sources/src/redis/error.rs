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

    /// Reading the backup stream failed (a failed verification arrives this way); nothing was
    /// changed.
    #[error(
        "reading the backup stream failed after {bytes} bytes, the restore target was left \
         untouched: {source}"
    )]
    Stream {
        /// Bytes read before the failure.
        bytes: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A stop/start command or a `docker` command failed (or could not be started).
    #[error("{what} failed ({status}){}{}", if stderr.is_empty() { "" } else { ": " }, stderr)]
    HookFailed {
        /// Which command: `the stop command`, `docker cp`, ...
        what: String,
        /// `exit status 1`, or why it could not run.
        status: String,
        /// The end of its stderr (or stdout when stderr was empty).
        stderr: String,
    },

    /// The RDB file was replaced, but the command that starts Redis again failed.
    #[error(
        "the RDB file {target} was replaced with the restored one ({kept}), but {what} failed \
         ({status}){}{}; start Redis by hand",
        if stderr.is_empty() { "" } else { ": " },
        stderr
    )]
    StartFailed {
        /// The replaced file (or `container:path`).
        target: String,
        /// Where the previous file was kept, as a phrase.
        kept: String,
        /// `the start command` or `docker start`.
        what: String,
        /// How it ended.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },

    /// The backup's RDB version is newer than the target server can `RESTORE`.
    #[error(
        "the backup was made by Redis {backup_redis} (RDB v{backup_rdb}) and the target runs \
         {target_redis} which accepts at most RDB v{target_rdb}; restore into Redis >= \
         {needed} or use file mode on a matching version"
    )]
    RdbVersionTooNew {
        /// `redis-ver` of the backup (or `unknown`).
        backup_redis: String,
        /// The backup's RDB version.
        backup_rdb: u16,
        /// The target's `redis_version`.
        target_redis: String,
        /// The newest RDB version the target accepts.
        target_rdb: u16,
        /// The oldest Redis release that writes the backup's RDB version.
        needed: String,
    },

    /// Keys of the backup already exist on the target (online restore without `--replace`).
    #[error(
        "{total} key(s) of the backup already exist on Redis at {endpoint}: {keys}{more}; \
         nothing was written. Use --replace to overwrite them"
    )]
    KeysExist {
        /// `host:port`.
        endpoint: String,
        /// How many keys clash.
        total: u64,
        /// The first clashing keys, escaped, as `db N: key` separated by commas.
        keys: String,
        /// ` (and N more)` or empty.
        more: String,
    },

    /// `RESTORE` or `FUNCTION LOAD` was refused for some keys (online restore).
    #[error("Redis at {endpoint} refused {count} key(s) of the restore: {details}{written}")]
    RestoreRefused {
        /// `host:port`.
        endpoint: String,
        /// How many commands failed.
        count: u64,
        /// The first failures, as `db N key K: reason`.
        details: String,
        /// What the keys sent before became: `; keys sent before were restored` when keys are
        /// written in place, empty when a staged restore says it itself.
        written: String,
    },

    /// A staged (all-or-nothing per database) online restore stopped: the database being
    /// restored is unchanged, those swapped in before are restored whole.
    #[error(
        "{source}; the online restore into Redis at {endpoint} stopped{database}. {swapped}; {spare}"
    )]
    StagedRestoreFailed {
        /// `host:port`.
        endpoint: String,
        /// ` while restoring database N, which is unchanged (...)` or empty.
        database: String,
        /// Which databases had been swapped in whole before.
        swapped: String,
        /// Whether the spare database was emptied, or what to do about it.
        spare: String,
        /// What stopped it.
        source: Box<RedisError>,
    },

    /// A writing online restore stopped part way (the target died, the connection dropped, the
    /// backup stream failed): what was written stays.
    #[error(
        "{source}; the online restore into Redis at {endpoint} is not atomic: it had sent {sent} \
         of the backup's keys when it stopped, and those that arrived stay there. Restore again \
         with --replace to complete it (or FLUSHDB the target first to start clean); a file-mode \
         restore (--rdb-path) replaces the data all at once"
    )]
    PartlyRestored {
        /// `host:port`.
        endpoint: String,
        /// Keys sent before the failure.
        sent: u64,
        /// What stopped it.
        source: Box<RedisError>,
    },

    /// The RDB transfer of a replication stream ended before the whole snapshot arrived.
    #[error(
        "the RDB transfer from Redis at {endpoint} ended early: {detail}; the backup is \
         incomplete (check the server log: a restart, `client-output-buffer-limit replica` or \
         `repl-timeout` can cut a transfer)"
    )]
    Truncated {
        /// `host:port`.
        endpoint: String,
        /// How much arrived, and what was missing.
        detail: String,
    },

    /// Waiting for the server took too long.
    #[error("Redis at {endpoint}: timed out after {seconds} s {what}; {hint}")]
    Timeout {
        /// `host:port`.
        endpoint: String,
        /// What was being waited for.
        what: String,
        /// The limit.
        seconds: u64,
        /// What to do.
        hint: String,
    },

    /// The RDB file written by `BGSAVE` cannot be read (file method).
    #[error("cannot read the RDB file {path}: {source}; {hint}")]
    SnapshotFile {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: String,
    },
}
