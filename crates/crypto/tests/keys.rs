//! Key files (permissions, missing, empty), key ids, manifest MACs and keyrings.

// Test code: a panicking helper is how a test fails (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use backup_crypto::{CryptoError, EncryptionKey, KeyId, Keyring, CIPHER_NAME, KDF_NAME};
use common::*;

const PASSPHRASE: &str = "correct horse battery staple";

#[test]
fn key_file_readable_by_group_or_others_is_refused_with_chmod_hint() {
    let dir = tempdir();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o777] {
        let path = write_file_mode(dir.path(), "key", b"secret\n", mode);
        let err = EncryptionKey::from_file(&path).unwrap_err();
        match &err {
            CryptoError::KeyFilePermissions { path: p, mode: m } => {
                assert_eq!(p, &path);
                assert_eq!(*m, mode);
            }
            other => panic!("mode {mode:o}: unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
}

#[test]
fn key_file_with_mode_0600_or_0400_is_accepted() {
    let dir = tempdir();
    for mode in [0o600, 0o400] {
        let path = write_file_mode(dir.path(), "key", b"secret\n", mode);
        let key = EncryptionKey::from_file(&path).unwrap();
        assert_eq!(
            key.id(),
            EncryptionKey::from_passphrase("secret").unwrap().id()
        );
    }
}

#[test]
fn missing_key_file_error_names_the_path_and_how_to_create_one() {
    let dir = tempdir();
    let path = dir.path().join("no-such-key");
    let err = EncryptionKey::from_file(&path).unwrap_err();
    assert!(
        matches!(err, CryptoError::KeyFileUnreadable { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    let p = path.display();
    assert!(
        msg.contains(&format!("openssl rand -base64 48 > {p} && chmod 600 {p}")),
        "{msg}"
    );
}

#[test]
fn directory_as_key_file_is_refused() {
    let dir = tempdir();
    let err = EncryptionKey::from_file(dir.path()).unwrap_err();
    assert!(
        matches!(err, CryptoError::KeyFileUnreadable { .. }),
        "{err:?}"
    );
}

#[test]
fn empty_key_file_or_empty_first_line_is_refused() {
    let dir = tempdir();
    for contents in [&b""[..], b"\n", b"\nsecret on second line\n", b"\0secret"] {
        let path = write_key(dir.path(), "key", contents);
        let err = EncryptionKey::from_file(&path).unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyFileEmpty { .. }),
            "{contents:?}: {err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}

#[test]
fn empty_passphrase_is_refused() {
    assert!(matches!(
        EncryptionKey::from_passphrase(""),
        Err(CryptoError::EmptyPassphrase)
    ));
    assert!(matches!(
        EncryptionKey::from_passphrase(Vec::new()),
        Err(CryptoError::EmptyPassphrase)
    ));
}

#[test]
fn key_id_is_16_lowercase_hex_and_matches_known_pbkdf2_value() {
    let key = EncryptionKey::from_passphrase(PASSPHRASE).unwrap();
    // python3: hashlib.pbkdf2_hmac('sha256', PASSPHRASE, b'backup-key-id-v1', 10000, 8).hex()
    assert_eq!(key.id().as_str(), "9ff4760374f09b59");
    assert_eq!(key.id().to_string(), "9ff4760374f09b59");
    assert_eq!(key.id().as_str().len(), 16);
    assert!(key
        .id()
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!("9ff4760374f09b59".parse::<KeyId>().unwrap(), *key.id());
}

#[test]
fn key_id_is_stable_and_differs_between_keys() {
    let dir = tempdir();
    let path = write_key(dir.path(), "key", format!("{PASSPHRASE}\n").as_bytes());
    let a = EncryptionKey::from_file(&path).unwrap();
    let b = EncryptionKey::from_passphrase(PASSPHRASE).unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(a.clone().id(), a.id());
    let other = EncryptionKey::from_passphrase("correct horse battery staplf").unwrap();
    assert_ne!(a.id(), other.id());
}

#[test]
fn key_id_and_debug_output_do_not_reveal_the_passphrase() {
    let key = EncryptionKey::from_passphrase("abcdef0123").unwrap();
    let id = key.id().as_str();
    assert!(!id.contains("abcdef0123"));
    assert!(!id.contains(&hex::encode("abcdef0123")[..8]));
    let debug = format!("{key:?}");
    assert!(debug.contains(id), "{debug}");
    assert!(!debug.contains("abcdef0123"), "{debug}");
    let keyring_debug = format!("{:?}", Keyring::new(key));
    assert!(!keyring_debug.contains("abcdef0123"), "{keyring_debug}");
}

#[test]
fn manifest_mac_matches_known_value_and_verifies() {
    let key = EncryptionKey::from_passphrase(PASSPHRASE).unwrap();
    let data = br#"{"manifest":1}"#;
    let mac = key.manifest_mac(data);
    // python3: hmac(hmac(PASSPHRASE, b'backup-manifest-hmac-v1'), data), sha256
    assert_eq!(
        mac,
        "5cd08b22817194774c03d9ffbfde9e81d5d5b92c23dc9b696cd0a2baa26ca76a"
    );
    assert!(key.verify_manifest_mac(data, &mac));
    assert!(key.verify_manifest_mac(data, &mac.to_uppercase()));
}

#[test]
fn manifest_mac_fails_when_data_or_key_changes_or_mac_is_malformed() {
    let key = EncryptionKey::from_passphrase(PASSPHRASE).unwrap();
    let other = EncryptionKey::from_passphrase("another key").unwrap();
    let data = b"manifest contents";
    let mac = key.manifest_mac(data);
    assert!(!key.verify_manifest_mac(b"manifest contentz", &mac));
    assert!(!key.verify_manifest_mac(b"", &mac));
    assert!(!other.verify_manifest_mac(data, &mac));
    assert_ne!(other.manifest_mac(data), mac);
    for bad in ["", "zz", &mac[..62], &format!("{mac}00"), "not hex at all"] {
        assert!(!key.verify_manifest_mac(data, bad), "{bad:?}");
    }
}

#[test]
fn keyring_finds_keys_by_id_and_keeps_the_current_key() {
    let current = EncryptionKey::from_passphrase("current").unwrap();
    let old = EncryptionKey::from_passphrase("old").unwrap();
    let unknown = EncryptionKey::from_passphrase("unknown").unwrap();
    let mut ring = Keyring::new(current.clone());
    ring.add(old.clone());
    ring.add(old.clone());
    assert_eq!(ring.current().id(), current.id());
    assert_eq!(ring.get(old.id()).unwrap().id(), old.id());
    assert_eq!(ring.get(current.id()).unwrap().id(), current.id());
    assert!(ring.get(unknown.id()).is_none());
    let ids: Vec<_> = ring.keys().map(|k| k.id().clone()).collect();
    assert_eq!(ids, vec![current.id().clone(), old.id().clone()]);
}

#[test]
fn keyring_load_dir_adds_every_regular_file_and_counts_new_keys() {
    let dir = tempdir();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    write_key(&keys, "2023.key", b"old key 2023\n");
    write_key(&keys, "2024.key", b"old key 2024\r\n");
    write_key(&keys, "current.key", b"current key\n");
    fs::create_dir(keys.join("subdir")).unwrap();
    write_key(&keys.join("subdir"), "ignored.key", b"in a subdirectory\n");
    let elsewhere = write_key(dir.path(), "linked.key", b"linked key\n");
    symlink(&elsewhere, keys.join("link.key")).unwrap();

    let current = EncryptionKey::from_passphrase("current key").unwrap();
    let mut ring = Keyring::new(current.clone());
    // current.key duplicates the current key and is not counted.
    assert_eq!(ring.load_dir(&keys).unwrap(), 3);
    assert_eq!(ring.keys().count(), 4);
    assert_eq!(ring.current().id(), current.id());
    for pass in [&b"old key 2023"[..], b"old key 2024\r", b"linked key"] {
        let id = EncryptionKey::from_passphrase(pass).unwrap().id().clone();
        assert!(ring.get(&id).is_some(), "{pass:?} not loaded");
    }
    let sub = EncryptionKey::from_passphrase("in a subdirectory").unwrap();
    assert!(ring.get(sub.id()).is_none());
    // Loading again adds nothing.
    assert_eq!(ring.load_dir(&keys).unwrap(), 0);
}

#[test]
fn keyring_load_dir_refuses_a_group_readable_key_and_stays_unchanged() {
    let dir = tempdir();
    write_key(dir.path(), "a.key", b"fine\n");
    let bad = write_file_mode(dir.path(), "b.key", b"too open\n", 0o644);
    let mut ring = Keyring::new(EncryptionKey::from_passphrase("current").unwrap());
    let err = ring.load_dir(dir.path()).unwrap_err();
    match &err {
        CryptoError::KeyFilePermissions { path, .. } => assert_eq!(path, &bad),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ring.keys().count(), 1);
}

#[test]
fn keyring_load_dir_of_missing_directory_is_a_clear_error() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    let mut ring = Keyring::new(EncryptionKey::from_passphrase("current").unwrap());
    let err = ring.load_dir(&missing).unwrap_err();
    assert!(
        matches!(err, CryptoError::KeyDirUnreadable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing.display().to_string()));
}

#[test]
fn manifest_names_match_the_openssl_format() {
    assert_eq!(CIPHER_NAME, "aes-256-cbc");
    assert_eq!(KDF_NAME, "pbkdf2-hmac-sha256");
    assert_eq!(backup_crypto::DEFAULT_PBKDF2_ITERATIONS, 10_000);
}

#[test]
fn crypto_errors_can_be_recovered_from_io_errors() {
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, CryptoError::NotEncrypted);
    assert!(matches!(
        CryptoError::from_io(&io),
        Some(CryptoError::NotEncrypted)
    ));
    let plain = std::io::Error::other("something else");
    assert!(CryptoError::from_io(&plain).is_none());
    let bare = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
    assert!(CryptoError::from_io(&bare).is_none());
}

#[test]
fn a_key_file_in_a_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let path = write_file_mode(&shared, "key", b"secret\n", 0o600);
    for mode in [0o777, 0o775, 0o757] {
        fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
        match EncryptionKey::from_file(&path) {
            Err(CryptoError::KeyDirWritable { dir: d, mode: m }) => {
                assert_eq!(d, fs::canonicalize(&shared).unwrap());
                assert_eq!(m, mode);
            }
            other => panic!("directory mode {mode:o}: unexpected {other:?}"),
        }
    }
    // A private directory, and a link into it from a shared one (mounted secrets): accepted.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    EncryptionKey::from_file(&path).unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let link = open.join("key-link");
    symlink(&path, &link).unwrap();
    EncryptionKey::from_file(&link).unwrap();
}

#[test]
fn a_key_file_owned_by_another_user_is_refused() {
    let dir = tempdir();
    let path = write_file_mode(dir.path(), "key", b"secret\n", 0o600);
    // Changing a file's owner needs root; the tests run as root (as CI does). Not being root
    // is a loud failure, never a silent pass.
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root to give the key file another owner"
    );
    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(54321)), None).unwrap();
    match EncryptionKey::from_file(&path) {
        Err(e @ CryptoError::KeyFileOwner { owner: 54321, .. }) => {
            assert!(e.to_string().contains("chown"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
