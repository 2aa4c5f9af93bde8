//! openssl-compatible streaming encryption for backups.
//!
//! The format is byte-identical to
//! `openssl enc -aes-256-cbc -salt -pbkdf2 [-iter N] -pass file:KEY` (OpenSSL 3, digest
//! SHA-256): `Salted__`, an 8-byte salt, then AES-256-CBC with PKCS#7 padding, key and IV from
//! PBKDF2-HMAC-SHA256. A backup can therefore always be decrypted in an emergency with
//! `openssl enc -d -aes-256-cbc -pbkdf2 -pass file:KEY`, and backups made by the old shell
//! scripts restore with [`DecryptReader`].
//!
//! CBC is not authenticated: integrity comes from the manifest MAC
//! ([`EncryptionKey::manifest_mac`]), which must be checked before restored data is committed.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_crypto::{DecryptReader, EncryptReader, EncryptionKey, DEFAULT_PBKDF2_ITERATIONS};
//! use tokio::io::AsyncReadExt;
//!
//! let key = EncryptionKey::from_passphrase("correct horse battery staple")?;
//! let mut encrypted = Vec::new();
//! EncryptReader::new(&b"dump"[..], &key, DEFAULT_PBKDF2_ITERATIONS)
//!     .read_to_end(&mut encrypted)
//!     .await?;
//! let mut plain = Vec::new();
//! DecryptReader::new(&encrypted[..], &key, DEFAULT_PBKDF2_ITERATIONS)
//!     .read_to_end(&mut plain)
//!     .await?;
//! assert_eq!(plain, b"dump");
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

mod error;
mod key;
mod keyfile;
mod openssl;
mod strength;

pub use error::CryptoError;
pub use key::{
    EncryptionKey, KeyId, Keyring, StretchedMacKey, MANIFEST_MAC_ITERATIONS,
    MANIFEST_MAC_ITERATIONS_RANGE,
};
pub use keyfile::{
    generate_key_file, keyring_file_name, rotate_key_file, Rotation, GENERATED_KEY_BYTES,
};
pub use openssl::{DecryptReader, EncryptReader, CIPHER_NAME, DEFAULT_PBKDF2_ITERATIONS, KDF_NAME};
pub use strength::{key_file_strength, KeyStrength};
