//! Turning a dump stream into SQL and feeding it to `psql` in one transaction that commits only
//! after the stream ended cleanly; shared by the restore and the dry-run check.
//!
//! Commit control: the transaction is opened and committed by us, never by psql on its own.
//! `psql` runs without `--single-transaction` (which makes psql send `COMMIT` when its input
//! reaches end-of-file); we write `BEGIN;` before the first byte of the dump and `COMMIT;` only
//! after the input stream returned end-of-file (which, by the
//! [`RestoreTarget`](backup_core::RestoreTarget) contract, means it was verified), `pg_restore`
//! (custom format) exited successfully, and the SQL ended with pg_dump's completion marker.
//! Whatever else ends psql's input (a failure here, the tool killed with `SIGKILL`, a power
//! cut) ends the session with the transaction open, and the server rolls it back. On a failure
//! psql is also killed outright, so it stops reading at once.
//!
//! Meta-commands: psql runs in restricted mode with a key of ours when it has `\restrict`
//! (see [`super::restrict`]), so no `\!` or other backslash command in a backup can run.

use std::process::Stdio;

use backup_core::ByteStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

use super::connection::PgConnection;
use super::dump::DumpFormat;
use super::restrict::{psql_restricts, random_key, restrict_line, RestrictFilter};
use super::tools::{discover_async, PgTools};
use super::{CUSTOM_MAGIC, DUMP_COMPLETE_MARKER};
use crate::error::SourceError;
use crate::process::{describe_status, stderr_excerpt, ChildProcess, Tail};

/// Copy buffer size.
const CHUNK: usize = 64 * 1024;
/// Bytes of the SQL's end kept to find the completion marker.
const SQL_TAIL: usize = 1024;
/// Bytes of a line kept for inspection (header comments are short).
const LINE_KEEP: usize = 160;
/// How long a `psql` that stopped reading gets to exit on its own before it is killed.
const PSQL_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a failing restore waits for psql to report an SQL error it may be about to hit.
const PSQL_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Server settings for the restoring session: a restore may legitimately be slow (idle in
/// transaction while the download is slow, long index builds), whatever the server defaults.
const PSQL_PGOPTIONS: &str = "-c statement_timeout=0 -c lock_timeout=0 \
     -c idle_in_transaction_session_timeout=0 -c client_min_messages=warning";

/// What opens the restore's transaction: the first thing psql reads.
pub const OPEN_TRANSACTION: &[u8] = b"BEGIN;\n";
/// What commits it: written only after everything was verified. A newline first, so that it
/// is a statement of its own even if the SQL's last line had none.
pub const COMMIT_TRANSACTION: &[u8] = b"\nCOMMIT;\n";

/// The arguments `psql` is run with; connection settings go in its environment. No
/// `--single-transaction`: see the module docs.
pub fn psql_args() -> Vec<&'static str> {
    vec![
        "--no-psqlrc",
        "--no-password",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        "--file=-",
    ]
}

/// The arguments `pg_restore` is run with: read the archive on stdin, write SQL to stdout. It
/// does not connect anywhere.
pub fn pg_restore_args() -> Vec<&'static str> {
    vec!["--no-password", "--file=-"]
}

/// Where the SQL goes.
pub(crate) enum SqlTarget<'a> {
    /// Nowhere: a dry-run check.
    Discard,
    /// Into `psql` connected to the database `conn` names.
    Database {
        /// Connection to the target database.
        conn: &'a PgConnection,
        /// Refuse dumps with their own transaction control (large objects): needed when the
        /// target cannot simply be dropped on failure.
        in_place: bool,
    },
}

/// What was applied or checked.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) format: DumpFormat,
    /// Bytes read from the input stream.
    pub(crate) input_bytes: u64,
    /// Bytes of SQL produced (equal to `input_bytes` for plain dumps).
    pub(crate) sql_bytes: u64,
    /// `-- Dumped from database version X`.
    pub(crate) dumped_from: Option<String>,
    /// `-- Dumped by pg_dump version X`.
    pub(crate) dumped_by: Option<String>,
    /// Whether the dump holds large objects.
    pub(crate) large_objects: bool,
    /// The `pg_restore` version used (custom format).
    pub(crate) pg_restore_version: Option<String>,
    /// Whether psql ran in restricted mode (no meta-command could run).
    pub(crate) restricted: bool,
}

impl Applied {
    /// Human-readable lines for a [`RestoreSummary`](backup_core::RestoreSummary).
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut notes = vec![match (&self.format, &self.pg_restore_version) {
            (DumpFormat::Custom, Some(v)) => format!(
                "format: pg_dump custom archive ({} bytes, converted to {} bytes of SQL by \
                 pg_restore {v})",
                self.input_bytes, self.sql_bytes
            ),
            _ => format!("format: plain SQL dump ({} bytes)", self.sql_bytes),
        }];
        match (&self.dumped_by, &self.dumped_from) {
            (Some(by), Some(from)) => {
                notes.push(format!("dumped by pg_dump {by} from PostgreSQL {from}"))
            }
            (Some(by), None) => notes.push(format!("dumped by pg_dump {by}")),
            _ => {}
        }
        notes.push("the dump is complete (ends with pg_dump's completion marker)".to_owned());
        if self.restricted {
            notes.push(
                "psql ran in restricted mode: no backslash command in the dump could run"
                    .to_owned(),
            );
        }
        if self.large_objects {
            notes.push("the dump contains large objects".to_owned());
        }
        notes
    }
}

/// Watches the SQL as it passes: size, last bytes, header comments, large-object sections.
struct SqlScanner {
    bytes: u64,
    tail: Tail,
    line: Vec<u8>,
    dumped_from: Option<String>,
    dumped_by: Option<String>,
    large_objects: bool,
    refuse_large_objects: bool,
}

impl SqlScanner {
    fn new(refuse_large_objects: bool) -> Self {
        Self {
            bytes: 0,
            tail: Tail::new(SQL_TAIL),
            line: Vec::with_capacity(LINE_KEEP),
            dumped_from: None,
            dumped_by: None,
            large_objects: false,
            refuse_large_objects,
        }
    }

    /// Looks at `chunk` before it is passed on; an error means it must not be passed on.
    fn observe(&mut self, chunk: &[u8]) -> Result<(), SourceError> {
        self.bytes += chunk.len() as u64;
        self.tail.push(chunk);
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            self.keep(&rest[..pos]);
            self.end_line()?;
            rest = &rest[pos + 1..];
        }
        self.keep(rest);
        Ok(())
    }

    fn keep(&mut self, part: &[u8]) {
        let room = LINE_KEEP.saturating_sub(self.line.len()).min(part.len());
        self.line.extend_from_slice(&part[..room]);
    }

    fn end_line(&mut self) -> Result<(), SourceError> {
        let line = std::mem::take(&mut self.line);
        if line.starts_with(b"-- ") {
            let text = String::from_utf8_lossy(&line);
            if let Some(v) = text.strip_prefix("-- Dumped from database version ") {
                self.dumped_from.get_or_insert_with(|| v.trim().to_owned());
            } else if let Some(v) = text.strip_prefix("-- Dumped by pg_dump version ") {
                self.dumped_by.get_or_insert_with(|| v.trim().to_owned());
            } else if text.starts_with("-- Data for Name: ")
                && (text.contains("Type: BLOBS") || text.contains("LARGE OBJECT"))
            {
                self.large_objects = true;
                if self.refuse_large_objects {
                    return Err(SourceError::InvalidDump(
                        "the dump contains large objects, which pg_dump wraps in their own \
                         BEGIN/COMMIT, so it cannot be restored in place as one transaction. \
                         Restore it into a new database (--target-db NEW --create) or with \
                         --replace"
                            .to_owned(),
                    ));
                }
            }
        }
        self.line = line;
        self.line.clear();
        Ok(())
    }

    fn complete(&self) -> bool {
        self.tail.contains(DUMP_COMPLETE_MARKER.as_bytes())
    }
}

/// `psql` reading SQL on stdin inside one transaction.
///
/// Dropping it without [`commit`](Self::commit) kills `psql` *before* closing its stdin, so
/// the transaction can never be committed by accident (e.g. when the restore future is
/// cancelled).
struct Psql {
    process: ChildProcess,
    stdin: Option<ChildStdin>,
    /// Drops pg_dump's own `\restrict`/`\unrestrict` when psql is restricted with our key.
    restrict: Option<RestrictFilter>,
    /// The filter's output.
    filtered: Vec<u8>,
}

impl Drop for Psql {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.process.child.start_kill();
        }
        // `stdin` is dropped (closed) only after this body ran, i.e. after the kill.
    }
}

impl Psql {
    fn spawn(conn: &PgConnection, tools: &PgTools) -> Result<Self, SourceError> {
        let mut cmd = Command::new(tools.psql());
        cmd.args(psql_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        conn.apply_env(&mut cmd);
        cmd.env("PGOPTIONS", PSQL_PGOPTIONS);
        let mut process = ChildProcess::spawn("psql", &mut cmd)?;
        let stdin = process.child.stdin.take();
        Ok(Self {
            process,
            stdin,
            restrict: None,
            filtered: Vec::new(),
        })
    }

    /// Spawns psql, puts it in restricted mode when it can be (a random key that appears
    /// nowhere else, so nothing in the dump can lift it) and opens the transaction everything
    /// else runs in.
    async fn begin(conn: &PgConnection, tools: &PgTools) -> Result<Self, SourceError> {
        let mut psql = Self::spawn(conn, tools)?;
        if psql_restricts(tools.version()) {
            psql.write(&restrict_line(&random_key())).await?;
            psql.restrict = Some(RestrictFilter::new());
        } else {
            tracing::warn!(
                "psql {} cannot forbid backslash commands (\\restrict needs PostgreSQL client \
                 17.6, 16.10, 15.14, 14.19, 13.22 or later): the backup's SQL is applied as \
                 verified, without that second line of defence",
                tools.version()
            );
        }
        psql.write(OPEN_TRANSACTION).await?;
        Ok(psql)
    }

    /// Writes SQL of the dump: through the [`RestrictFilter`] when psql is restricted.
    async fn write_sql(&mut self, chunk: &[u8]) -> Result<(), SourceError> {
        let Some(filter) = self.restrict.as_mut() else {
            return self.write(chunk).await;
        };
        let mut out = std::mem::take(&mut self.filtered);
        out.clear();
        filter.filter(chunk, &mut out);
        let result = self.write(&out).await;
        self.filtered = out;
        result
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), SourceError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(SourceError::Usage("psql input already closed"));
        };
        if let Err(write_error) = stdin.write_all(chunk).await {
            // psql stopped reading, i.e. it is exiting (ON_ERROR_STOP). Its stdin stays open,
            // so it cannot commit; let it finish printing its error, then make sure it is gone.
            let exited = tokio::time::timeout(PSQL_EXIT_GRACE, self.process.child.wait()).await;
            let _ = self.process.child.start_kill();
            let status = match exited {
                Ok(Ok(status)) => describe_status(status),
                _ => format!("stopped reading its input ({write_error}) and was killed"),
            };
            let _ = self.process.child.wait().await;
            let stderr = self.process.stderr().await;
            return Err(SourceError::ToolFailed {
                tool: "psql",
                status,
                stderr: stderr_excerpt(&stderr),
            });
        }
        Ok(())
    }

    /// Kills psql with its stdin still open: the transaction is rolled back.
    async fn abort(mut self) {
        self.process.kill().await;
        self.stdin.take();
    }

    /// Like [`abort`](Self::abort), but if psql had already failed on its own (an SQL error
    /// with `ON_ERROR_STOP`), returns that failure, which explains more than our reason.
    async fn abort_reporting_failure(mut self) -> Option<SourceError> {
        // Give psql a moment to act on what it has read: if it is failing, it exits now.
        let exited = tokio::time::timeout(PSQL_SETTLE, self.process.child.wait()).await;
        if matches!(exited, Ok(Ok(status)) if !status.success()) {
            let (status, stderr) = self.process.wait().await.ok()?;
            self.stdin.take();
            return Some(self.process.failed(status, &stderr));
        }
        self.abort().await;
        None
    }

    /// Sends `COMMIT`, closes stdin and checks that psql succeeded.
    async fn commit(mut self) -> Result<(), SourceError> {
        if let Some(mut filter) = self.restrict.take() {
            let mut rest = Vec::new();
            filter.finish(&mut rest);
            tracing::debug!(
                "psql restricted with our key; {} of pg_dump's own \\restrict lines dropped",
                filter.dropped()
            );
            self.write(&rest).await?;
        }
        self.write(COMMIT_TRANSACTION).await?;
        let mut stdin = self.stdin.take();
        if let Some(s) = stdin.as_mut() {
            // Flush what is buffered; an error here means psql is gone.
            if let Err(e) = s.flush().await {
                self.process.kill().await;
                return Err(SourceError::Io {
                    what: "writing to psql".to_owned(),
                    source: e,
                });
            }
        }
        drop(stdin);
        let (status, stderr) = self.process.wait().await?;
        if !status.success() {
            return Err(self.process.failed(status, &stderr));
        }
        if !stderr.trim().is_empty() {
            tracing::warn!("psql: {}", stderr.trim());
        }
        Ok(())
    }
}

/// Reads until `want` bytes or end-of-file.
async fn read_head(stream: &mut ByteStream, want: usize) -> Result<Vec<u8>, SourceError> {
    let mut head = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        let n = stream
            .read(&mut head[filled..])
            .await
            .map_err(|source| SourceError::Stream {
                bytes: filled as u64,
                source,
            })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

/// Recognises the stream's format from its first bytes; refuses what is clearly not a dump.
pub(crate) fn sniff(head: &[u8]) -> Result<DumpFormat, SourceError> {
    if head.is_empty() {
        return Err(SourceError::InvalidDump(
            "the backup stream is empty: there is no dump to restore".to_owned(),
        ));
    }
    if head.starts_with(CUSTOM_MAGIC) {
        return Ok(DumpFormat::Custom);
    }
    let still = |what: &str, hint: &str| {
        Err(SourceError::InvalidDump(format!(
            "the backup stream is still {what}, not a dump; {hint}"
        )))
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        return still(
            "gzip-compressed",
            "decompress it first (does the object name lack its .gz suffix?)",
        );
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return still(
            "zstd-compressed",
            "decompress it first (does the object name lack its .zst suffix?)",
        );
    }
    if head.starts_with(b"Salted__") {
        return still(
            "encrypted (openssl Salted__ header)",
            "decrypt it first (does the object name lack its .enc suffix?)",
        );
    }
    if head.contains(&0) {
        return Err(SourceError::InvalidDump(
            "the backup stream is binary data, neither a plain SQL dump nor a pg_dump custom \
             archive"
                .to_owned(),
        ));
    }
    Ok(DumpFormat::Plain)
}

/// Reads `stream` to its end, converting a custom archive to SQL with `pg_restore`, and applies
/// the SQL to `target` in one transaction that is committed only if everything succeeded.
///
/// `tools` is needed for `psql` and `pg_restore`; when `None` they are discovered on demand.
pub(crate) async fn apply_dump(
    mut stream: ByteStream,
    target: SqlTarget<'_>,
    tools: Option<&PgTools>,
) -> Result<Applied, SourceError> {
    let head = read_head(&mut stream, 8).await?;
    let format = sniff(&head)?;
    let discovered;
    let tools = match tools {
        Some(t) => Some(t),
        None if format == DumpFormat::Custom || matches!(target, SqlTarget::Database { .. }) => {
            discovered = discover_async(0).await?;
            Some(&discovered)
        }
        None => None,
    };
    let (mut psql, mut scanner) = match &target {
        SqlTarget::Discard => (None, SqlScanner::new(false)),
        SqlTarget::Database { conn, in_place } => {
            let tools = tools.ok_or(SourceError::Usage("psql needs client tools"))?;
            (
                Some(Psql::begin(conn, tools).await?),
                SqlScanner::new(*in_place),
            )
        }
    };
    let mut input = std::io::Cursor::new(head).chain(stream);
    let result = match format {
        DumpFormat::Custom => match tools {
            Some(tools) => through_pg_restore(&mut input, tools, psql.as_mut(), &mut scanner)
                .await
                .map(|bytes| (bytes, Some(tools.version().to_owned()))),
            None => Err(SourceError::Usage("pg_restore needs client tools")),
        },
        _ => copy_plain(&mut input, psql.as_mut(), &mut scanner)
            .await
            .map(|bytes| (bytes, None)),
    };
    let (input_bytes, pg_restore_version) = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(p) = psql {
                p.abort().await;
            }
            return Err(e);
        }
    };
    if !scanner.complete() {
        if let Some(p) = psql {
            if let Some(psql_error) = p.abort_reporting_failure().await {
                return Err(psql_error);
            }
        }
        return Err(SourceError::InvalidDump(format!(
            "the dump is incomplete: its {} bytes of SQL do not end with pg_dump's marker \
             {DUMP_COMPLETE_MARKER:?} (the dump was truncated, or pg_dump failed while making it)",
            scanner.bytes
        )));
    }
    let restricted = psql.as_ref().is_some_and(|p| p.restrict.is_some());
    if let Some(p) = psql {
        p.commit().await?;
    }
    Ok(Applied {
        format,
        input_bytes,
        sql_bytes: scanner.bytes,
        dumped_from: scanner.dumped_from,
        dumped_by: scanner.dumped_by,
        large_objects: scanner.large_objects,
        pg_restore_version,
        restricted,
    })
}

async fn copy_plain(
    input: &mut (impl AsyncRead + Unpin),
    mut psql: Option<&mut Psql>,
    scanner: &mut SqlScanner,
) -> Result<u64, SourceError> {
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|source| SourceError::Stream { bytes, source })?;
        if n == 0 {
            return Ok(bytes);
        }
        bytes += n as u64;
        scanner.observe(&buf[..n])?;
        if let Some(p) = psql.as_deref_mut() {
            p.write_sql(&buf[..n]).await?;
        }
    }
}

/// Feeds the archive to `pg_restore --file=-` and its SQL output onward, concurrently.
/// Returns the archive's size once the input reached end-of-file and pg_restore succeeded.
async fn through_pg_restore(
    input: &mut (impl AsyncRead + Unpin),
    tools: &PgTools,
    mut psql: Option<&mut Psql>,
    scanner: &mut SqlScanner,
) -> Result<u64, SourceError> {
    let mut cmd = Command::new(tools.pg_restore());
    cmd.args(pg_restore_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // It connects nowhere; give it no credentials.
    crate::process::scrub_secrets(&mut cmd);
    let mut restore = ChildProcess::spawn("pg_restore", &mut cmd)?;
    let stdin = restore
        .child
        .stdin
        .take()
        .ok_or(SourceError::Usage("pg_restore has no stdin pipe"))?;
    let mut stdout = restore
        .child
        .stdout
        .take()
        .ok_or(SourceError::Usage("pg_restore has no stdout pipe"))?;
    let restore_ref = &mut restore;

    let feed = async move {
        let mut stdin = Some(stdin);
        let mut early_exit = None;
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|source| SourceError::Stream { bytes, source })?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if let Some(w) = stdin.as_mut() {
                if w.write_all(&buf[..n]).await.is_err() {
                    // pg_restore stopped reading. If it failed, that is the error; if it
                    // succeeded without needing the rest, the rest must still be read so the
                    // stream can verify itself.
                    stdin = None;
                    let (status, stderr) = restore_ref.wait().await?;
                    if !status.success() {
                        return Err(restore_ref.failed(status, &stderr));
                    }
                    early_exit = Some(stderr);
                }
            }
        }
        drop(stdin);
        Ok::<_, SourceError>((bytes, early_exit))
    };
    let pump = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|source| SourceError::Io {
                    what: "reading pg_restore's output".to_owned(),
                    source,
                })?;
            if n == 0 {
                return Ok::<_, SourceError>(());
            }
            scanner.observe(&buf[..n])?;
            if let Some(p) = psql.as_deref_mut() {
                p.write_sql(&buf[..n]).await?;
            }
        }
    };
    let ((bytes, early_exit), ()) = tokio::try_join!(feed, pump)?;
    let stderr = match early_exit {
        Some(stderr) => stderr,
        None => restore.wait_success().await?,
    };
    if !stderr.trim().is_empty() {
        tracing::warn!("pg_restore: {}", stderr.trim());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_recognises_formats_and_refuses_the_wrong_stage() {
        assert_eq!(sniff(b"PGDMP\x01\x0e\x00").unwrap(), DumpFormat::Custom);
        assert_eq!(sniff(b"--\n-- Po").unwrap(), DumpFormat::Plain);
        for (bytes, word) in [
            (&[0x1f, 0x8b, 8, 0][..], "gzip"),
            (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd"),
            (&b"Salted__"[..], "encrypted"),
            (&b""[..], "empty"),
            (&[1, 0, 2][..], "binary"),
        ] {
            let err = sniff(bytes).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
    }

    #[test]
    fn scanner_reads_headers_across_chunks_and_flags_large_objects() {
        let sql = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.4\n\
                   -- Dumped by pg_dump version 15.5\n\nCOPY t FROM stdin;\n1\n\\.\n\n--\n\
                   -- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\nBEGIN;\n\n\
                   --\n-- PostgreSQL database dump complete\n--\n\n";
        let mut s = SqlScanner::new(false);
        for chunk in sql.as_bytes().chunks(7) {
            s.observe(chunk).unwrap();
        }
        assert_eq!(s.dumped_from.as_deref(), Some("15.4"));
        assert_eq!(s.dumped_by.as_deref(), Some("15.5"));
        assert!(s.large_objects);
        assert!(s.complete());
        assert_eq!(s.bytes, sql.len() as u64);

        let mut strict = SqlScanner::new(true);
        let err = sql
            .as_bytes()
            .chunks(7)
            .try_for_each(|c| strict.observe(c))
            .unwrap_err();
        assert!(err.to_string().contains("large objects"), "{err}");
    }

    #[test]
    fn argv_of_psql_and_pg_restore_hold_no_connection_settings() {
        for arg in psql_args().into_iter().chain(pg_restore_args()) {
            assert!(!arg.contains("password="), "{arg}");
            assert!(!arg.starts_with("--host") && !arg.starts_with("--dbname"));
        }
        // psql must never commit on its own when its input ends (a killed restore).
        assert!(!psql_args().contains(&"--single-transaction"));
        assert!(!psql_args().contains(&"-1"));
        assert!(psql_args().contains(&"--set=ON_ERROR_STOP=1"));
    }
}
