//! The backup side: `pg_dump` as a [`Source`].

use std::collections::BTreeMap;
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::{Attachment, BackupKind, BoxError, ByteStream, Source, SourceFacts};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::cluster::ClusterRun;
use super::connection::PgConnection;
use super::globals::{capture, CapturedGlobals};
use super::rows::CountedSnapshot;
use super::tools::{discover_async, PgTools};
use super::DUMP_COMPLETE_MARKER;
use crate::error::SourceError;
use crate::process::{ChildProcess, PipeStream, Tail};
use crate::stream::{tee_to_validator, ChannelReader, Tee};

/// How many final bytes of the dump are kept to look for the completion marker (newer
/// `pg_dump` versions write an `\unrestrict` line of ~80 bytes after it).
const TAIL_BYTES: usize = 1024;

/// `pg_dump`'s output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum DumpFormat {
    /// Plain SQL (`.sql`), as the old script made: restorable with `psql` alone.
    #[default]
    Plain,
    /// Custom archive (`.dump`, `pg_dump --format=custom`), restorable with `pg_restore`.
    /// Written uncompressed (`--compress=0`): the pipeline compresses.
    Custom,
}

impl DumpFormat {
    /// The file-name extension: `sql` or `dump`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Plain => "sql",
            Self::Custom => "dump",
        }
    }

    /// `plain` or `custom`, as `pg_dump --format` names them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Custom => "custom",
        }
    }
}

/// The arguments `pg_dump` is run with. Connection settings, the password included, go in the
/// environment ([`PgConnection::pg_env`]), never here.
pub fn pg_dump_args(format: DumpFormat) -> Vec<&'static str> {
    let mut args = vec!["--no-password"];
    if format == DumpFormat::Custom {
        args.extend(["--format=custom", "--compress=0"]);
    }
    args
}

struct Running {
    process: ChildProcess,
    /// The completeness check beside pg_dump's output.
    check: Tee<(), String>,
    server_version: String,
    tools: PgTools,
    /// The snapshot pg_dump dumps, with the row counts taken in it (when asked for).
    snapshot: Option<CountedSnapshot>,
}

/// A PostgreSQL database dumped by `pg_dump` (kind [`BackupKind::DATABASE`]).
///
/// [`open`](Source::open) connects to read the server version, finds a `pg_dump` at least as
/// new ([`PgTools::discover`]), and starts it with the connection in its environment; the
/// stream is its standard output. [`finish`](Source::finish) fails if `pg_dump` failed (with
/// its stderr), if the stream was not read to its end, or if a plain dump lacks pg_dump's
/// completion marker.
pub struct PostgresSource {
    conn: PgConnection,
    format: DumpFormat,
    tools: Option<PgTools>,
    row_counts: bool,
    allow_empty: bool,
    globals: Option<Globals>,
    /// How many tables the database had when the dump started (recorded as `user_tables`).
    user_tables: u64,
    /// The globals taken by the last run, handed to the pipeline after it.
    captured: Option<CapturedGlobals>,
    /// Globals captured before, for every database of a run ([`Self::with_captured_globals`]).
    preset: Option<CapturedGlobals>,
    /// The run of several databases this backup belongs to.
    cluster_run: Option<ClusterRun>,
    /// The database's owner, recorded for a restore that creates it.
    owner: Option<String>,
    running: Option<Running>,
}

/// Whether and how the cluster's globals are captured ([`PostgresSource::with_globals`]).
#[derive(Debug, Clone, Copy)]
struct Globals {
    role_passwords: bool,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("conn", &self.conn)
            .field("format", &self.format)
            .field("tools", &self.tools)
            .field(
                "running",
                &self.running.as_ref().and_then(|r| r.process.id()),
            )
            .finish()
    }
}

impl PostgresSource {
    /// A source dumping the database `conn` names, in `format`.
    pub fn new(conn: PgConnection, format: DumpFormat) -> Self {
        Self {
            conn,
            format,
            tools: None,
            row_counts: false,
            allow_empty: false,
            globals: None,
            user_tables: 0,
            captured: None,
            preset: None,
            cluster_run: None,
            owner: None,
            running: None,
        }
    }

    /// Embeds these globals (captured once for a run of several databases with
    /// [`capture_cluster_globals`](super::capture_cluster_globals)) instead of capturing them
    /// again.
    pub fn with_captured_globals(mut self, globals: CapturedGlobals) -> Self {
        self.preset = Some(globals);
        self
    }

    /// Records in the manifest that this backup belongs to `run` (see [`ClusterRun`]).
    pub fn in_cluster_run(mut self, run: ClusterRun) -> Self {
        self.cluster_run = Some(run);
        self
    }

    /// Also captures the cluster's globals (roles, memberships, role settings, tablespaces)
    /// with `pg_dumpall --globals-only` when the dump starts, embedded in the manifest as the
    /// attachment [`GLOBALS_ATTACHMENT`](super::GLOBALS_ATTACHMENT) (compressed and encrypted
    /// like the dump). Without `role_passwords` (or when the server refuses to show them) the
    /// roles are captured without their passwords.
    pub fn with_globals(mut self, role_passwords: bool) -> Self {
        self.globals = Some(Globals { role_passwords });
        self
    }

    /// Backs up a database without user tables too. By default [`open`](Source::open) refuses
    /// one ([`SourceError::EmptyDatabase`]): it is most likely the wrong database.
    pub fn allowing_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// Also records the row count of every table (`table_rows` in the manifest's source
    /// facts), counted in the snapshot `pg_dump` dumps: the source exports a snapshot from a
    /// repeatable-read transaction and gives it to `pg_dump --snapshot`, so the counts are
    /// exactly those of the dump, for the restore drill to compare with. Counting reads every
    /// table once more.
    pub fn with_row_counts(mut self) -> Self {
        self.row_counts = true;
        self
    }

    /// Uses these tools instead of discovering them.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The dump format.
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// The connection settings.
    pub fn connection(&self) -> &PgConnection {
        &self.conn
    }

    /// The process id of the running `pg_dump`, between `open` and `finish`.
    pub fn child_pid(&self) -> Option<u32> {
        self.running.as_ref().and_then(|r| r.process.id())
    }

    async fn start(&mut self) -> Result<ByteStream, SourceError> {
        if self.running.is_some() {
            return Err(SourceError::Usage(
                "PostgresSource::open called again before finish",
            ));
        }
        let client = self.conn.connect().await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), \
                        current_setting('server_version_num')::int4",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("reading the server version", e))?;
        let owner = client
            .query_one(
                "SELECT pg_get_userbyid(datdba) FROM pg_database \
                 WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| SourceError::query("reading the database's owner", e))?;
        self.owner = owner.get(0);
        let count = format!("SELECT count(*) FROM ({}) t", super::rows::TABLES);
        let tables: i64 = client
            .query_one(&count, &[])
            .await
            .map_err(|e| SourceError::query("counting the user tables", e))?
            .get(0);
        self.user_tables = u64::try_from(tables).unwrap_or(0);
        if !self.allow_empty && tables == 0 {
            return Err(SourceError::EmptyDatabase {
                endpoint: self.conn.endpoint(),
                database: self.conn.dbname().to_owned(),
            });
        }
        drop(client);
        let full_version: String = row.get(0);
        let server_version = full_version
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let server_major = u32::try_from(row.get::<_, i32>(1) / 10_000).unwrap_or(0);
        let tools = match &self.tools {
            Some(t) if t.major() < server_major => {
                return Err(SourceError::ToolsNotFound {
                    needed_major: server_major,
                    found: format!("{} holds version {}", t.bin_dir().display(), t.version()),
                })
            }
            Some(t) => t.clone(),
            None => discover_async(server_major).await?,
        };

        self.captured = self.preset.clone();
        if let (None, Some(globals)) = (&self.captured, self.globals) {
            let captured = capture(&tools, &self.conn, globals.role_passwords).await?;
            tracing::info!(
                "captured the cluster's roles and tablespaces ({} bytes{})",
                captured.sql.len(),
                if captured.role_passwords {
                    ""
                } else {
                    ", without role passwords"
                }
            );
            self.captured = Some(captured);
        }

        // pg_dump writes into a plain pipe read by a thread of its own (see `PipeStream`).
        let spawn_error = |source| SourceError::Spawn {
            tool: "pg_dump",
            path: tools.pg_dump().display().to_string(),
            source,
        };
        let (pipe_out, pipe_in) = std::io::pipe().map_err(spawn_error)?;
        let snapshot = if self.row_counts {
            Some(CountedSnapshot::export(&self.conn).await?)
        } else {
            None
        };
        let mut cmd = Command::new(tools.pg_dump());
        if let Some(snapshot) = &snapshot {
            cmd.arg(format!("--snapshot={}", snapshot.id));
        }
        cmd.args(pg_dump_args(self.format))
            .stdin(Stdio::null())
            .stdout(pipe_in);
        self.conn.apply_env(&mut cmd);
        let process = ChildProcess::spawn("pg_dump", &mut cmd)?;
        // Our copy of the pipe's write end must close, or the reader never sees the end.
        drop(cmd);
        let stdout = PipeStream::spawn(pipe_out, "pg_dump").map_err(spawn_error)?;
        let format = self.format;
        let (reader, check) = tee_to_validator(Box::new(stdout), "the pg_dump output", move |r| {
            Box::pin(check_dump(r, format))
        });
        tracing::info!(
            "pg_dump {} ({} format) started for database {:?} on {} (PostgreSQL {server_version})",
            tools.version(),
            self.format.name(),
            self.conn.dbname(),
            self.conn.endpoint()
        );
        self.running = Some(Running {
            process,
            check,
            server_version,
            tools,
            snapshot,
        });
        Ok(Box::new(reader))
    }

    async fn stop(&mut self) -> Result<SourceFacts, SourceError> {
        let Some(mut run) = self.running.take() else {
            return Err(SourceError::Usage(
                "PostgresSource::finish called without a successful open",
            ));
        };
        if !run.check.ended() {
            // The consumer stopped early. If pg_dump failed, its error explains why; else a
            // failed check (a custom archive without its magic) does.
            if let Ok(Some(status)) = run.process.child.try_wait() {
                if !status.success() {
                    let stderr = run.process.stderr().await;
                    return Err(run.process.failed(status, &stderr));
                }
            }
            run.process.kill().await;
            if run.check.validator_done() {
                if let Ok(Err(reason)) = run.check.verdict().await {
                    return Err(SourceError::InvalidDump(reason));
                }
            } else {
                run.check.abort();
            }
            return Err(SourceError::InvalidDump(
                "the pg_dump output was not read to its end (the backup was interrupted, e.g. \
                 by a failed upload); pg_dump was stopped and this backup is incomplete"
                    .to_owned(),
            ));
        }
        let (status, stderr) = run.process.wait().await?;
        if !status.success() {
            return Err(run.process.failed(status, &stderr));
        }
        let bytes = run.check.bytes();
        match run.check.verdict().await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(SourceError::InvalidDump(format!(
                    "pg_dump exited successfully but its output ({bytes} bytes) {reason}"
                )))
            }
            Err(e) => {
                return Err(SourceError::InvalidDump(format!(
                    "the check of the pg_dump output failed: {e}"
                )))
            }
        }
        if !stderr.trim().is_empty() {
            tracing::warn!("pg_dump: {}", stderr.trim());
        }
        tracing::info!("pg_dump finished: {bytes} bytes");
        let mut details = BTreeMap::new();
        if let Some(snapshot) = run.snapshot.take() {
            let counts = snapshot.finish().await?;
            tracing::info!(
                "counted {} rows in {} tables in the dump's snapshot",
                counts.values().sum::<u64>(),
                counts.len()
            );
            details.insert("table_rows".to_owned(), serde_json::json!(counts));
        }
        if let Some(captured) = &self.captured {
            details.insert(
                "globals".to_owned(),
                serde_json::json!({
                    "attachment": super::GLOBALS_ATTACHMENT,
                    "role_passwords": captured.role_passwords,
                }),
            );
        }
        details.insert("user_tables".to_owned(), self.user_tables.into());
        if let Some(owner) = &self.owner {
            details.insert("database_owner".to_owned(), owner.clone().into());
        }
        if let Some(run) = &self.cluster_run {
            details.insert(
                super::CLUSTER_RUN_FACT.to_owned(),
                serde_json::to_value(run).unwrap_or_default(),
            );
        }
        details.insert(
            "dump_format".to_owned(),
            serde_json::Value::from(self.format.name()),
        );
        details.insert(
            "pg_dump_version".to_owned(),
            serde_json::Value::from(run.tools.version()),
        );
        Ok(SourceFacts {
            source_type: "postgresql".to_owned(),
            server_version: Some(run.server_version),
            database: Some(self.conn.dbname().to_owned()),
            details,
        })
    }
}

/// The validator beside pg_dump's output: a custom archive must start with its magic (checked
/// as soon as it arrives: a wrong one fails the stream at once), a plain dump must end with
/// [`DUMP_COMPLETE_MARKER`] (pg_dump writes it last; without it the dump is truncated). Keeps
/// only the last [`TAIL_BYTES`].
async fn check_dump(reader: &mut ChannelReader, format: DumpFormat) -> Result<(), String> {
    let mut head = Vec::with_capacity(super::CUSTOM_MAGIC.len());
    let mut tail = Tail::new(TAIL_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if head.len() < super::CUSTOM_MAGIC.len() {
            let room = (super::CUSTOM_MAGIC.len() - head.len()).min(n);
            head.extend_from_slice(&chunk[..room]);
            let magic = &super::CUSTOM_MAGIC[..head.len()];
            if format == DumpFormat::Custom && head != magic {
                return Err("is not a custom-format archive".to_owned());
            }
        }
        tail.push(chunk);
    }
    match format {
        DumpFormat::Custom if head.len() < super::CUSTOM_MAGIC.len() => {
            Err("is not a custom-format archive".to_owned())
        }
        DumpFormat::Plain if !tail.contains(DUMP_COMPLETE_MARKER.as_bytes()) => Err(format!(
            "does not end with {DUMP_COMPLETE_MARKER:?}: the dump is truncated"
        )),
        _ => Ok(()),
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn kind(&self) -> BackupKind {
        BackupKind::DATABASE
    }

    fn extension(&self) -> &'static str {
        self.format.extension()
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        Ok(self.start().await.map_err(|e| self.at_server(e))?)
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        Ok(self.stop().await.map_err(|e| self.at_server(e))?)
    }

    fn take_attachments(&mut self) -> Vec<Attachment> {
        self.captured
            .take()
            .map(|c| Attachment {
                name: super::GLOBALS_ATTACHMENT.to_owned(),
                bytes: c.sql,
            })
            .into_iter()
            .collect()
    }
}

impl PostgresSource {
    /// A failure of pg_dump with the server it dumped (its own message rarely names it).
    fn at_server(&self, error: SourceError) -> SourceError {
        match error {
            SourceError::ToolFailed { .. } => SourceError::AtServer {
                endpoint: self.conn.endpoint(),
                database: self.conn.dbname().to_owned(),
                source: Box::new(error),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check_dump` over `chunks`, as the tee feeds it.
    async fn check(chunks: &[&[u8]], format: DumpFormat) -> Result<(), String> {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(Ok(bytes::Bytes::copy_from_slice(chunk)))
                .unwrap();
        }
        drop(tx);
        check_dump(&mut ChannelReader::new(rx), format).await
    }

    #[tokio::test]
    async fn a_plain_dump_must_end_with_the_marker_and_a_custom_one_start_with_the_magic() {
        let marker = format!("\n{DUMP_COMPLETE_MARKER}\n--\n");
        let plain = DumpFormat::Plain;
        assert!(check(&[b"SET x;", marker.as_bytes()], plain).await.is_ok());
        // Split across chunks, and after a long dump.
        let (a, b) = marker.as_bytes().split_at(10);
        let long = vec![b'x'; 3 * TAIL_BYTES];
        assert!(check(&[&long, a, b], plain).await.is_ok());
        let err = check(&[b"SET x;", &long], plain).await.unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(check(&[], plain).await.is_err());
        // A marker in the middle is not the end.
        let err = check(&[marker.as_bytes(), &long], plain).await.unwrap_err();
        assert!(err.contains("truncated"), "{err}");

        let custom = DumpFormat::Custom;
        assert!(check(&[b"PG", b"DMP\x01rest"], custom).await.is_ok());
        assert!(check(&[b"PGDM"], custom).await.is_err());
        assert!(check(&[b"SELECT"], custom).await.is_err());
    }

    #[test]
    fn argv_holds_no_connection_settings() {
        let conn =
            PgConnection::new("db.example", 5432, "app", "randevubu").with_password("hunter2");
        for format in [DumpFormat::Plain, DumpFormat::Custom] {
            let args = pg_dump_args(format);
            assert!(args.contains(&"--no-password"));
            for arg in &args {
                for (_, value) in conn.pg_env() {
                    assert!(!arg.contains(value.as_str()), "{arg} leaks {value}");
                }
            }
        }
        assert!(pg_dump_args(DumpFormat::Custom).contains(&"--format=custom"));
        assert!(!pg_dump_args(DumpFormat::Plain)
            .iter()
            .any(|a| a.contains("format")));
    }

    #[test]
    fn formats_name_their_extension() {
        assert_eq!(DumpFormat::Plain.extension(), "sql");
        assert_eq!(DumpFormat::Custom.extension(), "dump");
        assert_eq!(DumpFormat::default(), DumpFormat::Plain);
    }
}
