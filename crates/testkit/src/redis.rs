//! A throwaway Redis server: `redis-server` in a temporary directory on a free port.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cluster::{file_tail, free_port, url_encode};

/// How long to wait for a started server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times to try another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The address the server listens on.
const HOST: &str = "127.0.0.1";
/// Where the server binary is looked for first.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass` for the default user; no password when `None`.
    pub password: Option<String>,
    /// Extra ACL users: `(user, password, rules)`, rules e.g. `"~* &* +@all -sync -psync"`.
    pub acl_users: Vec<(String, String, String)>,
    /// `repl-diskless-sync yes|no` (the delay is 0 either way).
    pub diskless_sync: bool,
    /// `appendonly yes|no`.
    pub appendonly: bool,
    /// Serve TLS only (`port 0`, `tls-port`), with a generated CA and server certificate and
    /// `tls-auth-clients no`.
    pub tls: bool,
    /// Copied to `dir/dump.rdb` before the first start, so the server loads it.
    pub rdb_file: Option<PathBuf>,
    /// Extra settings, written as `name value` lines of the configuration file (like
    /// `--name value` on the command line: the value is split on whitespace by Redis).
    pub config: Vec<(String, String)>,
}

/// A running throwaway `redis-server`, killed and deleted on drop.
///
/// The configuration (including passwords) is written to a `0600` file in the temporary
/// directory, never passed on the command line. Snapshots are off (`save ""`): data survives
/// [`restart`](Self::restart) only when it was saved explicitly (`SAVE`) or through the AOF.
pub struct RedisServer {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    port: u16,
    options: RedisOptions,
    child: Option<Child>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("dir", &self.path)
            .field("port", &self.port)
            .field("tls", &self.options.tls)
            .field(
                "password",
                &self.options.password.as_ref().map(|_| "<redacted>"),
            )
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

/// `redis-server`: `/usr/bin/redis-server`, else the first one on `PATH`.
fn find_redis_server() -> anyhow::Result<PathBuf> {
    let default = Path::new(REDIS_SERVER);
    if default.is_file() {
        return Ok(default.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(anyhow!(
        "redis-server not found (looked at {REDIS_SERVER} and on PATH): install it \
         (apt-get install -y redis-server)"
    ))
}

/// Quotes one argument for a `redis.conf` line (double quotes, backslash escapes).
fn conf_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a CA and a server certificate for `127.0.0.1`/`localhost` into `dir`.
fn write_tls_files(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().context("generating the test CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "backup-testkit Redis CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).context("signing the test CA")?;

    let server_key = KeyPair::generate().context("generating the test server key")?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), HOST.to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "backup-testkit Redis server");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params
        .signed_by(&server_key, &ca)
        .context("signing the test server certificate")?;

    fs::write(dir.join("ca.crt"), ca.pem())?;
    fs::write(dir.join("server.crt"), cert.pem())?;
    let key_path = dir.join("server.key");
    fs::write(&key_path, server_key.serialize_pem())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

enum StartFailure {
    PortTaken(String),
    Other(anyhow::Error),
}

impl RedisServer {
    /// Starts a server without password.
    ///
    /// # Errors
    /// When `redis-server` is not installed or does not answer `PING` within 30 seconds (the
    /// error includes the tail of the server log).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with the given options.
    ///
    /// # Errors
    /// As [`start`](Self::start); also when the TLS files or the RDB file cannot be prepared.
    pub fn start_with(options: RedisOptions) -> anyhow::Result<Self> {
        find_redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("backup-testkit-redis-")
            .tempdir()
            .context("creating a temporary directory for redis-server")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        let path = dir.path().to_path_buf();
        if options.tls {
            write_tls_files(&path)?;
        }
        if let Some(rdb) = &options.rdb_file {
            fs::copy(rdb, path.join("dump.rdb"))
                .with_context(|| format!("copying {} to the server directory", rdb.display()))?;
        }
        let mut server = Self {
            dir: Some(dir),
            path,
            port: 0,
            options,
            child: None,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match server.try_start(port) {
                Ok(()) => return Ok(server),
                Err(StartFailure::PortTaken(log)) => {
                    last_error = Some(anyhow!(
                        "port {port} was taken while starting redis-server; server log:\n{log}"
                    ));
                }
                Err(StartFailure::Other(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("could not start redis-server")))
    }

    fn write_config(&self, port: u16) -> anyhow::Result<PathBuf> {
        let o = &self.options;
        let dir = &self.path;
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut conf = String::new();
        if o.tls {
            conf.push_str(&format!("port 0\ntls-port {port}\n"));
            for (name, file) in [
                ("tls-cert-file", "server.crt"),
                ("tls-key-file", "server.key"),
                ("tls-ca-cert-file", "ca.crt"),
            ] {
                conf.push_str(&format!(
                    "{name} {}\n",
                    conf_quote(&dir.join(file).to_string_lossy())
                ));
            }
            conf.push_str("tls-auth-clients no\n");
        } else {
            conf.push_str(&format!("port {port}\n"));
        }
        conf.push_str(&format!(
            "bind {HOST}\ndir {}\ndbfilename dump.rdb\nsave \"\"\nappendonly {}\n\
             daemonize no\nlogfile {}\nrepl-diskless-sync {}\nrepl-diskless-sync-delay 0\n",
            conf_quote(&dir.to_string_lossy()),
            yes_no(o.appendonly),
            conf_quote(&dir.join("redis.log").to_string_lossy()),
            yes_no(o.diskless_sync),
        ));
        if let Some(password) = &o.password {
            conf.push_str(&format!("requirepass {}\n", conf_quote(password)));
        }
        for (user, password, rules) in &o.acl_users {
            conf.push_str(&format!(
                "user {} on {}",
                conf_quote(user),
                conf_quote(&format!(">{password}"))
            ));
            for rule in rules.split_whitespace() {
                conf.push(' ');
                conf.push_str(&conf_quote(rule));
            }
            conf.push('\n');
        }
        for (name, value) in &o.config {
            conf.push_str(&format!("{name} {value}\n"));
        }
        let path = dir.join("redis.conf");
        fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }

    fn try_start(&mut self, port: u16) -> Result<(), StartFailure> {
        self.port = port;
        let conf = self.write_config(port).map_err(StartFailure::Other)?;
        let log_path = self.log_path();
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let stderr_path = self.path.join("redis.stderr");
        let stderr = fs::File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))
            .map_err(StartFailure::Other)?;
        let stdout = stderr
            .try_clone()
            .context("duplicating a file handle")
            .map_err(StartFailure::Other)?;
        let bin = find_redis_server().map_err(StartFailure::Other)?;
        let child = Command::new(&bin)
            .arg(&conf)
            .current_dir(&self.path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))
            .map_err(StartFailure::Other)?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let this_run = {
                        let full = fs::read(&log_path).unwrap_or_default();
                        let start = usize::try_from(log_start).unwrap_or(0).min(full.len());
                        String::from_utf8_lossy(&full[start..]).into_owned()
                    };
                    let tail = self.log();
                    if this_run.contains("Address already in use") {
                        return Err(StartFailure::PortTaken(tail));
                    }
                    return Err(StartFailure::Other(anyhow!(
                        "redis-server exited during startup ({status}); log:\n{tail}"
                    )));
                }
            }
            let last = match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                self.kill_server(Duration::from_secs(5));
                return Err(StartFailure::Other(anyhow!(
                    "redis-server did not answer PING on {HOST}:{port} within {}s (last error: \
                     {last}); log:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> anyhow::Result<()> {
        let mut con = self.client()?;
        let pong: String = redis::cmd("PING").query(&mut con)?;
        if pong != "PONG" {
            bail!("unexpected PING reply {pong:?}");
        }
        Ok(())
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on (the TLS port with [`RedisOptions::tls`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The default user's password, if one was set.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// The server's working directory (`dir`), holding `dump.rdb`, the log and the config.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// `dir/dump.rdb`: where `SAVE`/`BGSAVE` write and where a (re)start loads from.
    pub fn rdb_path(&self) -> PathBuf {
        self.path.join("dump.rdb")
    }

    /// The PEM file of the CA that signed the server certificate (TLS servers only).
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.path.join("ca.crt"))
    }

    fn log_path(&self) -> PathBuf {
        self.path.join("redis.log")
    }

    /// `redis://[:password@]127.0.0.1:port` (`rediss://` for TLS), percent-encoded.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        let auth = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{}@", url_encode(p)))
            .unwrap_or_default();
        format!("{scheme}://{auth}{HOST}:{}", self.port)
    }

    /// `REDIS_HOST`, `REDIS_PORT` and `REDIS_PASSWORD` (when set); for TLS servers also
    /// `REDIS_URL` (`rediss://...`) and `REDIS_TLS_CA_FILE`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("REDIS_HOST".to_owned(), HOST.to_owned()),
            ("REDIS_PORT".to_owned(), self.port.to_string()),
        ];
        if let Some(password) = &self.options.password {
            env.push(("REDIS_PASSWORD".to_owned(), password.clone()));
        }
        if let Some(ca) = self.tls_ca_file() {
            env.push(("REDIS_URL".to_owned(), self.url()));
            env.push((
                "REDIS_TLS_CA_FILE".to_owned(),
                ca.to_string_lossy().into_owned(),
            ));
        }
        env
    }

    /// A synchronous connection authenticated as the default user (TLS servers: over TLS,
    /// trusting the generated CA).
    ///
    /// # Errors
    /// When the connection or the authentication fails.
    pub fn client(&self) -> anyhow::Result<redis::Connection> {
        let client = if let Some(ca) = self.tls_ca_file() {
            // The redis crate's rustls support uses the process-wide provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root = fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
            redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
        } else {
            redis::Client::open(self.url())
        }
        .with_context(|| format!("redis client for {HOST}:{}", self.port))?;
        client
            .get_connection_with_timeout(Duration::from_secs(10))
            .with_context(|| format!("connecting to redis-server on {HOST}:{}", self.port))
    }

    /// Stops the server without saving a snapshot: `CONFIG SET save ""` (best effort), then
    /// `SIGTERM` and a wait (`SIGKILL` after 20 seconds). The directory stays until drop.
    ///
    /// # Errors
    /// When the server could not be stopped.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        if let Ok(mut con) = self.client() {
            let _: redis::RedisResult<()> = redis::cmd("CONFIG")
                .arg("SET")
                .arg("save")
                .arg("")
                .query(&mut con);
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("redis-server pid")?);
        for (signal, wait) in [
            (Signal::SIGTERM, Duration::from_secs(20)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            let _ = kill(pid, signal);
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("redis-server {pid} did not exit after SIGTERM and SIGKILL")
    }

    /// Kills the server with `SIGKILL` (no shutdown, no save), as a crash or the OOM killer
    /// would, and reaps it. The directory stays until drop; [`restart`](Self::restart) starts
    /// it again.
    ///
    /// # Errors
    /// When the process could not be signalled or reaped.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.kill().context("SIGKILL to redis-server")?;
        child.wait().context("reaping redis-server")?;
        Ok(())
    }

    /// Starts the server again with the same directory, port and options (it loads
    /// `dir/dump.rdb`, or the AOF with `appendonly`). Stops it first if it runs.
    ///
    /// # Errors
    /// When the server does not come up again (e.g. the port was taken meanwhile, or the RDB
    /// file does not load).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        match self.try_start(self.port) {
            Ok(()) => Ok(()),
            Err(StartFailure::PortTaken(log)) => Err(anyhow!(
                "port {} was taken while restarting redis-server; log:\n{log}",
                self.port
            )),
            Err(StartFailure::Other(e)) => Err(e),
        }
    }

    /// The tail of the server log (and of its stderr, where startup errors go).
    pub fn log(&self) -> String {
        let mut out = file_tail(&self.log_path(), 8192);
        let stderr = file_tail(&self.path.join("redis.stderr"), 4096);
        if !stderr.trim().is_empty() && !stderr.starts_with("(no log") {
            out.push_str("\n--- stderr ---\n");
            out.push_str(&stderr);
        }
        out
    }

    /// Kills the server, blocking: used on drop and on failed starts.
    fn kill_server(&mut self, per_signal: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Ok(raw) = i32::try_from(child.id()) else {
            return;
        };
        let pid = Pid::from_raw(raw);
        for signal in [Signal::SIGKILL] {
            let _ = kill(pid, signal);
            let deadline = Instant::now() + per_signal;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_server(Duration::from_secs(10));
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Reads one command (a RESP array of bulk strings) a client sent, for fake servers in tests;
/// `None` at the end of the stream or on anything else. Not for untrusted peers: lengths are
/// believed.
pub async fn read_resp_command<R>(reader: &mut R) -> Option<Vec<Vec<u8>>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..n {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).await.ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(conf_quote("a\"b\\c d"), "\"a\\\"b\\\\c d\"");
    }

    #[test]
    fn url_encoding_escapes_reserved_characters() {
        assert_eq!(url_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
