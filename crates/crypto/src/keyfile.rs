//! Making and rotating key files: a new random key (`backup-key generate`), and the current key
//! moved into the keyring directory with a new one in its place (`backup-key rotate`).
//!
//! Every file is written the same way: a hidden temporary file in the target's directory, mode
//! `0600`, synced, then linked or renamed into place and the directory synced. A crash at any
//! moment leaves the old file or the new one, never a partial one; the keyring skips hidden
//! files, so a temporary file left by a crash is never taken for a key.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::key::{EncryptionKey, KeyId};

/// Random bytes in a generated key (256 bits), written base64 on one line.
pub const GENERATED_KEY_BYTES: usize = 32;

/// The name of the keyring file that holds the key with id `id`.
pub fn keyring_file_name(id: &KeyId) -> String {
    format!("{id}.key")
}

/// A new key: [`GENERATED_KEY_BYTES`] random bytes, base64, and the line end.
fn new_key_line() -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut raw = Zeroizing::new([0u8; GENERATED_KEY_BYTES]);
    SystemRandom::new()
        .fill(raw.as_mut())
        .map_err(|_| CryptoError::RandomUnavailable)?;
    let mut line = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .encode(raw.as_ref())
            .into_bytes(),
    );
    line.push(b'\n');
    Ok(line)
}

/// Writes a new random key into `path` (mode `0600`; a missing parent directory is created with
/// mode `0700`) and returns it. Refuses to replace an existing file: a key that is lost cannot
/// decrypt the backups made with it.
///
/// # Errors
/// [`CryptoError::KeyFileExists`] when `path` exists; [`CryptoError::KeyFileWrite`] when it
/// cannot be written.
pub fn generate_key_file(path: &Path) -> Result<EncryptionKey, CryptoError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(CryptoError::KeyFileExists {
            path: path.to_path_buf(),
        });
    }
    let dir = parent_of(path);
    private_dir(&dir)?;
    refuse_writable_dir(&dir)?;
    let line = new_key_line()?;
    place(&dir, path, &line, Placement::CreateNew)?;
    EncryptionKey::from_file(path)
}

/// What [`rotate_key_file`] did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The id of the key that was current and is now in the keyring.
    pub retired: KeyId,
    /// Where the retired key now lives.
    pub retired_file: PathBuf,
    /// The id of the new current key.
    pub current: KeyId,
}

/// Moves the current key of `key_file` into `keyring_dir` (as `{id}.key`, mode `0600`; the
/// directory is created with mode `0700`) and writes a new random key into `key_file`.
///
/// The old key is copied into the keyring first, then the new key replaces the key file by an
/// atomic rename: a crash before the rename leaves the old key current (and a copy of it in the
/// keyring, which is harmless), a crash after it leaves the new key current and the old one in
/// the keyring. There is always exactly one usable current key.
///
/// # Errors
/// Whatever [`EncryptionKey::from_file`] says of the current key file (it must be a valid key
/// before it is retired), [`CryptoError::KeyFileWrite`] when a file cannot be written, and
/// [`CryptoError::KeyringConflict`] when the keyring already holds a different file under the
/// old key's name.
pub fn rotate_key_file(key_file: &Path, keyring_dir: &Path) -> Result<Rotation, CryptoError> {
    let old = EncryptionKey::from_file(key_file)?;
    private_dir(keyring_dir)?;
    refuse_writable_dir(keyring_dir)?;
    let retired_file = keyring_dir.join(keyring_file_name(old.id()));
    match EncryptionKey::from_file(&retired_file) {
        Ok(archived) if archived.id() == old.id() => {}
        Ok(_) => {
            return Err(CryptoError::KeyringConflict {
                path: retired_file,
                id: old.id().clone(),
            })
        }
        Err(CryptoError::KeyFileUnreadable { source, .. })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            let mut line = Zeroizing::new(old.passphrase().to_vec());
            line.push(b'\n');
            place(keyring_dir, &retired_file, &line, Placement::CreateNew)?;
        }
        Err(e) => return Err(e),
    }
    let new_line = new_key_line()?;
    place(
        &parent_of(key_file),
        key_file,
        &new_line,
        Placement::Replace,
    )?;
    let current = EncryptionKey::from_file(key_file)?;
    Ok(Rotation {
        retired: old.id().clone(),
        retired_file,
        current: current.id().clone(),
    })
}

/// The directory a file lives in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` (and its parents) with mode `0700` when missing.
fn private_dir(dir: &Path) -> Result<(), CryptoError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CryptoError::KeyFileWrite {
            path: dir.to_path_buf(),
            source,
        })
}

/// Refuses a directory that group or others can write to: they could replace the key in it.
fn refuse_writable_dir(dir: &Path) -> Result<(), CryptoError> {
    let mode = fs::metadata(dir)
        .map_err(|source| CryptoError::KeyFileWrite {
            path: dir.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(CryptoError::KeyDirWritable {
            dir: dir.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// How [`place`] puts the file in its place.
enum Placement {
    /// Fail if the target exists (a hard link, atomic).
    CreateNew,
    /// Replace the target atomically (a rename).
    Replace,
}

/// Writes `bytes` into a hidden temporary file in `dir` (mode `0600`), syncs it, moves it to
/// `target` and syncs `dir`. The temporary file never survives a failure of this function.
fn place(dir: &Path, target: &Path, bytes: &[u8], how: Placement) -> Result<(), CryptoError> {
    let failed = |source: io::Error| CryptoError::KeyFileWrite {
        path: target.to_path_buf(),
        source,
    };
    let stem = target.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let mut nonce = [0u8; 8];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::RandomUnavailable)?;
    let temp = dir.join(format!(".{stem}.{}.tmp", hex::encode(nonce)));
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The mode given to open is filtered by the umask; 0600 is what it must be.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        match how {
            Placement::CreateNew => fs::hard_link(&temp, target),
            Placement::Replace => fs::rename(&temp, target),
        }?;
        File::open(dir)?.sync_all()
    })();
    // After a rename there is nothing left under the temporary name; after a link or a failure
    // the temporary name goes.
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CryptoError::KeyFileExists {
            path: target.to_path_buf(),
        }),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Keyring;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn generate_writes_32_random_bytes_base64_on_one_line_mode_0600_in_a_0700_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/backup/encryption.key");
        let key = generate_key_file(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim_end())
            .unwrap();
        assert_eq!(raw.len(), GENERATED_KEY_BYTES);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            EncryptionKey::from_file(&path).unwrap().id(),
            key.id(),
            "the key returned is the key written"
        );
        let other = dir.path().join("other.key");
        let second = generate_key_file(&other).unwrap();
        assert_ne!(second.id(), key.id(), "two keys are never the same");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("encryption.key")]);
    }

    #[test]
    fn generate_refuses_to_replace_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption.key");
        fs::write(&path, "old key\n").unwrap();
        let err = generate_key_file(&path).unwrap_err();
        assert!(matches!(err, CryptoError::KeyFileExists { .. }), "{err}");
        assert!(err.to_string().contains("rotate"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old key\n");
        // A dangling symbolic link is a file too: never write through it.
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(matches!(
            generate_key_file(&link),
            Err(CryptoError::KeyFileExists { .. })
        ));
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn rotate_moves_the_current_key_into_the_keyring_and_makes_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption.key");
        let ring_dir = dir.path().join("keys.d");
        let first = generate_key_file(&key_file).unwrap();
        let rotation = rotate_key_file(&key_file, &ring_dir).unwrap();
        assert_eq!(&rotation.retired, first.id());
        assert_eq!(
            rotation.retired_file,
            ring_dir.join(format!("{}.key", first.id()))
        );
        assert_eq!(mode(&rotation.retired_file), 0o600);
        assert_eq!(mode(&ring_dir), 0o700);
        assert_eq!(mode(&key_file), 0o600);
        let current = EncryptionKey::from_file(&key_file).unwrap();
        assert_eq!(current.id(), &rotation.current);
        assert_ne!(current.id(), first.id());

        let mut ring = Keyring::new(current.clone());
        assert_eq!(ring.load_dir(&ring_dir).unwrap(), 1);
        assert!(
            ring.get(first.id()).is_some(),
            "the old key is in the keyring"
        );

        // A second rotation keeps both older keys.
        let again = rotate_key_file(&key_file, &ring_dir).unwrap();
        assert_eq!(&again.retired, current.id());
        let mut ring = Keyring::new(EncryptionKey::from_file(&key_file).unwrap());
        assert_eq!(ring.load_dir(&ring_dir).unwrap(), 2);
        let names: Vec<_> = fs::read_dir(&ring_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn a_rotation_interrupted_before_the_rename_leaves_the_old_key_current_and_is_rerun_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption.key");
        let ring_dir = dir.path().join("keys.d");
        let first = generate_key_file(&key_file).unwrap();
        // The state a crash after the copy into the keyring leaves: the old key current and in
        // the keyring, and a temporary file of the new key that was never renamed.
        private_dir(&ring_dir).unwrap();
        fs::copy(&key_file, ring_dir.join(format!("{}.key", first.id()))).unwrap();
        fs::set_permissions(
            ring_dir.join(format!("{}.key", first.id())),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::write(dir.path().join(".encryption.key.0011.tmp"), "half").unwrap();
        assert_eq!(
            EncryptionKey::from_file(&key_file).unwrap().id(),
            first.id()
        );
        // A half-written keyring file of an earlier crash is hidden: never taken for a key.
        fs::write(ring_dir.join(".0123456789abcdef.key.99.tmp"), "half").unwrap();
        let rotation = rotate_key_file(&key_file, &ring_dir).unwrap();
        assert_eq!(&rotation.retired, first.id());
        assert_ne!(&rotation.current, first.id());
        let mut ring = Keyring::new(EncryptionKey::from_file(&key_file).unwrap());
        assert_eq!(ring.load_dir(&ring_dir).unwrap(), 1, "only the old key");
        assert!(ring.get(first.id()).is_some());
    }

    #[test]
    fn rotate_refuses_a_keyring_file_that_holds_another_key_under_the_old_keys_name() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption.key");
        let ring_dir = dir.path().join("keys.d");
        let first = generate_key_file(&key_file).unwrap();
        private_dir(&ring_dir).unwrap();
        let squatter = ring_dir.join(format!("{}.key", first.id()));
        fs::write(&squatter, "something else\n").unwrap();
        fs::set_permissions(&squatter, fs::Permissions::from_mode(0o600)).unwrap();
        let err = rotate_key_file(&key_file, &ring_dir).unwrap_err();
        assert!(matches!(err, CryptoError::KeyringConflict { .. }), "{err}");
        assert_eq!(
            EncryptionKey::from_file(&key_file).unwrap().id(),
            first.id(),
            "nothing was rotated"
        );
    }

    #[test]
    fn rotate_refuses_an_invalid_current_key_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption.key");
        fs::write(&key_file, "open to all\n").unwrap();
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
        let ring_dir = dir.path().join("keys.d");
        let err = rotate_key_file(&key_file, &ring_dir).unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyFilePermissions { .. }),
            "{err}"
        );
        assert!(!ring_dir.exists());
        assert_eq!(fs::read_to_string(&key_file).unwrap(), "open to all\n");
    }
}
