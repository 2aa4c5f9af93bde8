//! Compression interop with the real `gzip`/`gunzip` and `zstd` binaries, and clean errors on
//! truncated or corrupted input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use backup_core::Compression;
use tokio::io::AsyncReadExt;

fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("{} appointment {}\n", x % 1000, x % 97).as_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `program args` with `input` on stdin; fails loudly if the tool is missing.
fn run_tool(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/setup.sh does it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).ok();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

async fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    c.encoder(std::io::Cursor::new(data.to_vec()))
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

async fn decompress(c: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    c.decoder(std::io::Cursor::new(data.to_vec()))
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

#[tokio::test]
async fn our_gzip_is_read_by_gunzip_and_gzip_output_is_read_by_us() {
    let data = sample(2_000_000);
    for level in [1, 6, 9] {
        let ours = compress(Compression::Gzip { level }, &data).await;
        let out = run_tool("gunzip", &["-c"], &ours);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data, "level {level}");
    }
    let theirs = run_tool("gzip", &["-c"], &data).stdout;
    assert_eq!(
        decompress(Compression::gzip(), &theirs).await.unwrap(),
        data
    );
    // Concatenated members (as `cat a.gz b.gz` or pigz make) are one stream.
    let mut two = theirs.clone();
    two.extend_from_slice(&theirs);
    let mut doubled = data.clone();
    doubled.extend_from_slice(&data);
    assert_eq!(
        decompress(Compression::gzip(), &two).await.unwrap(),
        doubled
    );
}

#[tokio::test]
async fn our_zstd_is_read_by_zstd_and_zstd_output_is_read_by_us() {
    let data = sample(2_000_000);
    let ours = compress(Compression::Zstd { level: 3 }, &data).await;
    let out = run_tool("zstd", &["-d", "-c"], &ours);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let theirs = run_tool("zstd", &["-c", "-19"], &data).stdout;
    assert_eq!(
        decompress(Compression::zstd(), &theirs).await.unwrap(),
        data
    );
}

/// gzip on 1, 2 and 8 threads (pigz's scheme from 2 on): one gzip member that `gunzip` and our
/// reader read, at the sizes around a block's boundary and well past several blocks; the size
/// stays within 1% of one thread's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_threaded_gzip_round_trips_and_gunzip_reads_it() {
    use backup_core::pgzip::GZIP_BLOCK_BYTES;
    let block = GZIP_BLOCK_BYTES;
    let big = sample(9 * block + 4321);
    let mut single_size = 0usize;
    for threads in [1u32, 2, 8] {
        for len in [0, 1, block - 1, block, block + 1, big.len()] {
            let data = &big[..len];
            let mut ours = Vec::new();
            Compression::gzip()
                .encoder_with_threads(std::io::Cursor::new(data.to_vec()), threads)
                .read_to_end(&mut ours)
                .await
                .unwrap();
            assert_eq!(
                decompress(Compression::gzip(), &ours).await.unwrap(),
                data,
                "{threads} threads, {len} bytes"
            );
            let out = run_tool("gunzip", &["-c"], &ours);
            assert!(
                out.status.success(),
                "{threads} threads, {len} bytes: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, data, "gunzip, {threads} threads, {len} bytes");
            if len == big.len() {
                if threads == 1 {
                    single_size = ours.len();
                } else {
                    let ratio = ours.len() as f64 / single_size as f64;
                    assert!(
                        ratio < 1.01,
                        "{threads} threads: {ratio:.4} of one thread's size"
                    );
                }
            }
        }
    }
    // 100 MiB on 2 threads: `gunzip -t` accepts it (CRC-32 and length of the whole) and our
    // reader gives back every byte.
    let data = sample(100 * 1024 * 1024);
    let mut ours = Vec::new();
    Compression::gzip()
        .encoder_with_threads(std::io::Cursor::new(data.clone()), 2)
        .read_to_end(&mut ours)
        .await
        .unwrap();
    let out = run_tool("gunzip", &["-t"], &ours);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(decompress(Compression::gzip(), &ours).await.unwrap() == data);
}

/// zstd on 1, 2 and 8 threads: one ordinary frame, read by `zstd -d` and by us, at the sizes
/// around a job's boundary and well past several jobs; the ratio stays that of one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_threaded_zstd_round_trips_and_zstd_reads_it() {
    use backup_core::ZSTD_JOB_BYTES;
    let job = ZSTD_JOB_BYTES as usize;
    let big = sample(5 * job + 12_345);
    let mut single_size = 0usize;
    for threads in [1u32, 2, 8] {
        for len in [0, 1, job - 1, job, job + 1, big.len()] {
            let data = &big[..len];
            let mut ours = Vec::new();
            Compression::zstd()
                .encoder_with_threads(std::io::Cursor::new(data.to_vec()), threads)
                .read_to_end(&mut ours)
                .await
                .unwrap();
            assert_eq!(
                decompress(Compression::zstd(), &ours).await.unwrap(),
                data,
                "{threads} threads, {len} bytes"
            );
            let out = run_tool("zstd", &["-d", "-c"], &ours);
            assert!(
                out.status.success(),
                "{threads} threads, {len} bytes: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, data, "zstd -d, {threads} threads, {len} bytes");
            if len == big.len() {
                if threads == 1 {
                    single_size = ours.len();
                } else {
                    let ratio = ours.len() as f64 / single_size as f64;
                    assert!(
                        ratio < 1.03,
                        "{threads} threads: {ratio:.3} of one thread's size"
                    );
                }
            }
        }
    } // 100 MiB on 2 threads: `zstd -t` accepts it and our reader gives back every byte.
    let data = sample(100 * 1024 * 1024);
    let mut ours = Vec::new();
    Compression::zstd()
        .encoder_with_threads(std::io::Cursor::new(data.clone()), 2)
        .read_to_end(&mut ours)
        .await
        .unwrap();
    let out = run_tool("zstd", &["-t", "-q"], &ours);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(decompress(Compression::zstd(), &ours).await.unwrap() == data);
}

/// Gives `ok` bytes of `data`, then an error (a source that breaks off).
struct Breaking {
    data: Vec<u8>,
    pos: usize,
    ok: usize,
}

impl tokio::io::AsyncRead for Breaking {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos >= this.ok {
            return std::task::Poll::Ready(Err(std::io::Error::other("the source broke off")));
        }
        let n = buf.remaining().min(this.ok - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// When the input of the multi-threaded encoder fails, its stream fails: never a short but
/// well-formed frame that would pass for the whole backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_input_fails_the_multi_threaded_zstd_stream() {
    let data = sample(3 * backup_core::ZSTD_JOB_BYTES as usize);
    for threads in [2u32, 8] {
        let input = Breaking {
            data: data.clone(),
            pos: 0,
            ok: data.len() / 2,
        };
        let mut out = Vec::new();
        let err = Compression::zstd()
            .encoder_with_threads(input, threads)
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("broke off"), "{err}");
    }
}

#[tokio::test]
async fn truncated_or_corrupted_streams_are_errors_not_short_output() {
    let data = sample(500_000);
    for c in [Compression::gzip(), Compression::zstd()] {
        let packed = compress(c, &data).await;
        for cut in [1, 10, packed.len() / 2, packed.len() - 1] {
            let result = decompress(c, &packed[..cut]).await;
            assert!(
                result.is_err(),
                "{c}: cut at {cut} of {} accepted",
                packed.len()
            );
        }
        let mut flipped = packed.clone();
        let at = packed.len() / 2;
        flipped[at] ^= 0x10;
        assert!(
            decompress(c, &flipped).await.is_err(),
            "{c}: flipped byte accepted"
        );
        assert!(
            decompress(c, b"not compressed at all").await.is_err(),
            "{c}"
        );
    }
    // An empty stream is valid to compress and decompresses to nothing.
    let empty = compress(Compression::gzip(), b"").await;
    assert_eq!(decompress(Compression::gzip(), &empty).await.unwrap(), b"");
}

#[test]
fn names_and_levels_parse_with_helpful_errors() {
    assert_eq!(
        "zstd:9".parse::<Compression>().unwrap(),
        Compression::Zstd { level: 9 }
    );
    assert_eq!("GZIP".parse::<Compression>().unwrap(), Compression::gzip());
    assert!("gzip:10"
        .parse::<Compression>()
        .unwrap_err()
        .contains("1-9"));
    assert!("brotli"
        .parse::<Compression>()
        .unwrap_err()
        .contains("gzip, zstd or none"));
}
