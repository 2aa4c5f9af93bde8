//! The storage error type.
//!
//! Every error names the object (or path) and the operation that failed, so a message printed
//! to an operator says what to look at.

use std::io;

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Errors from a [`Sink`](crate::Sink).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("object {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A write that must create a new object ([`WriteMode::Create`](crate::WriteMode::Create))
    /// found one already stored under the key; nothing was replaced.
    #[error("object {key:?} already exists; it was left as it is")]
    AlreadyExists {
        /// The key that is taken.
        key: String,
    },
    /// The key is not an acceptable object key.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An object was larger than the caller allowed.
    #[error("object {key:?} is larger than {limit} bytes")]
    TooLarge {
        /// The object.
        key: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// An I/O operation failed.
    #[error("could not {op} {target}: {source}")]
    Io {
        /// What was being done (`create`, `write`, `rename`, ...).
        op: &'static str,
        /// The key or path concerned.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A request to an S3 (or S3-compatible) server failed.
    #[error("S3 {op} of {target} failed: {message}")]
    S3 {
        /// The S3 operation (`PutObject`, `UploadPart`, ...).
        op: &'static str,
        /// The object or bucket concerned, e.g. `s3://bucket/prefix/key`.
        target: String,
        /// What the server or the SDK said, followed by what to check.
        message: String,
    },
    /// The destination's lock ([`Sink::lock`](crate::Sink::lock)) stayed held by another run
    /// for longer than the caller would wait.
    #[error(
        "{target} is locked by another run ({wanted} lock wanted: backups wait for a \
         backup-prune, backup-prune waits for running backups); gave up after {waited_secs} s, \
         nothing was changed there"
    )]
    Locked {
        /// The destination.
        target: String,
        /// `shared` (a backup) or `exclusive` (retention).
        wanted: &'static str,
        /// How long the caller waited.
        waited_secs: u64,
    },
    /// The sink's configuration is invalid (a bad environment variable, for example).
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// An [`StorageError::Io`] for `op` on `target`.
    pub fn io(op: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            op,
            target: target.into(),
            source,
        }
    }

    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this is [`StorageError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }
}
