//! File-mode restore: the verified RDB renamed into place. (Skeleton.)

use std::path::PathBuf;

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};

/// Options of [`RedisFileRestore`].
#[derive(Debug, Clone, Default)]
pub struct FileRestoreOptions {
    /// The target RDB file (e.g. `/var/lib/redis/dump.rdb`).
    pub rdb_path: Option<PathBuf>,
    /// Shell command run before the file is replaced (stops Redis).
    pub stop_cmd: Option<String>,
    /// Shell command run after the file is replaced (starts Redis).
    pub start_cmd: Option<String>,
    /// Docker container: `docker stop`, `docker cp` to `/data/dump.rdb`, `docker start`.
    pub docker_container: Option<String>,
}

/// Writes a verified RDB to a data file.
pub struct RedisFileRestore {
    options: FileRestoreOptions,
}

impl RedisFileRestore {
    /// A file-mode restore target.
    pub fn new(options: FileRestoreOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl RestoreTarget for RedisFileRestore {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let _ = (stream, &self.options);
        Err("not implemented".into())
    }
}
