//! Redis: backups over the replication protocol (or from the RDB file after `BGSAVE`), and
//! restores into a data file (rename into place) or into a running server (`RESTORE`).
//!
//! Connection settings come from `REDIS_URL` or `REDIS_HOST` / `REDIS_PORT` /
//! `REDIS_USERNAME` / `REDIS_PASSWORD` ([`RedisConfig`]); `rediss://` URLs use TLS. The
//! password is sent with `AUTH` only, never logged or passed to a child process. The whole
//! component's configuration (`[redis]`: server, method, encryption, online restore target)
//! is [`RedisSettings`].

mod check;
mod connection;
mod error;
mod replication;
mod restore_file;
mod restore_online;
mod settings;
mod source;
mod staging;

pub use check::RdbCheck;
pub use connection::{RedisClient, RedisConfig, Resp};
pub use error::RedisError;
pub use replication::ReplicationStream;
pub use restore_file::{
    aof_warning, aof_warning_for_dir, FileRestoreOptions, RedisFileRestore, DOCKER_RDB_PATH,
    KEPT_INFIX, RESTORE_TEMP_INFIX,
};
pub use restore_online::{
    check_then_restore, OnlineRestoreOptions, RedisOnlineRestore, Staging, DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_COMMANDS,
};
pub use settings::{RedisMethod, RedisSettings};
pub use source::{BackupMethod, RedisSource, NAME_PREFIX};
pub use staging::{choose_spare, SpareDb, CLAIM_KEY, STAGING_ACL};
