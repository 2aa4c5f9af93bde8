//! Interoperability with the real `/usr/bin/openssl enc` (OpenSSL 3): both directions,
//! byte-identical output, and how `-pass file:` reads key files.

// Test code: a panicking helper is how a test fails (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use backup_crypto::{EncryptionKey, DEFAULT_PBKDF2_ITERATIONS};
use common::*;

const SIZES: &[usize] = &[
    0,
    1,
    15,
    16,
    17,
    64 * 1024 - 1,
    64 * 1024,
    64 * 1024 + 1,
    3 * 1024 * 1024 + 5,
];

fn expected_cipher_len(plain_len: usize) -> usize {
    16 + (plain_len / 16 + 1) * 16
}

#[tokio::test]
async fn our_output_decrypts_with_openssl_default_iterations() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"interop passphrase\nignored line\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = random_bytes(size, i as u64);
        let ct = encrypt(&data, &key, DEFAULT_PBKDF2_ITERATIONS).await;
        assert_eq!(&ct[..8], b"Salted__");
        assert_eq!(ct.len(), expected_cipher_len(size), "size {size}");
        let pt = openssl_decrypt(dir.path(), &key_path, &ct, None);
        assert!(
            pt == data,
            "openssl decrypted something else for size {size}"
        );
    }
}

#[tokio::test]
async fn our_output_decrypts_with_openssl_custom_iterations() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"custom iterations\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    for iterations in [1, 1_000, 250_000] {
        for &size in &[0, 17, 64 * 1024 + 1] {
            let data = random_bytes(size, u64::from(iterations));
            let ct = encrypt(&data, &key, iterations).await;
            let pt = openssl_decrypt(dir.path(), &key_path, &ct, Some(iterations));
            assert!(pt == data, "size {size}, -iter {iterations}");
        }
    }
}

#[tokio::test]
async fn openssl_output_decrypts_with_decrypt_reader() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"openssl made this\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = random_bytes(size, 100 + i as u64);
        let ct = openssl_encrypt(dir.path(), &key_path, &data, None, None);
        assert_eq!(ct.len(), expected_cipher_len(size));
        let pt = decrypt(&ct, &key, DEFAULT_PBKDF2_ITERATIONS).await.unwrap();
        assert!(pt == data, "we decrypted something else for size {size}");
    }
}

#[tokio::test]
async fn openssl_output_with_custom_iterations_decrypts_with_decrypt_reader() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"openssl custom iter\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    for iterations in [1, 1_000, 250_000] {
        let data = random_bytes(100_000, u64::from(iterations));
        let ct = openssl_encrypt(dir.path(), &key_path, &data, Some(iterations), None);
        let pt = decrypt(&ct, &key, iterations).await.unwrap();
        assert!(pt == data, "-iter {iterations}");
    }
}

#[tokio::test]
async fn openssl_output_decrypts_through_tiny_reads() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"tiny reads\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    let data = random_bytes(5_000, 7);
    let ct = openssl_encrypt(dir.path(), &key_path, &data, None, None);
    let reader =
        backup_crypto::DecryptReader::new(TinyReader::new(ct), &key, DEFAULT_PBKDF2_ITERATIONS);
    let (pt, end) = read_tiny(reader).await;
    end.unwrap();
    assert!(pt == data);
}

#[tokio::test]
async fn with_salt_output_is_byte_identical_to_openssl_with_same_salt() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"byte identical\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = random_bytes(size, 200 + i as u64);
        let ours = encrypt_with_salt(&data, &key, DEFAULT_PBKDF2_ITERATIONS, SALT).await;
        let theirs = openssl_encrypt_fixed_salt(dir.path(), &key_path, &data);
        assert!(ours == theirs, "ciphertexts differ for size {size}");
    }
}

#[tokio::test]
async fn random_salt_output_is_byte_identical_to_openssl_given_that_salt() {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"random salt\n");
    let key = EncryptionKey::from_file(&key_path).unwrap();
    let data = random_bytes(1_000, 1);
    let ours = encrypt(&data, &key, DEFAULT_PBKDF2_ITERATIONS).await;
    let salt: [u8; 8] = ours[8..16].try_into().unwrap();
    let theirs = openssl_encrypt(dir.path(), &key_path, &data, None, Some(salt));
    // OpenSSL 3 writes no `Salted__` header when -S is given.
    assert_eq!(&ours[16..], &theirs[theirs.len() + 16 - ours.len()..]);
}

/// Ciphertext of a fixed message under the key file's passphrase, as openssl reads the file.
async fn check_key_file_matches_openssl(contents: &[u8], expected_passphrase: &[u8]) {
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", contents);
    let data = b"key file semantics";
    let theirs = openssl_encrypt_fixed_salt(dir.path(), &key_path, data);

    let from_file = EncryptionKey::from_file(&key_path).unwrap();
    let ours = encrypt_with_salt(data, &from_file, DEFAULT_PBKDF2_ITERATIONS, SALT).await;
    assert_eq!(
        ours, theirs,
        "from_file disagrees with openssl for {contents:?}"
    );

    let explicit = EncryptionKey::from_passphrase(expected_passphrase).unwrap();
    assert_eq!(explicit.id(), from_file.id());
    let ours = encrypt_with_salt(data, &explicit, DEFAULT_PBKDF2_ITERATIONS, SALT).await;
    assert_eq!(
        ours, theirs,
        "openssl did not use passphrase {expected_passphrase:?} for {contents:?}"
    );

    // And the real thing: openssl decrypts what we encrypted with the key from this file.
    let ct = encrypt(data, &from_file, DEFAULT_PBKDF2_ITERATIONS).await;
    assert_eq!(openssl_decrypt(dir.path(), &key_path, &ct, None), data);
}

#[tokio::test]
async fn key_file_uses_only_the_first_line_like_openssl() {
    check_key_file_matches_openssl(b"first line\nsecond line\nthird line\n", b"first line").await;
}

#[tokio::test]
async fn key_file_without_trailing_newline_is_used_whole_like_openssl() {
    check_key_file_matches_openssl(b"no newline at the end", b"no newline at the end").await;
}

#[tokio::test]
async fn key_file_with_crlf_keeps_the_carriage_return_like_openssl() {
    check_key_file_matches_openssl(b"windows line\r\nsecond\r\n", b"windows line\r").await;

    // Prove the CR matters: without it the ciphertext differs from openssl's.
    let dir = tempdir();
    let key_path = write_key(dir.path(), "key", b"windows line\r\nsecond\r\n");
    let theirs = openssl_encrypt_fixed_salt(dir.path(), &key_path, b"x");
    let without_cr = EncryptionKey::from_passphrase("windows line").unwrap();
    let ours = encrypt_with_salt(b"x", &without_cr, DEFAULT_PBKDF2_ITERATIONS, SALT).await;
    assert_ne!(ours, theirs);
}

#[tokio::test]
async fn key_file_first_line_is_cut_to_1023_bytes_like_openssl() {
    let mut line: Vec<u8> = (0..2000).map(|i| b'a' + (i % 26) as u8).collect();
    let first_1023 = line[..1023].to_vec();
    line.push(b'\n');
    line.extend_from_slice(b"second\n");
    check_key_file_matches_openssl(&line, &first_1023).await;

    // Exactly 1023 bytes plus newline is used whole; 1024 bytes loses its last byte.
    let exact: Vec<u8> = vec![b'k'; 1023];
    check_key_file_matches_openssl(&[&exact[..], b"\n"].concat(), &exact).await;
    let over: Vec<u8> = vec![b'k'; 1024];
    check_key_file_matches_openssl(&over, &over[..1023]).await;
}

#[tokio::test]
async fn key_file_nul_byte_ends_the_passphrase_like_openssl() {
    check_key_file_matches_openssl(b"before\0after\n", b"before").await;
}
