//! Continuous WAL archiving: `backup-wal push` for PostgreSQL's `archive_command` and
//! `backup-wal fetch` for its `restore_command`, over every configured destination
//! ([`WalArchive`]).
//!
//! **Push** stores one WAL file as `wal/{timeline}/{name}[.gz|.zst][.enc]` with its signed
//! manifest on every destination, and succeeds only once every destination holds it, so that
//! PostgreSQL never recycles a file that is not safely stored. It is idempotent: a file
//! already stored with the same content (SHA-256 of the plain file, recorded in the signed
//! manifest) succeeds without a write; different content under the same name is refused
//! ([`WalError::Conflict`]: two clusters archiving into one place). While PostgreSQL waits for
//! one file, the next ones it has ready (`archive_status/*.ready`) are pushed beside it; each
//! pushed ahead is recorded in the spool directory with its hash, and PostgreSQL's own call
//! for it then only checks the hash.
//!
//! **Fetch** finds the file on the first destination that holds it, checks the manifest's
//! signature, the stored bytes' size and hash, decrypts, decompresses, checks the plain hash,
//! and renames the result into place: PostgreSQL never sees a partial or unverified file.
//! "Not in the archive" ([`WalError::NotFound`]) is told apart from every other failure, which
//! must stop a recovery rather than end it. The next segments are fetched ahead into the spool
//! directory, verified the same way.

mod chain;
mod fetch;
mod prune;
mod push;
mod spool;

pub use chain::{newest_wal, ArchivedWal, BaseWal, ReplayPlan};
pub use fetch::FetchReport;
pub use prune::{prune_wal, wal_prune_status, Retention, WalPrune};
pub use push::{PushReport, PushedAhead};

use backup_core::{BackupOptions, CoreError, Destinations};
use backup_crypto::Keyring;
use backup_sources::wal::WalConfig;
use backup_sources::SourceError;

// An error's text with its causes, each once.
use crate::notify::chain as error_text;

/// A WAL archive over a set of destinations (see the module).
pub struct WalArchive {
    destinations: Destinations,
    options: BackupOptions,
    keyring: Option<Keyring>,
    config: WalConfig,
}

impl std::fmt::Debug for WalArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalArchive")
            .field("destinations", &self.destinations.describe())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WalArchive {
    /// An archive on `destinations`: pushes store with `options` (compression, encryption and
    /// signing key); fetches and the comparison of stored files verify manifests with
    /// `keyring` (with the key of `options` among its keys).
    pub fn new(
        destinations: Destinations,
        options: BackupOptions,
        keyring: Option<Keyring>,
        config: WalConfig,
    ) -> Self {
        Self {
            destinations,
            options,
            keyring,
            config,
        }
    }

    /// The destinations.
    pub fn destinations(&self) -> &Destinations {
        &self.destinations
    }
}

/// Why a WAL file could not be pushed or fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The file or its name is not usable (not a WAL file, unreadable, changed while read).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A destination or a manifest failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The archive holds other contents under this file's name.
    #[error(
        "{name} is already archived on {destination} with other contents (SHA-256 {stored} \
         there, {ours} here): another cluster archives into the same place, or a restored \
         copy of this one does; give each cluster its own local directory or \
         BACKUP_S3_PREFIX, and start a restored cluster on a new timeline (promote it)"
    )]
    Conflict {
        /// The WAL file.
        name: String,
        /// The destination holding the other file.
        destination: String,
        /// SHA-256 of the stored file.
        stored: String,
        /// SHA-256 of the file given.
        ours: String,
    },
    /// The file is not stored on any destination, and every destination could be asked.
    #[error("{name} is not in the archive (looked on {searched})")]
    NotFound {
        /// The WAL file.
        name: String,
        /// The destinations asked.
        searched: String,
    },
    /// The file could not be stored on every destination; PostgreSQL keeps it and tries again.
    #[error("{name} was not stored on every destination: {failures}")]
    NotStored {
        /// The WAL file.
        name: String,
        /// Each failed destination with its error.
        failures: String,
    },
    /// The archive lacks WAL a recovery needs; the message names the segment and the newest
    /// point reachable.
    #[error("{0}")]
    Gap(String),
    /// Some destination holds the file, or could not be asked, and no copy could be used.
    #[error("no usable copy of {name}: {failures}")]
    Unusable {
        /// The WAL file.
        name: String,
        /// Each destination with why its copy could not be used.
        failures: String,
    },
}

impl WalError {
    /// Whether this is [`WalError::NotFound`]: the end of the archive for a recovery.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
