//! [`RedisSource`]: the RDB snapshot as a backup stream.
//!
//! Every byte handed to the pipeline is also fed, through a bounded channel, to the RDB parser
//! of `backup-rdb` running in its own task. [`Source::finish`] waits for the parser: a bad
//! header, a truncated file or a CRC-64 mismatch fails the backup, so nothing is committed.
//! When the parser fails early the stream fails too, instead of shipping the rest of a doomed
//! snapshot.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{BackupKind, BoxError, ByteStream, Source, SourceFacts};
use backup_rdb::{ParseOptions, RdbError, RdbSummary};

use crate::stream::{tee_to_validator, Tee};

use crate::redis::connection::{RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;
use crate::redis::replication::{ReplicationStream, TransferProgress};

/// How long [`BackupMethod::File`] waits for `BGSAVE` by default.
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);

/// How often `INFO persistence` is polled while `BGSAVE` runs.
const BGSAVE_POLL: Duration = Duration::from_millis(100);

/// How often waiting for `BGSAVE` is logged.
const BGSAVE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The name prefix of Redis backups, as the old script wrote them: `redis_backup_...`.
pub const NAME_PREFIX: &str = "redis";

/// How the snapshot is fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BackupMethod {
    /// As a replica: `SYNC`, streamed (default).
    #[default]
    Replication,
    /// `BGSAVE` on a local server, then the file at this path.
    File {
        /// The server's RDB file (`dir`/`dbfilename`).
        rdb_path: PathBuf,
    },
}

impl BackupMethod {
    /// `replication` or `file`, as recorded in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replication => "replication",
            Self::File { .. } => "file",
        }
    }
}

/// A Redis snapshot as a [`Source`].
pub struct RedisSource {
    config: RedisConfig,
    method: BackupMethod,
    snapshot_timeout: Duration,
    parse_memory: Option<u64>,
    running: Option<Running>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("config", &self.config)
            .field("method", &self.method)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .finish()
    }
}

/// State between [`Source::open`] and [`Source::finish`].
struct Running {
    endpoint: String,
    server_version: Option<String>,
    transfer: Option<&'static str>,
    /// The RDB parser beside the stream.
    check: Tee<RdbSummary, RdbError>,
    replication: Option<Arc<TransferProgress>>,
    file: Option<(PathBuf, u64)>,
}

impl RedisSource {
    /// A source for the server of `config`.
    pub fn new(config: RedisConfig, method: BackupMethod) -> Self {
        Self {
            config,
            method,
            snapshot_timeout: DEFAULT_SNAPSHOT_TIMEOUT,
            parse_memory: None,
            running: None,
        }
    }

    /// The memory budget of the parser that checks the snapshot as it streams
    /// ([`ParseOptions::memory_budget`]; `None`: 64 MiB).
    #[must_use]
    pub fn with_parse_memory(mut self, budget: Option<u64>) -> Self {
        self.parse_memory = budget;
        self
    }

    /// How long [`BackupMethod::File`] waits for `BGSAVE` to finish (default 1 hour).
    #[must_use]
    pub fn with_snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// The method in use.
    pub fn method(&self) -> &BackupMethod {
        &self.method
    }

    /// The connection settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }
}

#[async_trait]
impl Source for RedisSource {
    fn kind(&self) -> BackupKind {
        BackupKind::REDIS
    }

    fn name_prefix(&self) -> Option<&str> {
        Some(NAME_PREFIX)
    }

    fn extension(&self) -> &'static str {
        "rdb"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        self.running = None;
        let mut client = RedisClient::connect(&self.config).await?;
        let endpoint = client.endpoint().to_owned();
        let server_version = match client.server_version().await {
            Ok(version) => {
                tracing::info!("connected to Redis {version} at {endpoint}");
                Some(version)
            }
            Err(e @ (RedisError::Permission { .. } | RedisError::Command { .. })) => {
                tracing::warn!("cannot read the server version: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let (inner, transfer, replication, file): (ByteStream, _, _, _) = match &self.method {
            BackupMethod::Replication => {
                let stream = ReplicationStream::from_client(client).await?;
                let transfer = if stream.diskless() {
                    "diskless"
                } else {
                    "disk"
                };
                let progress = stream.progress();
                (Box::new(stream), Some(transfer), Some(progress), None)
            }
            BackupMethod::File { rdb_path } => {
                let server_path = server_rdb_path(&mut client).await;
                if let Some(server_path) = &server_path {
                    if !same_file(server_path, rdb_path) {
                        tracing::warn!(
                            "Redis at {endpoint} writes its RDB to {} but the backup reads {}: \
                             unless that is the same file (e.g. a container volume), pass the \
                             server's dir/dbfilename",
                            server_path.display(),
                            rdb_path.display()
                        );
                    }
                }
                bgsave(&mut client, self.snapshot_timeout).await?;
                drop(client);
                let file = tokio::fs::File::open(rdb_path).await.map_err(|source| {
                    snapshot_file_error(rdb_path, server_path.as_deref(), source)
                })?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|source| {
                        snapshot_file_error(rdb_path, server_path.as_deref(), source)
                    })?
                    .len();
                tracing::info!("streaming {} ({len} bytes)", rdb_path.display());
                (Box::new(file), None, None, Some((rdb_path.clone(), len)))
            }
        };
        let options = ParseOptions {
            memory_budget: self.parse_memory,
            ..ParseOptions::default()
        };
        let (stream, check) = tee_to_validator(inner, "the RDB snapshot", |reader| {
            Box::pin(RdbSummary::read_with(reader, options))
        });
        self.running = Some(Running {
            endpoint,
            server_version,
            transfer,
            check,
            replication,
            file,
        });
        Ok(Box::new(stream))
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        let Some(running) = self.running.take() else {
            return Err("RedisSource::finish called without a successful open".into());
        };
        let endpoint = running.endpoint.clone();
        let check = running.check;
        let streamed = check.bytes();
        if !check.ended() {
            // The stream failed or was abandoned. A parser that already failed explains why;
            // otherwise it would wait for more data forever.
            let read_error = check.read_error();
            if check.validator_done() {
                if let Ok(Err(source)) = check.verdict().await {
                    return Err(Box::new(RedisError::Rdb {
                        context: format!("the RDB snapshot from {endpoint} is invalid"),
                        source,
                    }));
                }
            } else {
                check.abort();
            }
            return Err(match read_error {
                // Already a complete message (e.g. `RedisError::Truncated`).
                Some(message) => message.into(),
                None => Box::new(RedisError::Truncated {
                    endpoint,
                    detail: "the stream was not read to its end".to_owned(),
                }),
            });
        }
        let summary = match check.verdict().await {
            Ok(Ok(summary)) => summary,
            Ok(Err(source)) => {
                return Err(Box::new(RedisError::Rdb {
                    context: format!("the RDB snapshot from {endpoint} is invalid"),
                    source,
                }))
            }
            Err(e) => return Err(format!("the RDB validation task failed: {e}").into()),
        };
        if let Some(progress) = &running.replication {
            if !progress.complete.load(Ordering::SeqCst) {
                return Err(Box::new(RedisError::Truncated {
                    endpoint,
                    detail: format!("only {streamed} bytes arrived"),
                }));
            }
        }
        if let Some((path, len)) = &running.file {
            if streamed != *len {
                return Err(Box::new(RedisError::Truncated {
                    endpoint,
                    detail: format!("read {streamed} of the {len} bytes of {}", path.display()),
                }));
            }
        }
        let keys = summary.keys();
        tracing::info!(
            "RDB v{} verified: {keys} keys in {} database(s), {} bytes",
            summary.version,
            summary.keys_per_db.len(),
            streamed
        );
        let mut details = std::collections::BTreeMap::new();
        details.insert("rdb_version".to_owned(), serde_json::json!(summary.version));
        details.insert("keys".to_owned(), serde_json::json!(keys));
        let per_db: serde_json::Map<String, serde_json::Value> = summary
            .keys_per_db
            .iter()
            .map(|(db, n)| (db.to_string(), serde_json::json!(n)))
            .collect();
        details.insert("keys_per_db".to_owned(), serde_json::Value::Object(per_db));
        details.insert(
            "keys_with_expiry".to_owned(),
            serde_json::json!(summary.keys_with_expiry),
        );
        details.insert("functions".to_owned(), serde_json::json!(summary.functions));
        details.insert("method".to_owned(), serde_json::json!(self.method.name()));
        if let Some(transfer) = running.transfer {
            details.insert("transfer".to_owned(), serde_json::json!(transfer));
        }
        details.insert(
            "checksum_verified".to_owned(),
            serde_json::json!(summary.checksum_verified),
        );
        Ok(SourceFacts {
            source_type: "redis".to_owned(),
            server_version: running.server_version,
            database: None,
            details,
        })
    }
}

/// `CONFIG GET dir` + `dbfilename`, when the user may run them.
async fn server_rdb_path(client: &mut RedisClient) -> Option<PathBuf> {
    let dir = client.config_get("dir").await;
    let name = client.config_get("dbfilename").await;
    match (dir, name) {
        (Ok(Some(dir)), Ok(Some(name))) => Some(Path::new(&dir).join(name)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!("cannot ask the server where it writes its RDB: {e}");
            None
        }
        _ => None,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn snapshot_file_error(path: &Path, server_path: Option<&Path>, source: io::Error) -> RedisError {
    let hint = match server_path {
        Some(server) if !same_file(server, path) => format!(
            "the server reports that it writes {} (CONFIG GET dir / dbfilename): pass that \
             path, or where it is mounted here",
            server.display()
        ),
        _ => "pass the path of the server's RDB file: its `dir` and `dbfilename` settings \
              (CONFIG GET dir / CONFIG GET dbfilename show them)"
            .to_owned(),
    };
    RedisError::SnapshotFile {
        path: path.display().to_string(),
        source,
        hint,
    }
}

fn info_u64(info: &std::collections::BTreeMap<String, String>, field: &str) -> Option<u64> {
    info.get(field).and_then(|v| v.trim().parse().ok())
}

fn info_i64(info: &std::collections::BTreeMap<String, String>, field: &str) -> Option<i64> {
    info.get(field).and_then(|v| v.trim().parse().ok())
}

/// Runs `BGSAVE` (waiting for one already running first) and waits until it finished well.
async fn bgsave(client: &mut RedisClient, timeout: Duration) -> Result<(), RedisError> {
    let endpoint = client.endpoint().to_owned();
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let timeout_error = |what: &str| RedisError::Timeout {
        endpoint: endpoint.clone(),
        what: what.to_owned(),
        seconds: timeout.as_secs(),
        hint: "check the server log, or allow more time for the snapshot".to_owned(),
    };
    let mut logged_waiting = false;
    // The state before our BGSAVE: a save counts as ours once these moved on.
    let before = loop {
        let before = client.info("persistence").await?;
        match client.command(&[b"BGSAVE", b"SCHEDULE"]).await? {
            Resp::Error(message) if message.to_ascii_lowercase().contains("in progress") => {
                if !logged_waiting {
                    tracing::info!(
                        "a BGSAVE is already running on {endpoint}; waiting for it, then \
                         starting a fresh one"
                    );
                    logged_waiting = true;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(timeout_error("waiting for a running BGSAVE to end"));
                }
                tokio::time::sleep(BGSAVE_POLL).await;
            }
            Resp::Error(message) => return Err(client.reply_error("BGSAVE", &message)),
            reply => {
                tracing::info!(
                    "BGSAVE on {endpoint}: {}; waiting for the snapshot",
                    reply.as_text().unwrap_or_default()
                );
                break before;
            }
        }
    };
    let saves_before = info_u64(&before, "rdb_saves");
    let last_save_before = info_i64(&before, "rdb_last_save_time");
    let status_before = before.get("rdb_last_bgsave_status").cloned();
    let mut saw_in_progress = false;
    let mut next_log = started + BGSAVE_LOG_EVERY;
    loop {
        tokio::time::sleep(BGSAVE_POLL).await;
        let info = client.info("persistence").await?;
        let in_progress = info_u64(&info, "rdb_bgsave_in_progress") == Some(1);
        if in_progress {
            saw_in_progress = true;
        } else {
            let saves_moved = match (saves_before, info_u64(&info, "rdb_saves")) {
                (Some(a), Some(b)) => b > a,
                _ => false,
            };
            let time_moved = match (last_save_before, info_i64(&info, "rdb_last_save_time")) {
                (Some(a), Some(b)) => b > a,
                _ => false,
            };
            let status = info.get("rdb_last_bgsave_status").cloned();
            let newly_failed =
                status.as_deref() == Some("err") && status_before.as_deref() != Some("err");
            if saves_moved || time_moved || saw_in_progress || newly_failed {
                if status.as_deref() != Some("ok") {
                    return Err(RedisError::Command {
                        endpoint,
                        command: "BGSAVE".to_owned(),
                        reason: format!(
                            "the snapshot failed (rdb_last_bgsave_status:{}); see the Redis \
                             server log (disk full? permissions of `dir`?)",
                            status.unwrap_or_default()
                        ),
                    });
                }
                tracing::info!(
                    "BGSAVE on {endpoint} done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        }
        let now = tokio::time::Instant::now();
        if now > deadline {
            return Err(timeout_error("waiting for BGSAVE to finish"));
        }
        if now >= next_log {
            next_log = now + BGSAVE_LOG_EVERY;
            tracing::info!(
                "waiting for BGSAVE on {endpoint}: {} s, {} of {} keys saved",
                started.elapsed().as_secs(),
                info.get("current_save_keys_processed")
                    .map_or("?", String::as_str),
                info.get("current_save_keys_total")
                    .map_or("?", String::as_str),
            );
        }
    }
}
