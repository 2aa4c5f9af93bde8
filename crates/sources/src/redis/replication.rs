//! The replication handshake and the RDB transfer that follows `SYNC`.
//!
//! After `REPLCONF capa eof capa psync2`, `REPLCONF rdb-only 1` (Redis 7.0+; older servers
//! refuse it, which is fine) and `SYNC`, the master sends `\n` keep-alives while it prepares
//! the snapshot, then either `$<len>\r\n` and exactly `len` bytes (disk-based transfer) or
//! `$EOF:<40-byte mark>\r\n`, the RDB and the same mark (diskless transfer). The stream yields
//! exactly the RDB: in EOF-mark mode the last 40 bytes are held back until it is known whether
//! they are the mark. A connection that ends early is an error, never a clean end of file.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, ReadBuf};

use crate::redis::connection::{read_line_limited, Conn, RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;

/// Length of the end mark of a diskless (`$EOF:`) transfer.
pub const EOF_MARK_LEN: usize = 40;

/// Seconds without a single byte from the master (not even a keep-alive) before giving up.
pub const IDLE_TIMEOUT_SECS: u64 = 120;

/// How the master sends the RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// `$<len>`: this many bytes are still to come.
    Length { remaining: u64 },
    /// `$EOF:<mark>`: the RDB ends with `mark`; `held` are the last bytes received, not yet
    /// yielded because they may be (part of) the mark.
    Eof {
        mark: [u8; EOF_MARK_LEN],
        held: Vec<u8>,
    },
}

/// Shared counters of a transfer.
#[derive(Debug, Default)]
pub(crate) struct TransferProgress {
    /// RDB bytes yielded so far.
    pub(crate) bytes: AtomicU64,
    /// The whole RDB arrived (length reached or end mark found).
    pub(crate) complete: AtomicBool,
}

/// The RDB bytes a master sends after `SYNC`, as an `AsyncRead` that ends exactly at the end of
/// the RDB (length-prefixed or diskless `$EOF:<mark>` transfers).
///
/// Read errors are [`io::Error`]s wrapping a [`RedisError`] ([`RedisError::Truncated`] when the
/// connection ends early, [`RedisError::Timeout`] when the master goes silent).
pub struct ReplicationStream {
    conn: Option<Conn>,
    endpoint: String,
    mode: Mode,
    expected_len: Option<u64>,
    /// Bytes ready to be yielded: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    finished: bool,
    failed: Option<(io::ErrorKind, String)>,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
    progress: Arc<TransferProgress>,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("endpoint", &self.endpoint)
            .field("diskless", &self.diskless())
            .field("expected_len", &self.expected_len)
            .field("bytes", &self.bytes_received())
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl ReplicationStream {
    /// Connects to the server of `config` and starts a full synchronisation.
    ///
    /// # Errors
    /// As [`RedisClient::connect`] and [`from_client`](Self::from_client).
    pub async fn start(config: &RedisConfig) -> Result<Self, RedisError> {
        let client = RedisClient::connect(config).await?;
        Self::from_client(client).await
    }

    /// Performs the replication handshake on `client` and waits until the master starts
    /// sending the RDB (it first runs a `BGSAVE`, which may take a while; progress is logged).
    ///
    /// # Errors
    /// [`RedisError::Permission`] when the user may not run `REPLCONF` or `SYNC` (the message
    /// names the ACL rule to add), [`RedisError::Command`] for other refusals,
    /// [`RedisError::Timeout`] when the master sends nothing for 120 s,
    /// [`RedisError::Protocol`] for an unexpected answer.
    pub async fn from_client(mut client: RedisClient) -> Result<Self, RedisError> {
        let endpoint = client.endpoint().to_owned();
        if let Resp::Error(message) = client
            .command(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
            .await?
        {
            return Err(client.reply_error("REPLCONF", &message));
        }
        match client.command(&[b"REPLCONF", b"rdb-only", b"1"]).await? {
            Resp::Error(message) if message.starts_with("NOPERM") => {
                return Err(client.reply_error("REPLCONF", &message));
            }
            Resp::Error(message) => {
                tracing::debug!(
                    "{endpoint} does not support REPLCONF rdb-only (Redis < 7.0): {message}"
                );
            }
            _ => {}
        }
        client.send(&[b"SYNC"]);
        client.flush().await?;
        let user = client.config().user_name().to_owned();
        let (mut conn, endpoint) = client.into_conn();
        let idle_timeout = Duration::from_secs(IDLE_TIMEOUT_SECS);
        tracing::info!("waiting for the RDB snapshot from {endpoint} (the server saves it first)");
        let started = tokio::time::Instant::now();
        let mut next_log = Duration::from_secs(30);
        let mut line = Vec::new();
        let (mode, expected_len) = loop {
            line.clear();
            let read =
                tokio::time::timeout(idle_timeout, read_line_limited(&mut conn, &mut line)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                Ok(Err(source)) => {
                    return Err(RedisError::Io {
                        endpoint,
                        context: "waiting for the RDB snapshot after SYNC".to_owned(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(RedisError::Timeout {
                        endpoint,
                        what: "waiting for the RDB snapshot after SYNC (not even a keep-alive \
                               arrived)"
                            .to_owned(),
                        seconds: IDLE_TIMEOUT_SECS,
                        hint: "check the server log for a failed or stuck BGSAVE".to_owned(),
                    })
                }
            };
            if n == 0 {
                return Err(RedisError::Truncated {
                    endpoint,
                    detail: "the server closed the connection before sending the RDB".to_owned(),
                });
            }
            if line == b"\n" {
                let waited = started.elapsed();
                if waited >= next_log {
                    tracing::info!(
                        "still waiting for the snapshot from {endpoint} ({} s)",
                        waited.as_secs()
                    );
                    next_log += Duration::from_secs(30);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if let Some(message) = text.strip_prefix('-') {
                return Err(reply_error_for(
                    &endpoint,
                    "SYNC",
                    message,
                    &sync_error_hint(&user),
                ));
            }
            if text.starts_with('+') {
                // `+FULLRESYNC <replid> <offset>` (PSYNC-style preamble): informative only.
                tracing::debug!("{endpoint}: {text}");
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"$EOF:") {
                let rest = rest.strip_suffix(b"\r\n").unwrap_or(rest);
                let mark: [u8; EOF_MARK_LEN] =
                    rest.try_into().map_err(|_| RedisError::Protocol {
                        endpoint: endpoint.clone(),
                        context: "after SYNC".to_owned(),
                        detail: format!("an end mark of {} bytes instead of 40", rest.len()),
                    })?;
                tracing::info!(
                    "receiving the RDB snapshot from {endpoint} (diskless transfer, size unknown \
                     until the end)"
                );
                break (
                    Mode::Eof {
                        mark,
                        held: Vec::with_capacity(EOF_MARK_LEN),
                    },
                    None,
                );
            }
            if let Some(len) = text.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
                tracing::info!(
                    "receiving the RDB snapshot from {endpoint}: {len} bytes (disk-based \
                     transfer)"
                );
                break (Mode::Length { remaining: len }, Some(len));
            }
            return Err(RedisError::Protocol {
                endpoint,
                context: "after SYNC".to_owned(),
                detail: format!("{:?}", truncate_text(&text, 80)),
            });
        };
        let progress = Arc::new(TransferProgress::default());
        let finished = expected_len == Some(0);
        if finished {
            progress.complete.store(true, Ordering::SeqCst);
        }
        Ok(Self {
            conn: if finished { None } else { Some(conn) },
            endpoint,
            mode,
            expected_len,
            pending: Vec::new(),
            pos: 0,
            finished,
            failed: None,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            progress,
        })
    }

    /// Whether the master chose a diskless (`$EOF:` mark) transfer.
    pub fn diskless(&self) -> bool {
        matches!(self.mode, Mode::Eof { .. })
    }

    /// The announced RDB size (disk-based transfers only).
    pub fn expected_len(&self) -> Option<u64> {
        self.expected_len
    }

    /// RDB bytes yielded so far.
    pub fn bytes_received(&self) -> u64 {
        self.progress.bytes.load(Ordering::SeqCst)
    }

    /// Whether the whole RDB arrived (length reached or end mark found).
    pub fn is_complete(&self) -> bool {
        self.progress.complete.load(Ordering::SeqCst)
    }

    /// `host:port` of the master.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The shared counters, still readable after the stream was handed away.
    pub(crate) fn progress(&self) -> Arc<TransferProgress> {
        Arc::clone(&self.progress)
    }

    fn fail(&mut self, error: RedisError, kind: io::ErrorKind) -> io::Error {
        self.failed = Some((kind, error.to_string()));
        self.conn = None;
        io::Error::new(kind, error)
    }

    fn truncated(&mut self) -> io::Error {
        let received = self.bytes_received();
        let detail = match &self.mode {
            Mode::Length { remaining } => format!(
                "the connection closed after {received} of {} bytes ({remaining} missing)",
                received + remaining
            ),
            Mode::Eof { held, .. } => format!(
                "the connection closed after {} bytes without the end mark of the diskless \
                 transfer",
                received + held.len() as u64
            ),
        };
        let error = RedisError::Truncated {
            endpoint: self.endpoint.clone(),
            detail,
        };
        self.fail(error, io::ErrorKind::UnexpectedEof)
    }

    fn complete(&mut self) {
        self.finished = true;
        self.conn = None;
        self.progress.complete.store(true, Ordering::SeqCst);
        tracing::info!(
            "RDB transfer from {} complete: {} bytes",
            self.endpoint,
            self.bytes_received()
        );
    }
}

fn truncate_text(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn sync_error_hint(user: &str) -> String {
    format!(
        "backups over the replication protocol need `+sync +psync +replconf`: run ACL SETUSER \
         {user} +sync +psync +replconf (or use the file method)"
    )
}

fn reply_error_for(endpoint: &str, command: &str, message: &str, hint: &str) -> RedisError {
    if message.starts_with("NOPERM") {
        RedisError::Permission {
            endpoint: endpoint.to_owned(),
            command: command.to_owned(),
            reason: message.to_owned(),
            hint: hint.to_owned(),
        }
    } else if message.starts_with("NOAUTH") {
        RedisError::Authentication {
            endpoint: endpoint.to_owned(),
            user: String::new(),
            reason: message.to_owned(),
            hint: "check REDIS_PASSWORD and REDIS_USERNAME (or the credentials in REDIS_URL)"
                .to_owned(),
        }
    } else {
        RedisError::Command {
            endpoint: endpoint.to_owned(),
            command: command.to_owned(),
            reason: message.to_owned(),
        }
    }
}

impl AsyncRead for ReplicationStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.pos < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pos);
                buf.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.pending.len() {
                    this.pending.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some((kind, message)) = &this.failed {
                return Poll::Ready(Err(io::Error::new(*kind, message.clone())));
            }
            if this.finished {
                return Poll::Ready(Ok(()));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let data = match Pin::new(&mut *conn).poll_fill_buf(cx) {
                Poll::Ready(Ok(data)) => data,
                Poll::Ready(Err(source)) => {
                    let error = RedisError::Io {
                        endpoint: this.endpoint.clone(),
                        context: "receiving the RDB".to_owned(),
                        source,
                    };
                    return Poll::Ready(Err(this.fail(error, io::ErrorKind::Other)));
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let error = RedisError::Timeout {
                            endpoint: this.endpoint.clone(),
                            what: "receiving the RDB (no data arrived)".to_owned(),
                            seconds: this.idle_timeout.as_secs(),
                            hint: "check the network and the server log".to_owned(),
                        };
                        return Poll::Ready(Err(this.fail(error, io::ErrorKind::TimedOut)));
                    }
                    return Poll::Pending;
                }
            };
            if data.is_empty() {
                return Poll::Ready(Err(this.truncated()));
            }
            let len = data.len();
            match &mut this.mode {
                Mode::Length { remaining } => {
                    let n = buf
                        .remaining()
                        .min(len)
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    buf.put_slice(&data[..n]);
                    conn.consume(n);
                    *remaining -= n as u64;
                    let done = *remaining == 0;
                    this.progress.bytes.fetch_add(n as u64, Ordering::SeqCst);
                    this.reset_idle();
                    if done {
                        this.complete();
                    }
                    return Poll::Ready(Ok(()));
                }
                Mode::Eof { mark, held } => {
                    this.pending.clear();
                    this.pos = 0;
                    this.pending.extend_from_slice(held);
                    this.pending.extend_from_slice(data);
                    conn.consume(len);
                    held.clear();
                    let done = this.pending.ends_with(&mark[..]);
                    if done {
                        this.pending.truncate(this.pending.len() - EOF_MARK_LEN);
                    } else {
                        let keep = this.pending.len().min(EOF_MARK_LEN);
                        let split = this.pending.len() - keep;
                        held.extend_from_slice(&this.pending[split..]);
                        this.pending.truncate(split);
                    }
                    this.progress
                        .bytes
                        .fetch_add(this.pending.len() as u64, Ordering::SeqCst);
                    this.reset_idle();
                    if done {
                        this.complete();
                    }
                    // Loop: yield `pending`, or read more when everything was held back.
                }
            }
        }
    }
}

impl ReplicationStream {
    fn reset_idle(&mut self) {
        let deadline = tokio::time::Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }
}
