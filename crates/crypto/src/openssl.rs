//! Streaming `openssl enc -aes-256-cbc -salt -pbkdf2` encryption and decryption.
//!
//! Format: `b"Salted__"` + 8-byte salt + AES-256-CBC ciphertext with PKCS#7 padding, where
//! key || IV = PBKDF2-HMAC-SHA256(passphrase, salt, iterations, 48 bytes).

use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use aes::Aes256;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::typenum::U16;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, ReadBuf};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::key::{EncryptionKey, KeyId};

/// PBKDF2 iteration count that `openssl enc -pbkdf2` uses when `-iter` is not given.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 10_000;
/// Cipher name to record in manifests (as openssl spells it).
pub const CIPHER_NAME: &str = "aes-256-cbc";
/// Key derivation name to record in manifests.
pub const KDF_NAME: &str = "pbkdf2-hmac-sha256";

const MAGIC: &[u8; 8] = b"Salted__";
const SALT_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
const BLOCK: usize = 16;
/// Size of each reader's working buffer (a multiple of the block size).
const BUF_LEN: usize = 64 * 1024;

type Encryptor = cbc::Encryptor<Aes256>;
type Decryptor = cbc::Decryptor<Aes256>;

/// A fatal, repeatable reader error (kept so every later read reports it again).
#[derive(Debug, Clone, Copy)]
enum Failure {
    InvalidIterations,
    RandomUnavailable,
    NotEncrypted,
    Truncated(&'static str),
    BadPadding,
}

impl Failure {
    fn to_io(self, key_id: &KeyId) -> io::Error {
        let err = match self {
            Failure::InvalidIterations => CryptoError::InvalidIterations,
            Failure::RandomUnavailable => CryptoError::RandomUnavailable,
            Failure::NotEncrypted => CryptoError::NotEncrypted,
            Failure::Truncated(detail) => CryptoError::Truncated { detail },
            Failure::BadPadding => CryptoError::BadPadding {
                key_id: key_id.clone(),
            },
        };
        err.into_io()
    }
}

/// Derives the AES-256 key and the IV from passphrase and salt like `openssl enc -pbkdf2`.
fn derive_key_iv(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    iterations: NonZeroU32,
) -> Zeroizing<[u8; 48]> {
    let mut out = Zeroizing::new([0u8; 48]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase,
        out.as_mut(),
    );
    out
}

/// Views a byte slice whose length is a multiple of 16 as AES blocks (no copy).
fn as_blocks(bytes: &mut [u8]) -> &mut [GenericArray<u8, U16>] {
    let (blocks, _tail) = InOutBuf::from(bytes).into_chunks::<U16>();
    blocks.into_out()
}

/// Copies as much pending output `buf[*start..end]` into `dst` as fits.
fn emit(buf: &[u8], start: &mut usize, end: usize, dst: &mut ReadBuf<'_>) {
    let n = (end - *start).min(dst.remaining());
    dst.put_slice(&buf[*start..*start + n]);
    *start += n;
}

enum EncState {
    Running(Box<Encryptor>),
    Done,
    Failed(Failure),
}

/// Encrypts everything read from `inner` into the openssl salted format, in constant memory.
pub struct EncryptReader<R> {
    inner: R,
    state: EncState,
    key_id: KeyId,
    buf: Box<[u8]>,
    /// Ciphertext ready for the caller: `buf[out_start..out_end]`.
    out_start: usize,
    out_end: usize,
    /// Plaintext not yet encrypted (less than a block): `buf[out_end..pend_end]`.
    pend_end: usize,
}

impl<R> fmt::Debug for EncryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptReader")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl<R> EncryptReader<R> {
    /// Encrypts `inner` with `key` and a random 8-byte salt; a failure shows up on the first read.
    pub fn new(inner: R, key: &EncryptionKey, iterations: u32) -> Self {
        let mut salt = [0u8; SALT_LEN];
        match SystemRandom::new().fill(&mut salt) {
            Ok(()) => Self::with_salt(inner, key, iterations, salt),
            Err(_) => Self::failed(inner, key, Failure::RandomUnavailable),
        }
    }

    /// Encrypts `inner` with a caller-chosen salt (deterministic output, for tests and interop).
    pub fn with_salt(inner: R, key: &EncryptionKey, iterations: u32, salt: [u8; 8]) -> Self {
        let Some(iterations) = NonZeroU32::new(iterations) else {
            return Self::failed(inner, key, Failure::InvalidIterations);
        };
        let km = derive_key_iv(key.passphrase(), &salt, iterations);
        let cipher = Encryptor::new(
            GenericArray::from_slice(&km[..32]),
            GenericArray::from_slice(&km[32..]),
        );
        let mut buf = vec![0u8; BUF_LEN].into_boxed_slice();
        buf[..MAGIC.len()].copy_from_slice(MAGIC);
        buf[MAGIC.len()..HEADER_LEN].copy_from_slice(&salt);
        EncryptReader {
            inner,
            state: EncState::Running(Box::new(cipher)),
            key_id: key.id().clone(),
            buf,
            out_start: 0,
            out_end: HEADER_LEN,
            pend_end: HEADER_LEN,
        }
    }

    fn failed(inner: R, key: &EncryptionKey, failure: Failure) -> Self {
        EncryptReader {
            inner,
            state: EncState::Failed(failure),
            key_id: key.id().clone(),
            buf: Box::default(),
            out_start: 0,
            out_end: 0,
            pend_end: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for EncryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_start < this.out_end {
                emit(&this.buf, &mut this.out_start, this.out_end, dst);
                return Poll::Ready(Ok(()));
            }
            let cipher = match &mut this.state {
                EncState::Running(cipher) => cipher,
                EncState::Done => return Poll::Ready(Ok(())),
                EncState::Failed(f) => return Poll::Ready(Err(f.to_io(&this.key_id))),
            };

            // Output drained: move the partial block to the front and read more after it.
            this.buf.copy_within(this.out_end..this.pend_end, 0);
            this.pend_end -= this.out_end;
            this.out_start = 0;
            this.out_end = 0;

            let mut rb = ReadBuf::new(&mut this.buf[this.pend_end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();

            if n > 0 {
                this.pend_end += n;
                let whole = this.pend_end - this.pend_end % BLOCK;
                cipher.encrypt_blocks_mut(as_blocks(&mut this.buf[..whole]));
                this.out_end = whole;
            } else {
                // Inner EOF: PKCS#7-pad the remaining partial block (a full block if none).
                let tail = this.pend_end;
                let pad = BLOCK - tail;
                this.buf[tail..BLOCK].fill(pad as u8);
                cipher.encrypt_blocks_mut(as_blocks(&mut this.buf[..BLOCK]));
                this.out_end = BLOCK;
                this.pend_end = BLOCK;
                this.state = EncState::Done;
            }
        }
    }
}

enum DecState {
    /// Waiting for the 16-byte header; bytes so far are `buf[..pend_end]`.
    Header,
    Running(Box<Decryptor>),
    Done,
    Failed(Failure),
}

/// Decrypts an openssl salted stream from `inner`, releasing the last block only once its
/// padding has been checked at end of input.
pub struct DecryptReader<R> {
    inner: R,
    state: DecState,
    passphrase: Zeroizing<Vec<u8>>,
    key_id: KeyId,
    iterations: NonZeroU32,
    buf: Box<[u8]>,
    /// Plaintext ready for the caller: `buf[out_start..out_end]`.
    out_start: usize,
    out_end: usize,
    /// Ciphertext not yet decrypted (at least the last complete block is held back here):
    /// `buf[out_end..pend_end]`.
    pend_end: usize,
}

impl<R> fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptReader")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl<R> DecryptReader<R> {
    /// Decrypts `inner` with `key` and the given PBKDF2 iteration count (as used to encrypt).
    pub fn new(inner: R, key: &EncryptionKey, iterations: u32) -> Self {
        let (state, iterations) = match NonZeroU32::new(iterations) {
            Some(n) => (DecState::Header, n),
            None => (
                DecState::Failed(Failure::InvalidIterations),
                NonZeroU32::MIN,
            ),
        };
        DecryptReader {
            inner,
            state,
            passphrase: Zeroizing::new(key.passphrase().to_vec()),
            key_id: key.id().clone(),
            iterations,
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            pend_end: 0,
        }
    }

    /// Processes newly read bytes (or end of input when `eof`).
    fn advance(&mut self, eof: bool) -> Result<(), Failure> {
        if let DecState::Header = self.state {
            let have = self.pend_end;
            let k = have.min(MAGIC.len());
            if self.buf[..k] != MAGIC[..k] {
                return Err(Failure::NotEncrypted);
            }
            if have < HEADER_LEN {
                return match (eof, have) {
                    (false, _) => Ok(()),
                    (true, 0) => Err(Failure::Truncated("the input is empty")),
                    (true, _) => Err(Failure::Truncated(
                        "it ends inside the 16-byte `Salted__` header",
                    )),
                };
            }
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(&self.buf[MAGIC.len()..HEADER_LEN]);
            let km = derive_key_iv(&self.passphrase, &salt, self.iterations);
            let cipher = Decryptor::new(
                GenericArray::from_slice(&km[..32]),
                GenericArray::from_slice(&km[32..]),
            );
            self.state = DecState::Running(Box::new(cipher));
            self.out_start = HEADER_LEN;
            self.out_end = HEADER_LEN;
        }

        let DecState::Running(cipher) = &mut self.state else {
            return Ok(());
        };
        let start = self.out_end;
        let len = self.pend_end - start;
        if !eof {
            // Decrypt all complete blocks except the last one, which may carry the padding.
            let release = (len - len % BLOCK).saturating_sub(BLOCK);
            cipher.decrypt_blocks_mut(as_blocks(&mut self.buf[start..start + release]));
            self.out_end += release;
            return Ok(());
        }
        if len == 0 {
            return Err(Failure::Truncated(
                "there is no encrypted data after the header",
            ));
        }
        if !len.is_multiple_of(BLOCK) {
            return Err(Failure::Truncated(
                "the encrypted data is not a whole number of 16-byte blocks",
            ));
        }
        cipher.decrypt_blocks_mut(as_blocks(&mut self.buf[start..self.pend_end]));
        let last: &[u8] = &self.buf[self.pend_end - BLOCK..self.pend_end];
        let Some(pad) = pkcs7_pad_len(last) else {
            return Err(Failure::BadPadding);
        };
        self.out_end = self.pend_end - pad;
        self.pend_end = self.out_end;
        self.state = DecState::Done;
        Ok(())
    }
}

/// Length of valid PKCS#7 padding at the end of a 16-byte block, or `None` if invalid.
fn pkcs7_pad_len(block: &[u8]) -> Option<usize> {
    let pad = *block.last()?;
    let p = usize::from(pad);
    if p == 0 || p > BLOCK || block.len() != BLOCK {
        return None;
    }
    // No early exit on the first mismatching byte.
    let diff = block[BLOCK - p..]
        .iter()
        .fold(0u8, |acc, &b| acc | (b ^ pad));
    (diff == 0).then_some(p)
}

impl<R: AsyncRead + Unpin> AsyncRead for DecryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_start < this.out_end {
                emit(&this.buf, &mut this.out_start, this.out_end, dst);
                return Poll::Ready(Ok(()));
            }
            match &this.state {
                DecState::Done => return Poll::Ready(Ok(())),
                DecState::Failed(f) => return Poll::Ready(Err(f.to_io(&this.key_id))),
                DecState::Header | DecState::Running(_) => {}
            }

            // Output drained: move the undecrypted bytes (< 32) to the front, read more after.
            this.buf.copy_within(this.out_end..this.pend_end, 0);
            this.pend_end -= this.out_end;
            this.out_start = 0;
            this.out_end = 0;

            let mut rb = ReadBuf::new(&mut this.buf[this.pend_end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            this.pend_end += n;

            if let Err(failure) = this.advance(n == 0) {
                this.out_start = 0;
                this.out_end = 0;
                this.pend_end = 0;
                this.state = DecState::Failed(failure);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs7_accepts_valid_padding_lengths() {
        for p in 1..=16u8 {
            let mut block = [0xAAu8; 16];
            block[16 - usize::from(p)..].fill(p);
            assert_eq!(pkcs7_pad_len(&block), Some(usize::from(p)));
        }
    }

    #[test]
    fn pkcs7_rejects_zero_oversized_and_inconsistent_padding() {
        let mut block = [0u8; 16];
        assert_eq!(pkcs7_pad_len(&block), None);
        block[15] = 17;
        assert_eq!(pkcs7_pad_len(&block), None);
        block[15] = 0xFF;
        assert_eq!(pkcs7_pad_len(&block), None);
        let mut block = [3u8; 16];
        block[13] = 2;
        assert_eq!(pkcs7_pad_len(&block), None);
        assert_eq!(pkcs7_pad_len(&[]), None);
        assert_eq!(pkcs7_pad_len(&[1u8; 8]), None);
    }

    #[test]
    fn derived_key_and_iv_match_openssl_print_key_output() {
        // `openssl enc -aes-256-cbc -pbkdf2 -S 0011223344556677 -pass file:F -P` with F = "hello\n".
        let km = derive_key_iv(
            b"hello",
            &[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77],
            NonZeroU32::new(DEFAULT_PBKDF2_ITERATIONS).unwrap(),
        );
        assert_eq!(
            hex::encode_upper(&km[..32]),
            "B7052C408BFA849A62A8A3E963E88A43B17766D0629C2D3AD281D0525A27223E"
        );
        assert_eq!(
            hex::encode_upper(&km[32..]),
            "64A3429D3E226D2C20A1800D4664F983"
        );
    }

    #[test]
    fn block_view_covers_the_whole_slice_without_copying() {
        let mut bytes = [7u8; 48];
        let blocks = as_blocks(&mut bytes);
        assert_eq!(blocks.len(), 3);
        blocks[2][15] = 9;
        assert_eq!(bytes[47], 9);
    }
}
