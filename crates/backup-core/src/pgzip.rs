//! gzip on several threads, pigz's scheme: the input is cut into blocks of
//! [`GZIP_BLOCK_BYTES`]; each block is compressed on a worker as raw deflate with the previous
//! block's last 32 KiB as its dictionary (so the ratio stays that of one thread) and ends with
//! a sync flush at a byte boundary; the blocks are written in order between one gzip header
//! and one trailer, whose CRC-32 combines the blocks' own. The result is one ordinary gzip
//! member: `gunzip` and every reader read it.
//!
//! One blocking thread reads the input (through a [`tokio_util::io::SyncIoBridge`]) and hands
//! blocks to the workers; at most `2 x threads` blocks are in flight, so memory is bounded by
//! threads x block size. A worker that fails or panics fails the stream; it never ends early.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc;
use std::sync::Arc;

use flate2::{Compress, FlushCompress, Status};
use tokio::io::AsyncRead;

use crate::compression::{Chunk, ChunkReader, ChunkSender};
use crate::source::ByteStream;

/// Input bytes per block: pigz's default size is 128 KiB; a larger block keeps the sync
/// flushes' few bytes and the restarted match search under 0.1% of the output.
pub const GZIP_BLOCK_BYTES: usize = 512 * 1024;

/// The deflate window: each block is primed with this much of the previous one.
const DICTIONARY_BYTES: usize = 32 * 1024;

/// A block for a worker.
struct Job {
    data: Arc<Vec<u8>>,
    dictionary: Option<Arc<Vec<u8>>>,
    done: mpsc::SyncSender<io::Result<Compressed>>,
}

/// A worker's result.
struct Compressed {
    deflate: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Tests: the worker that compresses a block starting with these bytes panics.
#[cfg(test)]
static PANIC_PREFIX: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

fn compress_block(job: &Job, level: u32) -> io::Result<Compressed> {
    #[cfg(test)]
    {
        let prefix = PANIC_PREFIX.lock().ok().and_then(|p| p.clone());
        if prefix.is_some_and(|p| job.data.starts_with(&p)) {
            panic!("injected compression failure");
        }
    }
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    if let Some(dictionary) = &job.dictionary {
        compress
            .set_dictionary(dictionary)
            .map_err(|e| io::Error::other(format!("setting the deflate dictionary: {e}")))?;
    }
    let data = &job.data[..];
    let mut deflate = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        if deflate.capacity() - deflate.len() < 1024 {
            deflate.reserve(data.len() / 4 + 1024);
        }
        let before = deflate.len();
        compress
            .compress_vec(
                data.get(consumed..).unwrap_or_default(),
                &mut deflate,
                FlushCompress::Sync,
            )
            .map_err(|e| io::Error::other(format!("deflate failed: {e}")))?;
        let all_in = usize::try_from(compress.total_in()).unwrap_or(0) == data.len();
        // Done when everything went in and the flush did not fill the room it had.
        if all_in && deflate.len() < deflate.capacity() {
            break;
        }
        if deflate.len() == before && !all_in && deflate.len() < deflate.capacity() {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    Ok(Compressed {
        deflate,
        crc,
        len: data.len() as u64,
    })
}

/// The final, empty deflate block (BFINAL set) that ends the member.
fn final_block(level: u32) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(64);
    match compress.compress_vec(&[], &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => Ok(out),
        Ok(other) => Err(io::Error::other(format!(
            "deflate did not end its stream ({other:?})"
        ))),
        Err(e) => Err(io::Error::other(format!("deflate failed: {e}"))),
    }
}

fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=Unix
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]
}

/// Reads up to `size` bytes (fewer only at the end of `input`).
fn read_block(input: &mut impl Read, size: usize) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(size);
    input.take(size as u64).read_to_end(&mut block)?;
    Ok(block)
}

fn run(input: impl Read, level: u32, threads: usize, out: &mut ChunkSender) -> io::Result<()> {
    use std::io::Write;
    let mut input = input;
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(threads);
    let jobs_rx = Arc::new(std::sync::Mutex::new(jobs_rx));
    std::thread::scope(|scope| -> io::Result<()> {
        for _ in 0..threads {
            let jobs_rx = Arc::clone(&jobs_rx);
            scope.spawn(move || loop {
                let job = match jobs_rx.lock() {
                    Ok(rx) => match rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                    Err(_) => return,
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compress_block(&job, level)
                }))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(io::Error::other(format!(
                        "a gzip compression thread panicked: {what}"
                    )))
                });
                let _ = job.done.send(result);
            });
        }
        let result = (|| -> io::Result<()> {
            out.write_all(&header(level))?;
            let mut crc = crc32fast::Hasher::new();
            let mut total: u64 = 0;
            let mut pending: VecDeque<mpsc::Receiver<io::Result<Compressed>>> = VecDeque::new();
            let mut previous: Option<Arc<Vec<u8>>> = None;
            let mut finish_one = |pending: &mut VecDeque<
                mpsc::Receiver<io::Result<Compressed>>,
            >,
                                  out: &mut ChunkSender|
             -> io::Result<()> {
                let Some(rx) = pending.pop_front() else {
                    return Ok(());
                };
                let block = rx.recv().map_err(|_| {
                    io::Error::other("a gzip compression thread stopped before finishing its block")
                })??;
                crc.combine(&block.crc);
                total = total.wrapping_add(block.len);
                out.write_all(&block.deflate)
            };
            loop {
                let data = read_block(&mut input, GZIP_BLOCK_BYTES)?;
                if data.is_empty() {
                    break;
                }
                let data = Arc::new(data);
                let dictionary = previous.as_ref().map(|p| {
                    let start = p.len().saturating_sub(DICTIONARY_BYTES);
                    Arc::new(p[start..].to_vec())
                });
                let (done, rx) = mpsc::sync_channel(1);
                jobs_tx
                    .send(Job {
                        data: Arc::clone(&data),
                        dictionary,
                        done,
                    })
                    .map_err(|_| io::Error::other("the gzip compression threads stopped"))?;
                pending.push_back(rx);
                previous = Some(data);
                if pending.len() >= 2 * threads {
                    finish_one(&mut pending, out)?;
                }
            }
            while !pending.is_empty() {
                finish_one(&mut pending, out)?;
            }
            out.write_all(&final_block(level)?)?;
            let mut trailer = [0u8; 8];
            trailer[..4].copy_from_slice(&crc.clone().finalize().to_le_bytes());
            // ISIZE: the length modulo 2^32, as RFC 1952 says.
            trailer[4..].copy_from_slice(&((total & 0xffff_ffff) as u32).to_le_bytes());
            out.write_all(&trailer)
        })();
        // Stop the workers (they see the channel closed) before the scope joins them.
        drop(jobs_tx);
        result
    })
}

/// gzip at `level` on `threads` worker threads (see the [module docs](self)).
pub(crate) fn threaded_gzip<R>(input: R, level: u32, threads: u32) -> ByteStream
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(crate::compression::CHUNKS_IN_FLIGHT);
    let threads = usize::try_from(threads.max(1)).unwrap_or(1);
    tokio::task::spawn_blocking(move || {
        let input = tokio_util::io::SyncIoBridge::new(input);
        let mut sender = ChunkSender(tx.clone());
        let last = match run(input, level, threads, &mut sender) {
            Ok(()) => Chunk::Done,
            Err(e) => Chunk::Failed(e),
        };
        // The reader may be gone already: nothing to tell then.
        let _ = tx.blocking_send(last);
    });
    Box::new(ChunkReader::new(rx, "gzip compression thread"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn sample(len: usize) -> Vec<u8> {
        // Text-like and compressible, with long-range repeats that cross block boundaries.
        let mut out = Vec::with_capacity(len);
        let mut i: u64 = 0;
        while out.len() < len {
            i += 1;
            let line = format!(
                "INSERT INTO bookings VALUES ({i}, 'customer {}', '2024-01-{:02}', {});\n",
                i % 977,
                i % 28 + 1,
                (i * 2_654_435_761) % 10_000
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(len);
        out
    }

    async fn compress(data: &[u8], threads: u32) -> io::Result<Vec<u8>> {
        let mut stream = threaded_gzip(std::io::Cursor::new(data.to_vec()), 6, threads);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[tokio::test]
    async fn blocks_of_every_awkward_size_round_trip_at_1_2_and_8_threads() {
        let b = GZIP_BLOCK_BYTES;
        for len in [0, 1, b - 1, b, b + 1, 3 * b + 17] {
            let data = sample(len);
            for threads in [1, 2, 8] {
                let gz = compress(&data, threads).await.unwrap();
                assert_eq!(gunzip(&gz), data, "{len} bytes, {threads} threads");
            }
        }
    }

    #[tokio::test]
    async fn the_ratio_stays_within_one_percent_of_one_stream() {
        let data = sample(8 * GZIP_BLOCK_BYTES + 12_345);
        let parallel = compress(&data, 2).await.unwrap();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut single, &data).unwrap();
        let single = single.finish().unwrap();
        let ratio = parallel.len() as f64 / single.len() as f64;
        assert!(
            ratio < 1.01,
            "{} bytes on 2 threads vs {} on one ({ratio:.4})",
            parallel.len(),
            single.len()
        );
    }

    #[tokio::test]
    async fn a_worker_that_panics_fails_the_stream_instead_of_ending_it() {
        let mut data = sample(4 * GZIP_BLOCK_BYTES);
        let marker = b"PANIC-HERE-7f3a".to_vec();
        data[2 * GZIP_BLOCK_BYTES..2 * GZIP_BLOCK_BYTES + marker.len()].copy_from_slice(&marker);
        *PANIC_PREFIX.lock().unwrap() = Some(marker);
        let result = compress(&data, 2).await;
        *PANIC_PREFIX.lock().unwrap() = None;
        let e = result.expect_err("the stream fails");
        assert!(e.to_string().contains("panicked"), "{e}");
    }

    #[tokio::test]
    async fn an_input_error_fails_the_stream() {
        struct Failing(usize);
        impl AsyncRead for Failing {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                if self.0 == 0 {
                    return std::task::Poll::Ready(Err(io::Error::other("source died")));
                }
                let n = buf.remaining().min(self.0).min(4096);
                buf.put_slice(&vec![b'x'; n]);
                self.0 -= n;
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut stream = threaded_gzip(Failing(GZIP_BLOCK_BYTES * 2 + 5), 6, 2);
        let mut out = Vec::new();
        let e = stream.read_to_end(&mut out).await.expect_err("fails");
        assert!(e.to_string().contains("source died"), "{e}");
    }
}
