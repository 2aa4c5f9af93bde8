//! The error type of `backup-core`.
//!
//! Policy: every error says what failed (which object, which stage) and, where there is one,
//! what the operator can do about it. Errors from the storage and crypto crates are wrapped
//! unchanged; errors from sources and restore targets arrive boxed and are kept as the
//! `source()` chain so their own messages are shown.

use backup_crypto::CryptoError;
use backup_storage::StorageError;

use crate::source::BoxError;

/// Result alias for `backup-core`.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Errors from the pipeline, catalog, manifests and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A storage operation failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Loading a key or decrypting failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The source (pg_dump, Redis, ...) failed; the backup was not committed.
    #[error("{what} failed: {source}")]
    Source {
        /// What was being backed up.
        what: String,
        /// The source's own error.
        #[source]
        source: BoxError,
    },
    /// Writing the stream to the destination failed; nothing was committed.
    #[error("writing {key} to {destination} failed: {source}")]
    Write {
        /// The object being written.
        key: String,
        /// The sink's description.
        destination: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The restore target refused or failed; it was left as it was.
    #[error("restore of {key} failed: {source}")]
    Restore {
        /// The backup being restored.
        key: String,
        /// The target's own error.
        #[source]
        source: BoxError,
    },
    /// A stored object does not match its manifest (size or SHA-256).
    #[error("backup {key} failed its integrity check: {detail}; the object is damaged or was modified, restore another backup")]
    Integrity {
        /// The object.
        key: String,
        /// What did not match.
        detail: String,
    },
    /// A manifest could not be read or parsed.
    #[error("manifest {key} is unreadable: {reason}")]
    ManifestInvalid {
        /// The manifest object.
        key: String,
        /// Why.
        reason: String,
    },
    /// A manifest's HMAC does not verify with the key whose id it names.
    #[error("manifest {key} failed HMAC verification: it was modified, or the key file holds a different key with the same id; refusing to restore")]
    ManifestTampered {
        /// The manifest object.
        key: String,
    },
    /// No available key is the one the backup was made with.
    #[error("backup {key} was made with a key that is not loaded (its manifest names key id {needed}; the loaded keys are {available}); put the old key file in the keyring directory (BACKUP_KEYRING_DIR)")]
    KeyNotAvailable {
        /// The backup.
        key: String,
        /// The key id recorded in the manifest (in format 3, derived from the manifest's own
        /// salt, so it never equals a key's local label).
        needed: String,
        /// Local labels ([`backup_crypto::EncryptionKey::id`]) of the keys that were loaded.
        available: String,
    },
    /// The backup is encrypted but no key was supplied.
    #[error(
        "backup {key} is encrypted but no encryption key was given; set BACKUP_ENCRYPTION_KEY_FILE"
    )]
    KeyRequired {
        /// The backup.
        key: String,
    },
    /// No backup matched a selection.
    #[error("{0}")]
    NoMatch(String),
    /// The selected backup may not be restored as asked (being written, incomplete, passed
    /// over), or no destination holds a usable copy; the message says what to do.
    #[error("{0}")]
    NotRestorable(String),
    /// Another run holds the claim on an object this run was to write.
    #[error("{key} on {destination} is being written by another run ({holder}); if no such run is alive, remove {key}.claim there")]
    Busy {
        /// The object.
        key: String,
        /// The sink's description.
        destination: String,
        /// The other run's claim (tool, host, process, start).
        holder: String,
    },
    /// The configuration is invalid or incomplete.
    #[error("configuration error: {0}")]
    Config(String),
}
