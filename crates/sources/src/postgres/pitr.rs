//! Point-in-time recovery of a physical base backup into a new data directory: the recovery
//! settings ([`PitrTarget`]), the data directory's preparation and start ([`DataDirectory`]),
//! and what the server's log says about where recovery stopped ([`RecoveryOutcome`]).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::tools::PgTools;
use crate::error::SourceError;
use crate::wal::Lsn;

/// Where a point-in-time recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PitrTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Stop before the first transaction that committed after this time.
    Time(DateTime<Utc>),
    /// Stop at this WAL position.
    Lsn(Lsn),
    /// Stop after this transaction.
    Xid(u64),
    /// Stop at this restore point (`pg_create_restore_point`).
    Name(String),
}

impl PitrTarget {
    /// The `recovery_target_*` settings.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Latest => Vec::new(),
            Self::Time(t) => vec![(
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )],
            Self::Lsn(lsn) => vec![("recovery_target_lsn", lsn.to_string())],
            Self::Xid(xid) => vec![("recovery_target_xid", xid.to_string())],
            Self::Name(name) => vec![("recovery_target_name", name.clone())],
        }
    }

    /// A recovery target time: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f][+HH[:MM]]`, UTC without
    /// an offset.
    ///
    /// # Errors
    /// A message saying how to write it.
    pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(t.with_timezone(&Utc));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
            if let Ok(t) = DateTime::parse_from_str(text, format) {
                return Ok(t.with_timezone(&Utc));
            }
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| t.and_utc())
            .map_err(|_| {
                format!(
                    "{text:?} is not a time: use 'YYYY-MM-DD HH:MM:SS+00' (UTC without an \
                     offset) or latest"
                )
            })
    }

    /// The target in words.
    pub fn describe(&self) -> String {
        match self {
            Self::Latest => "the end of the archived WAL".to_owned(),
            Self::Time(t) => format!("{}", t.format("%Y-%m-%d %H:%M:%S%.f UTC")),
            Self::Lsn(lsn) => format!("WAL position {lsn}"),
            Self::Xid(xid) => format!("transaction {xid}"),
            Self::Name(name) => format!("restore point {name:?}"),
        }
    }
}

/// `latest`, or a time as [`PitrTarget::parse_time`] reads it (`restore-database --pitr`).
impl std::str::FromStr for PitrTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim() == "latest" {
            return Ok(Self::Latest);
        }
        Self::parse_time(text).map(Self::Time)
    }
}

/// A data directory being restored (see the module).
#[derive(Debug, Clone)]
pub struct DataDirectory {
    path: PathBuf,
    owner: Option<(u32, u32)>,
}

/// What the server's log says about a recovery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryOutcome {
    /// "recovery stopping before commit of transaction 745, time ...", when a target stopped
    /// it.
    pub stopped: Option<String>,
    /// "last completed transaction was at log time ...".
    pub last_transaction: Option<String>,
    /// Where replay ended ("redo done at 0/5000110").
    pub redo_done_at: Option<String>,
    /// The new timeline the server chose at promotion.
    pub new_timeline: Option<u32>,
    /// The server accepts connections: recovery ended and it was promoted.
    pub promoted: bool,
    /// The server's log.
    pub log: PathBuf,
}

impl DataDirectory {
    /// The data directory `path`, to be owned by `owner` (uid, gid) when given.
    pub fn new(path: impl Into<PathBuf>, owner: Option<(u32, u32)>) -> Self {
        Self {
            path: path.into(),
            owner,
        }
    }

    /// The uid and gid of the user `name` to own a restored data directory; without a name,
    /// `postgres` when running as root (PostgreSQL refuses to run as root), else nobody in
    /// particular (the files stay the current user's).
    ///
    /// # Errors
    /// [`SourceError::Wal`] when there is no such user.
    pub fn owner_named(name: Option<&str>) -> Result<Option<(u32, u32)>, SourceError> {
        let name = match name {
            Some(name) => name,
            None if nix::unistd::geteuid().is_root() => "postgres",
            None => return Ok(None),
        };
        let missing = || {
            SourceError::Wal(format!(
                "there is no user {name:?} to own the restored data directory: give --owner \
                 USER (the user PostgreSQL runs as)"
            ))
        };
        let user = nix::unistd::User::from_name(name)
            .map_err(|_| missing())?
            .ok_or_else(missing)?;
        Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a directory that exists and holds anything (a restore never mixes with, or
    /// replaces, a cluster).
    ///
    /// # Errors
    /// [`SourceError::Wal`] saying what is there.
    pub fn check_empty(&self) -> Result<(), SourceError> {
        match std::fs::read_dir(&self.path) {
            Ok(mut entries) => match entries.next() {
                None => Ok(()),
                Some(entry) => Err(SourceError::Wal(format!(
                    "{} is not empty (it holds {:?}, among others): a point-in-time restore \
                     writes a whole new data directory; give an empty or new directory",
                    self.path.display(),
                    entry.map(|e| e.file_name()).unwrap_or_default()
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(SourceError::Wal(
                format!("{} exists and is not a directory", self.path.display()),
            )),
            Err(source) => Err(SourceError::Io {
                what: format!("reading {}", self.path.display()),
                source,
            }),
        }
    }

    /// A new, empty staging directory beside it, where the base backup is extracted before it
    /// is renamed into place.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn staging(&self) -> Result<PathBuf, SourceError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".to_owned());
        let parent = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|source| SourceError::Io {
            what: format!("creating {}", parent.display()),
            source,
        })?;
        let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|source| SourceError::Io {
                what: format!("removing the leftover {}", staging.display()),
                source,
            })?;
        }
        std::fs::create_dir(&staging).map_err(|source| SourceError::Io {
            what: format!("creating {}", staging.display()),
            source,
        })?;
        Ok(staging)
    }

    /// Moves the extracted `staging` directory into place: mode 0700 (PostgreSQL refuses a
    /// data directory others can read), owned by the owner, then renamed (the target is
    /// absent or empty).
    ///
    /// # Errors
    /// When a step fails; `staging` is removed then.
    pub fn install(&self, staging: &Path) -> Result<(), SourceError> {
        let result = (|| -> std::io::Result<()> {
            std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))?;
            if let Some((uid, gid)) = self.owner {
                chown_tree(staging, uid, gid)?;
            }
            if self.path.exists() {
                std::fs::remove_dir(&self.path)?;
            }
            std::fs::rename(staging, &self.path)?;
            // The new name on disk too (the files in it are synced already).
            let parent = self.path.parent().unwrap_or(Path::new("."));
            std::fs::File::open(parent)?.sync_all()
        })();
        result.map_err(|source| {
            let _ = std::fs::remove_dir_all(staging);
            SourceError::Io {
                what: format!(
                    "moving the restored data directory to {}",
                    self.path.display()
                ),
                source,
            }
        })
    }

    /// Writes the recovery configuration: `recovery.signal`, and in `postgresql.auto.conf`
    /// (which wins over `postgresql.conf`) `restore_command`, the target,
    /// `recovery_target_action = promote`, and `archive_mode = off` so that the restored
    /// cluster never writes into the archive it reads from. A data directory without
    /// `postgresql.conf` or `pg_hba.conf` (Debian keeps them in /etc) gets minimal ones.
    /// `note` is written as a comment above the settings.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn configure(
        &self,
        restore_command: &str,
        target: &PitrTarget,
        note: &str,
    ) -> Result<(), SourceError> {
        let io = |what: &str, source| SourceError::Io {
            what: format!("{what} in {}", self.path.display()),
            source,
        };
        let mut settings = vec![("restore_command", restore_command.to_owned())];
        settings.extend(target.settings());
        settings.push(("recovery_target_action", "promote".to_owned()));
        settings.push(("recovery_target_timeline", "latest".to_owned()));
        settings.push(("archive_mode", "off".to_owned()));
        let mut text = format!("\n# {}\n", note.replace('\n', " "));
        for (name, value) in settings {
            text.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        let auto = self.path.join("postgresql.auto.conf");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&auto)
            .map_err(|e| io("opening postgresql.auto.conf", e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io("writing postgresql.auto.conf", e))?;
        let minimal = [
            (
                "postgresql.conf",
                "# Written by restore-database --pitr: the backed-up cluster kept its \
                 configuration outside its data directory.\n",
            ),
            (
                "pg_hba.conf",
                "# Written by restore-database --pitr: the backed-up cluster kept its \
                 configuration outside its data directory.\n\
                 local all all peer\n\
                 host all all 127.0.0.1/32 scram-sha-256\n\
                 host all all ::1/128 scram-sha-256\n",
            ),
            ("pg_ident.conf", ""),
        ];
        for (name, contents) in minimal {
            let path = self.path.join(name);
            if !path.exists() {
                std::fs::write(&path, contents).map_err(|e| io(&format!("writing {name}"), e))?;
            }
        }
        // A standby signal from the source would make it a standby instead.
        let _ = std::fs::remove_file(self.path.join("standby.signal"));
        std::fs::write(self.path.join("recovery.signal"), "")
            .map_err(|e| io("writing recovery.signal", e))?;
        if let Some((uid, gid)) = self.owner {
            chown_tree(&self.path, uid, gid)
                .map_err(|e| io("giving the files to their owner", e))?;
        }
        Ok(())
    }

    /// Starts the server on `port` and waits (at most `wait`) until recovery ended and it
    /// accepts connections; reads where recovery stopped from its log
    /// (`DATA/log/pitr-restore.log`).
    ///
    /// # Errors
    /// [`SourceError::Wal`] with the log's explanation when the server does not come up
    /// (recovery failed: a WAL file could not be fetched, the target was not reached).
    pub async fn start(
        &self,
        tools: &PgTools,
        port: u16,
        wait: Duration,
    ) -> Result<RecoveryOutcome, SourceError> {
        let log_dir = self.path.join("log");
        std::fs::create_dir_all(&log_dir).map_err(|source| SourceError::Io {
            what: format!("creating {}", log_dir.display()),
            source,
        })?;
        let log = log_dir.join("pitr-restore.log");
        if let Some((uid, gid)) = self.owner {
            let _ = std::fs::File::create(&log);
            let _ = chown_tree(&log_dir, uid, gid);
        }
        let mut cmd = tokio::process::Command::new(tools.pg_ctl());
        cmd.arg("start")
            .arg("-D")
            .arg(&self.path)
            .arg("-l")
            .arg(&log)
            .arg("-w")
            .arg("-t")
            .arg(wait.as_secs().max(1).to_string())
            .arg("-o")
            // No read-only connections while it recovers: pg_ctl then waits until recovery
            // ended and the server was promoted (for this start only).
            .arg(format!("-p {port} -c hot_standby=off"))
            .current_dir(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.owner {
            if nix::unistd::geteuid().is_root() {
                cmd.uid(uid).gid(gid);
            }
        }
        tracing::info!(
            "starting the restored server on port {port}; recovery runs until the target (log: \
             {})",
            log.display()
        );
        let out = cmd.output().await.map_err(|source| SourceError::Spawn {
            tool: "pg_ctl",
            path: tools.pg_ctl().display().to_string(),
            source,
        })?;
        // pg_ctl may return once the server runs; recovery ends when the log says the server
        // accepts (read-write) connections, or the server exits.
        let deadline = std::time::Instant::now() + wait;
        let mut text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut outcome = RecoveryOutcome::from_log(&text);
        while out.status.success()
            && !outcome.promoted
            && self.path.join("postmaster.pid").exists()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            text = std::fs::read_to_string(&log).unwrap_or_default();
            outcome = RecoveryOutcome::from_log(&text);
        }
        outcome.log = log.clone();
        if !out.status.success() || !outcome.promoted {
            return Err(SourceError::Wal(format!(
                "the restored server did not finish recovery (pg_ctl: {}; {}): {}; its data \
                 directory {} is left for inspection (log {})",
                crate::process::describe_status(out.status),
                String::from_utf8_lossy(&out.stderr).trim(),
                explain_failure(&text),
                self.path.display(),
                log.display()
            )));
        }
        Ok(outcome)
    }
}

impl RecoveryOutcome {
    /// Reads a server log.
    pub fn from_log(text: &str) -> Self {
        let message = |line: &str, marker: &str| {
            line.split_once(marker)
                .map(|(_, rest)| format!("{marker}{rest}").trim().to_owned())
        };
        let mut outcome = Self::default();
        for line in text.lines() {
            if let Some(m) = message(line, "recovery stopping ") {
                outcome.stopped = Some(m);
            }
            if let Some(m) = message(line, "last completed transaction was at log time ") {
                outcome.last_transaction = Some(m);
            }
            if let Some(m) = message(line, "redo done at ") {
                outcome.redo_done_at = Some(m);
            }
            if let Some((_, id)) = line.split_once("selected new timeline ID: ") {
                outcome.new_timeline = id.trim().parse().ok();
            }
            if line.contains("database system is ready to accept connections") {
                outcome.promoted = true;
            }
        }
        outcome
    }
}

/// The server log's FATAL, PANIC and ERROR lines (the last few), or its last lines.
fn explain_failure(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("FATAL:")
                || l.contains("PANIC:")
                || l.contains("ERROR:")
                || l.contains("recovery ended before")
        })
        .collect();
    let lines = if lines.is_empty() {
        log.lines().collect()
    } else {
        lines
    };
    let start = lines.len().saturating_sub(8);
    let text = lines[start..].join(" | ");
    if text.is_empty() {
        "the server log says nothing".to_owned()
    } else {
        text
    }
}

/// `chown -R uid:gid path` (without following links).
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_take_the_usual_spellings_and_latest() {
        let want = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap();
        for text in [
            "2026-11-27 12:00:00+00",
            "2026-11-27 12:00:00+00:00",
            "2026-11-27T12:00:00Z",
            "2026-11-27 12:00:00",
            " 2026-11-27 13:00:00+01",
        ] {
            assert_eq!(
                text.parse::<PitrTarget>().unwrap(),
                PitrTarget::Time(want.with_timezone(&Utc)),
                "{text}"
            );
        }
        assert_eq!("latest".parse::<PitrTarget>().unwrap(), PitrTarget::Latest);
        let err = "27/11/2026".parse::<PitrTarget>().unwrap_err();
        assert!(
            err.contains("YYYY-MM-DD HH:MM:SS+00") && err.contains("latest"),
            "{err}"
        );
    }

    #[test]
    fn the_owner_is_looked_up_by_name_and_a_missing_user_says_what_to_give() {
        assert_eq!(
            DataDirectory::owner_named(Some("root")).unwrap(),
            Some((0, 0))
        );
        let err = DataDirectory::owner_named(Some("no-such-user-for-a-restore"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-such-user-for-a-restore") && err.contains("--owner USER"),
            "{err}"
        );
        let default = DataDirectory::owner_named(None).unwrap();
        if nix::unistd::geteuid().is_root() {
            let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            assert_eq!(
                default,
                Some((postgres.uid.as_raw(), postgres.gid.as_raw()))
            );
        } else {
            assert_eq!(default, None);
        }
    }

    #[test]
    fn targets_become_recovery_settings() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T12:00:00.25Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            PitrTarget::Time(t).settings(),
            [(
                "recovery_target_time",
                "2026-11-27 12:00:00.250000+00".to_owned()
            )]
        );
        assert!(PitrTarget::Latest.settings().is_empty());
        assert_eq!(
            PitrTarget::Name("before upgrade".into()).settings(),
            [("recovery_target_name", "before upgrade".to_owned())]
        );
    }

    #[test]
    fn the_log_says_where_recovery_stopped() {
        let log = "LOG:  starting point-in-time recovery to 2026-11-27 12:00:00+00\n\
                   LOG:  restored log file \"000000010000000000000003\" from archive\n\
                   LOG:  recovery stopping before commit of transaction 745, time 2026-11-27 12:00:01.5+00\n\
                   LOG:  redo done at 0/3000F10 system usage: CPU: user: 0.00 s\n\
                   LOG:  last completed transaction was at log time 2026-11-27 11:59:59.9+00\n\
                   LOG:  selected new timeline ID: 2\n\
                   LOG:  archive recovery complete\n\
                   LOG:  database system is ready to accept connections\n";
        let outcome = RecoveryOutcome::from_log(log);
        assert_eq!(
            outcome.stopped.as_deref(),
            Some(
                "recovery stopping before commit of transaction 745, time 2026-11-27 12:00:01.5+00"
            )
        );
        assert!(outcome.last_transaction.unwrap().contains("11:59:59.9"));
        assert!(outcome
            .redo_done_at
            .unwrap()
            .starts_with("redo done at 0/3000F10"));
        assert_eq!(outcome.new_timeline, Some(2));
        assert!(outcome.promoted);
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_the_configuration_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDirectory::new(dir.path().join("data"), None);
        data.check_empty().unwrap();
        std::fs::create_dir(data.path()).unwrap();
        data.check_empty().unwrap();
        std::fs::write(data.path().join("PG_VERSION"), "15\n").unwrap();
        let e = data.check_empty().unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        data.configure(
            "/usr/bin/backup-wal fetch %f %p",
            &PitrTarget::Xid(7),
            "restored by a test",
        )
        .unwrap();
        let auto = std::fs::read_to_string(data.path().join("postgresql.auto.conf")).unwrap();
        assert!(auto.contains("restore_command = '/usr/bin/backup-wal fetch %f %p'"));
        assert!(auto.contains("recovery_target_xid = '7'"));
        assert!(auto.contains("archive_mode = 'off'"));
        assert!(data.path().join("recovery.signal").is_file());
        assert!(data.path().join("pg_hba.conf").is_file());
    }
}
