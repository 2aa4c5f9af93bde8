//! Physical base backups: `pg_basebackup` streaming the whole cluster as one tar to its
//! stdout, with no WAL in it (`-X none`): the WAL comes from the archive `backup-wal push`
//! fills, which is why the server's archiving is checked first and the backup is complete
//! only once the server has archived the last WAL segment the backup needs.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_core::{BackupKind, BoxError, ByteStream, Source, SourceFacts};
use tokio::process::Command;

use super::connection::PgConnection;
use super::tools::{discover_async, PgTools};
use crate::error::SourceError;
use crate::process::{ChildProcess, PipeStream, Tail};
use crate::stream::{tee_to_validator, ChannelReader, Tee};
use crate::wal::{Lsn, WalFileName};

/// `source.type` of a base backup's manifest.
pub const PHYSICAL_SOURCE_TYPE: &str = "postgresql-physical";

/// How long a base backup waits for the server to archive its last WAL segment by default.
pub const DEFAULT_ARCHIVE_WAIT: Duration = Duration::from_secs(300);

/// What the server says about itself and its archiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArchiving {
    /// `server_version`, e.g. `15.4`.
    pub version: String,
    /// The major version, e.g. 15.
    pub major: u32,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: String,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// `wal_level`.
    pub wal_level: String,
    /// `archive_mode`.
    pub archive_mode: String,
    /// `archive_command`.
    pub archive_command: String,
}

impl ServerArchiving {
    /// Reads the settings from the server `conn` names.
    ///
    /// # Errors
    /// When the server cannot be reached or queried.
    pub async fn read(conn: &PgConnection) -> Result<Self, SourceError> {
        let client = conn.connect().await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), \
                        current_setting('server_version_num')::int, \
                        (SELECT system_identifier FROM pg_control_system())::text, \
                        (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                        current_setting('wal_level'), current_setting('archive_mode'), \
                        current_setting('archive_command')",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("reading the server's WAL settings", e))?;
        let version: String = row.get(0);
        Ok(Self {
            version: version
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
            major: u32::try_from(row.get::<_, i32>(1) / 10_000).unwrap_or(0),
            system_identifier: row.get(2),
            segment_size: u64::try_from(row.get::<_, i64>(3)).unwrap_or(16 << 20),
            wal_level: row.get(4),
            archive_mode: row.get(5),
            archive_command: row.get(6),
        })
    }

    /// What must change before a base backup can be restored to a point in time: empty when
    /// the server archives its WAL. Each item says what to set.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !matches!(self.wal_level.as_str(), "replica" | "logical") {
            problems.push(format!(
                "wal_level is {}: set wal_level = replica in postgresql.conf (restart needed)",
                self.wal_level
            ));
        }
        if !matches!(self.archive_mode.as_str(), "on" | "always") {
            problems.push(format!(
                "archive_mode is {}: set archive_mode = on in postgresql.conf (restart needed)",
                self.archive_mode
            ));
        }
        let command = self.archive_command.trim();
        if command.is_empty() || command == "(disabled)" {
            problems.push(
                "archive_command is not set: set archive_command = 'backup-wal push %p' \
                 (with --config FILE when the settings are in a file), then SELECT \
                 pg_reload_conf()"
                    .to_owned(),
            );
        }
        problems
    }

    /// Whether the archive command is this tool's.
    pub fn archives_with_backup_wal(&self) -> bool {
        self.archive_command.contains("backup-wal")
    }
}

/// How the server's archiving goes (`pg_stat_archiver` and the current WAL position).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArchiverStatus {
    /// `archive_mode`.
    pub archive_mode: String,
    /// Files archived since the statistics were reset.
    pub archived_count: i64,
    /// The newest file archived.
    pub last_archived_wal: Option<String>,
    /// Seconds since it was archived.
    pub last_archived_secs_ago: Option<f64>,
    /// Failed attempts since the statistics were reset.
    pub failed_count: i64,
    /// The file of the newest failed attempt.
    pub last_failed_wal: Option<String>,
    /// Seconds since that attempt.
    pub last_failed_secs_ago: Option<f64>,
    /// The segment the server writes now.
    pub current_wal: String,
}

impl ArchiverStatus {
    /// Reads it from the server `conn` names.
    ///
    /// # Errors
    /// When the server cannot be reached or queried.
    pub async fn read(conn: &PgConnection) -> Result<Self, SourceError> {
        let client = conn.connect().await?;
        let row = client
            .query_one(
                "SELECT current_setting('archive_mode'), archived_count, last_archived_wal, \
                 extract(epoch FROM now() - last_archived_time)::float8, failed_count, \
                 last_failed_wal, extract(epoch FROM now() - last_failed_time)::float8, \
                 CASE WHEN pg_is_in_recovery() THEN '' \
                      ELSE pg_walfile_name(pg_current_wal_lsn()) END \
                 FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("reading pg_stat_archiver", e))?;
        Ok(Self {
            archive_mode: row.get(0),
            archived_count: row.get(1),
            last_archived_wal: row.get(2),
            last_archived_secs_ago: row.get(3),
            failed_count: row.get(4),
            last_failed_wal: row.get(5),
            last_failed_secs_ago: row.get(6),
            current_wal: row.get(7),
        })
    }

    /// What is wrong with the archiving, one line each: attempts failing since the last
    /// success, or more than one finished segment waiting (archiving falls behind).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !matches!(self.archive_mode.as_str(), "on" | "always") {
            return warnings;
        }
        let failing = match (self.last_failed_secs_ago, self.last_archived_secs_ago) {
            (Some(failed), Some(archived)) => failed < archived,
            (Some(_), None) => true,
            _ => false,
        };
        if failing {
            warnings.push(format!(
                "WAL archiving is failing: the last attempt, for {}, failed {:.0}s ago ({} \
                 failures in all), and nothing was archived since; see the server log for the \
                 archive_command's error",
                self.last_failed_wal.as_deref().unwrap_or("?"),
                self.last_failed_secs_ago.unwrap_or_default(),
                self.failed_count
            ));
        }
        let position = |name: &str| -> Option<(u32, u64)> {
            let timeline = u32::from_str_radix(name.get(..8)?, 16).ok()?;
            let log = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
            let seg = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
            Some((timeline, (log << 32) | seg))
        };
        if let (Some((tl, current)), Some((archived_tl, archived))) = (
            position(&self.current_wal),
            self.last_archived_wal.as_deref().and_then(position),
        ) {
            // The segment being written is never archived yet; one more finished one is the
            // archiver at work.
            let waiting = current.saturating_sub(archived).saturating_sub(1);
            if tl == archived_tl && waiting > 1 {
                warnings.push(format!(
                    "WAL archiving lags: {waiting} finished segments wait to be archived (the \
                     newest archived is {}, the server writes {}); raise \
                     BACKUP_WAL_PUSH_CONCURRENCY or check the destinations' speed",
                    self.last_archived_wal.as_deref().unwrap_or("?"),
                    self.current_wal
                ));
            }
        }
        warnings
    }
}

/// A physical base backup of the cluster `conn` reaches (see the module).
pub struct PhysicalSource {
    conn: PgConnection,
    tools: Option<PgTools>,
    label: String,
    archive_wait: Duration,
    running: Option<Running>,
}

struct Running {
    process: ChildProcess,
    scan: Tee<TarFacts, String>,
    server: ServerArchiving,
    tools: PgTools,
    started: Instant,
}

impl PhysicalSource {
    /// A base backup of the server `conn` names, labelled `label` (in `backup_label`).
    pub fn new(conn: PgConnection, label: impl Into<String>) -> Self {
        Self {
            conn,
            tools: None,
            label: label.into(),
            archive_wait: DEFAULT_ARCHIVE_WAIT,
            running: None,
        }
    }

    /// Uses these client tools (`pg_basebackup` among them).
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Waits at most `wait` for the server to archive the backup's last WAL segment.
    pub fn with_archive_wait(mut self, wait: Duration) -> Self {
        self.archive_wait = wait;
        self
    }

    async fn start(&mut self) -> Result<ByteStream, SourceError> {
        let server = ServerArchiving::read(&self.conn).await?;
        let problems = server.problems();
        if !problems.is_empty() {
            return Err(SourceError::Wal(format!(
                "the server at {} does not archive its WAL, so a base backup of it could not \
                 be restored to any point in time: {}",
                self.conn.endpoint(),
                problems.join("; ")
            )));
        }
        if !server.archives_with_backup_wal() {
            tracing::warn!(
                "archive_command is {:?}, not backup-wal: a point-in-time restore from this \
                 base backup needs its WAL in this tool's archive",
                server.archive_command
            );
        }
        let tools = match &self.tools {
            Some(t) => t.clone(),
            None => discover_async(server.major).await?,
        };
        let (pipe_out, pipe_in) = std::io::pipe().map_err(|source| SourceError::Spawn {
            tool: "pg_basebackup",
            path: tools.pg_basebackup().display().to_string(),
            source,
        })?;
        let mut cmd = Command::new(tools.pg_basebackup());
        cmd.args(pg_basebackup_args(&self.label))
            .stdin(Stdio::null())
            .stdout(pipe_in);
        self.conn.apply_env(&mut cmd);
        let process = ChildProcess::spawn("pg_basebackup", &mut cmd)?;
        drop(cmd);
        let stdout =
            PipeStream::spawn(pipe_out, "pg_basebackup").map_err(|source| SourceError::Spawn {
                tool: "pg_basebackup",
                path: tools.pg_basebackup().display().to_string(),
                source,
            })?;
        let (stream, scan) = tee_to_validator(Box::new(stdout), "the pg_basebackup output", |r| {
            Box::pin(scan_tar(r))
        });
        tracing::info!(
            "pg_basebackup {} started on {} (PostgreSQL {}, system {})",
            tools.version(),
            self.conn.endpoint(),
            server.version,
            server.system_identifier
        );
        self.running = Some(Running {
            process,
            scan,
            server,
            tools,
            started: Instant::now(),
        });
        Ok(Box::new(stream))
    }

    async fn stop(&mut self) -> Result<SourceFacts, SourceError> {
        let Some(mut run) = self.running.take() else {
            return Err(SourceError::Usage(
                "PhysicalSource::finish called without a successful open",
            ));
        };
        if !run.scan.ended() {
            run.process.kill().await;
            run.scan.abort();
            return Err(SourceError::InvalidDump(
                "the pg_basebackup output was not read to its end (the backup was interrupted, \
                 e.g. by a failed upload); pg_basebackup was stopped and this backup is \
                 incomplete"
                    .to_owned(),
            ));
        }
        let (status, stderr) = run.process.wait().await?;
        // The backup's end, as near as can be told: a recovery target must lie after it.
        let stopped_at = chrono::Utc::now();
        if !status.success() {
            let mut error = run.process.failed(status, &stderr);
            if stderr.contains("can only write single tablespace to stdout") {
                error = SourceError::Wal(format!(
                    "{error}: the cluster has tablespaces outside its data directory, which a \
                     base backup to a stream cannot carry; physical backups need a cluster \
                     without extra tablespaces"
                ));
            }
            return Err(error);
        }
        let facts = match run.scan.verdict().await {
            Ok(Ok(facts)) => facts,
            Ok(Err(reason)) => {
                return Err(SourceError::InvalidDump(format!(
                    "the pg_basebackup output {reason}"
                )))
            }
            Err(e) => {
                return Err(SourceError::InvalidDump(format!(
                    "the check of the pg_basebackup output failed: {e}"
                )))
            }
        };
        let positions = match BackupPositions::from_tar(&facts) {
            Ok(positions) => positions,
            Err(e) => BackupPositions::from_stderr(&stderr).map_err(|_| e)?,
        };
        let size = run.server.segment_size;
        let first = WalFileName::segment(positions.timeline, positions.start.segment(size), size);
        let last = WalFileName::segment(
            positions.timeline,
            positions.stop.segment_before(size),
            size,
        );
        wait_until_archived(&self.conn, &last, self.archive_wait).await?;
        tracing::info!(
            "base backup {} to {} (WAL {first} to {last}) taken in {:.1}s",
            positions.start,
            positions.stop,
            run.started.elapsed().as_secs_f64()
        );
        let mut details = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            details.insert(k.to_owned(), v);
        };
        put("label", self.label.clone().into());
        put("start_lsn", positions.start.to_string().into());
        put("stop_lsn", positions.stop.to_string().into());
        put("timeline", positions.timeline.into());
        put(
            "system_identifier",
            run.server.system_identifier.clone().into(),
        );
        put("wal_segment_size", run.server.segment_size.into());
        put("stopped_at", stopped_at.to_rfc3339().into());
        put("wal_start", first.to_string().into());
        put("wal_stop", last.to_string().into());
        put("pg_basebackup_version", run.tools.version().into());
        Ok(SourceFacts {
            source_type: PHYSICAL_SOURCE_TYPE.to_owned(),
            server_version: Some(run.server.version.clone()),
            database: None,
            details,
        })
    }
}

#[async_trait]
impl Source for PhysicalSource {
    fn kind(&self) -> BackupKind {
        BackupKind::BASE
    }

    fn extension(&self) -> &'static str {
        "tar"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        Ok(self.start().await?)
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        Ok(self.stop().await?)
    }
}

/// The arguments of `pg_basebackup`: one tar of the cluster on stdout, no WAL, a fast
/// checkpoint, progress on stderr for the positions. Connection settings go by environment.
pub fn pg_basebackup_args(label: &str) -> Vec<String> {
    [
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--verbose",
        "--no-password",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("--label={label}")])
    .collect()
}

/// Where a base backup started and stopped, from `pg_basebackup --verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPositions {
    /// "write-ahead log start point".
    pub start: Lsn,
    /// "write-ahead log end point".
    pub stop: Lsn,
    /// The timeline of the start point.
    pub timeline: u32,
}

impl BackupPositions {
    /// Reads the positions from the backup's own files: `backup_label` (START WAL LOCATION,
    /// START TIMELINE) and the WAL ranges at the end of `backup_manifest`.
    ///
    /// # Errors
    /// [`SourceError::Wal`] when they are not there.
    pub(crate) fn from_tar(facts: &TarFacts) -> Result<Self, SourceError> {
        let missing = |what: &str| {
            SourceError::Wal(format!(
                "the base backup's {what} is missing from pg_basebackup's output"
            ))
        };
        let label = facts
            .label
            .as_deref()
            .ok_or_else(|| missing("backup_label"))?;
        let value = |marker: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(marker))
                .map(str::trim)
        };
        let start: Lsn = value("START WAL LOCATION:")
            .and_then(|v| v.split_whitespace().next())
            .ok_or_else(|| missing("START WAL LOCATION"))?
            .parse()?;
        let timeline: u32 = value("START TIMELINE:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| missing("START TIMELINE"))?;
        let tail = facts
            .manifest_tail
            .as_deref()
            .ok_or_else(|| missing("backup_manifest"))?;
        let ranges = tail
            .rsplit_once("\"WAL-Ranges\"")
            .map(|(_, r)| r)
            .ok_or_else(|| missing("WAL range (backup_manifest)"))?;
        let stop: Lsn = ranges
            .rsplit_once("\"End-LSN\"")
            .and_then(|(_, rest)| rest.split('"').nth(1))
            .ok_or_else(|| missing("End-LSN (backup_manifest)"))?
            .parse()?;
        Ok(Self {
            start,
            stop,
            timeline,
        })
    }

    /// Reads the positions `pg_basebackup --verbose` reports on stderr (when it fetches or
    /// streams WAL).
    ///
    /// # Errors
    /// [`SourceError::Wal`] when they are not there.
    pub fn from_stderr(stderr: &str) -> Result<Self, SourceError> {
        let after = |marker: &str| {
            stderr
                .lines()
                .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.trim()))
        };
        let missing = || {
            SourceError::Wal(format!(
                "pg_basebackup did not report where the backup starts and ends (its output: \
                 {})",
                crate::process::stderr_excerpt(stderr)
            ))
        };
        let start_line = after("write-ahead log start point:").ok_or_else(missing)?;
        let (start, timeline) = start_line.split_once(" on timeline ").ok_or_else(missing)?;
        let stop = after("write-ahead log end point:").ok_or_else(missing)?;
        Ok(Self {
            start: start.parse()?,
            stop: stop
                .split_whitespace()
                .next()
                .ok_or_else(missing)?
                .parse()?,
            timeline: timeline.trim().parse().map_err(|_| missing())?,
        })
    }
}

/// The most bytes of `backup_label` kept.
const LABEL_LIMIT: usize = 64 * 1024;
/// The bytes kept of the end of `backup_manifest`, where its WAL ranges are.
const MANIFEST_TAIL: usize = 64 * 1024;

/// What the tar stream of `pg_basebackup` says about the backup.
#[derive(Debug, Default)]
pub(crate) struct TarFacts {
    /// `backup_label`.
    label: Option<String>,
    /// The end of `backup_manifest` (PostgreSQL 13 on puts it in a tar written to stdout).
    manifest_tail: Option<String>,
}

/// Reads the tar stream's headers (ustar, 512-byte blocks), keeping `backup_label` and the
/// end of `backup_manifest` and skipping every other member's bytes; the stream must end
/// with the end-of-archive block (a stream cut short is not a backup). Memory: one block plus
/// [`LABEL_LIMIT`] and [`MANIFEST_TAIL`].
async fn scan_tar(reader: &mut ChannelReader) -> Result<TarFacts, String> {
    use tokio::io::AsyncReadExt;
    let truncated = |e: std::io::Error| format!("is not a complete tar archive ({e}): truncated");
    let mut facts = TarFacts::default();
    let mut header = [0u8; 512];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        reader.read_exact(&mut header).await.map_err(truncated)?;
        if header.iter().all(|b| *b == 0) {
            // The end-of-archive marker; whatever follows is padding.
            while reader.read(&mut buf).await.map_err(truncated)? > 0 {}
            return Ok(facts);
        }
        let field = |range: std::ops::Range<usize>| {
            let bytes = &header[range];
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            String::from_utf8_lossy(&bytes[..end]).into_owned()
        };
        let mut name = field(0..100);
        if &header[257..262] == b"ustar" {
            let prefix = field(345..500);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let size = tar_size(&header[124..136]).ok_or("has a member with a bad size field")?;
        let padded = size.div_ceil(512) * 512;
        let name = name.trim_start_matches("./");
        let mut keep = match name {
            "backup_label" => Some(Tail::new(LABEL_LIMIT)),
            "backup_manifest" => Some(Tail::new(MANIFEST_TAIL)),
            _ => None,
        };
        let mut left = padded;
        let mut content_left = size;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = reader.read(&mut buf[..want]).await.map_err(truncated)?;
            if n == 0 {
                return Err("is not a complete tar archive: truncated".to_owned());
            }
            if let Some(tail) = keep.as_mut() {
                let content = usize::try_from(content_left.min(n as u64)).unwrap_or(n);
                tail.push(&buf[..content]);
            }
            content_left = content_left.saturating_sub(n as u64);
            left -= n as u64;
        }
        match (name, keep) {
            ("backup_label", Some(tail)) => {
                facts.label = Some(String::from_utf8_lossy(&tail.to_vec()).into_owned());
            }
            ("backup_manifest", Some(tail)) => {
                facts.manifest_tail = Some(String::from_utf8_lossy(&tail.to_vec()).into_owned());
            }
            _ => {}
        }
    }
}

/// A tar size field: octal digits, or base-256 (first byte's high bit set) for large files.
fn tar_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Waits until the server reports `last` (or a later file of its timeline) archived.
async fn wait_until_archived(
    conn: &PgConnection,
    last: &WalFileName,
    wait: Duration,
) -> Result<(), SourceError> {
    let client = conn.connect().await?;
    let deadline = Instant::now() + wait;
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), \
                 failed_count FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("reading pg_stat_archiver", e))?;
        let archived: String = row.get(0);
        let archived_segment = archived.get(..24).unwrap_or_default();
        if archived_segment.get(..8) == last.as_str().get(..8) && archived_segment >= last.as_str()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let failed: String = row.get(1);
            let failed_count: i64 = row.get(2);
            return Err(SourceError::Wal(format!(
                "the server did not archive {last}, the last WAL segment the base backup \
                 needs, within {}s (last archived: {:?}; {failed_count} failures, the last of \
                 {failed:?}): check archive_command and the server log; the base backup was \
                 not stored",
                wait.as_secs(),
                archived
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_positions_come_from_pg_basebackups_verbose_output() {
        let stderr = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                      pg_basebackup: checkpoint completed\n\
                      pg_basebackup: write-ahead log start point: 0/2000028 on timeline 3\n\
                      pg_basebackup: write-ahead log end point: 0/2000100\n\
                      pg_basebackup: base backup completed\n";
        let positions = BackupPositions::from_stderr(stderr).unwrap();
        assert_eq!(positions.start.to_string(), "0/2000028");
        assert_eq!(positions.stop.to_string(), "0/2000100");
        assert_eq!(positions.timeline, 3);
        assert!(BackupPositions::from_stderr("pg_basebackup: error").is_err());
    }

    async fn scan(bytes: &[u8]) -> Result<TarFacts, String> {
        let (tx, rx) = tokio::sync::mpsc::channel(bytes.len() / 1000 + 2);
        for chunk in bytes.chunks(1000) {
            tx.try_send(Ok(bytes::Bytes::copy_from_slice(chunk)))
                .unwrap();
        }
        drop(tx);
        scan_tar(&mut ChannelReader::new(rx)).await
    }

    fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[tokio::test]
    async fn the_positions_come_from_backup_label_and_the_manifests_wal_ranges() {
        let label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                      CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n\
                      START TIMELINE: 1\n"
            .to_vec();
        let mut manifest = b"{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n".to_vec();
        manifest.extend(std::iter::repeat_n(b' ', 200_000));
        manifest.extend_from_slice(
            b"],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \
              \"End-LSN\": \"0/2000138\" }\n],\n\"Manifest-Checksum\": \"ab\"}\n",
        );
        let archive = tar_of(&[
            ("PG_VERSION", b"15\n".to_vec()),
            ("backup_label", label),
            ("base/1/1259", vec![7u8; 20_000]),
            ("backup_manifest", manifest),
        ]);
        let facts = scan(&archive).await.unwrap();
        let positions = BackupPositions::from_tar(&facts).unwrap();
        assert_eq!(positions.start.to_string(), "0/2000028");
        assert_eq!(positions.stop.to_string(), "0/2000138");
        assert_eq!(positions.timeline, 1);

        // Cut short anywhere: refused.
        for cut in [100, 512, 1024, archive.len() - 1024] {
            assert!(scan(&archive[..cut]).await.is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_member_claiming_a_huge_size_costs_no_memory() {
        let mut header = tar::Header::new_ustar();
        header.set_size(1 << 40);
        header.set_mode(0o600);
        header.set_path("backup_manifest").unwrap();
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&[1u8; 512]);
        let e = scan(&bytes).await.unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert_eq!(tar_size(b"00000001750\0"), Some(1000));
        assert_eq!(
            tar_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(tar_size(b"zz"), None);
    }

    #[test]
    fn failing_or_lagging_archiving_is_a_warning() {
        let fine = ArchiverStatus {
            archive_mode: "on".into(),
            archived_count: 10,
            last_archived_wal: Some("000000010000000000000009".into()),
            last_archived_secs_ago: Some(5.0),
            failed_count: 1,
            last_failed_wal: Some("000000010000000000000003".into()),
            last_failed_secs_ago: Some(600.0),
            current_wal: "00000001000000000000000A".into(),
        };
        assert!(fine.warnings().is_empty(), "{:?}", fine.warnings());
        let failing = ArchiverStatus {
            last_failed_wal: Some("00000001000000000000000A".into()),
            last_failed_secs_ago: Some(1.0),
            ..fine.clone()
        };
        assert!(
            failing.warnings()[0].contains("failing"),
            "{:?}",
            failing.warnings()
        );
        let lagging = ArchiverStatus {
            current_wal: "00000001000000010000000A".into(),
            ..fine.clone()
        };
        assert!(
            lagging.warnings()[0].contains("lags"),
            "{:?}",
            lagging.warnings()
        );
        let off = ArchiverStatus {
            archive_mode: "off".into(),
            ..lagging
        };
        assert!(off.warnings().is_empty());
    }

    #[test]
    fn archiving_problems_say_what_to_set() {
        let server = ServerArchiving {
            version: "15.4".into(),
            major: 15,
            system_identifier: "1".into(),
            segment_size: 16 << 20,
            wal_level: "minimal".into(),
            archive_mode: "off".into(),
            archive_command: "(disabled)".into(),
        };
        let problems = server.problems().join("\n");
        assert!(problems.contains("wal_level = replica"), "{problems}");
        assert!(problems.contains("archive_mode = on"), "{problems}");
        assert!(problems.contains("backup-wal push %p"), "{problems}");
        let fine = ServerArchiving {
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command: "backup-wal push %p".into(),
            ..server
        };
        assert!(fine.problems().is_empty());
        assert!(fine.archives_with_backup_wal());
    }

    #[test]
    fn argv_holds_no_connection_settings() {
        let args = pg_basebackup_args("randevubu_backup_20240115_020000");
        assert!(args.contains(&"--no-password".to_owned()));
        assert!(args.contains(&"--wal-method=none".to_owned()));
        assert!(!args
            .iter()
            .any(|a| a.contains("host") || a.contains("password=")));
    }
}
