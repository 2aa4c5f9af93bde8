//! Helpers for full-disk tests: how much of a file system is used, and filling it up.

use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

/// Bytes in use on the file system holding `path` (`statvfs`: total minus free blocks).
///
/// # Errors
/// When `statvfs` fails.
pub fn fs_used_bytes(path: &Path) -> anyhow::Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    // The field types differ between platforms (u32 on some, u64 on Linux x86-64).
    #[allow(clippy::useless_conversion)]
    let used = (u64::from(s.blocks()) - u64::from(s.blocks_free()))
        .saturating_mul(u64::from(s.fragment_size()));
    Ok(used)
}

/// Size in bytes of the file system holding `path` (`statvfs`: total blocks).
///
/// # Errors
/// When `statvfs` fails.
pub fn fs_size_bytes(path: &Path) -> anyhow::Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    #[allow(clippy::useless_conversion)]
    let size = u64::from(s.blocks()).saturating_mul(u64::from(s.fragment_size()));
    Ok(size)
}

/// Fills the file system holding `file` by allocating space to `file` (created if missing)
/// with `fallocate`, in chunks that shrink from 4 MiB to one page whenever one no longer fits,
/// until not even a page does. Once this returns, other writers' next write that needs a
/// block fails with `ENOSPC`. Returns the bytes allocated.
///
/// A guard against filling the wrong disk: the file system must be at most `max_size` bytes
/// large (a small tmpfs made for the test), else nothing is allocated.
///
/// # Errors
/// When the file system is larger than `max_size`, the file cannot be opened or `fallocate`
/// fails other than with `ENOSPC`.
pub fn fill_filesystem(file: &Path, max_size: u64) -> anyhow::Result<u64> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let size = fs_size_bytes(dir)?;
    if size > max_size {
        anyhow::bail!(
            "refusing to fill {}: its file system has {size} bytes, more than the {max_size} \
             expected",
            dir.display()
        );
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    let mut len: u64 = f.metadata()?.len();
    let mut chunk: u64 = 4 << 20;
    loop {
        let offset = i64::try_from(len).context("file length")?;
        let size = i64::try_from(chunk).context("chunk size")?;
        match fallocate(f.as_raw_fd(), FallocateFlags::empty(), offset, size) {
            Ok(()) => len += chunk,
            Err(Errno::ENOSPC) if chunk > 4096 => chunk /= 2,
            Err(Errno::ENOSPC) => return Ok(len),
            Err(e) => {
                return Err(e).with_context(|| format!("fallocate {}", file.display()));
            }
        }
    }
}

/// Stops (`SIGSTOP`, `stop == true`) or continues (`SIGCONT`) process `pid`: to hold a
/// program at a chosen moment while a test changes the world under it.
///
/// # Errors
/// When the signal cannot be sent (no such process, not permitted).
pub fn stop_process(pid: u32, stop: bool) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    let raw = i32::try_from(pid).context("pid")?;
    let signal = if stop {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    kill(nix::unistd::Pid::from_raw(raw), signal).with_context(|| format!("{signal} to {pid}"))
}
