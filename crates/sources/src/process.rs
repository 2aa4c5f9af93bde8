//! Child-process plumbing shared by the sources: spawning with a drained stderr, remembering the
//! last bytes of a stream, describing how a process ended.

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::error::SourceError;

/// How much of a child's stderr is kept (the end of it).
pub(crate) const STDERR_KEEP: usize = 64 * 1024;
/// How much of the kept stderr goes into an error message.
const STDERR_IN_ERRORS: usize = 4 * 1024;

/// The last `capacity` bytes seen.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    buf: VecDeque<u8>,
    capacity: usize,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.capacity);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        let bytes = self.to_vec();
        !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
    }
}

/// Names of inherited environment variables that hold secrets (or URLs that may embed them):
/// the tool's own (`POSTGRES_PASSWORD`, `REDIS_PASSWORD`, `DATABASE_URL`, `REDIS_URL`, ...),
/// the cloud SDKs' (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...), libpq's `PGPASSWORD`,
/// and anything else whose name says password, secret, token or credential. No child process
/// (`pg_dump`, `psql`, `pg_restore`, stop/start hooks, `docker`) inherits them; a child that
/// needs a secret gets exactly that one set again after the scrub (`PGPASSWORD` for libpq).
pub(crate) fn inherited_secret_names() -> Vec<std::ffi::OsString> {
    const URLS: &[&str] = &["DATABASE_URL", "REDIS_URL", "REDIS_TARGET_URL"];
    const WORDS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL"];
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let upper = name.to_string_lossy().to_ascii_uppercase();
            URLS.contains(&upper.as_str()) || WORDS.iter().any(|w| upper.contains(w))
        })
        .collect()
}

/// Removes every [inherited secret](inherited_secret_names) from `cmd`'s environment. Call it
/// before setting the variables the child does need.
pub(crate) fn scrub_secrets(cmd: &mut tokio::process::Command) {
    for name in inherited_secret_names() {
        cmd.env_remove(name);
    }
}

/// `exit status 3`, `killed by signal 9`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// The end of a stderr capture, for an error message.
pub(crate) fn stderr_excerpt(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.len() <= STDERR_IN_ERRORS {
        return trimmed.to_owned();
    }
    let mut start = trimmed.len() - STDERR_IN_ERRORS;
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &trimmed[start..])
}

/// How a program run by [`run_to_end`] ended, and the ends of what it printed.
pub(crate) struct Finished {
    /// How it ended.
    pub(crate) status: ExitStatus,
    /// The last [`STDERR_KEEP`] bytes of its stdout.
    pub(crate) stdout: String,
    /// The last [`STDERR_KEEP`] bytes of its stderr.
    pub(crate) stderr: String,
}

/// Runs `cmd` to its end with stdin closed, stdout and stderr drained concurrently into bounded
/// tails (a program that prints without end cannot exhaust memory); killed if this future is
/// dropped. For hooks and helper commands whose output only matters for error messages.
pub(crate) async fn run_to_end(cmd: &mut Command) -> std::io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().map(|out| tokio::spawn(drain_tail(out)));
    let stderr = child.stderr.take().map(|err| tokio::spawn(drain_tail(err)));
    let status = child.wait().await?;
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let joined = |handle: Option<JoinHandle<Vec<u8>>>| async move {
        match handle {
            Some(handle) => handle.await.map(text).unwrap_or_default(),
            None => String::new(),
        }
    };
    Ok(Finished {
        status,
        stdout: joined(stdout).await,
        stderr: joined(stderr).await,
    })
}

/// Reads `from` to its end, keeping the last [`STDERR_KEEP`] bytes.
async fn drain_tail(mut from: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut tail = Tail::new(STDERR_KEEP);
    let mut buf = vec![0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buf[..n]),
        }
    }
    tail.to_vec()
}

/// A spawned helper program whose stderr is drained concurrently into a bounded buffer.
///
/// It is killed when dropped (`kill_on_drop`).
pub(crate) struct ChildProcess {
    pub(crate) tool: &'static str,
    pub(crate) child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl ChildProcess {
    /// Spawns `cmd` with stderr piped and drained; stdin/stdout as configured by the caller.
    pub(crate) fn spawn(tool: &'static str, cmd: &mut Command) -> Result<Self, SourceError> {
        cmd.stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SourceError::Spawn {
            tool,
            path: format!("{:?}", cmd.as_std().get_program()),
            source,
        })?;
        let stderr = child.stderr.take().map(|err| tokio::spawn(drain_tail(err)));
        Ok(Self {
            tool,
            child,
            stderr,
        })
    }

    /// The process id, while it runs.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything kept from stderr; waits for the drain to end (the process must have exited,
    /// or at least closed its stderr).
    pub(crate) async fn stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(handle) => handle
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Waits for the process to exit; returns how it ended and its stderr.
    pub(crate) async fn wait(&mut self) -> Result<(ExitStatus, String), SourceError> {
        let status = self.child.wait().await.map_err(|source| SourceError::Io {
            what: format!("waiting for {}", self.tool),
            source,
        })?;
        let stderr = self.stderr().await;
        Ok((status, stderr))
    }

    /// Waits and turns a failure into [`SourceError::ToolFailed`]; returns stderr on success.
    pub(crate) async fn wait_success(&mut self) -> Result<String, SourceError> {
        let (status, stderr) = self.wait().await?;
        if status.success() {
            Ok(stderr)
        } else {
            Err(self.failed(status, &stderr))
        }
    }

    /// Kills the process (`SIGKILL`) and reaps it; returns its stderr.
    pub(crate) async fn kill(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stderr().await
    }

    /// A [`SourceError::ToolFailed`] for this process.
    pub(crate) fn failed(&self, status: ExitStatus, stderr: &str) -> SourceError {
        SourceError::ToolFailed {
            tool: self.tool,
            status: describe_status(status),
            stderr: stderr_excerpt(stderr),
        }
    }
}

/// Size of the chunks a [`PipeStream`] hands over.
const PIPE_CHUNK: usize = 256 * 1024;
/// A [`PipeStream`] hands a chunk over once it holds at least this much (or at end of input).
const PIPE_BATCH: usize = 128 * 1024;
/// Chunks in flight between the reading thread and the consumer (memory: this × PIPE_CHUNK).
const PIPE_CHUNKS_IN_FLIGHT: usize = 4;

/// A child's output pipe, read by a dedicated thread with blocking reads and handed over in
/// chunks of at least [`PIPE_BATCH`] bytes.
///
/// `pg_dump` writes in 4 KiB pieces; reading those straight from an async pipe costs a
/// readiness wake-up, a read and a failed read for each piece, which on a busy 2-core machine
/// is the difference between keeping up with `pg_dump` and not. A blocking thread reads each
/// piece with one system call and wakes the consumer once per batch.
pub(crate) struct PipeStream {
    chunks: crate::stream::ChannelReader,
}

impl PipeStream {
    /// Starts the reading thread for `pipe`.
    pub(crate) fn spawn(
        mut pipe: std::io::PipeReader,
        tool: &'static str,
    ) -> std::io::Result<Self> {
        use std::io::Read;
        let (tx, rx) = tokio::sync::mpsc::channel(PIPE_CHUNKS_IN_FLIGHT);
        std::thread::Builder::new()
            .name(format!("{tool}-stdout"))
            .spawn(move || loop {
                let mut chunk = vec![0u8; PIPE_CHUNK];
                let mut filled = 0;
                let mut at_end = false;
                while filled < PIPE_BATCH {
                    match pipe.read(&mut chunk[filled..]) {
                        Ok(0) => {
                            at_end = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // The consumer may be gone already; then nobody needs the error.
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                chunk.truncate(filled);
                // A send fails only when the consumer is gone: stop reading, which closes the
                // pipe and stops the child on its next write.
                if filled > 0 && tx.blocking_send(Ok(bytes::Bytes::from(chunk))).is_err() {
                    return;
                }
                if at_end {
                    return;
                }
            })?;
        Ok(Self {
            chunks: crate::stream::ChannelReader::new(rx),
        })
    }
}

impl AsyncRead for PipeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.chunks).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_to_end_keeps_only_the_ends_of_endless_output_and_reports_the_exit() {
        let mut cmd = Command::new("sh");
        // 20 MB on stdout, then a line on stderr, then exit 3.
        cmd.arg("-c")
            .arg("head -c 20000000 /dev/zero | tr '\\0' x; echo; echo 'disk full' >&2; exit 3");
        let done = run_to_end(&mut cmd).await.unwrap();
        assert_eq!(describe_status(done.status), "exit status 3");
        assert_eq!(
            done.stdout.len(),
            STDERR_KEEP,
            "only the end of stdout is kept"
        );
        assert!(done.stdout.ends_with("xxx\n"));
        assert_eq!(done.stderr, "disk full\n");
        let missing = run_to_end(&mut Command::new("/nonexistent/hook")).await;
        assert!(missing.is_err());
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.to_vec(), b"cdefg");
        t.push(b"0123456789");
        assert_eq!(t.to_vec(), b"56789");
        assert!(t.contains(b"678"));
        assert!(!t.contains(b"456"));
    }

    #[test]
    fn long_stderr_is_cut_at_the_front() {
        let long = "é".repeat(5000);
        let cut = stderr_excerpt(&long);
        assert!(cut.starts_with("..."));
        assert!(cut.len() <= STDERR_IN_ERRORS + 3);
    }

    #[tokio::test]
    async fn pipe_stream_delivers_every_byte_in_order_then_eof() {
        use std::io::Write;
        use tokio::io::AsyncReadExt;
        let (reader, mut writer) = std::io::pipe().unwrap();
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let producer = std::thread::spawn(move || {
            // Small writes, as pg_dump makes them.
            for piece in data.chunks(4096) {
                writer.write_all(piece).unwrap();
            }
        });
        let mut stream = PipeStream::spawn(reader, "test").unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        producer.join().unwrap();
        assert_eq!(got, expected);
    }
}
