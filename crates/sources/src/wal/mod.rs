//! PostgreSQL's write-ahead log, archived continuously: each WAL file PostgreSQL hands to
//! `archive_command` becomes a backup of its own under `wal/{timeline}/`, compressed,
//! encrypted, hashed and signed like every other backup ([`WalFileSource`]); its name is
//! PostgreSQL's ([`WalFileName`]), not a dated one. The `[wal]` settings ([`WalConfig`]) say
//! how many files are pushed and fetched at once.

mod file;
mod history;
mod lsn;
mod names;

pub use file::{
    recorded_plain_sha256, SegmentHeader, WalFileSource, PLAIN_SHA256, WAL_SOURCE_TYPE,
};
pub use history::{TimelineHistory, TimelineSwitch, MAX_HISTORY_BYTES};
pub use lsn::Lsn;
pub use names::{segments_per_log, timeline_folder, WalFileName, WalFileType};

use std::path::PathBuf;

use backup_core::config::{check, Component, Config, Section, Setting};

/// How WAL is archived and fetched (`[wal]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// WAL files pushed at once (`BACKUP_WAL_PUSH_CONCURRENCY`): the one PostgreSQL asks for
    /// plus the next ones already waiting in `archive_status/` (`.ready`), so that the
    /// archiver keeps up with a busy server. 1 pushes only the file asked for.
    pub push_concurrency: usize,
    /// WAL segments fetched at once during recovery (`BACKUP_WAL_FETCH_AHEAD`, 16): the one
    /// asked for plus the next ones (four downloads at a time), kept verified in a spool
    /// directory until PostgreSQL asks. 1 fetches only the file asked for.
    pub fetch_ahead: usize,
    /// Where pushes ahead and fetches ahead are recorded (`BACKUP_WAL_SPOOL_DIR`); `None`:
    /// beside the WAL files themselves (`pg_wal/backup_wal_spool/`).
    pub spool_dir: Option<PathBuf>,
    /// How often `backup-all` takes a physical base backup (`BACKUP_WAL_BASE_BACKUP`).
    pub base_backup: BaseSchedule,
}

/// How often `backup-all` takes a physical base backup: when the newest complete one is older
/// than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaseSchedule {
    /// Never (base backups by hand, `backup-database --physical`).
    #[default]
    Never,
    /// When the newest is a day old (23 hours, so a nightly run never slips a day).
    Daily,
    /// When the newest is a week old (less one hour).
    Weekly,
}

impl BaseSchedule {
    /// The age at which the next base backup is due.
    pub fn period(self) -> Option<std::time::Duration> {
        match self {
            Self::Never => None,
            Self::Daily => Some(std::time::Duration::from_secs(23 * 3600)),
            Self::Weekly => Some(std::time::Duration::from_secs((7 * 24 - 1) * 3600)),
        }
    }
}

impl std::str::FromStr for BaseSchedule {
    type Err = backup_core::CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" | "off" | "" => Ok(Self::Never),
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            other => Err(backup_core::CoreError::Config(format!(
                "BACKUP_WAL_BASE_BACKUP={other:?}: use never, daily or weekly"
            ))),
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            push_concurrency: 4,
            fetch_ahead: 16,
            spool_dir: None,
            base_backup: BaseSchedule::Never,
        }
    }
}

/// The most files pushed or fetched at once.
pub const MAX_WAL_CONCURRENCY: usize = 64;

const WAL: &[Setting] = &[
    Setting::new(
        "BACKUP_WAL_PUSH_CONCURRENCY",
        "push_concurrency",
        "WAL files pushed at once by backup-wal push: the one PostgreSQL asks for plus the next \
         ones waiting (.ready in archive_status); 1 to 64",
    )
    .default("4"),
    Setting::new(
        "BACKUP_WAL_FETCH_AHEAD",
        "fetch_ahead",
        "WAL segments fetched at once by backup-wal fetch during recovery: the one asked for \
         plus the next ones (four downloads at a time), kept verified until asked for; 1 to 64",
    )
    .default("16"),
    Setting::new(
        "BACKUP_WAL_BASE_BACKUP",
        "base_backup",
        "how often backup-all takes a physical base backup (backup-database --physical): \
         never, daily or weekly (when the newest complete one is that old)",
    )
    .default("never"),
    Setting::new(
        "BACKUP_WAL_SPOOL_DIR",
        "spool_dir",
        "where backup-wal keeps what it pushed or fetched ahead (default: \
         pg_wal/backup_wal_spool beside the WAL files)",
    ),
];

impl Component for WalConfig {
    const SECTION: Section = Section {
        table: "wal",
        about: "continuous WAL archiving (backup-wal push for archive_command, backup-wal \
                fetch for restore_command)",
        settings: WAL,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let bounded = |env: &str, default: usize| -> backup_core::Result<usize> {
            let n = config.number::<usize>(env)?.unwrap_or(default);
            if (1..=MAX_WAL_CONCURRENCY).contains(&n) {
                Ok(n)
            } else {
                Err(backup_core::CoreError::Config(format!(
                    "{env} must be 1 to {MAX_WAL_CONCURRENCY}, not {n}"
                )))
            }
        };
        Ok(Self {
            push_concurrency: bounded("BACKUP_WAL_PUSH_CONCURRENCY", 4)?,
            fetch_ahead: bounded("BACKUP_WAL_FETCH_AHEAD", 16)?,
            spool_dir: config.path("BACKUP_WAL_SPOOL_DIR"),
            base_backup: config
                .get("BACKUP_WAL_BASE_BACKUP")
                .unwrap_or("never")
                .parse()?,
        })
    }
}
