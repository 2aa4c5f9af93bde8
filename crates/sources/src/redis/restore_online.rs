//! Online restore: every key replayed into a running server with `RESTORE`. (Skeleton.)

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};

use crate::redis::connection::RedisConfig;

/// Options of [`RedisOnlineRestore`].
#[derive(Debug, Clone, Default)]
pub struct OnlineRestoreOptions {
    /// Overwrite existing keys (`RESTORE ... REPLACE`, `FUNCTION LOAD REPLACE`).
    pub replace: bool,
    /// Only parse and check (RDB version, clashing keys); write nothing.
    pub check_only: bool,
}

/// Replays an RDB into a running server.
pub struct RedisOnlineRestore {
    config: RedisConfig,
    options: OnlineRestoreOptions,
}

impl RedisOnlineRestore {
    /// An online restore into the server of `config`.
    pub fn new(config: RedisConfig, options: OnlineRestoreOptions) -> Self {
        Self { config, options }
    }
}

#[async_trait]
impl RestoreTarget for RedisOnlineRestore {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let _ = (stream, &self.config, &self.options);
        Err("not implemented".into())
    }
}
