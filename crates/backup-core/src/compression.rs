//! Compression stages: gzip (default, compatible with the old scripts' `gzip`) and zstd.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use async_compression::Level;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

use crate::source::ByteStream;

/// Buffer size for the readers feeding the codecs.
const CODEC_BUFFER: usize = 128 * 1024;

/// Input bytes per job of a multi-threaded zstd encoder: small enough that memory stays a few
/// MiB per thread, large enough that the ratio stays that of one thread.
pub const ZSTD_JOB_BYTES: u32 = 2 * 1024 * 1024;

/// A compression algorithm and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (RFC 1952), level 1-9; `gunzip` reads it.
    Gzip {
        /// Level 1 (fast) to 9 (small); 6 is gzip's default.
        level: u32,
    },
    /// Zstandard, level 1-19 (negative levels are not offered); `zstd -d` reads it.
    Zstd {
        /// Level 1 (fast) to 19 (small); 3 is zstd's default.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Self::gzip()
    }
}

impl Compression {
    /// gzip at its default level 6.
    pub fn gzip() -> Self {
        Self::Gzip { level: 6 }
    }

    /// zstd at its default level 3.
    pub fn zstd() -> Self {
        Self::Zstd { level: 3 }
    }

    /// The algorithm's name: `none`, `gzip` or `zstd`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip { .. } => "gzip",
            Self::Zstd { .. } => "zstd",
        }
    }

    /// The file-name suffix, `gz` or `zst` (none for [`Compression::None`]).
    pub fn suffix(&self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Gzip { .. } => Some("gz"),
            Self::Zstd { .. } => Some("zst"),
        }
    }

    /// The same algorithm at `level`, checked against the algorithm's range.
    pub fn with_level(self, level: i32) -> Result<Self, String> {
        match self {
            Self::None => Err("compression 'none' takes no level".to_owned()),
            Self::Gzip { .. } => match u32::try_from(level) {
                Ok(l @ 1..=9) => Ok(Self::Gzip { level: l }),
                _ => Err(format!("gzip level must be 1-9, got {level}")),
            },
            Self::Zstd { .. } => {
                if (1..=19).contains(&level) {
                    Ok(Self::Zstd { level })
                } else {
                    Err(format!("zstd level must be 1-19, got {level}"))
                }
            }
        }
    }

    /// Wraps `input` so that reading yields the compressed stream (one thread).
    pub fn encoder<R>(&self, input: R) -> ByteStream
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        self.encoder_with_threads(input, 1)
    }

    /// Like [`encoder`](Self::encoder), with zstd compressing on `threads` worker threads of
    /// libzstd's own (jobs of [`ZSTD_JOB_BYTES`], so memory stays near `threads` x 3 jobs);
    /// the output is one ordinary zstd frame that `zstd -d` and every reader read. The encoder
    /// runs on a blocking thread that waits for its input instead of flushing whenever the
    /// input is not ready (which would make the workers take turns); it fails the stream, never
    /// ends it early, if that thread stops. gzip on more than one thread is pigz's scheme
    /// (blocks of [`GZIP_BLOCK_BYTES`](crate::pgzip::GZIP_BLOCK_BYTES) primed with the
    /// previous block's last 32 KiB, one gzip member; see [`crate::pgzip`]).
    pub fn encoder_with_threads<R>(&self, input: R, threads: u32) -> ByteStream
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let buffered = BufReader::with_capacity(CODEC_BUFFER, input);
        match *self {
            Self::None => Box::new(buffered),
            Self::Gzip { level } if threads > 1 => {
                crate::pgzip::threaded_gzip(buffered, level, threads)
            }
            Self::Gzip { level } => Box::new(GzipEncoder::with_quality(
                buffered,
                Level::Precise(level as i32),
            )),
            // With a content checksum, as the `zstd` tool writes by default: corruption inside
            // a frame is then an error rather than silently wrong output.
            Self::Zstd { level } if threads > 1 => threaded_zstd(buffered, level, threads),
            Self::Zstd { level } => Box::new(ZstdEncoder::with_quality_and_params(
                buffered,
                Level::Precise(level),
                &[CParameter::checksum_flag(true)],
            )),
        }
    }

    /// Wraps `input` so that reading yields the decompressed stream. A truncated or corrupt
    /// stream is a read error, never a silent early end.
    pub fn decoder<R>(&self, input: R) -> ByteStream
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let buffered = BufReader::with_capacity(CODEC_BUFFER, input);
        match self {
            Self::None => Box::new(buffered),
            Self::Gzip { .. } => {
                let mut decoder = GzipDecoder::new(buffered);
                // `cat a.gz b.gz` and pigz output are valid gzip: read every member.
                decoder.multiple_members(true);
                Box::new(ErrorFence(decoder))
            }
            Self::Zstd { .. } => {
                let mut decoder = ZstdDecoder::new(buffered);
                decoder.multiple_members(true);
                Box::new(ErrorFence(decoder))
            }
        }
    }
}

/// Makes a reader keep `AsyncRead`'s contract that an error comes with no data: the
/// async-compression decoders can return an error from their input after filling part of the
/// caller's buffer, which tokio's `read_to_end` treats as a bug (it panics).
struct ErrorFence<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for ErrorFence<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Poll::Ready(Err(_)) = &poll {
            // The stream is failing: the bytes that came with the error are discarded.
            buf.set_filled(before);
        }
        poll
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Gzip { level } => write!(f, "gzip (level {level})"),
            Self::Zstd { level } => write!(f, "zstd (level {level})"),
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    /// Parses `gzip`, `zstd` or `none`, optionally with a level: `zstd:9`, `gzip:1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let base = match name.trim().to_ascii_lowercase().as_str() {
            "gzip" | "gz" => Self::gzip(),
            "zstd" | "zst" => Self::zstd(),
            "none" => Self::None,
            other => {
                return Err(format!(
                    "unknown compression {other:?}: use gzip, zstd or none"
                ))
            }
        };
        match level {
            None => Ok(base),
            Some(l) => {
                let level: i32 = l
                    .trim()
                    .parse()
                    .map_err(|_| format!("compression level {l:?} is not a number"))?;
                base.with_level(level)
            }
        }
    }
}

/// Output chunks in flight between a compression thread and the reader.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 4;

/// What a compression thread hands over.
pub(crate) enum Chunk {
    Data(Vec<u8>),
    Done,
    Failed(io::Error),
}

/// Sends what an encoder writes to the reader, a chunk per write.
pub(crate) struct ChunkSender(pub(crate) tokio::sync::mpsc::Sender<Chunk>);

impl io::Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Chunk::Data(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// libzstd with `threads` workers on a blocking thread of its own, reading `input` through a
/// [`tokio_util::io::SyncIoBridge`].
fn threaded_zstd<R>(input: R, level: i32, threads: u32) -> ByteStream
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let run = |tx: tokio::sync::mpsc::Sender<Chunk>| -> io::Result<()> {
            let mut input = tokio_util::io::SyncIoBridge::new(input);
            let mut encoder = zstd::stream::write::Encoder::new(ChunkSender(tx), level)?;
            encoder.include_checksum(true)?;
            encoder.multithread(threads)?;
            encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_BYTES))?;
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?;
            Ok(())
        };
        let last = match run(tx.clone()) {
            Ok(()) => Chunk::Done,
            Err(e) => Chunk::Failed(e),
        };
        // The reader may be gone already: nothing to tell then.
        let _ = tx.blocking_send(last);
    });
    Box::new(ChunkReader::new(rx, "zstd compression thread"))
}

/// Bytes per chunk of [`read_ahead`].
const READ_AHEAD_CHUNK: usize = 256 * 1024;

/// Reads `stream` on a task of its own, up to four chunks of 256 KiB ahead of
/// the returned reader (about 1 MiB at most in between).
///
/// A restore's stream does its work (reading, hashing, decrypting, decompressing) in whoever
/// polls it; a consumer on a blocking thread that reads it through
/// [`tokio_util::io::SyncIoBridge`] (a tar extraction) would run all of it on that one thread,
/// between its own writes. Behind `read_ahead` the two run side by side. An error of `stream`
/// reaches the reader after the bytes before it; when the reader is dropped, the task stops.
pub fn read_ahead(stream: ByteStream) -> ByteStream {
    use tokio::io::AsyncReadExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut stream = stream;
        let mut done = false;
        while !done {
            // At least half a chunk per message: a codec may hand out a few KiB per read.
            let mut chunk = Vec::with_capacity(READ_AHEAD_CHUNK);
            let mut failed = None;
            while chunk.len() < READ_AHEAD_CHUNK / 2 {
                match stream.read_buf(&mut chunk).await {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if !chunk.is_empty() && tx.send(Chunk::Data(chunk)).await.is_err() {
                return; // The reader is gone.
            }
            if let Some(e) = failed {
                let _ = tx.send(Chunk::Failed(e)).await;
                return;
            }
        }
        let _ = tx.send(Chunk::Done).await;
    });
    Box::new(ChunkReader::new(rx, "read-ahead task"))
}

/// The reading end of a compression thread: end of file only after the thread said `Done`;
/// an error when it failed or stopped without saying so.
pub(crate) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    what: &'static str,
}

impl ChunkReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Chunk>, what: &'static str) -> Self {
        Self {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
            what,
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.current.len() {
                let n = buf.remaining().min(this.current.len() - this.pos);
                buf.put_slice(&this.current[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(Chunk::Data(data)) => {
                    this.current = data;
                    this.pos = 0;
                }
                Some(Chunk::Done) => this.done = true,
                Some(Chunk::Failed(e)) => return Poll::Ready(Err(e)),
                None => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "the {} stopped before the end of the stream",
                        this.what
                    ))))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt as _;

    /// Endless bytes, counting how many were read.
    struct Endless(Arc<AtomicUsize>);

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(4096);
            buf.put_slice(&vec![7u8; n]);
            self.0.fetch_add(n, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn read_ahead_hands_over_every_byte_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        read_ahead(Box::new(std::io::Cursor::new(data.clone())))
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn read_ahead_passes_an_error_on_after_the_bytes_before_it() {
        let failing = std::io::Cursor::new(vec![1u8; 1000]).chain(broken_source());
        let mut reader = read_ahead(Box::new(failing));
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(out.len(), 1000);
        assert!(err.to_string().contains("broken source"), "{err}");
    }

    fn broken_source() -> impl AsyncRead + Send + Unpin {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                _buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(Err(io::Error::other("broken source")))
            }
        }
        Broken
    }

    #[tokio::test]
    async fn read_ahead_stays_a_bounded_distance_ahead_and_stops_with_its_reader() {
        let read = Arc::new(AtomicUsize::new(0));
        let mut reader = read_ahead(Box::new(Endless(read.clone())));
        let mut first = [0u8; 10];
        reader.read_exact(&mut first).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let ahead = read.load(Ordering::SeqCst);
        // The channel's chunks, the one being read and the one being filled.
        let bound = (CHUNKS_IN_FLIGHT + 2) * READ_AHEAD_CHUNK;
        assert!(ahead <= bound, "read {ahead} bytes ahead, bound {bound}");
        drop(reader);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let after = read.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(read.load(Ordering::SeqCst), after, "the task kept reading");
    }
}
