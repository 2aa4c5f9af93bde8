//! Hostile, damaged and foreign input for `DecryptReader`, and the reader state machines under
//! tiny reads: always a clear `CryptoError`, never a panic, never unverified bytes as success.

// Test code: a panicking helper is how a test fails (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use backup_crypto::{CryptoError, DecryptReader, EncryptReader, EncryptionKey};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const ITER: u32 = 1_000;

fn key() -> EncryptionKey {
    EncryptionKey::from_passphrase("the right key").unwrap()
}

fn crypto_err(e: &io::Error) -> &CryptoError {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    CryptoError::from_io(e).unwrap_or_else(|| panic!("not a CryptoError: {e:?}"))
}

/// Decrypts with both big and tiny reads; both must fail the same way. Returns the error.
async fn decrypt_err(cipher: &[u8], key: &EncryptionKey, iterations: u32) -> io::Error {
    let err = match decrypt(cipher, key, iterations).await {
        Ok(pt) => panic!("decryption succeeded with {} bytes", pt.len()),
        Err(e) => e,
    };
    let reader = DecryptReader::new(TinyReader::new(cipher.to_vec()), key, iterations);
    let (_, end) = read_tiny(reader).await;
    let tiny_err = end.expect_err("tiny-read decryption succeeded");
    assert_eq!(
        std::mem::discriminant(crypto_err(&err)),
        std::mem::discriminant(crypto_err(&tiny_err))
    );
    err
}

#[tokio::test]
async fn wrong_key_is_reported_as_wrong_key_or_corrupted_data() {
    let data = random_bytes(10_000, 1);
    let ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    let wrong = EncryptionKey::from_passphrase("the wrong key").unwrap();
    let err = decrypt_err(&ct, &wrong, ITER).await;
    match crypto_err(&err) {
        CryptoError::BadPadding { key_id } => assert_eq!(key_id, wrong.id()),
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("wrong key or corrupted data"), "{msg}");
    assert!(msg.contains(wrong.id().as_str()), "{msg}");
    assert!(msg.contains("key file"), "{msg}");
}

#[tokio::test]
async fn wrong_iteration_count_is_reported_as_wrong_key_or_corrupted_data() {
    let ct = encrypt_with_salt(b"some data", &key(), ITER, SALT).await;
    let err = decrypt_err(&ct, &key(), ITER + 1).await;
    assert!(matches!(crypto_err(&err), CryptoError::BadPadding { .. }));
}

#[tokio::test]
async fn truncation_inside_header_or_mid_block_is_reported_as_truncated() {
    let data = random_bytes(1_000, 2);
    let ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    assert_eq!(ct.len(), 16 + 1008);
    for cut in [
        0,
        1,
        7,
        8,
        9,
        15,
        16,
        17,
        31,
        16 + 500,
        ct.len() - 1,
        ct.len() - 15,
    ] {
        let err = decrypt_err(&ct[..cut], &key(), ITER).await;
        assert!(
            matches!(crypto_err(&err), CryptoError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[tokio::test]
async fn truncation_at_a_block_boundary_is_an_error_not_short_data() {
    // CBC cannot tell a lost tail at a block boundary from a bad key; it must still fail.
    let data = random_bytes(1_000, 3);
    let ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    for cut in [32, 16 + 496, ct.len() - 16] {
        let err = decrypt_err(&ct[..cut], &key(), ITER).await;
        assert!(
            matches!(
                crypto_err(&err),
                CryptoError::BadPadding { .. } | CryptoError::Truncated { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
}

#[tokio::test]
async fn flipped_byte_in_last_block_is_reported_as_wrong_key_or_corrupted_data() {
    let data = random_bytes(4_000, 4);
    let ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    for pos in [ct.len() - 16, ct.len() - 9, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[pos] ^= 0x40;
        let err = decrypt_err(&bad, &key(), ITER).await;
        assert!(
            matches!(crypto_err(&err), CryptoError::BadPadding { .. }),
            "flip at {pos}: {err}"
        );
    }
}

#[tokio::test]
async fn flipped_padding_byte_is_always_detected() {
    // 4000 bytes: the padding is 16 bytes of 0x10. Flipping bit 0 of the previous block's last
    // byte turns the final plaintext byte into 0x11, which can never be valid padding.
    let data = random_bytes(4_000, 5);
    let mut ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    let pos = ct.len() - 17;
    ct[pos] ^= 0x01;
    let err = decrypt_err(&ct, &key(), ITER).await;
    assert!(matches!(crypto_err(&err), CryptoError::BadPadding { .. }));
}

#[tokio::test]
async fn empty_input_is_reported_as_truncated() {
    let err = decrypt_err(b"", &key(), ITER).await;
    assert!(matches!(crypto_err(&err), CryptoError::Truncated { .. }));
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test]
async fn header_without_ciphertext_is_reported_as_truncated() {
    let ct = encrypt_with_salt(b"", &key(), ITER, SALT).await;
    assert_eq!(ct.len(), 32);
    let err = decrypt_err(&ct[..16], &key(), ITER).await;
    assert!(matches!(crypto_err(&err), CryptoError::Truncated { .. }));
}

#[tokio::test]
async fn empty_plaintext_round_trips_to_empty() {
    let ct = encrypt(b"", &key(), ITER).await;
    assert_eq!(ct.len(), 32, "header + one block of padding, like openssl");
    assert!(decrypt(&ct, &key(), ITER).await.unwrap().is_empty());
}

#[tokio::test]
async fn plain_gzip_data_is_reported_as_not_encrypted() {
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03];
    gzip.extend(random_bytes(500, 6));
    let err = decrypt_err(&gzip, &key(), ITER).await;
    assert!(matches!(crypto_err(&err), CryptoError::NotEncrypted));
    let msg = err.to_string();
    assert!(msg.contains("not encrypted"), "{msg}");
    assert!(msg.contains("Salted__"), "{msg}");
}

#[tokio::test]
async fn short_foreign_data_is_reported_as_not_encrypted_rather_than_truncated() {
    for input in [&b"hi"[..], b"Salted_X", b"salted__12345678"] {
        let err = decrypt_err(input, &key(), ITER).await;
        assert!(
            matches!(crypto_err(&err), CryptoError::NotEncrypted),
            "{input:?}: {err}"
        );
    }
    // A correct prefix that just stops is truncation.
    let err = decrypt_err(b"Salted", &key(), ITER).await;
    assert!(matches!(crypto_err(&err), CryptoError::Truncated { .. }));
}

#[tokio::test]
async fn errors_repeat_on_every_later_read_instead_of_turning_into_eof() {
    let mut reader = DecryptReader::new(&b"not encrypted at all"[..], &key(), ITER);
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let err = reader.read(&mut buf).await.unwrap_err();
        assert!(matches!(crypto_err(&err), CryptoError::NotEncrypted));
    }
}

#[tokio::test]
async fn inner_io_errors_pass_through_unchanged() {
    let ct = encrypt(&random_bytes(70_000, 7), &key(), ITER).await;
    for cut in [0, 10, 20, 40_000] {
        let reader = DecryptReader::new(FailingReader::new(ct[..cut].to_vec()), &key(), ITER);
        let (_, end) = read_tiny(reader).await;
        let err = end.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(CryptoError::from_io(&err).is_none());
        assert_eq!(err.to_string(), "network went away");
    }
    let reader = EncryptReader::new(FailingReader::new(vec![1; 100]), &key(), ITER);
    let err = read_tiny(reader).await.1.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn final_block_is_held_back_until_end_of_input() {
    // A stalled source that never reaches EOF must not yield the last block, whose padding
    // (and hence correctness) is only known at EOF.
    let data = random_bytes(100_000, 8);
    let ct = encrypt(&data, &key(), ITER).await;
    let mut reader = DecryptReader::new(StallingReader::new(ct.clone()), &key(), ITER);
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut reader).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                assert!(!rb.filled().is_empty(), "EOF before the source ended");
                got.extend_from_slice(rb.filled());
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => break,
        }
    }
    let blocks = (ct.len() - 16) / 16;
    assert_eq!(got.len(), (blocks - 1) * 16);
    assert!(got[..] == data[..got.len()]);
}

#[tokio::test]
async fn corrupt_last_block_releases_no_byte_of_it() {
    let data = random_bytes(50_000, 9);
    let mut ct = encrypt_with_salt(&data, &key(), ITER, SALT).await;
    let last = ct.len() - 1;
    ct[last] ^= 0xff;
    let blocks = (ct.len() - 16) / 16;
    let reader = DecryptReader::new(TinyReader::new(ct), &key(), ITER);
    let (got, end) = read_tiny(reader).await;
    assert!(matches!(
        crypto_err(&end.unwrap_err()),
        CryptoError::BadPadding { .. }
    ));
    assert!(got.len() <= (blocks - 1) * 16);
}

#[tokio::test]
async fn round_trip_through_tiny_reads_and_tiny_buffers_for_many_sizes() {
    let key = key();
    for size in (0..=80).chain([1023, 1024, 1025, 64 * 1024 - 1, 64 * 1024 + 17]) {
        let data = random_bytes(size, size as u64);
        let enc = EncryptReader::with_salt(TinyReader::new(data.clone()), &key, ITER, SALT);
        let (ct, end) = read_tiny(enc).await;
        end.unwrap();
        assert_eq!(
            ct,
            encrypt_with_salt(&data, &key, ITER, SALT).await,
            "size {size}"
        );

        let dec = DecryptReader::new(TinyReader::new(ct), &key, ITER);
        let (pt, end) = read_tiny(dec).await;
        end.unwrap();
        assert!(pt == data, "size {size}");
    }
}

#[tokio::test]
async fn random_garbage_after_a_valid_header_never_panics_or_passes_silently_wrong_length() {
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..300 {
        let len = rng.gen_range(0..200);
        let mut input = b"Salted__".to_vec();
        input.extend(random_bytes(len, rng.gen()));
        match decrypt(&input, &key(), 1).await {
            // Random data has valid padding with probability ~1/256; then lengths must add up.
            Ok(pt) => {
                assert_eq!((len - 8) % 16, 0);
                assert!(pt.len() < len - 8);
            }
            Err(e) => {
                crypto_err(&e);
            }
        }
    }
}

#[tokio::test]
async fn zero_iterations_is_a_clear_error_not_a_panic() {
    let mut out = Vec::new();
    let err = EncryptReader::new(&b"x"[..], &key(), 0)
        .read_to_end(&mut out)
        .await
        .unwrap_err();
    assert!(matches!(crypto_err(&err), CryptoError::InvalidIterations));
    let ct = encrypt(b"x", &key(), ITER).await;
    let err = decrypt(&ct, &key(), 0).await.unwrap_err();
    assert!(matches!(crypto_err(&err), CryptoError::InvalidIterations));
}

#[tokio::test]
async fn new_encrypt_readers_use_fresh_random_salts() {
    let a = encrypt(b"same", &key(), ITER).await;
    let b = encrypt(b"same", &key(), ITER).await;
    assert_ne!(a[8..16], b[8..16]);
    assert_ne!(a, b);
}

/// `AsyncRead` is implemented for any `Unpin` inner reader, including boxed trait objects.
#[tokio::test]
async fn readers_compose_with_boxed_dyn_readers() {
    let inner: Box<dyn AsyncRead + Unpin + Send> = Box::new(&b"compose"[..]);
    let enc = EncryptReader::new(inner, &key(), ITER);
    let dec: Box<dyn AsyncRead + Unpin + Send> = Box::new(enc);
    let mut out = Vec::new();
    DecryptReader::new(dec, &key(), ITER)
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out, b"compose");
}
