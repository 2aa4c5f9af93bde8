//! The backup pipeline and everything shared by every kind of backup.
//!
//! Data flows one way: a [`Source`] produces bytes, which are compressed ([`Compression`]),
//! encrypted (`backup_crypto`), hashed and counted, and written to a
//! [`Sink`](backup_storage::Sink); a [`Manifest`] written last marks the backup complete
//! ([`run_backup`], [`run_backup_to_all`] for several destinations in one pass). Restores run
//! the other way: [`fetch_backup`] checks the manifest's HMAC and reads the stored object once
//! into a private copy, verifying its size and SHA-256, and [`FetchedBackup::restore_into`]
//! hands the decrypted, decompressed stream to a [`RestoreTarget`], which commits only at its
//! verified end. The [`catalog`] lists and selects backups on one sink; [`Destinations`] does
//! it across all of them (merged listing, [`RestoreRules`], fallback to the next copy);
//! [`retention`] decides which to keep and [`prune`] applies it everywhere; [`config`] layers
//! flags, environment and config file into each component's typed configuration.

pub mod catalog;
mod compression;
pub mod config;
mod destinations;
mod error;
mod hashing;
pub mod layout;
mod listing;
mod manifest;
mod marker;
mod naming;
pub mod pgzip;
mod pipeline;
pub mod prune;
pub mod reencrypt;
mod restore;
pub mod retention;
mod source;

pub use catalog::{list_backups, BackupEntry, BackupStatus, Selection};
pub use compression::{read_ahead, Compression, ZSTD_JOB_BYTES};
pub use config::{
    Component, CompressionAlgorithm, Config, LocalConfig, PipelineConfig, RestoreConfig,
    RetentionConfig, S3Settings, DEFAULT_KEY_FILE, DEFAULT_NAME_PREFIX, DEFAULT_RETENTION_DAYS,
};
pub use destinations::{Catalog, Destination, Destinations, Listed, RestoreRules, RECENT_HOURS};
pub use error::{CoreError, Result};
pub use hashing::{
    ByteCounter, CountingReader, HashingReader, IntegrityError, ProgressFn, StreamDigest,
    VerifyingReader,
};
pub use layout::{claim_key_for, manifest_key_for, BackupKind, CLAIM_SUFFIX, MANIFEST_SUFFIX};
pub use listing::{human_bytes, printable};
pub use manifest::{
    EmbeddedAttachment, EncryptionInfo, MacKdf, Manifest, MAC_KDF_NAME, MANIFEST_FORMAT_VERSION,
    MAX_ATTACHMENT_BYTES,
};
pub use naming::{BackupName, TIMESTAMP_FORMAT};
pub use pipeline::{
    host_name, run_backup, run_backup_to_all, store_object, BackupOptions, BackupReport,
    DestinationResult, DESTINATION_LOCK_WAIT, FIXED_CLAIM_STALE, TOOL_NAME,
};
pub use restore::{
    fetch_backup, open_backup, open_object, read_verified_manifest, restore_backup,
    restore_backup_via, FetchedBackup, OpenedBackup,
};
/// How a run that involves several destinations, kinds or components went as a whole, in the
/// old scripts' exit codes: a backup job, a prune, the nightly orchestration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything succeeded (exit 0).
    Success,
    /// Some parts failed, others succeeded (exit 1).
    Partial,
    /// Nothing succeeded (exit 2).
    Failed,
}

impl RunStatus {
    /// The old scripts' exit code for it: 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Partial => 1,
            Self::Failed => 2,
        }
    }
}

pub use retention::{list_dated, Dated, PruneOutcome, PrunePlan, RetentionPolicy};
pub use source::{
    Attachment, BoxError, ByteStream, MemorySource, RestoreSummary, RestoreTarget, Source,
    SourceFacts,
};
