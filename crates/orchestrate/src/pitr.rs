//! `restore-database --pitr`: a physical base backup and the archived WAL after it, restored
//! into a new data directory that recovers to a point in time ([`restore_pitr`]).
//!
//! 1. The newest complete base backup that ended before the target is chosen.
//! 2. The archive is checked for the WAL the recovery needs ([`WalArchive::plan_replay`]): a
//!    gap is reported with the missing segment and the newest point reachable, before
//!    anything is written.
//! 3. The base backup is streamed once (its signed manifest and stored size checked first, the
//!    stored bytes' SHA-256 at the end of the stream) into a staging directory beside the
//!    target, each tar entry checked before it is written (plain files and directories inside
//!    it only); only after the whole stream verified is it renamed into place, mode 0700,
//!    owned by the server's user. A failure empties it and the next destination is tried.
//! 4. The recovery is configured: `recovery.signal`, `restore_command` calling
//!    `backup-wal fetch`, the target, `recovery_target_action = promote`, `archive_mode = off`.
//! 5. With a port, the server is started; the report says where recovery stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_core::{BackupKind, CoreError, ProgressFn};
use backup_crypto::Keyring;
use backup_sources::files::FilesExtract;
use backup_sources::postgres::{
    DataDirectory, PgTools, PitrTarget, RecoveryOutcome, PHYSICAL_SOURCE_TYPE,
};
use backup_sources::wal::{Lsn, WalFileName};
use backup_sources::SourceError;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::wal::{BaseWal, ReplayPlan, WalArchive, WalError};

/// What to restore, where, and whether to start it.
#[derive(Debug, Clone)]
pub struct PitrRequest {
    /// Where recovery stops.
    pub target: PitrTarget,
    /// The new data directory (absent or empty).
    pub data_dir: PathBuf,
    /// Its owner (uid, gid): the user the server runs as.
    pub owner: Option<(u32, u32)>,
    /// `restore_command`, calling `backup-wal fetch %f %p` with the same configuration.
    pub restore_command: String,
    /// Start the server on this port and wait for the recovery to end.
    pub start: Option<u16>,
    /// With `start`: the directory of `pg_ctl` (`PG_BIN_DIR`); `None`: the newest installed
    /// PostgreSQL at least as new as the backed-up server.
    pub bin_dir: Option<PathBuf>,
    /// With `start`: the longest wait for recovery.
    pub wait: Duration,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    /// The base backup restored.
    pub base_backup: String,
    /// The destination it was read from.
    pub destination: String,
    /// Where it started and ended in the WAL.
    pub base_start_lsn: String,
    /// Where it ended.
    pub base_stop_lsn: String,
    /// The recovery target, in words.
    pub target: String,
    /// How the recovery goes through the archive.
    pub replay: ReplayPlan,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where recovery stopped, when the server was started.
    pub recovery: Option<RecoveryOutcome>,
}

impl PitrReport {
    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = format!(
            "restored base backup {} (from {}; WAL {} to {}) into {}\n\
             recovery target: {}\n\
             archived WAL reaches {} (timelines {:?}, {} segments, the last stored {})\n",
            self.base_backup,
            self.destination,
            self.base_start_lsn,
            self.base_stop_lsn,
            self.data_dir.display(),
            self.target,
            self.replay.last,
            self.replay.timelines,
            self.replay.segments,
            self.replay.last_stored_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        match &self.recovery {
            Some(outcome) => {
                out.push_str("recovery finished; the server is running, promoted\n");
                for line in [
                    &outcome.stopped,
                    &outcome.last_transaction,
                    &outcome.redo_done_at,
                ]
                .into_iter()
                .flatten()
                {
                    out.push_str(&format!("  {line}\n"));
                }
                if let Some(timeline) = outcome.new_timeline {
                    out.push_str(&format!("  new timeline: {timeline}\n"));
                }
                out.push_str(&format!("  server log: {}\n", outcome.log.display()));
            }
            None => out.push_str(&format!(
                "not started: start it with `pg_ctl -D {} start` (as the server's user); it \
                 recovers to the target, then promotes and accepts connections\n",
                self.data_dir.display()
            )),
        }
        out
    }
}

/// Why a point-in-time restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PitrError {
    /// No base backup fits the target.
    #[error("{0}")]
    NoBaseBackup(String),
    /// The archive cannot take the recovery to its target, or could not be read.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Reading or verifying the base backup failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The data directory, its configuration or the server failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Restores the base backup for `request.target` from `archive`'s destinations (backups named
/// `prefix`) with `keyring` (see the module).
///
/// # Errors
/// [`PitrError`]; nothing is left in the data directory unless the failure came after it
/// was installed (the server's own recovery), which the error then says.
pub async fn restore_pitr(
    archive: &WalArchive,
    keyring: &Keyring,
    prefix: &str,
    request: &PitrRequest,
    progress: Option<ProgressFn>,
) -> Result<PitrReport, PitrError> {
    let data = DataDirectory::new(&request.data_dir, request.owner);
    data.check_empty()?;
    let destinations = archive.destinations();
    let catalog = destinations.catalog(BackupKind::BASE, prefix).await?;
    let listed = choose_base(&catalog, &request.target)?;
    let facts = BaseFacts::of(listed.entry.manifest.as_ref())?;
    let plan = archive.plan_replay(&facts.wal, &request.target).await?;
    tracing::info!(
        "restoring base backup {} and WAL {} to {} for {}",
        listed.entry.key,
        plan.first,
        plan.last,
        request.target.describe()
    );
    let staging = data.staging()?;
    let (destination, verified, server_version) =
        match extract_base(destinations, listed, keyring, &facts, &staging, progress).await {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
    if !staging.join("PG_VERSION").is_file() || !staging.join("backup_label").is_file() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(PitrError::NoBaseBackup(format!(
            "{} holds no PostgreSQL data directory (no PG_VERSION or backup_label)",
            listed.entry.key
        )));
    }
    data.install(&staging)?;
    let note = format!(
        "restore-database --pitr {}: base backup {}, recovery to {}",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        listed.entry.key,
        request.target.describe()
    );
    if let Err(e) = data.configure(&request.restore_command, &request.target, &note) {
        let _ = std::fs::remove_dir_all(&request.data_dir);
        return Err(e.into());
    }
    let recovery = match request.start {
        Some(port) => {
            let tools = server_tools(request.bin_dir.as_deref(), server_version.as_deref())?;
            Some(data.start(&tools, port, request.wait).await?)
        }
        None => None,
    };
    Ok(PitrReport {
        base_backup: listed.entry.key.clone(),
        destination,
        base_start_lsn: verified.start_lsn.to_string(),
        base_stop_lsn: verified.stop_lsn.to_string(),
        target: request.target.describe(),
        replay: plan,
        data_dir: request.data_dir.clone(),
        recovery,
    })
}

/// Streams the base backup `listed` from the first destination holding a usable copy into
/// the empty `staging` directory: its manifest's signature and the stored size are checked
/// first, the stream verifies the stored bytes' SHA-256 at its end, and every tar entry is
/// checked before it is written (plain files and directories inside `staging` only). Nothing
/// reaches the data directory before the whole stream verified: `staging` is emptied after a
/// failure and the next destination is tried. One read of the object, one decompression.
/// Returns the destination, the verified facts and the server version.
async fn extract_base(
    destinations: &backup_core::Destinations,
    listed: &backup_core::Listed,
    keyring: &Keyring,
    facts: &BaseFacts,
    staging: &Path,
    progress: Option<ProgressFn>,
) -> Result<(String, BaseFacts, Option<String>), PitrError> {
    use backup_core::RestoreTarget as _;
    let key = &listed.entry.key;
    let mut problems = Vec::new();
    let items: Vec<&backup_core::Destination> = destinations.iter().collect();
    for &i in &listed.holders {
        let Some(destination) = items.get(i) else {
            continue;
        };
        let sink = destination.sink();
        let attempt = async {
            let entry = backup_core::catalog::entry_for_key(sink, BackupKind::BASE, key).await?;
            let opened =
                backup_core::open_backup(sink, &entry, Some(keyring), progress.clone()).await?;
            let verified = BaseFacts::of(opened.manifest.as_ref())?;
            if verified.wal != facts.wal {
                return Err(PitrError::NoBaseBackup(format!(
                    "the signed manifest of {key} differs from its listing; refusing it"
                )));
            }
            let server_version = opened
                .manifest
                .as_ref()
                .and_then(|m| m.source.server_version.clone());
            let mut extract = FilesExtract::into_fresh_directory(staging.to_owned());
            extract
                .restore(opened.stream)
                .await
                .map_err(|source| CoreError::Restore {
                    key: key.clone(),
                    source,
                })?;
            Ok::<_, PitrError>((verified, server_version))
        };
        match attempt.await {
            Ok((verified, server_version)) => {
                return Ok((destination.name().to_owned(), verified, server_version))
            }
            Err(e) => {
                tracing::warn!(
                    "the copy of {key} on {} cannot be used: {e}",
                    destination.name()
                );
                problems.push(format!("{}: {e}", destination.name()));
                // Start the next copy from an empty directory.
                let _ = std::fs::remove_dir_all(staging);
                std::fs::create_dir(staging).map_err(|source| SourceError::Io {
                    what: format!("creating {}", staging.display()),
                    source,
                })?;
            }
        }
    }
    Err(PitrError::NoBaseBackup(format!(
        "no destination holds a usable copy of {key} ({})",
        problems.join("; ")
    )))
}

/// The PostgreSQL programs to run the restored server with.
fn server_tools(
    bin_dir: Option<&Path>,
    server_version: Option<&str>,
) -> Result<PgTools, PitrError> {
    if let Some(dir) = bin_dir {
        return Ok(PgTools::in_dir(dir)?);
    }
    let major = server_version
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tools = PgTools::discover(major)?;
    if tools.major() != major || !tools.pg_ctl().is_file() {
        return Err(PitrError::Source(SourceError::Wal(format!(
            "a physical backup of PostgreSQL {major} runs only on PostgreSQL {major}'s server, \
             and {} holds version {} (pg_ctl {}): install postgresql-{major} or set PG_BIN_DIR \
             to its bin directory",
            tools.bin_dir().display(),
            tools.major(),
            if tools.pg_ctl().is_file() {
                "there"
            } else {
                "missing"
            }
        ))));
    }
    Ok(tools)
}

/// The newest complete base backup that fits the target: one that ended before a time
/// target, or before an LSN target; the newest for the others.
fn choose_base<'a>(
    catalog: &'a backup_core::Catalog,
    target: &PitrTarget,
) -> Result<&'a backup_core::Listed, PitrError> {
    let complete: Vec<&backup_core::Listed> = catalog
        .listed
        .iter()
        .filter(|l| l.entry.status == backup_core::BackupStatus::Complete)
        .collect();
    if complete.is_empty() {
        return Err(PitrError::NoBaseBackup(
            "there is no complete base backup: take one with backup-database --physical (the \
             server must archive its WAL with backup-wal push)"
                .to_owned(),
        ));
    }
    let fits = |l: &&backup_core::Listed| {
        let Ok(facts) = BaseFacts::of(l.entry.manifest.as_ref()) else {
            return false;
        };
        match target {
            PitrTarget::Time(t) => facts.stopped_at <= *t,
            PitrTarget::Lsn(lsn) => facts.stop_lsn <= *lsn,
            PitrTarget::Latest | PitrTarget::Xid(_) | PitrTarget::Name(_) => true,
        }
    };
    complete
        .iter()
        .rev()
        .copied()
        .find(|l| fits(l))
        .ok_or_else(|| {
            let oldest = complete
                .first()
                .and_then(|l| BaseFacts::of(l.entry.manifest.as_ref()).ok())
                .map(|f| {
                    format!(
                        "{} (WAL position {})",
                        f.stopped_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        f.stop_lsn
                    )
                })
                .unwrap_or_default();
            PitrError::NoBaseBackup(format!(
                "no base backup ended before {}: the oldest ended at {oldest}",
                target.describe()
            ))
        })
}

/// What a base backup's manifest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BaseFacts {
    wal: BaseWal,
    start_lsn: Lsn,
    stop_lsn: Lsn,
    stopped_at: DateTime<Utc>,
}

impl BaseFacts {
    fn of(manifest: Option<&backup_core::Manifest>) -> Result<Self, PitrError> {
        let bad = |what: &str| {
            PitrError::NoBaseBackup(format!(
                "a base backup's manifest lacks {what}; it was not made by backup-database \
                 --physical"
            ))
        };
        let manifest = manifest.ok_or_else(|| bad("a manifest"))?;
        if manifest.source.source_type != PHYSICAL_SOURCE_TYPE {
            return Err(bad("its source type"));
        }
        let get = |k: &str| manifest.source.details.get(k);
        let text = |k: &str| get(k).and_then(|v| v.as_str()).ok_or_else(|| bad(k));
        let start_lsn: Lsn = text("start_lsn")?.parse()?;
        let stop_lsn: Lsn = text("stop_lsn")?.parse()?;
        let timeline = get("timeline")
            .and_then(serde_json::Value::as_u64)
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| bad("timeline"))?;
        let segment_size = get("wal_segment_size")
            .and_then(serde_json::Value::as_u64)
            .filter(|s| s.is_power_of_two())
            .ok_or_else(|| bad("wal_segment_size"))?;
        let stopped_at = DateTime::parse_from_rfc3339(text("stopped_at")?)
            .map_err(|_| bad("stopped_at"))?
            .with_timezone(&Utc);
        let first = WalFileName::segment(timeline, start_lsn.segment(segment_size), segment_size);
        if text("wal_start")? != first.as_str() {
            return Err(bad("a consistent wal_start"));
        }
        Ok(Self {
            wal: BaseWal {
                timeline,
                segment_size,
                start: start_lsn.segment(segment_size),
                stop: stop_lsn.segment_before(segment_size),
            },
            start_lsn,
            stop_lsn,
            stopped_at,
        })
    }
}

/// The `restore_command` that runs `backup-wal` at `program` (a `backup-wal` program, or
/// `backup-tool` with `backup-wal` as its first argument) with the config file `config` and
/// the settings `overrides` (non-secret values given by flags or the environment), each
/// quoted for the shell PostgreSQL runs it with.
pub fn restore_command(
    program: &Path,
    multicall: bool,
    config: Option<&Path>,
    overrides: &[(&str, String)],
) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut parts: Vec<String> = overrides
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    parts.push(quote(&program.display().to_string()));
    if multicall {
        parts.push("backup-wal".to_owned());
    }
    if let Some(config) = config {
        parts.push("--config".to_owned());
        parts.push(quote(&config.display().to_string()));
    }
    parts.push("fetch %f %p".to_owned());
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_command_quotes_every_value_for_the_shell() {
        let command = restore_command(
            Path::new("/usr/local/bin/backup-tool"),
            true,
            Some(Path::new("/etc/backup/backup.toml")),
            &[("BACKUP_LOCAL_DIR", "/var/backups/it's".to_owned())],
        );
        assert_eq!(
            command,
            "BACKUP_LOCAL_DIR='/var/backups/it'\\''s' '/usr/local/bin/backup-tool' backup-wal \
             --config '/etc/backup/backup.toml' fetch %f %p"
        );
    }
}
