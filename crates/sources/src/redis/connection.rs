//! Connection settings and a small RESP2 client (TCP or TLS).
//!
//! The client is deliberately small: commands are binary-safe argument lists, replies are
//! [`Resp`] values, and commands can be pipelined ([`RedisClient::send`] buffers,
//! [`RedisClient::flush`] writes, [`RedisClient::read_reply`] reads one reply). Reads go
//! through a large buffer, so thousands of pipelined replies cost few system calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::redis::error::RedisError;

/// Seconds a connection attempt (TCP, TLS handshake and `AUTH`) may take.
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

/// The client name set with `CLIENT SETNAME`, visible in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "backup-redis";

/// The read buffer of a connection.
const READ_BUFFER: usize = 256 * 1024;

/// The longest line a server may send (a status, an error, a length header; the replication
/// preamble): longer ones are a protocol error, never an ever-growing buffer.
pub const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Reads up to and including the next `\n` into `line`, at most [`MAX_LINE_BYTES`]: a longer
/// line is an `InvalidData` error. Returns the bytes read (0 at end of stream).
pub(crate) async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = reader
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', line)
        .await?;
    if !line.ends_with(b"\n") && n as u64 > MAX_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the server sent a line longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    Ok(n)
}

/// The most heap one reply may take while it is read ([`RedisClient::read_reply`]): 64 MiB.
///
/// Every array slot (`size_of::<Resp>()` bytes each, as reserved) and every byte of a bulk,
/// simple or error string is counted, and while a buffer grows its old and new copies are
/// counted together, so this bounds what a hostile server can make the client hold, whatever
/// lengths it declares. A bulk string whose declared length passes it is refused before any of
/// it is read. The client only reads replies to small admin commands (`INFO`, `CONFIG GET`,
/// `ROLE`, `FUNCTION LIST LIBRARYNAME`, acknowledgements of `RESTORE`, `SELECT`,
/// `FUNCTION LOAD`...), far below this; because of the doubling growth, the largest single
/// array or string it accepts is about half of it (a million elements, some 40 MiB).
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// The deepest nesting of arrays a reply may have (Redis replies nest a few levels).
pub const MAX_REPLY_DEPTH: usize = 32;

/// The slots an array reserves before its elements arrive; it grows with them, never with
/// the length it declares.
const ARRAY_PREALLOC: usize = 16;

/// The bytes a bulk string reserves before its data arrives.
const BULK_PREALLOC: usize = 64 * 1024;

/// An array being read: the elements so far and how many it declared.
struct Frame {
    items: Vec<Resp>,
    want: usize,
}

/// The write buffer is flushed by [`RedisClient::send`] once it holds this much.
const WRITE_FLUSH_THRESHOLD: usize = 1024 * 1024;

/// Hint for connection failures.
const CONNECT_HINT: &str = "check REDIS_HOST and REDIS_PORT (or REDIS_URL) and that Redis is \
                            running and reachable from here";

/// Hint for credential failures.
const AUTH_HINT: &str = "check REDIS_PASSWORD and REDIS_USERNAME (or the credentials in \
                         REDIS_URL)";

/// Where and how to connect to Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user (`REDIS_USERNAME`), `None` for the default user.
    pub username: Option<String>,
    /// Password (`REDIS_PASSWORD`), environment only.
    pub password: Option<zeroize::Zeroizing<String>>,
    /// Logical database of the URL (`redis://host/3`), 0 by default.
    pub db: u32,
    /// TLS (`rediss://`).
    pub tls: bool,
    /// Extra CA certificate (PEM) to trust for TLS (`REDIS_TLS_CA_FILE`).
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn decode(part: &str, what: &str) -> Result<String, RedisError> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| RedisError::Config(format!("REDIS_URL: the {what} is not valid UTF-8")))
}

fn parse_port(value: &str, variable: &str) -> Result<u16, RedisError> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(RedisError::Config(format!(
            "{variable} must be a port number (1-65535), got {value:?}"
        ))),
    }
}

impl RedisConfig {
    /// Reads `REDIS_URL`, or `REDIS_HOST` (default `localhost`), `REDIS_PORT` (6379),
    /// `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS_CA_FILE` through `lookup`.
    ///
    /// `REDIS_URL` is `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS),
    /// percent-encoded. `REDIS_USERNAME` and `REDIS_PASSWORD` fill in what the URL leaves out;
    /// `REDIS_TLS_CA_FILE` applies either way. Empty variables count as unset.
    ///
    /// # Errors
    /// [`RedisError::Config`] for an invalid URL or port, naming the variable (never echoing
    /// the URL, which may hold a password).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, RedisError> {
        let get = |name: &str| non_empty(lookup(name));
        let env_user = get("REDIS_USERNAME");
        let env_password = get("REDIS_PASSWORD");
        let tls_ca_file = get("REDIS_TLS_CA_FILE").map(PathBuf::from);

        let mut config = if let Some(raw) = get("REDIS_URL") {
            Self::parse_url(raw.trim())?
        } else {
            let host = get("REDIS_HOST").unwrap_or_else(|| "localhost".to_owned());
            let port = match get("REDIS_PORT") {
                Some(p) => parse_port(&p, "REDIS_PORT")?,
                None => 6379,
            };
            Self {
                host,
                port,
                username: None,
                password: None,
                db: 0,
                tls: false,
                tls_ca_file: None,
            }
        };
        if config.username.is_none() {
            config.username = env_user;
        }
        if config.password.is_none() {
            config.password = env_password.map(zeroize::Zeroizing::new);
        }
        config.tls_ca_file = tls_ca_file;
        Ok(config)
    }

    /// The server an online restore writes into when it is not the one `REDIS_*` name (the
    /// source's): `flag_url` (`--target-url`, which may not hold a password: argv is visible
    /// to every user), else `REDIS_TARGET_URL` (environment only, may hold one). The password,
    /// when the URL has none, comes from the file `REDIS_TARGET_PASSWORD_FILE` names (its
    /// first line), never from the source's `REDIS_PASSWORD`. `REDIS_TLS_CA_FILE` applies.
    /// `None` when neither is set.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a password in `flag_url`, an invalid URL, an unreadable
    /// password file.
    pub fn restore_target(
        flag_url: Option<&str>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, RedisError> {
        let get = |name: &str| non_empty(lookup(name));
        let mut config = match (flag_url, get("REDIS_TARGET_URL")) {
            (Some(raw), _) => {
                let config = Self::parse_url(raw.trim())?;
                if config.password.is_some() {
                    return Err(RedisError::Config(
                        "--target-url must not hold a password: command lines are visible to \
                         every user of the machine. Put the whole URL in REDIS_TARGET_URL, or \
                         the password in a file named by REDIS_TARGET_PASSWORD_FILE"
                            .to_owned(),
                    ));
                }
                config
            }
            (None, Some(raw)) => Self::parse_url(raw.trim()).map_err(|e| match e {
                RedisError::Config(m) => {
                    RedisError::Config(m.replace("REDIS_URL", "REDIS_TARGET_URL"))
                }
                other => other,
            })?,
            (None, None) => return Ok(None),
        };
        if config.password.is_none() {
            if let Some(file) = get("REDIS_TARGET_PASSWORD_FILE") {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    RedisError::Config(format!(
                        "REDIS_TARGET_PASSWORD_FILE {file}: cannot read it ({e})"
                    ))
                })?;
                let first = text.lines().next().unwrap_or_default().to_owned();
                config.password = non_empty(Some(first)).map(zeroize::Zeroizing::new);
            }
        }
        config.tls_ca_file = get("REDIS_TLS_CA_FILE").map(PathBuf::from);
        Ok(Some(config))
    }

    fn parse_url(raw: &str) -> Result<Self, RedisError> {
        let url = url::Url::parse(raw).map_err(|e| {
            RedisError::Config(format!(
                "REDIS_URL is not a valid URL ({e}); expected \
                 redis://[user[:password]@]host[:port][/db] or rediss://... for TLS"
            ))
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(RedisError::Config(format!(
                    "REDIS_URL must start with redis:// or rediss:// (TLS), not {other}://"
                )))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| RedisError::Config("REDIS_URL has no host".to_owned()))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = url.port().unwrap_or(6379);
        if port == 0 {
            return Err(RedisError::Config(
                "REDIS_URL: the port must be between 1 and 65535".to_owned(),
            ));
        }
        let username = Some(decode(url.username(), "user name")?).filter(|u| !u.is_empty());
        let password = match url.password() {
            Some(p) => Some(decode(p, "password")?).filter(|p| !p.is_empty()),
            None => None,
        };
        let path = url.path().trim_matches('/');
        let db = if path.is_empty() {
            0
        } else {
            path.parse::<u32>().map_err(|_| {
                RedisError::Config(format!(
                    "REDIS_URL: the path must be a database number (e.g. /0), got /{path}"
                ))
            })?
        };
        Ok(Self {
            host,
            port,
            username,
            password: password.map(zeroize::Zeroizing::new),
            db,
            tls,
            tls_ca_file: None,
        })
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The ACL user name used, `default` when none is configured.
    pub fn user_name(&self) -> &str {
        self.username.as_deref().unwrap_or("default")
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as text: simple strings, bulk strings (lossily decoded) and integers.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Self::Simple(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Self::Integer(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

/// The byte stream under a connection: TCP or TLS over TCP.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// A buffered connection.
pub(crate) type Conn = BufReader<Box<dyn Transport>>;

/// A connection to Redis: authenticated, ready for commands.
pub struct RedisClient {
    config: RedisConfig,
    endpoint: String,
    conn: Conn,
    wbuf: Vec<u8>,
    line: Vec<u8>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("endpoint", &self.endpoint)
            .field("user", &self.config.username)
            .field("tls", &self.config.tls)
            .finish()
    }
}

/// The system's trusted CA certificates, loaded once.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        if !result.errors.is_empty() {
            tracing::debug!(
                "some system CA certificates could not be loaded: {:?}",
                result.errors
            );
        }
        result.certs
    })
}

fn tls_connector(config: &RedisConfig) -> Result<tokio_rustls::TlsConnector, RedisError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(native_roots().iter().cloned());
    if let Some(path) = &config.tls_ca_file {
        let bad = |detail: String| {
            RedisError::Config(format!(
                "REDIS_TLS_CA_FILE {}: {detail}; it must be a PEM file of CA certificates",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate found".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(RedisError::Config(
            "no trusted CA certificates for TLS: install the system CA bundle or set \
             REDIS_TLS_CA_FILE to the CA of the Redis server"
                .to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RedisError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

/// The first word of a server error, e.g. `WRONGPASS`.
fn error_code(message: &str) -> &str {
    message.split_whitespace().next().unwrap_or("")
}

impl RedisClient {
    /// Connects (TCP or TLS, 10 s timeout), authenticates with `AUTH [user] password` when a
    /// password is configured, and sets the client name (`CLIENT SETNAME backup-redis`).
    ///
    /// The logical database of the URL is not selected: the replication protocol covers all
    /// databases, and restores select their own.
    ///
    /// # Errors
    /// [`RedisError::Connect`] (refused, timed out, TLS failure), [`RedisError::Authentication`]
    /// (wrong or missing credentials), [`RedisError::Config`] (unusable TLS CA file).
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let endpoint = config.endpoint();
        match tokio::time::timeout(
            Duration::from_secs(CONNECT_TIMEOUT_SECS),
            Self::connect_inner(config, endpoint.clone()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RedisError::Connect {
                endpoint,
                reason: format!("no answer within {CONNECT_TIMEOUT_SECS} s"),
                hint: if config.tls {
                    format!("{CONNECT_HINT}; the server must speak TLS on this port (rediss://)")
                } else {
                    CONNECT_HINT.to_owned()
                },
            }),
        }
    }

    async fn connect_inner(config: &RedisConfig, endpoint: String) -> Result<Self, RedisError> {
        let connect_error = |reason: String, hint: &str| RedisError::Connect {
            endpoint: endpoint.clone(),
            reason,
            hint: hint.to_owned(),
        };
        let tcp = TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(|e| connect_error(e.to_string(), CONNECT_HINT))?;
        let _ = tcp.set_nodelay(true);
        let transport: Box<dyn Transport> = if config.tls {
            let connector = tls_connector(config)?;
            let name = ServerName::try_from(config.host.clone()).map_err(|e| {
                RedisError::Config(format!(
                    "the Redis host {:?} is not a valid TLS server name: {e}",
                    config.host
                ))
            })?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                connect_error(
                    format!("TLS handshake failed: {e}"),
                    "check that the server speaks TLS on this port and that its certificate \
                     is issued for this host name by a CA in the system store or in \
                     REDIS_TLS_CA_FILE",
                )
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut client = Self {
            config: config.clone(),
            endpoint: endpoint.clone(),
            conn: BufReader::with_capacity(READ_BUFFER, transport),
            wbuf: Vec::with_capacity(64 * 1024),
            line: Vec::with_capacity(128),
        };
        let io_hint = if config.tls {
            CONNECT_HINT.to_owned()
        } else {
            format!(
                "{CONNECT_HINT}; if the server requires TLS, use a rediss:// REDIS_URL \
                 (and REDIS_TLS_CA_FILE for a private CA)"
            )
        };
        let map_io = |e: RedisError| match e {
            RedisError::Io { source, .. } => connect_error(
                format!("the server closed the connection or failed: {source}"),
                &io_hint,
            ),
            other => other,
        };

        let authenticating = config.password.is_some() || config.username.is_some();
        if authenticating {
            let password = config
                .password
                .as_ref()
                .map(|p| p.as_bytes())
                .unwrap_or_default();
            match &config.username {
                Some(user) => client.send(&[b"AUTH", user.as_bytes(), password]),
                None => client.send(&[b"AUTH", password]),
            }
        }
        client.send(&[b"CLIENT", b"SETNAME", CLIENT_NAME.as_bytes()]);
        client.flush().await.map_err(map_io)?;
        if authenticating {
            let reply = client.read_reply().await.map_err(map_io)?;
            if let Resp::Error(message) = reply {
                client.auth_error(&message)?;
            }
        }
        let reply = client.read_reply().await.map_err(map_io)?;
        if let Resp::Error(message) = reply {
            if error_code(&message) == "NOAUTH" {
                return Err(RedisError::Authentication {
                    endpoint,
                    user: String::new(),
                    reason: message,
                    hint: "the server requires a password: set REDIS_PASSWORD (and \
                           REDIS_USERNAME for an ACL user)"
                        .to_owned(),
                });
            }
            tracing::debug!("CLIENT SETNAME refused by {endpoint}: {message}");
        }
        Ok(client)
    }

    /// Turns an error reply to `AUTH` into an error, or `Ok` when it can be ignored (a
    /// password given for a server that has none).
    fn auth_error(&self, message: &str) -> Result<(), RedisError> {
        let user = self
            .config
            .username
            .as_ref()
            .map(|u| format!(" of user {u:?}"))
            .unwrap_or_default();
        let lower = message.to_ascii_lowercase();
        if lower.contains("without any password configured") || lower.contains("no password is set")
        {
            tracing::warn!(
                "Redis at {} has no password but one was given (REDIS_PASSWORD); continuing \
                 without authentication",
                self.endpoint
            );
            return Ok(());
        }
        let code = error_code(message);
        if code == "WRONGPASS"
            || code == "NOAUTH"
            || lower.contains("invalid password")
            || lower.contains("invalid username-password")
        {
            return Err(RedisError::Authentication {
                endpoint: self.endpoint.clone(),
                user,
                reason: message.to_owned(),
                hint: AUTH_HINT.to_owned(),
            });
        }
        Err(self.reply_error("AUTH", message))
    }

    /// The configuration this client connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// `host:port` of the server, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Appends one command to the write buffer (RESP array of bulk strings). Nothing is sent
    /// before [`flush`](Self::flush); long pipelines use
    /// [`send_and_maybe_flush`](Self::send_and_maybe_flush) to bound the buffer.
    pub fn send(&mut self, args: &[&[u8]]) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(self.wbuf, "*{}\r\n", args.len());
        for arg in args {
            let _ = write!(self.wbuf, "${}\r\n", arg.len());
            self.wbuf.extend_from_slice(arg);
            self.wbuf.extend_from_slice(b"\r\n");
        }
    }

    /// Writes one command straight to the connection, after what [`send`](Self::send)
    /// buffered: its arguments are not copied into the write buffer, so a large value (a
    /// `RESTORE` payload) is held once. Its reply is read later, as for `send`.
    ///
    /// # Errors
    /// [`RedisError::Io`] when writing fails.
    pub async fn send_direct(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        use std::io::Write as _;
        let _ = write!(self.wbuf, "*{}\r\n", args.len());
        let result = async {
            for arg in args {
                let _ = write!(self.wbuf, "${}\r\n", arg.len());
                let stream = self.conn.get_mut();
                stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                stream.write_all(arg).await?;
                self.wbuf.extend_from_slice(b"\r\n");
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        result.map_err(|source| {
            self.wbuf.clear();
            RedisError::Io {
                endpoint: self.endpoint.clone(),
                context: "sending commands".to_owned(),
                source,
            }
        })
    }

    /// [`send`](Self::send), then [`flush`](Self::flush) when the buffer holds more than
    /// 1 MiB: for long pipelines whose replies are read later.
    ///
    /// # Errors
    /// [`RedisError::Io`] when writing fails.
    pub async fn send_and_maybe_flush(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        self.send(args);
        if self.wbuf.len() >= WRITE_FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    /// Bytes buffered by [`send`](Self::send) and not yet written.
    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes out all buffered commands.
    ///
    /// # Errors
    /// [`RedisError::Io`] when writing fails.
    pub async fn flush(&mut self) -> Result<(), RedisError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = self.conn.get_mut();
        let result = match stream.write_all(&self.wbuf).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        self.wbuf.clear();
        result.map_err(|source| RedisError::Io {
            endpoint: self.endpoint.clone(),
            context: "sending commands".to_owned(),
            source,
        })
    }

    fn io_error(&self, context: &str, source: std::io::Error) -> RedisError {
        RedisError::Io {
            endpoint: self.endpoint.clone(),
            context: context.to_owned(),
            source,
        }
    }

    fn protocol_error(&self, detail: String) -> RedisError {
        RedisError::Protocol {
            endpoint: self.endpoint.clone(),
            context: "while reading a reply".to_owned(),
            detail,
        }
    }

    /// Reads one `\r\n`-terminated line (without the terminator) into `self.line`.
    async fn read_line(&mut self) -> Result<(), RedisError> {
        self.line.clear();
        let n = read_line_limited(&mut self.conn, &mut self.line)
            .await
            .map_err(|e| self.io_error("reading a reply", e))?;
        if n == 0 {
            return Err(self.io_error(
                "reading a reply",
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ),
            ));
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(self.protocol_error(format!(
                "a line not ending in CRLF: {:?}",
                String::from_utf8_lossy(&self.line)
            )));
        }
        self.line.truncate(self.line.len() - 2);
        Ok(())
    }

    fn line_number(&self) -> Result<i64, RedisError> {
        std::str::from_utf8(&self.line[1..])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                self.protocol_error(format!(
                    "a bad length or integer {:?}",
                    String::from_utf8_lossy(&self.line)
                ))
            })
    }

    /// The error for a reply that would pass [`MAX_REPLY_BYTES`].
    fn too_large(&self, what: &str) -> RedisError {
        self.protocol_error(format!(
            "{what}: a reply larger than {MAX_REPLY_BYTES} bytes, the most this client accepts"
        ))
    }

    /// Accounts a buffer of the reply growing from `old` to `new` bytes (`old` 0 for a new
    /// one) in `used`; refuses when its old and new copies together would pass
    /// [`MAX_REPLY_BYTES`] (`used` already holds `old`).
    fn charge(
        &self,
        used: &mut usize,
        old: usize,
        new: usize,
        what: &str,
    ) -> Result<(), RedisError> {
        match used.checked_add(new) {
            Some(total) if total <= MAX_REPLY_BYTES => {
                *used = total - old.min(total);
                Ok(())
            }
            _ => Err(self.too_large(what)),
        }
    }

    /// Reads the data and the CRLF of a bulk string of `len` bytes (already accounted as
    /// allowed by [`MAX_REPLY_BYTES`]). The buffer grows with the bytes that arrive.
    async fn read_bulk(&mut self, len: usize, used: &mut usize) -> Result<Vec<u8>, RedisError> {
        let mut data: Vec<u8> = Vec::new();
        let first = len.min(BULK_PREALLOC);
        self.charge(used, 0, first, "a bulk string")?;
        data.reserve_exact(first);
        while data.len() < len {
            let available = match self.conn.fill_buf().await {
                Ok(buffer) => buffer.len(),
                Err(e) => return Err(self.io_error("reading a reply", e)),
            };
            if available == 0 {
                return Err(self.io_error(
                    "reading a reply",
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in a bulk reply",
                    ),
                ));
            }
            let n = available.min(len - data.len());
            if data.capacity() - data.len() < n {
                let old = data.capacity();
                let new = old.saturating_mul(2).max(data.len() + n).min(len);
                self.charge(used, old, new, "a bulk string")?;
                data.reserve_exact(new - data.len());
            }
            data.extend_from_slice(&self.conn.buffer()[..n]);
            self.conn.consume(n);
        }
        let mut crlf = [0u8; 2];
        self.conn
            .read_exact(&mut crlf)
            .await
            .map_err(|e| self.io_error("reading a reply", e))?;
        if &crlf != b"\r\n" {
            return Err(self.protocol_error("a bulk string not ending in CRLF".to_owned()));
        }
        Ok(data)
    }

    /// Reads one reply (after [`flush`](Self::flush)). Error replies are returned as
    /// [`Resp::Error`], not as `Err`.
    ///
    /// Memory is bounded whatever the server sends: lines by `MAX_LINE_BYTES` (64 KiB), the
    /// whole reply by `MAX_REPLY_BYTES` (64 MiB; checked before a bulk string is read, and as
    /// arrays and strings grow with the data that arrives), nesting by `MAX_REPLY_DEPTH` (32).
    ///
    /// # Errors
    /// [`RedisError::Io`] when the connection fails or closes, [`RedisError::Protocol`] for
    /// malformed replies and for replies past those limits (the connection is then out of
    /// step and should be dropped).
    pub async fn read_reply(&mut self) -> Result<Resp, RedisError> {
        let slot = std::mem::size_of::<Resp>();
        // Heap bytes held by the reply so far (see `charge`).
        let mut used = 0usize;
        // Nested arrays without recursion: each frame collects the elements of one array.
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            self.read_line().await?;
            let Some(&kind) = self.line.first() else {
                return Err(self.protocol_error("an empty line".to_owned()));
            };
            let mut value = match kind {
                b'+' | b'-' => {
                    let text = String::from_utf8_lossy(&self.line[1..]);
                    self.charge(&mut used, 0, text.len(), "a status or error line")?;
                    let text = text.into_owned();
                    if kind == b'+' {
                        Resp::Simple(text)
                    } else {
                        Resp::Error(text)
                    }
                }
                b':' => Resp::Integer(self.line_number()?),
                b'$' => {
                    let len = self.line_number()?;
                    if len < 0 {
                        Resp::Bulk(None)
                    } else {
                        // Refused before anything is read or reserved.
                        let what = format!("a bulk string of {len} bytes");
                        let len = usize::try_from(len)
                            .ok()
                            .filter(|&n| used.checked_add(n).is_some_and(|t| t <= MAX_REPLY_BYTES))
                            .ok_or_else(|| self.too_large(&what))?;
                        Resp::Bulk(Some(self.read_bulk(len, &mut used).await?))
                    }
                }
                b'*' => {
                    let len = self.line_number()?;
                    if len < 0 {
                        Resp::Array(None)
                    } else if len == 0 {
                        Resp::Array(Some(Vec::new()))
                    } else {
                        if stack.len() >= MAX_REPLY_DEPTH {
                            return Err(self.protocol_error(format!(
                                "a reply nested deeper than {MAX_REPLY_DEPTH} arrays, the most \
                                 this client accepts"
                            )));
                        }
                        let want = usize::try_from(len).unwrap_or(usize::MAX);
                        let first = want.min(ARRAY_PREALLOC);
                        self.charge(&mut used, 0, first.saturating_mul(slot), "an array")?;
                        stack.push(Frame {
                            items: Vec::with_capacity(first),
                            want,
                        });
                        continue;
                    }
                }
                other => {
                    return Err(self.protocol_error(format!(
                        "an unknown reply type {:?} in {:?}",
                        char::from(other),
                        String::from_utf8_lossy(&self.line)
                    )))
                }
            };
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok(value);
                };
                if frame.items.len() == frame.items.capacity() {
                    // Grow by doubling, never past the declared length: capacity follows the
                    // elements that arrive.
                    let old = frame.items.capacity();
                    let new = old.saturating_mul(2).max(old + 1).min(frame.want);
                    self.charge(
                        &mut used,
                        old.saturating_mul(slot),
                        new.saturating_mul(slot),
                        "an array",
                    )?;
                    frame.items.reserve_exact(new - frame.items.len());
                }
                frame.items.push(value);
                if frame.items.len() < frame.want {
                    break;
                }
                let Some(frame) = stack.pop() else {
                    return Err(self.protocol_error("array nesting".to_owned()));
                };
                value = Resp::Array(Some(frame.items));
            }
        }
    }

    /// Sends one command and reads its reply (an error reply is returned as [`Resp::Error`]).
    ///
    /// # Errors
    /// On I/O or protocol errors.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Resp, RedisError> {
        self.send(args);
        self.flush().await?;
        self.read_reply().await
    }

    /// Like [`command`](Self::command), but an error reply becomes an error
    /// ([`reply_error`](Self::reply_error)).
    ///
    /// # Errors
    /// On I/O or protocol errors and error replies.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Resp, RedisError> {
        match self.command(args).await? {
            Resp::Error(message) => {
                let name = command_name(args);
                Err(self.reply_error(&name, &message))
            }
            reply => Ok(reply),
        }
    }

    /// The error for an error reply to `command` (the name only, e.g. `SYNC` or
    /// `CONFIG GET`): [`RedisError::Permission`] for `NOPERM` (with the ACL rule to add),
    /// [`RedisError::Authentication`] for `NOAUTH`, else [`RedisError::Command`].
    pub fn reply_error(&self, command: &str, message: &str) -> RedisError {
        match error_code(message) {
            "NOPERM" => RedisError::Permission {
                endpoint: self.endpoint.clone(),
                command: command.to_owned(),
                reason: message.to_owned(),
                hint: permission_hint(command, self.config.user_name()),
            },
            "NOAUTH" | "WRONGPASS" => RedisError::Authentication {
                endpoint: self.endpoint.clone(),
                user: String::new(),
                reason: message.to_owned(),
                hint: AUTH_HINT.to_owned(),
            },
            _ => RedisError::Command {
                endpoint: self.endpoint.clone(),
                command: command.to_owned(),
                reason: message.to_owned(),
            },
        }
    }

    /// `INFO section`, parsed into `field -> value` (comments and blank lines skipped).
    ///
    /// # Errors
    /// On I/O errors and error replies (e.g. `NOPERM`).
    pub async fn info(&mut self, section: &str) -> Result<BTreeMap<String, String>, RedisError> {
        let reply = self.call(&[b"INFO", section.as_bytes()]).await?;
        let Some(text) = reply.as_text() else {
            return Err(RedisError::Protocol {
                endpoint: self.endpoint.clone(),
                context: format!("to INFO {section}"),
                detail: format!("{reply:?}"),
            });
        };
        Ok(parse_info(&text))
    }

    /// The server's `redis_version` (from `INFO server`).
    ///
    /// # Errors
    /// As [`info`](Self::info); [`RedisError::Protocol`] when the field is missing.
    pub async fn server_version(&mut self) -> Result<String, RedisError> {
        let info = self.info("server").await?;
        info.get("redis_version")
            .cloned()
            .ok_or_else(|| RedisError::Protocol {
                endpoint: self.endpoint.clone(),
                context: "to INFO server".to_owned(),
                detail: "no redis_version field".to_owned(),
            })
    }

    /// `CONFIG GET name`: the value, or `None` when the parameter is unknown.
    ///
    /// # Errors
    /// On I/O errors and error replies (e.g. `NOPERM`, or `CONFIG` renamed away).
    pub async fn config_get(&mut self, name: &str) -> Result<Option<String>, RedisError> {
        let reply = self.call(&[b"CONFIG", b"GET", name.as_bytes()]).await?;
        Ok(match reply {
            Resp::Array(Some(items)) => items.get(1).and_then(Resp::as_text),
            _ => None,
        })
    }

    /// Gives up the client, returning the buffered connection (used by the replication
    /// stream, which reads the RDB from it).
    pub(crate) fn into_conn(self) -> (Conn, String) {
        (self.conn, self.endpoint)
    }
}

/// The command name of an argument list, upper-cased (`CONFIG GET` for subcommands of
/// `CONFIG`, `CLIENT`, `ACL`, `FUNCTION`...).
fn command_name(args: &[&[u8]]) -> String {
    let Some(first) = args.first() else {
        return String::new();
    };
    let name = String::from_utf8_lossy(first).to_ascii_uppercase();
    let with_sub = matches!(
        name.as_str(),
        "CONFIG" | "CLIENT" | "ACL" | "FUNCTION" | "MODULE" | "REPLCONF" | "OBJECT" | "MEMORY"
    );
    match args.get(1) {
        Some(sub) if with_sub && name != "REPLCONF" => {
            format!(
                "{name} {}",
                String::from_utf8_lossy(sub).to_ascii_uppercase()
            )
        }
        _ => name,
    }
}

/// What to do about a `NOPERM` for `command`.
fn permission_hint(command: &str, user: &str) -> String {
    let first = command.split_whitespace().next().unwrap_or(command);
    let first_lower = first.to_ascii_lowercase();
    if matches!(first_lower.as_str(), "sync" | "psync" | "replconf") {
        return format!(
            "backups over the replication protocol need `+sync +psync +replconf`: run \
             ACL SETUSER {user} +sync +psync +replconf (or use the file method)"
        );
    }
    let rule = command
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("|");
    format!("allow it with ACL SETUSER {user} +{rule}")
}

/// Parses `INFO` output into `field -> value`.
pub(crate) fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn config(vars: &[(&str, &str)]) -> Result<RedisConfig, RedisError> {
        RedisConfig::from_lookup(&lookup(vars))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("localhost", 6379, 0, false)
        );
        assert!(c.username.is_none() && c.password.is_none());
    }

    #[test]
    fn host_port_user_password() {
        let c = config(&[
            ("REDIS_HOST", "db.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_USERNAME", "backup"),
            ("REDIS_PASSWORD", "pw"),
            ("REDIS_TLS_CA_FILE", "/ca.pem"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.endpoint(), "db.internal:6380");
        assert_eq!(c.username.as_deref(), Some("backup"));
        assert_eq!(c.password.as_deref().map(String::as_str), Some("pw"));
        assert_eq!(c.tls_ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn bad_port_names_the_variable() {
        for bad in ["x", "0", "70000"] {
            let err = config(&[("REDIS_PORT", bad)]).map(|_| ()).unwrap_err();
            assert!(err.to_string().contains("REDIS_PORT"), "{err}");
        }
    }

    #[test]
    fn url_with_everything() {
        let c = config(&[(
            "REDIS_URL",
            "rediss://us%40er:p%3Aw%2F@cache.example:6390/3",
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.tls);
        assert_eq!(c.endpoint(), "cache.example:6390");
        assert_eq!(c.username.as_deref(), Some("us@er"));
        assert_eq!(c.password.as_deref().map(String::as_str), Some("p:w/"));
        assert_eq!(c.db, 3);
    }

    #[test]
    fn url_password_from_the_environment() {
        let c = config(&[
            ("REDIS_URL", "redis://127.0.0.1"),
            ("REDIS_PASSWORD", "envpw"),
            ("REDIS_USERNAME", "envuser"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.port, 6379);
        assert_eq!(c.password.as_deref().map(String::as_str), Some("envpw"));
        assert_eq!(c.username.as_deref(), Some("envuser"));
        let c = config(&[
            ("REDIS_URL", "redis://:urlpw@[::1]:7000"),
            ("REDIS_PASSWORD", "envpw"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.password.as_deref().map(String::as_str), Some("urlpw"));
        assert_eq!(c.host, "::1");
        assert_eq!(c.endpoint(), "[::1]:7000");
        assert!(c.username.is_none());
    }

    #[test]
    fn bad_urls_name_the_variable_without_the_password() {
        for bad in [
            "http://h",
            "redis://:secretpw@h/x",
            "not a url secretpw",
            "redis://:secretpw@h:0",
        ] {
            let err = config(&[("REDIS_URL", bad)]).map(|_| ()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("REDIS_URL"), "{text}");
            assert!(!text.contains("secretpw"), "{text}");
        }
    }

    #[test]
    fn command_names_and_hints() {
        assert_eq!(command_name(&[b"config", b"get", b"dir"]), "CONFIG GET");
        assert_eq!(command_name(&[b"sync"]), "SYNC");
        assert_eq!(command_name(&[b"REPLCONF", b"capa"]), "REPLCONF");
        assert!(permission_hint("SYNC", "bk").contains("+sync +psync +replconf"));
        assert!(permission_hint("CONFIG GET", "bk").contains("+config|get"));
    }

    #[test]
    fn info_parsing() {
        let info = parse_info("# Server\r\nredis_version:7.0.15\r\n\r\nrdb_saves:3\r\n");
        assert_eq!(
            info.get("redis_version").map(String::as_str),
            Some("7.0.15")
        );
        assert_eq!(info.get("rdb_saves").map(String::as_str), Some("3"));
    }
}
