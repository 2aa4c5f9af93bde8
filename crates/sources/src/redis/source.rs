//! [`RedisSource`]: the RDB snapshot as a backup stream. (Skeleton.)

use std::path::PathBuf;

use async_trait::async_trait;
use backup_core::{BackupKind, BoxError, ByteStream, Source, SourceFacts};

use crate::redis::connection::RedisConfig;
use crate::redis::error::RedisError;

/// How the snapshot is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupMethod {
    /// As a replica: `SYNC`, streamed (default).
    Replication,
    /// `BGSAVE` on a local server, then the file at this path.
    File {
        /// The server's RDB file (`dir`/`dbfilename`).
        rdb_path: PathBuf,
    },
}

/// A Redis snapshot as a [`Source`].
pub struct RedisSource {
    config: RedisConfig,
    method: BackupMethod,
}

impl RedisSource {
    /// A source for the server of `config`.
    pub fn new(config: RedisConfig, method: BackupMethod) -> Self {
        Self { config, method }
    }
}

#[async_trait]
impl Source for RedisSource {
    fn kind(&self) -> BackupKind {
        BackupKind::Redis
    }

    fn extension(&self) -> &'static str {
        "rdb"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        let _ = &self.method;
        Err(Box::new(RedisError::Config(self.config.endpoint())))
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        Err(Box::new(RedisError::Config("not implemented".to_owned())))
    }
}
