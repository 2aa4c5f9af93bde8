//! Shared helpers for the integration tests: the real openssl binary, key files, readers.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};

use backup_crypto::{DecryptReader, EncryptReader, EncryptionKey};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The openssl binary the interop tests run; it must exist (never skip).
pub const OPENSSL: &str = "/usr/bin/openssl";

/// A fixed salt for deterministic ciphertexts.
pub const SALT: [u8; 8] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];

/// Fails loudly when openssl is missing.
pub fn openssl() -> Command {
    assert!(
        Path::new(OPENSSL).is_file(),
        "{OPENSSL} is missing: these interop tests need the real openssl binary \
         (install it, e.g. `apt-get install openssl`); they are never skipped"
    );
    Command::new(OPENSSL)
}

/// Runs openssl with `args` and returns its stdout-file contents; panics with stderr on failure.
pub fn run_openssl(args: &[String]) -> std::process::Output {
    openssl().args(args).output().expect("run openssl")
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create temp dir")
}

/// Writes a key file with mode 0600.
pub fn write_key(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    write_file_mode(dir, name, contents, 0o600)
}

pub fn write_file_mode(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn pass_arg(key_path: &Path) -> String {
    format!("file:{}", key_path.display())
}

/// `openssl enc -aes-256-cbc -salt -pbkdf2 [-iter N] [-S SALT] -pass file:KEY`.
pub fn openssl_encrypt(
    dir: &Path,
    key_path: &Path,
    plain: &[u8],
    iter: Option<u32>,
    salt: Option<[u8; 8]>,
) -> Vec<u8> {
    let input = dir.join("openssl-plain.bin");
    let output = dir.join("openssl-cipher.bin");
    fs::write(&input, plain).unwrap();
    let mut args: Vec<String> = ["enc", "-aes-256-cbc", "-salt", "-pbkdf2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(n) = iter {
        args.extend(["-iter".to_string(), n.to_string()]);
    }
    if let Some(salt) = salt {
        args.extend(["-S".to_string(), hex::encode(salt)]);
    }
    args.extend([
        "-pass".to_string(),
        pass_arg(key_path),
        "-in".to_string(),
        input.display().to_string(),
        "-out".to_string(),
        output.display().to_string(),
    ]);
    let out = run_openssl(&args);
    assert!(
        out.status.success(),
        "openssl enc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(&output).unwrap()
}

/// Like [`openssl_encrypt`] with a fixed salt, normalised to the `Salted__` format: OpenSSL 3
/// omits the header when `-S` is given (OpenSSL 1.1 wrote it), so it is prepended if missing.
pub fn openssl_encrypt_fixed_salt(dir: &Path, key_path: &Path, plain: &[u8]) -> Vec<u8> {
    let ct = openssl_encrypt(dir, key_path, plain, None, Some(SALT));
    let blocks_len = (plain.len() / 16 + 1) * 16;
    if ct.len() == blocks_len {
        [&b"Salted__"[..], &SALT, &ct].concat()
    } else {
        assert_eq!(
            ct.len(),
            16 + blocks_len,
            "unexpected openssl output length"
        );
        ct
    }
}

/// `openssl enc -d -aes-256-cbc -pbkdf2 [-iter N] -pass file:KEY`; panics if openssl fails.
pub fn openssl_decrypt(dir: &Path, key_path: &Path, cipher: &[u8], iter: Option<u32>) -> Vec<u8> {
    let input = dir.join("ours-cipher.bin");
    let output = dir.join("ours-plain.bin");
    fs::write(&input, cipher).unwrap();
    let mut args: Vec<String> = ["enc", "-d", "-aes-256-cbc", "-pbkdf2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(n) = iter {
        args.extend(["-iter".to_string(), n.to_string()]);
    }
    args.extend([
        "-pass".to_string(),
        pass_arg(key_path),
        "-in".to_string(),
        input.display().to_string(),
        "-out".to_string(),
        output.display().to_string(),
    ]);
    let out = run_openssl(&args);
    assert!(
        out.status.success(),
        "openssl enc -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(&output).unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

pub async fn encrypt(plain: &[u8], key: &EncryptionKey, iterations: u32) -> Vec<u8> {
    let mut out = Vec::new();
    EncryptReader::new(plain, key, iterations)
        .read_to_end(&mut out)
        .await
        .expect("encrypt");
    out
}

pub async fn encrypt_with_salt(
    plain: &[u8],
    key: &EncryptionKey,
    iterations: u32,
    salt: [u8; 8],
) -> Vec<u8> {
    let mut out = Vec::new();
    EncryptReader::with_salt(plain, key, iterations, salt)
        .read_to_end(&mut out)
        .await
        .expect("encrypt");
    out
}

pub async fn decrypt(cipher: &[u8], key: &EncryptionKey, iterations: u32) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    DecryptReader::new(cipher, key, iterations)
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

/// Reads `reader` to the end into destination buffers of 1..=7 bytes; returns what was
/// received and how reading ended.
pub async fn read_tiny<R: AsyncRead + Unpin>(mut reader: R) -> (Vec<u8>, io::Result<()>) {
    let mut out = Vec::new();
    let mut step = 0;
    loop {
        step = step % 7 + 1;
        let mut buf = [0u8; 7];
        match reader.read(&mut buf[..step]).await {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// An in-memory reader that hands out 1..=7 bytes per read and is `Pending` every other call.
pub struct TinyReader {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    pending_next: bool,
}

impl TinyReader {
    pub fn new(data: Vec<u8>) -> Self {
        TinyReader {
            data,
            pos: 0,
            step: 0,
            pending_next: false,
        }
    }
}

impl AsyncRead for TinyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_next {
            this.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pending_next = true;
        this.step = this.step % 7 + 1;
        let n = this
            .step
            .min(buf.remaining())
            .min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Hands out `data`, then never reaches EOF (stays `Pending`), like a stalled download.
pub struct StallingReader {
    data: Vec<u8>,
    pos: usize,
}

impl StallingReader {
    pub fn new(data: Vec<u8>) -> Self {
        StallingReader { data, pos: 0 }
    }
}

impl AsyncRead for StallingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.data.len() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Hands out `data`, then fails with an I/O error of kind `ConnectionReset`.
pub struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl FailingReader {
    pub fn new(data: Vec<u8>) -> Self {
        FailingReader { data, pos: 0 }
    }
}

impl AsyncRead for FailingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.data.len() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "network went away",
            )));
        }
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}
