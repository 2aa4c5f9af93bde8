//! Encryption keys (passphrases read like `openssl -pass file:`), key ids, manifest MACs and
//! keyrings.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::num::NonZeroU32;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::{hmac, pbkdf2};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// openssl's `apps` read the password with `BIO_gets(bio, buf, 1024)`, i.e. at most 1023 bytes.
pub(crate) const OPENSSL_PASS_MAX: usize = 1023;

const KEY_ID_SALT: &[u8] = b"backup-key-id-v1";
const KEY_ID_ITERATIONS: NonZeroU32 = match NonZeroU32::new(10_000) {
    Some(n) => n,
    None => panic!("iteration count must be non-zero"),
};
const KEY_ID_BYTES: usize = 8;
const MANIFEST_MAC_LABEL: &[u8] = b"backup-manifest-hmac-v1";
/// Label mixed into the salt of the stretched (version 2) manifest MAC key.
const MANIFEST_MAC_V2_LABEL: &[u8] = b"backup-manifest-hmac-v2:";
/// Message whose HMAC under the stretched MAC key is a (version 3) manifest's key id.
const MANIFEST_KEY_ID_LABEL: &[u8] = b"backup-manifest-key-id-v3";

/// PBKDF2-HMAC-SHA256 iterations of the stretched manifest MAC key: guessing a passphrase
/// from a manifest costs ten times what guessing it from the ciphertext does (openssl's 10000).
pub const MANIFEST_MAC_ITERATIONS: u32 = 100_000;
/// The range of iterations a manifest may ask for: fewer would make its MAC cheap to attack,
/// more would let a forged manifest make verification take minutes.
pub const MANIFEST_MAC_ITERATIONS_RANGE: std::ops::RangeInclusive<u32> = 10_000..=10_000_000;

/// Short public fingerprint of a key: 16 lowercase hex chars, reveals nothing about the key.
///
/// Two kinds exist. [`EncryptionKey::id`] is the key's local label (keyring listings, error
/// messages on this host; manifests of format 1 and 2 recorded it): PBKDF2 with a fixed salt,
/// so the same passphrase has the same label everywhere. [`StretchedMacKey::key_id`] is what a
/// manifest of format 3 records: derived from that manifest's random salt, it differs in every
/// manifest, cannot be precomputed for a dictionary of passphrases, and does not link backups
/// to one another; finding the key of such a manifest means deriving it with each key at hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The id as a string (16 lowercase hex characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = CryptoError;

    /// Parses a key id as stored in a manifest; only 16 lowercase hex characters are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 2 * KEY_ID_BYTES
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(CryptoError::InvalidKeyId(s.to_owned()))
        }
    }
}

/// A passphrase used like `openssl enc -pass`, with its key id and manifest MAC subkey.
#[derive(Clone)]
pub struct EncryptionKey {
    passphrase: Zeroizing<Vec<u8>>,
    id: KeyId,
    mac_key: hmac::Key,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id.as_str())
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// Reads the key exactly as `openssl enc -pass file:PATH` does; refuses missing, empty and
    /// group/other-readable files.
    ///
    /// The passphrase is the first line without its `\n` (a `\r` before it is kept), limited to
    /// openssl's first 1023 bytes and ending at a NUL byte, like openssl's C string handling.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let unreadable = |source: io::Error| CryptoError::KeyFileUnreadable {
            path: path.to_path_buf(),
            source,
        };
        // Check the type before opening so a FIFO cannot block us.
        let meta = fs::metadata(path).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(unreadable(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let mut file = File::open(path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        let mode = meta.permissions().mode();
        if !meta.is_file() {
            return Err(unreadable(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFilePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        check_owner_and_dir(path, &meta)?;

        let mut buf = Zeroizing::new([0u8; OPENSSL_PASS_MAX]);
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    // Everything after the first line is irrelevant.
                    if buf[filled - n..filled].contains(&b'\n') {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(unreadable(e)),
            }
        }
        let passphrase = openssl_first_line(&buf[..filled]);
        if passphrase.is_empty() {
            return Err(CryptoError::KeyFileEmpty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::build(Zeroizing::new(passphrase.to_vec())))
    }

    /// Uses the given bytes as the passphrase, unchanged; refuses an empty one.
    ///
    /// To stay decryptable with `openssl -pass file:`, avoid `\n` and NUL bytes in it.
    pub fn from_passphrase(passphrase: impl Into<Vec<u8>>) -> Result<Self, CryptoError> {
        let passphrase = Zeroizing::new(passphrase.into());
        if passphrase.is_empty() {
            return Err(CryptoError::EmptyPassphrase);
        }
        Ok(Self::build(passphrase))
    }

    fn build(passphrase: Zeroizing<Vec<u8>>) -> Self {
        let mut id = [0u8; KEY_ID_BYTES];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            KEY_ID_ITERATIONS,
            KEY_ID_SALT,
            &passphrase,
            &mut id,
        );
        let id = KeyId(hex::encode(id));

        let outer = hmac::Key::new(hmac::HMAC_SHA256, &passphrase);
        let subkey = hmac::sign(&outer, MANIFEST_MAC_LABEL);
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, subkey.as_ref());

        EncryptionKey {
            passphrase,
            id,
            mac_key,
        }
    }

    /// The key's public id (stored in manifests to find the right key for a backup).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// HMAC-SHA256 of `data` under this key's manifest subkey, as 64 lowercase hex chars.
    pub fn manifest_mac(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.mac_key, data).as_ref())
    }

    /// Checks a MAC from [`manifest_mac`](Self::manifest_mac) in constant time; false if malformed.
    pub fn verify_manifest_mac(&self, data: &[u8], mac_hex: &str) -> bool {
        match hex::decode(mac_hex) {
            Ok(tag) => hmac::verify(&self.mac_key, data, &tag).is_ok(),
            Err(_) => false,
        }
    }

    /// The stretched manifest MAC key (manifest format 2): PBKDF2-HMAC-SHA256 of the
    /// passphrase with `salt` (random per manifest, recorded in it) and `iterations`, so a
    /// manifest is no cheaper a start for guessing the passphrase than the ciphertext.
    /// `None` when `iterations` is outside [`MANIFEST_MAC_ITERATIONS_RANGE`].
    pub fn stretched_mac_key(&self, salt: &[u8], iterations: u32) -> Option<StretchedMacKey> {
        if !MANIFEST_MAC_ITERATIONS_RANGE.contains(&iterations) {
            return None;
        }
        let iterations = std::num::NonZeroU32::new(iterations)?;
        let mut full_salt = MANIFEST_MAC_V2_LABEL.to_vec();
        full_salt.extend_from_slice(salt);
        let mut derived = Zeroizing::new([0u8; 32]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &full_salt,
            &self.passphrase,
            derived.as_mut(),
        );
        Some(StretchedMacKey(hmac::Key::new(
            hmac::HMAC_SHA256,
            derived.as_ref(),
        )))
    }

    pub(crate) fn passphrase(&self) -> &[u8] {
        &self.passphrase
    }
}

/// A manifest MAC key derived by [`EncryptionKey::stretched_mac_key`].
pub struct StretchedMacKey(hmac::Key);

impl StretchedMacKey {
    /// HMAC-SHA256 of `data`, as 64 lowercase hex chars.
    pub fn sign(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.0, data).as_ref())
    }

    /// Checks a MAC from [`sign`](Self::sign) in constant time; false if malformed.
    pub fn verify(&self, data: &[u8], mac_hex: &str) -> bool {
        match hex::decode(mac_hex) {
            Ok(tag) => hmac::verify(&self.0, data, &tag).is_ok(),
            Err(_) => false,
        }
    }

    /// The key id a manifest signed with this key records (format 3): the first 8 bytes of
    /// the HMAC of a fixed label. Guessing a passphrase from it costs as much as from the MAC.
    pub fn key_id(&self) -> KeyId {
        let tag = hmac::sign(&self.0, MANIFEST_KEY_ID_LABEL);
        KeyId(hex::encode(&tag.as_ref()[..KEY_ID_BYTES]))
    }
}

/// The passphrase openssl derives from the start of a `-pass file:` file: at most 1023 bytes,
/// cut at the first `\n` (removed) or NUL (C string end); `\r` is kept.
pub(crate) fn openssl_first_line(bytes: &[u8]) -> &[u8] {
    let bytes = &bytes[..bytes.len().min(OPENSSL_PASS_MAX)];
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Refuses a key file that another user owns (the running user and root may) or that lies in a
/// directory group or others can write to (they could swap the key). Symbolic links are
/// allowed (mounted secrets use them); the directory checked is the one the link leads to.
fn check_owner_and_dir(path: &Path, meta: &fs::Metadata) -> Result<(), CryptoError> {
    use std::os::unix::fs::MetadataExt;
    let user = nix::unistd::geteuid().as_raw();
    if meta.uid() != user && meta.uid() != 0 {
        return Err(CryptoError::KeyFileOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            user,
        });
    }
    let unreadable = |source: io::Error| CryptoError::KeyFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let real = fs::canonicalize(path).map_err(unreadable)?;
    if let Some(dir) = real.parent() {
        let mode = fs::metadata(dir).map_err(unreadable)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(CryptoError::KeyDirWritable {
                dir: dir.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// The current key plus older keys, to find the key a backup was made with by its [`KeyId`].
#[derive(Debug, Clone)]
pub struct Keyring {
    /// `keys[0]` is the current key; ids are unique.
    keys: Vec<EncryptionKey>,
}

impl Keyring {
    /// A keyring whose current key (used for new backups) is `current`.
    pub fn new(current: EncryptionKey) -> Self {
        Keyring {
            keys: vec![current],
        }
    }

    /// Adds an older key; a key whose id is already present is ignored.
    pub fn add(&mut self, key: EncryptionKey) {
        self.insert(key);
    }

    fn insert(&mut self, key: EncryptionKey) -> bool {
        if self.get(key.id()).is_some() {
            false
        } else {
            self.keys.push(key);
            true
        }
    }

    /// Adds every regular file in `dir` (symlinks followed) as a key file, with the same rules
    /// as [`EncryptionKey::from_file`]; returns how many new keys were added. Hidden files
    /// (names starting with `.`: temporary files of a key being written) are skipped.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, CryptoError> {
        let dir_err = |source: io::Error| CryptoError::KeyDirUnreadable {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path();
            let meta = fs::metadata(&path).map_err(|source| CryptoError::KeyFileUnreadable {
                path: path.clone(),
                source,
            })?;
            if meta.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        // Load everything first so an invalid file leaves the keyring unchanged.
        let keys = paths
            .iter()
            .map(|p| EncryptionKey::from_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(keys.into_iter().filter(|k| self.insert(k.clone())).count())
    }

    /// The key used for new backups.
    pub fn current(&self) -> &EncryptionKey {
        &self.keys[0]
    }

    /// The key with this id, if the keyring has it.
    pub fn get(&self, id: &KeyId) -> Option<&EncryptionKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// All keys, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        self.keys.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_drops_newline_and_keeps_carriage_return() {
        assert_eq!(openssl_first_line(b"abc\r\ndef\n"), b"abc\r");
        assert_eq!(openssl_first_line(b"abc\ndef"), b"abc");
        assert_eq!(openssl_first_line(b"abc"), b"abc");
        assert_eq!(openssl_first_line(b"\nabc"), b"");
        assert_eq!(openssl_first_line(b""), b"");
    }

    #[test]
    fn first_line_ends_at_nul_like_a_c_string() {
        assert_eq!(openssl_first_line(b"ab\0cd\n"), b"ab");
    }

    #[test]
    fn first_line_is_limited_to_1023_bytes() {
        let long = vec![b'x'; 5000];
        assert_eq!(openssl_first_line(&long).len(), 1023);
        let mut short_line = vec![b'y'; 1022];
        short_line.push(b'\n');
        assert_eq!(openssl_first_line(&short_line).len(), 1022);
    }

    #[test]
    fn key_id_parses_only_16_lowercase_hex() {
        assert!("0123456789abcdef".parse::<KeyId>().is_ok());
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "g123456789abcdef",
        ] {
            assert!(
                matches!(bad.parse::<KeyId>(), Err(CryptoError::InvalidKeyId(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn keyring_keeps_current_first_and_ignores_duplicate_ids() {
        let a = EncryptionKey::from_passphrase("a").unwrap();
        let b = EncryptionKey::from_passphrase("b").unwrap();
        let mut ring = Keyring::new(a.clone());
        ring.add(b.clone());
        ring.add(a.clone());
        ring.add(b);
        assert_eq!(ring.keys().count(), 2);
        assert_eq!(ring.current().id(), a.id());
    }

    #[test]
    fn manifest_key_ids_depend_on_the_salt_and_the_key_and_never_equal_the_local_label() {
        let a = EncryptionKey::from_passphrase("a").unwrap();
        let b = EncryptionKey::from_passphrase("b").unwrap();
        let id = |k: &EncryptionKey, salt: &[u8]| {
            k.stretched_mac_key(salt, MANIFEST_MAC_ITERATIONS_RANGE.start().to_owned())
                .unwrap()
                .key_id()
        };
        let first = id(&a, b"salt one");
        assert_eq!(first.as_str().len(), 16);
        assert!(first.as_str().parse::<KeyId>().is_ok());
        assert_eq!(first, id(&a, b"salt one"), "same salt, same key: same id");
        assert_ne!(first, id(&a, b"salt two"), "a new salt gives a new id");
        assert_ne!(first, id(&b, b"salt one"), "another key gives another id");
        assert_ne!(&first, a.id());
    }
}
