//! A throwaway PostgreSQL cluster: `initdb` + `postgres` in a temporary directory.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, geteuid, Gid, Pid, Uid, User};
use rand::distributions::Alphanumeric;
use rand::Rng;

/// How long to wait for a started server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times to try another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The superuser created by `initdb`.
const SUPERUSER: &str = "postgres";
/// The address the server listens on.
const HOST: &str = "127.0.0.1";

/// Options for [`PgCluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// The superuser's password; a random alphanumeric one when `None`.
    pub password: Option<String>,
    /// Extra server settings, passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// Extra environment of the server process (and so of its `archive_command` and
    /// `restore_command`).
    pub env: Vec<(String, String)>,
}

/// A running throwaway PostgreSQL cluster, stopped and deleted on drop.
///
/// Local (Unix-socket) connections are trusted; TCP connections to `127.0.0.1` need the
/// superuser password (`scram-sha-256`), as a production server would.
pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    postmaster: Option<Child>,
    /// The options it was started with, for [`PgCluster::restart`].
    options: PgOptions,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("data_dir", &self.data_dir)
            .field("bin_dir", &self.bin_dir)
            .field("port", &self.port)
            .field("password", &"<redacted>")
            .field("pid", &self.pid())
            .finish()
    }
}

/// Finds the newest `/usr/lib/postgresql/*/bin` that holds `initdb` and `postgres`.
///
/// # Errors
/// When PostgreSQL is not installed; the message says how to install it.
pub fn find_pg_bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let Some(major) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.split('.').next().and_then(|m| m.parse::<u32>().ok()))
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file()
                && bin.join("postgres").is_file()
                && best.as_ref().is_none_or(|(m, _)| major > *m)
            {
                best = Some((major, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries found under /usr/lib/postgresql/*/bin (initdb, \
             postgres): install postgresql (apt-get install -y postgresql)"
        )
    })
}

/// The user and group to run the server as: `postgres` when we are root, else ourselves.
fn server_identity() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name(SUPERUSER)
        .context("looking up the postgres user")?
        .ok_or_else(|| {
            anyhow!(
                "running as root but there is no `postgres` user to run the server as: \
                 install postgresql (apt-get install -y postgresql)"
            )
        })?;
    Ok(Some((user.uid, user.gid)))
}

fn as_server_user(cmd: &mut Command, identity: Option<(Uid, Gid)>) {
    if let Some((uid, gid)) = identity {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

fn chown_to(path: &Path, identity: Option<(Uid, Gid)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = identity {
        chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free now; a server started on it may still lose a race).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((HOST, 0)).context("binding 127.0.0.1:0 to find a port")?;
    Ok(listener.local_addr()?.port())
}

/// The last `max` bytes of a file, lossily decoded.
pub(crate) fn file_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn random_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Double-quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

enum StartFailure {
    PortTaken(String),
    Other(anyhow::Error),
}

impl PgCluster {
    /// Starts a cluster with a random superuser password.
    ///
    /// # Errors
    /// When PostgreSQL is not installed, `initdb` fails or the server does not come up within
    /// 30 seconds (the error includes the tail of the server log).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(PgOptions::default()).await
    }

    /// Starts a cluster with the given options.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(options: PgOptions) -> anyhow::Result<Self> {
        let bin_dir = find_pg_bin_dir()?;
        let identity = server_identity()?;
        let password = options.password.clone().unwrap_or_else(random_password);
        let (dir, data_dir) = {
            let bin_dir = bin_dir.clone();
            let password = password.clone();
            tokio::task::spawn_blocking(move || init_cluster(&bin_dir, identity, &password))
                .await
                .context("initdb task panicked")??
        };
        let mut cluster = Self {
            dir: Some(dir),
            data_dir,
            bin_dir,
            port: 0,
            password,
            postmaster: None,
            options: options.clone(),
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match cluster.try_start(identity, &options, port).await {
                Ok(()) => return Ok(cluster),
                Err(StartFailure::PortTaken(log)) => {
                    tracing::debug!(port = cluster.port, "port was taken, trying another: {log}");
                    last_error = Some(anyhow!(
                        "port {} was taken while starting PostgreSQL; server log:\n{log}",
                        cluster.port
                    ));
                }
                Err(StartFailure::Other(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("could not start PostgreSQL")))
    }

    async fn try_start(
        &mut self,
        identity: Option<(Uid, Gid)>,
        options: &PgOptions,
        port: u16,
    ) -> Result<(), StartFailure> {
        self.port = port;
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))
            .map_err(StartFailure::Other)?;
        let log_err = log
            .try_clone()
            .context("duplicating the log file handle")
            .map_err(StartFailure::Other)?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let socket_dir = self.socket_dir().to_path_buf();
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(format!("listen_addresses={HOST}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()));
        for setting in [
            "fsync=off",
            "full_page_writes=off",
            "synchronous_commit=off",
            "shared_buffers=32MB",
            "max_connections=50",
        ] {
            cmd.arg("-c").arg(setting);
        }
        for (name, value) in &options.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(&socket_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        as_server_user(&mut cmd, identity);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin_dir.join("postgres").display()))
            .map_err(StartFailure::Other)?;
        self.postmaster = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.postmaster.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.postmaster = None;
                    let tail = file_tail(&log_path, 8192);
                    let this_run = {
                        let full = fs::read(&log_path).unwrap_or_default();
                        let start = usize::try_from(log_start).unwrap_or(0).min(full.len());
                        String::from_utf8_lossy(&full[start..]).into_owned()
                    };
                    if this_run.contains("Address already in use")
                        || this_run.contains("could not create any TCP/IP sockets")
                    {
                        return Err(StartFailure::PortTaken(tail));
                    }
                    return Err(StartFailure::Other(anyhow!(
                        "postgres exited during startup ({status}); server log {}:\n{tail}",
                        log_path.display()
                    )));
                }
            }
            if self.connect("postgres").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_postmaster(Duration::from_secs(5));
                return Err(StartFailure::Other(anyhow!(
                    "PostgreSQL did not accept connections on {HOST}:{port} within {}s; \
                     server log {}:\n{}",
                    START_TIMEOUT.as_secs(),
                    log_path.display(),
                    file_tail(&log_path, 8192)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The user and group ids the server runs as when the tests run as root (`postgres`);
    /// `None` when it runs as the tests' own user. A command that must act as the server's
    /// `archive_command` does (reading a key file only that user may read) runs as them.
    ///
    /// # Errors
    /// Running as root without a `postgres` user.
    pub fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
        Ok(server_identity()?.map(|(uid, gid)| (uid.as_raw(), gid.as_raw())))
    }

    /// Gives `path` and everything under it to the user the server runs as (when the tests
    /// run as root and the server as `postgres`), so that its `archive_command` can use them.
    ///
    /// # Errors
    /// When a `chown` fails.
    pub fn give_to_server(path: &Path) -> anyhow::Result<()> {
        let identity = server_identity()?;
        if identity.is_none() {
            return Ok(());
        }
        chown_to(path, identity)?;
        if path.is_dir() {
            for entry in fs::read_dir(path)? {
                Self::give_to_server(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser name: `postgres`.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password (needed for TCP connections).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory of the server binaries used (`initdb`, `postgres`, `pg_dump`, `psql`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's Unix socket (connections there are trusted).
    pub fn socket_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/nonexistent"), |d| d.path())
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.socket_dir().join("postgres.log")
    }

    /// The process id of the postmaster, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// A `tokio_postgres` configuration for database `db` over TCP with the password.
    pub fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(SUPERUSER)
            .password(self.password.as_str())
            .dbname(db)
            .application_name("backup-testkit")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects to database `db` as the superuser over TCP (password authentication) and spawns
    /// the connection task on the current Tokio runtime.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(&self, db: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = self
            .config(db)
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {HOST}:{} database {db:?}", self.port))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("testkit connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// Creates database `name` (owned by the superuser).
    ///
    /// # Errors
    /// When the statement fails, e.g. the database exists.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("creating database {name:?}"))?;
        Ok(())
    }

    /// Whether database `name` exists.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn database_exists(&self, name: &str) -> anyhow::Result<bool> {
        let client = self.connect("postgres").await?;
        let row = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?;
        Ok(row.is_some())
    }

    /// Names of all databases except the templates, sorted.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn databases(&self) -> anyhow::Result<Vec<String>> {
        let client = self.connect("postgres").await?;
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// `postgres://user:password@127.0.0.1:port/db`, percent-encoded.
    pub fn database_url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@{HOST}:{}/{}",
            url_encode(SUPERUSER),
            url_encode(&self.password),
            self.port,
            url_encode(db)
        )
    }

    /// `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_USER`, `POSTGRES_PASSWORD` and `POSTGRES_DB`
    /// for driving the binaries against database `db`.
    pub fn env(&self, db: &str) -> Vec<(String, String)> {
        vec![
            ("POSTGRES_HOST".to_owned(), HOST.to_owned()),
            ("POSTGRES_PORT".to_owned(), self.port.to_string()),
            ("POSTGRES_USER".to_owned(), SUPERUSER.to_owned()),
            ("POSTGRES_PASSWORD".to_owned(), self.password.clone()),
            ("POSTGRES_DB".to_owned(), db.to_owned()),
        ]
    }

    /// Kills the postmaster with `SIGKILL`, as `kill -9` or the OOM killer would: no shutdown,
    /// no checkpoint, clients cut off. Its backends notice the death and exit on their own;
    /// they are waited for (up to 10 s, then killed too) so that the shared memory is free and
    /// [`restart`](Self::restart) can start the server again.
    ///
    /// # Errors
    /// When the server is not running or does not die.
    pub async fn sigkill_postmaster(&mut self) -> anyhow::Result<()> {
        let mut child = self
            .postmaster
            .take()
            .ok_or_else(|| anyhow!("the postmaster is not running"))?;
        let raw = i32::try_from(child.id()).context("postmaster pid")?;
        let backends = children_of(raw);
        kill(Pid::from_raw(raw), Signal::SIGKILL).context("SIGKILL to the postmaster")?;
        child.wait().context("reaping the postmaster")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: Vec<i32> = backends
                .iter()
                .copied()
                .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
                .collect();
            if alive.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                for pid in alive {
                    tracing::warn!("backend {pid} outlived its postmaster by 10 s: SIGKILL");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again after [`sigkill_postmaster`](Self::sigkill_postmaster) or
    /// [`stop`](Self::stop): same data directory, port, password and settings (so an
    /// environment from [`env`](Self::env) stays valid); after a kill, PostgreSQL runs crash
    /// recovery first. Returns once it accepts connections.
    ///
    /// # Errors
    /// When it is still running, or does not come up within 30 seconds (the error includes the
    /// tail of the server log).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.postmaster.is_some() {
            bail!("the postmaster is still running");
        }
        let identity = server_identity()?;
        let options = self.options.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The port or the old shared memory may be released a moment late: try again.
            let error = match self.try_start(identity, &options, self.port).await {
                Ok(()) => return Ok(()),
                Err(StartFailure::PortTaken(log)) => {
                    anyhow!("port {} is taken; server log:\n{log}", self.port)
                }
                Err(StartFailure::Other(e)) => e,
            };
            if Instant::now() > deadline {
                return Err(error.context("restarting PostgreSQL"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server cleanly (fast shutdown, then immediate shutdown, then `SIGKILL`).
    ///
    /// The data directory is removed when the cluster is dropped.
    ///
    /// # Errors
    /// When the server could not be stopped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.postmaster.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("postmaster pid")?);
        for (signal, wait) in [
            (Signal::SIGINT, Duration::from_secs(20)),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            let _ = kill(pid, signal);
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        bail!("postmaster {pid} did not exit after SIGINT, SIGQUIT and SIGKILL")
    }

    /// Immediate shutdown, blocking: used on drop and on failed starts.
    fn kill_postmaster(&mut self, per_signal: Duration) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        let Ok(raw) = i32::try_from(child.id()) else {
            return;
        };
        let pid = Pid::from_raw(raw);
        // SIGQUIT: immediate shutdown; the postmaster kills its backends and exits. The data
        // is thrown away anyway, so there is no point in a shutdown checkpoint.
        for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
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

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.kill_postmaster(Duration::from_secs(10));
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Process ids whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Runs `initdb` in a new temporary directory; returns the directory and the data directory.
fn init_cluster(
    bin_dir: &Path,
    identity: Option<(Uid, Gid)>,
    password: &str,
) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("backup-testkit-pg-")
        .tempdir()
        .context("creating a temporary directory for the cluster")?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
    chown_to(dir.path(), identity)?;
    let data_dir = dir.path().join("data");
    let pwfile = dir.path().join("pwfile");
    fs::write(&pwfile, format!("{password}\n")).context("writing the password file")?;
    fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
    chown_to(&pwfile, identity)?;

    let mut last = String::new();
    for locale in ["C.UTF-8", "C"] {
        let mut cmd = Command::new(bin_dir.join("initdb"));
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-U")
            .arg(SUPERUSER)
            .arg("--auth-local=trust")
            .arg("--auth-host=scram-sha-256")
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-E")
            .arg("UTF8")
            .arg(format!("--locale={locale}"))
            .arg("--no-sync")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        as_server_user(&mut cmd, identity);
        let out = cmd
            .output()
            .with_context(|| format!("running {}", bin_dir.join("initdb").display()))?;
        if out.status.success() {
            let _ = fs::remove_file(&pwfile);
            return Ok((dir, data_dir));
        }
        last = format!(
            "initdb --locale={locale} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::remove_dir_all(&data_dir);
    }
    bail!("{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_escapes_reserved_characters() {
        assert_eq!(url_encode("p@ss:w/rd %"), "p%40ss%3Aw%2Frd%20%25");
        assert_eq!(url_encode("abc-._~"), "abc-._~");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
