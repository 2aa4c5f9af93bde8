//! Online restore: every key replayed into a running server with `RESTORE`.
//!
//! The RDB stream is parsed with its values captured; each key becomes
//! `RESTORE key ttl payload [ABSTTL] [REPLACE]` in its original database (`SELECT`), each
//! function library `FUNCTION LOAD [REPLACE] code`. Commands are pipelined in batches
//! ([`OnlineRestoreOptions::batch_commands`], [`OnlineRestoreOptions::batch_bytes`]) and all
//! replies of a batch are read before the next is sent; the first error reply (`BUSYKEY`,
//! `NOPERM`, a database index out of range, a module type the server lacks) stops the restore
//! with an error naming the keys. Keys whose expiry has already passed (by the server's clock)
//! are skipped and counted. The user needs `RESTORE`, `SELECT`, `FUNCTION LOAD`, `EXISTS`,
//! `FUNCTION LIST` (check), `INFO` and `TIME` (e.g. ACL rules `~* +restore +select +exists
//! +function|load +function|list +info +time`); a `NOPERM` reply becomes
//! [`RedisError::Permission`].
//!
//! Before anything is written, the backup's RDB version is compared with the newest one the
//! target accepts ([`backup_rdb::rdb_version_for_server`] of its `redis_version`): `RESTORE`
//! refuses payloads of a newer version, so such a restore is refused up front.
//!
//! **All or nothing per database, where the server allows it.** [`check_then_restore`] runs
//! the restore twice: first with [`check_only`](OnlineRestoreOptions::check_only) (a full
//! parse of the verified stream, version check, and unless `replace`, a check that no key of
//! the backup exists on the target; nothing is written), then for real. For the real pass it
//! picks an empty spare database ([`Staging::Auto`]): each database of the backup is restored
//! into it, the target's other keys are copied beside them, and `SWAPDB` makes it the
//! database's contents at once (see the `staging` module). Where the server does not allow that
//! (Redis before 6.2, cluster mode, no free database, ACL) or with [`Staging::InPlace`], keys
//! are written straight into their databases while the stream is read: a stream that fails
//! half-way, a refused key or a lost connection then leaves the keys sent so far in place, and
//! the error says so ([`RedisError::PartlyRestored`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, FetchedBackup, ProgressFn, RestoreSummary, RestoreTarget};
use backup_rdb::{
    into_restore_payload, rdb_version_for_server, Entry, Item, ParseOptions, RdbReader, ValueType,
    REDIS_RDB_VERSIONS,
};

use crate::redis::connection::{RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;
use crate::redis::staging::{self, SpareDb};

/// Default [`OnlineRestoreOptions::batch_commands`].
pub const DEFAULT_BATCH_COMMANDS: usize = 1000;
/// Default [`OnlineRestoreOptions::batch_bytes`] (16 MiB).
pub const DEFAULT_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// `RESTORE` payloads from this size on are written to the socket directly instead of being
/// copied into the pipeline's buffer.
const DIRECT_SEND_BYTES: usize = 1024 * 1024;
/// How many clashing keys an error lists.
const CLASHES_LISTED: usize = 20;
/// How many refused keys an error lists.
const FAILURES_LISTED: usize = 10;

/// Options of [`RedisOnlineRestore`].
#[derive(Debug, Clone)]
pub struct OnlineRestoreOptions {
    /// Overwrite existing keys (`RESTORE ... REPLACE`, `FUNCTION LOAD REPLACE`).
    pub replace: bool,
    /// Only parse and check (RDB version, clashing keys); write nothing.
    pub check_only: bool,
    /// Commands per pipelined batch (0: [`DEFAULT_BATCH_COMMANDS`]).
    pub batch_commands: usize,
    /// Payload bytes per pipelined batch (0: [`DEFAULT_BATCH_BYTES`]); a single larger value
    /// is sent alone.
    pub batch_bytes: usize,
    /// The parser's memory budget ([`ParseOptions::memory_budget`]; `None`: 64 MiB for the
    /// check, the largest value Redis accepts (512 MiB) plus 64 MiB for the restore, which
    /// holds each value to send it).
    pub parse_memory: Option<u64>,
    /// Where the keys are written (ignored by the check).
    pub staging: Staging,
}

/// Where a writing online restore puts the keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Staging {
    /// [`check_then_restore`] picks an empty spare database and stages each database of the
    /// backup in it (all or nothing per database) when the server allows it, else writes in
    /// place and says why. [`RedisOnlineRestore`] alone writes in place.
    #[default]
    Auto,
    /// Keys go straight into their databases (not atomic; writes made meanwhile to other
    /// keys are kept).
    InPlace,
    /// Stage each database in this empty spare database, then `SWAPDB` it in (claimed
    /// when the restore starts, unless [`choose_spare`](crate::redis::choose_spare) did).
    Spare(SpareDb),
}

impl Default for OnlineRestoreOptions {
    fn default() -> Self {
        Self {
            replace: false,
            check_only: false,
            batch_commands: DEFAULT_BATCH_COMMANDS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            parse_memory: None,
            staging: Staging::Auto,
        }
    }
}

/// The online restore as a whole: a first pass over the fetched backup only checks it
/// against the target (the whole RDB parses, its version loads there, no key clashes unless
/// `options.replace`), writing nothing; only then a second pass writes. Both read the verified
/// private copy, not the destination. `progress` counts the stored bytes of both passes
/// (twice the object's size in all).
///
/// Between the passes it chooses where to write ([`Staging::Auto`]: an empty spare database
/// when the server allows it, see [`Staging`]); the summary's notes say which it was.
///
/// # Errors
/// The first pass's (target unchanged) or the second's: staged, the database being restored
/// is unchanged ([`RedisError::StagedRestoreFailed`]); in place, the keys restored until then
/// stay ([`RedisError::PartlyRestored`]).
pub async fn check_then_restore(
    fetched: &mut FetchedBackup,
    config: RedisConfig,
    options: OnlineRestoreOptions,
    progress: Option<ProgressFn>,
) -> backup_core::Result<RestoreSummary> {
    let endpoint = config.endpoint();
    tracing::info!("checking the backup and the target {endpoint} before writing");
    let check_options = OnlineRestoreOptions {
        check_only: true,
        ..options.clone()
    };
    let mut check = RedisOnlineRestore::new(config.clone(), check_options);
    fetched.restore_into(&mut check, progress.clone()).await?;
    let mut staging = options.staging.clone();
    let mut in_place_reason = None;
    if staging == Staging::Auto {
        let chosen = staging::choose_spare(&config, &check.databases)
            .await
            .map_err(|e| backup_core::CoreError::Restore {
                key: fetched.entry().key.clone(),
                source: Box::new(e),
            })?;
        staging = match chosen {
            Ok(spare) => Staging::Spare(spare),
            Err(reason) => {
                tracing::warn!(
                    "the restore into {endpoint} will not be all-or-nothing: {reason}; keys \
                     are written straight into their databases"
                );
                in_place_reason = Some(reason);
                Staging::InPlace
            }
        };
    }
    match &staging {
        Staging::Spare(spare) => tracing::info!(
            "restoring into {endpoint}: each database into spare database {}, then swapped \
             in whole",
            spare.db
        ),
        _ => tracing::info!("restoring into {endpoint}"),
    }
    let mut target = RedisOnlineRestore::new(
        config,
        OnlineRestoreOptions {
            check_only: false,
            staging,
            ..options
        },
    );
    let mut summary = fetched.restore_into(&mut target, progress).await?;
    if let Some(reason) = in_place_reason {
        summary.notes.push(format!(
            "not all-or-nothing: {reason}; keys were written straight into their databases"
        ));
    }
    Ok(summary)
}

/// Replays an RDB into a running server.
pub struct RedisOnlineRestore {
    config: RedisConfig,
    options: OnlineRestoreOptions,
    /// The databases the last run wrote (or, checking, would write) keys to.
    databases: BTreeSet<u64>,
}

impl RedisOnlineRestore {
    /// An online restore into the server of `config` (keys go to their original databases;
    /// the database of `config` is not used).
    pub fn new(config: RedisConfig, options: OnlineRestoreOptions) -> Self {
        Self {
            config,
            options,
            databases: BTreeSet::new(),
        }
    }

    /// The databases the last run wrote keys to (checking: would write to).
    pub fn databases(&self) -> &BTreeSet<u64> {
        &self.databases
    }
}

#[async_trait]
impl RestoreTarget for RedisOnlineRestore {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let client = RedisClient::connect(&self.config)
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        let mut run = Run::new(client, self.options.clone())
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        let result = run.run(stream).await;
        self.databases = run.keys.keys().copied().collect();
        let sent: u64 = run.keys.values().flat_map(BTreeMap::values).sum();
        match result {
            Ok(summary) => Ok(summary),
            Err(e) if run.stage.is_some() => {
                let e = run.staged_failure(&self.config, e).await;
                Err(Box::new(e))
            }
            // Keys were sent and the connection or the backup stream broke off: some were
            // written. (A refusal by the server says itself what was written.)
            Err(e)
                if !self.options.check_only
                    && sent > 0
                    && matches!(
                        e,
                        RedisError::Io { .. }
                            | RedisError::Protocol { .. }
                            | RedisError::Stream { .. }
                            | RedisError::Rdb { .. }
                            | RedisError::Timeout { .. }
                    ) =>
            {
                Err(Box::new(RedisError::PartlyRestored {
                    endpoint: run.endpoint(),
                    sent,
                    source: Box::new(e),
                }))
            }
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// What a pipelined command was, to interpret its reply.
enum Sent {
    Select(u64),
    Restore { db: u64, key: Vec<u8> },
    Exists { db: u64, key: Vec<u8> },
    Function { name: String },
}

/// A staged restore's progress: the spare database, the backup database staged in it now,
/// and those swapped in.
struct Stage {
    spare: SpareDb,
    current: Option<u64>,
    /// `SWAPDB` of `current` was sent and its reply not yet read.
    swapping: bool,
    swapped: Vec<u64>,
    /// Keys of the target kept beside the backup's (copied into the spare database).
    kept: u64,
}

/// One restore (or check) in progress.
struct Run {
    client: RedisClient,
    options: OnlineRestoreOptions,
    target_version: String,
    target_rdb: Option<u16>,
    /// The server's clock at the start, and when that was.
    server_ms_at_start: i64,
    started: Instant,
    /// The database the connection has selected.
    conn_db: Option<u64>,
    pending: Vec<Sent>,
    pending_bytes: usize,
    // Counts.
    keys: BTreeMap<u64, BTreeMap<ValueType, u64>>,
    expired: u64,
    functions: u64,
    clashes: u64,
    clash_list: Vec<String>,
    library_clashes: Vec<String>,
    stage: Option<Stage>,
}

impl Run {
    async fn new(
        mut client: RedisClient,
        mut options: OnlineRestoreOptions,
    ) -> Result<Self, RedisError> {
        if options.batch_commands == 0 {
            options.batch_commands = DEFAULT_BATCH_COMMANDS;
        }
        if options.batch_bytes == 0 {
            options.batch_bytes = DEFAULT_BATCH_BYTES;
        }
        let target_version = client.server_version().await?;
        let server_ms_at_start = server_time_ms(&mut client).await?;
        let stage = match &options.staging {
            Staging::Spare(spare) if !options.check_only => {
                if !staging::claim(&mut client, spare).await? {
                    return Err(RedisError::Command {
                        endpoint: client.endpoint().to_owned(),
                        command: "SET".to_owned(),
                        reason: format!(
                            "the spare database {} is claimed by another restore or holds \
                             keys; nothing was written",
                            spare.db
                        ),
                    });
                }
                Some(Stage {
                    spare: spare.clone(),
                    current: None,
                    swapping: false,
                    swapped: Vec::new(),
                    kept: 0,
                })
            }
            _ => None,
        };
        Ok(Self {
            stage,
            target_rdb: rdb_version_for_server(&target_version),
            client,
            options,
            target_version,
            server_ms_at_start,
            started: Instant::now(),
            conn_db: None,
            pending: Vec::new(),
            pending_bytes: 0,
            keys: BTreeMap::new(),
            expired: 0,
            functions: 0,
            clashes: 0,
            clash_list: Vec::new(),
            library_clashes: Vec::new(),
        })
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.server_ms_at_start.saturating_add(elapsed)
    }

    fn endpoint(&self) -> String {
        self.client.endpoint().to_owned()
    }

    async fn run(&mut self, stream: ByteStream) -> Result<RestoreSummary, RedisError> {
        const MAX_CAPTURED_VALUE: u64 = 512 * 1024 * 1024;
        let check_only = self.options.check_only;
        let mut reader = RdbReader::new(
            stream,
            ParseOptions {
                capture_payload: !check_only,
                // A value is held whole to be sent with RESTORE: cap it at Redis's own limit
                // for a bulk string, so a hostile backup cannot make us allocate more.
                max_value_bytes: Some(MAX_CAPTURED_VALUE),
                memory_budget: self.options.parse_memory,
            },
        );
        let rdb_err = |source| RedisError::Rdb {
            context: "the backup stream".to_owned(),
            source,
        };
        let mut aux: BTreeMap<String, String> = BTreeMap::new();
        let mut version_checked = false;
        let mut module_aux = 0u64;
        while let Some(item) = reader.next().await.map_err(rdb_err)? {
            if !version_checked && !matches!(item, Item::Aux { .. }) {
                self.check_version(reader.version().unwrap_or(0), &aux)?;
                version_checked = true;
            }
            match item {
                // Only what the checks and notes use: a file cannot grow this map.
                Item::Aux { key, value } if key == b"redis-ver" && value.len() <= 64 => {
                    aux.insert(
                        "redis-ver".to_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
                Item::Aux { .. } => {}
                Item::Entry(entry) => {
                    let version = reader.version().unwrap_or(0);
                    self.entry(entry, version).await?;
                }
                Item::Function { code } => self.function(code).await?,
                Item::ModuleAux { .. } => module_aux += 1,
                _ => {}
            }
        }
        if !version_checked {
            self.check_version(reader.version().unwrap_or(0), &aux)?;
        }
        self.finish_batch().await?;
        self.finish_stage().await?;
        if let Some(stage) = &self.stage {
            staging::release(&mut self.client, &stage.spare).await?;
        }

        if check_only && (self.clashes > 0 || !self.library_clashes.is_empty()) {
            let mut listed = self.clash_list.clone();
            listed.extend(
                self.library_clashes
                    .iter()
                    .map(|l| format!("function library {l}")),
            );
            let total = self.clashes + self.library_clashes.len() as u64;
            let shown = listed.len().min(CLASHES_LISTED);
            return Err(RedisError::KeysExist {
                endpoint: self.endpoint(),
                total,
                keys: listed[..shown].join(", "),
                more: if total > shown as u64 {
                    format!(" (and {} more)", total - shown as u64)
                } else {
                    String::new()
                },
            });
        }
        Ok(RestoreSummary {
            plain_bytes: reader.bytes_read(),
            notes: self.notes(reader.version().unwrap_or(0), &aux, module_aux),
        })
    }

    fn check_version(
        &self,
        backup_rdb: u16,
        aux: &BTreeMap<String, String>,
    ) -> Result<(), RedisError> {
        let Some(target_rdb) = self.target_rdb else {
            return Ok(());
        };
        if backup_rdb <= target_rdb {
            return Ok(());
        }
        let needed = REDIS_RDB_VERSIONS
            .iter()
            .filter(|(_, _, v)| *v >= backup_rdb)
            .min_by_key(|(ma, mi, _)| (*ma, *mi))
            .map(|(ma, mi, _)| format!("{ma}.{mi}"))
            .unwrap_or_else(|| "a newer release".to_owned());
        Err(RedisError::RdbVersionTooNew {
            backup_redis: aux
                .get("redis-ver")
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned()),
            backup_rdb,
            target_redis: self.target_version.clone(),
            target_rdb,
            needed,
        })
    }

    async fn entry(&mut self, mut entry: Entry, rdb_version: u16) -> Result<(), RedisError> {
        if let Some(at) = entry.expire_at_ms {
            if at <= self.now_ms() {
                self.expired += 1;
                return Ok(());
            }
        }
        *self
            .keys
            .entry(entry.db)
            .or_default()
            .entry(entry.value_type)
            .or_default() += 1;
        match self.stage.as_ref().map(|s| (s.spare.db, s.current)) {
            Some((spare, current)) => {
                if current != Some(entry.db) {
                    self.finish_stage().await?;
                    if let Some(stage) = &mut self.stage {
                        stage.current = Some(entry.db);
                    }
                }
                self.select(spare);
            }
            None => self.select(entry.db),
        }
        if self.options.check_only {
            if !self.options.replace {
                self.client.send(&[b"EXISTS", &entry.key]);
                self.pending_bytes += entry.key.len();
                self.pending.push(Sent::Exists {
                    db: entry.db,
                    key: entry.key,
                });
            }
        } else {
            let Some(value) = entry.payload.take() else {
                return Err(RedisError::Protocol {
                    endpoint: self.endpoint(),
                    context: "restoring a key".to_owned(),
                    detail: "the parser kept no value".to_owned(),
                });
            };
            // The value is held once: the parser handed over its buffer, the trailer is
            // appended in place, and a large one is written to the socket from there.
            let payload = into_restore_payload(value, rdb_version);
            let ttl = entry.expire_at_ms.unwrap_or(0).to_string();
            let mut args: Vec<&[u8]> = vec![b"RESTORE", &entry.key, ttl.as_bytes(), &payload];
            if entry.expire_at_ms.is_some() {
                args.push(b"ABSTTL");
            }
            if self.options.replace {
                args.push(b"REPLACE");
            }
            if payload.len() >= DIRECT_SEND_BYTES {
                self.client.send_direct(&args).await?;
            } else {
                self.client.send(&args);
            }
            self.pending_bytes += payload.len() + entry.key.len();
            self.pending.push(Sent::Restore {
                db: entry.db,
                key: entry.key,
            });
        }
        if self.pending.len() >= self.options.batch_commands
            || self.pending_bytes >= self.options.batch_bytes
        {
            self.finish_batch().await?;
        }
        Ok(())
    }

    /// Ends the staging of the current database: the target's own keys copied beside the
    /// backup's in the spare database, `SWAPDB`, the spare emptied.
    async fn finish_stage(&mut self) -> Result<(), RedisError> {
        let Some((spare, Some(db))) = self.stage.as_ref().map(|s| (s.spare.clone(), s.current))
        else {
            return Ok(());
        };
        self.finish_batch().await?;
        let (copied, present) = staging::copy_missing(&mut self.client, db, spare.db).await?;
        if present > 0 && !self.options.replace {
            return Err(RedisError::Command {
                endpoint: self.endpoint(),
                command: "COPY".to_owned(),
                reason: format!(
                    "{present} key(s) of the backup appeared in database {db} after the check; \
                     restore again (with --replace to overwrite them)"
                ),
            });
        }
        if let Some(stage) = &mut self.stage {
            stage.swapping = true;
        }
        staging::swap_in(&mut self.client, db, &spare).await?;
        self.conn_db = Some(spare.db);
        if let Some(stage) = &mut self.stage {
            stage.swapping = false;
            stage.current = None;
            stage.swapped.push(db);
            stage.kept += copied;
        }
        Ok(())
    }

    /// The error of a staged restore that stopped: what was swapped in, what is unchanged,
    /// and the spare database emptied (on this connection, or a new one when it broke).
    async fn staged_failure(&mut self, config: &RedisConfig, source: RedisError) -> RedisError {
        let endpoint = self.endpoint();
        let Some(stage) = self.stage.take() else {
            return source;
        };
        let source = match source {
            RedisError::RestoreRefused {
                endpoint,
                count,
                details,
                ..
            } => RedisError::RestoreRefused {
                endpoint,
                count,
                details,
                written: String::new(),
            },
            other => other,
        };
        let database = match (stage.current, stage.swapping) {
            (Some(db), false) => format!(
                " while restoring database {db}, which is unchanged (the backup was being \
                 restored into the spare database {})",
                stage.spare.db
            ),
            (Some(db), true) => format!(
                " while swapping database {db} in: it holds either its old or its restored \
                 contents, in full (check with DBSIZE)"
            ),
            (None, _) => String::new(),
        };
        let swapped = match stage.swapped.as_slice() {
            [] => "No database was replaced".to_owned(),
            dbs => format!(
                "Database(s) {} were restored whole before",
                dbs.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        // On this connection the replies still owed are read first, so the FLUSHDB comes
        // after every RESTORE sent; a broken connection sends nothing more.
        let mut cleaned = match self.drain().await {
            Ok(()) => staging::discard(&mut self.client, &stage.spare).await.ok(),
            Err(_) => None,
        };
        if cleaned.is_none() {
            if let Ok(mut fresh) = RedisClient::connect(config).await {
                cleaned = staging::discard(&mut fresh, &stage.spare).await.ok();
            }
        }
        let spare = match cleaned {
            Some(true) => format!("the spare database {} was emptied again", stage.spare.db),
            Some(false) => format!(
                "the spare database {} is claimed by another restore now and was left alone",
                stage.spare.db
            ),
            None => format!(
                "the spare database {0} may hold a partial copy: empty it (SELECT {0}, then \
                 FLUSHDB) when the server is back, and run the restore again",
                stage.spare.db
            ),
        };
        RedisError::StagedRestoreFailed {
            endpoint,
            database,
            swapped,
            spare,
            source: Box::new(source),
        }
    }

    /// Sends what is buffered and reads (and drops) the replies still owed.
    async fn drain(&mut self) -> Result<(), RedisError> {
        self.client.flush().await?;
        for _ in std::mem::take(&mut self.pending) {
            self.client.read_reply().await?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn select(&mut self, db: u64) {
        if self.conn_db != Some(db) {
            let text = db.to_string();
            self.client.send(&[b"SELECT", text.as_bytes()]);
            self.pending.push(Sent::Select(db));
            self.conn_db = Some(db);
        }
    }

    async fn function(&mut self, code: Vec<u8>) -> Result<(), RedisError> {
        self.functions += 1;
        let name = library_name(&code);
        if self.options.check_only {
            if !self.options.replace {
                self.finish_batch().await?;
                let reply = self
                    .client
                    .call(&[b"FUNCTION", b"LIST", b"LIBRARYNAME", name.as_bytes()])
                    .await?;
                if library_listed(&reply, &name) {
                    self.library_clashes.push(name);
                }
            }
            return Ok(());
        }
        let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
        if self.options.replace {
            args.push(b"REPLACE");
        }
        args.push(&code);
        self.client.send(&args);
        self.pending_bytes += code.len();
        self.pending.push(Sent::Function { name });
        Ok(())
    }

    /// Sends the buffered commands and reads all their replies; an error for any error reply.
    async fn finish_batch(&mut self) -> Result<(), RedisError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.client.flush().await?;
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut failures: Vec<String> = Vec::new();
        let mut failed = 0u64;
        let mut fatal: Option<RedisError> = None;
        for sent in pending {
            // Every reply is read, even after a failure, to keep the connection in step.
            let reply = self.client.read_reply().await?;
            let message = match (&sent, reply) {
                (_, Resp::Error(message)) => message,
                (Sent::Exists { db, key }, Resp::Integer(n)) => {
                    if n > 0 {
                        self.clashes += 1;
                        if self.clash_list.len() < CLASHES_LISTED {
                            self.clash_list.push(format!("db {db}: {}", show_key(key)));
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let (command, what) = match &sent {
                Sent::Select(db) => ("SELECT", format!("SELECT {db}")),
                Sent::Restore { db, key } => ("RESTORE", format!("db {db} key {}", show_key(key))),
                Sent::Exists { db, key } => ("EXISTS", format!("db {db} key {}", show_key(key))),
                Sent::Function { name } => ("FUNCTION LOAD", format!("function library {name}")),
            };
            if fatal.is_none() && (message.starts_with("NOPERM") || message.starts_with("NOAUTH")) {
                fatal = Some(self.client.reply_error(command, &message));
            }
            if matches!(sent, Sent::Select(_)) && fatal.is_none() {
                fatal = Some(self.client.reply_error(&what, &message));
            }
            failed += 1;
            if failures.len() < FAILURES_LISTED {
                failures.push(format!("{what}: {message}"));
            }
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        if failed > 0 {
            return Err(RedisError::RestoreRefused {
                endpoint: self.endpoint(),
                count: failed,
                details: failures.join("; "),
                written: "; keys sent before were restored".to_owned(),
            });
        }
        Ok(())
    }

    fn notes(
        &self,
        rdb_version: u16,
        aux: &BTreeMap<String, String>,
        module_aux: u64,
    ) -> Vec<String> {
        let total: u64 = self.keys.values().flat_map(|t| t.values()).sum();
        let verb = if self.options.check_only {
            "would restore"
        } else {
            "restored"
        };
        let mut notes = vec![format!(
            "target Redis {} at {} (accepts RDB v{}); backup RDB v{rdb_version}{}",
            self.target_version,
            self.client.endpoint(),
            self.target_rdb
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".to_owned()),
            aux.get("redis-ver")
                .map(|v| format!(" written by Redis {v}"))
                .unwrap_or_default(),
        )];
        notes.push(format!(
            "{verb} {total} keys in {} database(s){}; {} already expired key(s) {}",
            self.keys.len(),
            if self.options.replace {
                " (replacing existing keys)"
            } else {
                ""
            },
            self.expired,
            if self.options.check_only {
                "would be skipped"
            } else {
                "skipped"
            }
        ));
        for (db, types) in &self.keys {
            let n: u64 = types.values().sum();
            let list = types
                .iter()
                .map(|(t, n)| format!("{} {n}", t.name()))
                .collect::<Vec<_>>()
                .join(", ");
            notes.push(format!("db {db}: {n} keys ({list})"));
        }
        notes.push(format!(
            "{} {} function librar{}",
            if self.options.check_only {
                "would load"
            } else {
                "loaded"
            },
            self.functions,
            if self.functions == 1 { "y" } else { "ies" }
        ));
        if module_aux > 0 {
            notes.push(format!(
                "{module_aux} module aux record(s) were not restored (online restores carry \
                 keys and functions only)"
            ));
        }
        if self.options.check_only && !self.options.replace {
            notes.push("no key of the backup exists on the target".to_owned());
        }
        if let Some(stage) = &self.stage {
            notes.push(format!(
                "all or nothing per database: each was restored into the spare database {} \
                 and swapped in whole (SWAPDB); {} key(s) of the target that the backup lacks \
                 were kept",
                stage.spare.db, stage.kept
            ));
        }
        notes
    }
}

/// The server's clock (`TIME`) in Unix milliseconds.
async fn server_time_ms(client: &mut RedisClient) -> Result<i64, RedisError> {
    let reply = client.call(&[b"TIME"]).await?;
    let parts: Vec<i64> = match &reply {
        Resp::Array(Some(items)) => items
            .iter()
            .filter_map(|i| i.as_text().and_then(|t| t.parse().ok()))
            .collect(),
        _ => Vec::new(),
    };
    match parts.as_slice() {
        [secs, micros] => Ok(secs * 1000 + micros / 1000),
        _ => Err(RedisError::Protocol {
            endpoint: client.endpoint().to_owned(),
            context: "to TIME".to_owned(),
            detail: format!("{reply:?}"),
        }),
    }
}

/// The library name of function code (`#!lua name=mylib ...` on the first line).
fn library_name(code: &[u8]) -> String {
    let first = code.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(first)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .unwrap_or("?")
        .to_owned()
}

/// Whether a `FUNCTION LIST` reply holds a library named exactly `name`.
fn library_listed(reply: &Resp, name: &str) -> bool {
    let Resp::Array(Some(libs)) = reply else {
        return false;
    };
    libs.iter().any(|lib| {
        let Resp::Array(Some(fields)) = lib else {
            return false;
        };
        fields.chunks(2).any(|kv| {
            kv.first().and_then(Resp::as_text).as_deref() == Some("library_name")
                && kv.get(1).and_then(Resp::as_text).as_deref() == Some(name)
        })
    })
}

/// A key for messages: escaped, at most 100 characters.
fn show_key(key: &[u8]) -> String {
    let s = key.escape_ascii().to_string();
    if s.len() > 100 {
        let mut end = 100;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("\"{}...\"", &s[..end])
    } else {
        format!("\"{s}\"")
    }
}
