//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::key::KeyId;

/// Everything that can go wrong with keys, encryption and decryption; each message says what
/// failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The key file does not exist, cannot be opened/read, or is not a regular file.
    #[error(
        "cannot read encryption key file {path}: {source}; check the path \
         (BACKUP_ENCRYPTION_KEY_FILE / --key-file), or create a new key with \
         `openssl rand -base64 48 > {path} && chmod 600 {path}` \
         (a new key cannot decrypt backups made with an old one)",
        path = path.display()
    )]
    KeyFileUnreadable {
        /// The key file that was asked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },

    /// The key file belongs to another user (not the one running the tool, nor root), who
    /// could replace the key.
    #[error(
        "encryption key file {path} belongs to user id {owner}, but the tool runs as user id \
         {user}; another user must not own the key: `chown {user} {path}` (or run as the owner)",
        path = path.display()
    )]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The effective user id of this process.
        user: u32,
    },

    /// The directory holding the key file is writable by group or others, who could replace
    /// the key.
    #[error(
        "the directory {dir} that holds the encryption key file has mode {mode:04o}: group or \
         others can replace the key in it; `chmod go-w {dir}` or move the key to a private \
         directory",
        dir = dir.display()
    )]
    KeyDirWritable {
        /// The directory (of the key file, symbolic links resolved).
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file is readable by group or others.
    #[error(
        "encryption key file {path} has mode {mode:04o} and is readable by group or others; \
         restrict it with `chmod 600 {path}` (and consider rotating the key if others could read it)",
        path = path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },

    /// The key file is empty or its first line (the passphrase, as openssl reads it) is empty.
    #[error(
        "encryption key file {path} is empty or its first line is empty (the key is the first line \
         of the file, as `openssl enc -pass file:` reads it); put the passphrase on the first line, \
         e.g. `openssl rand -base64 48 > {path} && chmod 600 {path}`",
        path = path.display()
    )]
    KeyFileEmpty {
        /// The key file.
        path: PathBuf,
    },

    /// An empty passphrase was given to [`EncryptionKey::from_passphrase`](crate::EncryptionKey::from_passphrase).
    #[error("the encryption passphrase is empty; use a long random passphrase, e.g. from `openssl rand -base64 48`")]
    EmptyPassphrase,

    /// A keyring directory could not be listed.
    #[error(
        "cannot read key directory {path}: {source}; check that it exists and is readable, \
         or do not configure a key directory",
        path = path.display()
    )]
    KeyDirUnreadable {
        /// The directory.
        path: PathBuf,
        /// Why it could not be listed.
        #[source]
        source: io::Error,
    },

    /// A key file is to be written where a file already exists.
    #[error(
        "{path} already exists; a key is never overwritten, because backups made with it could \
         not be decrypted any more: to replace the current key, use `backup-key rotate` (it \
         keeps the old key in the keyring directory)",
        path = path.display()
    )]
    KeyFileExists {
        /// The file that exists.
        path: PathBuf,
    },

    /// A key file (or its directory) could not be written.
    #[error(
        "cannot write key file {path}: {source}; check that its directory exists or can be \
         created, is writable by this user and has free space",
        path = path.display()
    )]
    KeyFileWrite {
        /// The file or directory.
        path: PathBuf,
        /// Why it could not be written.
        #[source]
        source: io::Error,
    },

    /// The keyring already holds, under a key's name, a file with another key.
    #[error(
        "the keyring file {path} should hold the key with id {id} but holds another key; \
         nothing was rotated: move that file away (find its key's id with `backup-key id \
         --key-file {path}`) and run the rotation again",
        path = path.display()
    )]
    KeyringConflict {
        /// The keyring file.
        path: PathBuf,
        /// The id of the key it should hold.
        id: KeyId,
    },

    /// A string is not a valid key id (16 lowercase hex characters).
    #[error("invalid key id {0:?}: a key id is 16 lowercase hex characters; check the manifest or the command line")]
    InvalidKeyId(String),

    /// The PBKDF2 iteration count is zero.
    #[error("invalid PBKDF2 iteration count 0: it must be at least 1 (openssl's default for -pbkdf2 is 10000); fix the configured iteration count")]
    InvalidIterations,

    /// The operating system's random number generator failed while creating a salt.
    #[error("could not get random bytes for the encryption salt from the operating system; check that getrandom(2) or /dev/urandom works in this environment")]
    RandomUnavailable,

    /// The input does not start with `Salted__`: it is not an openssl-salted encrypted file.
    #[error(
        "input is not an encrypted backup: it does not start with the `Salted__` header, so it is \
         not encrypted or not in openssl salted format (`openssl enc -salt`); if it is a plain \
         (e.g. gzip) backup, restore it without decryption, otherwise check that the right file was chosen"
    )]
    NotEncrypted,

    /// The encrypted input ends too early (inside the header, mid-block, or without any block).
    #[error(
        "encrypted backup is truncated or incomplete ({detail}); the upload or download was \
         probably interrupted: fetch the file again, or restore an older backup"
    )]
    Truncated {
        /// Where the data ended.
        detail: &'static str,
    },

    /// The final block's PKCS#7 padding is invalid: wrong key (or iteration count) or corrupted data.
    #[error(
        "decryption with key {key_id} failed: wrong key or corrupted data (bad padding in the last \
         block); check the key file / key id (it must match the key id recorded in the backup's \
         manifest) and the PBKDF2 iteration count, or fetch the file again if it may be damaged"
    )]
    BadPadding {
        /// Id of the key that was tried.
        key_id: KeyId,
    },
}

impl CryptoError {
    /// Recovers a `CryptoError` carried inside an [`io::Error`] (as returned by the readers).
    pub fn from_io(e: &io::Error) -> Option<&CryptoError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<CryptoError>())
    }

    /// Wraps this error in an [`io::Error`] of kind `InvalidData`.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}
