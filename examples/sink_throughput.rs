//! Write throughput of a sink: streams incompressible pseudo-random bytes into one object.
//!
//! `--size-gib F` (default 2) GiB are generated with xorshift64 into one reused 1 MiB buffer
//! (no large allocation) and written with `write_all` in 1 MiB chunks into
//! `sink.writer(key)`, then committed. Prints bytes, seconds (writer creation to commit done)
//! and MiB/s, then this process's peak RSS (`VmHWM` of `/proc/self/status`), and deletes the
//! object.
//!
//! Destinations: `--to local:DIR` ([`LocalSink`], commit includes `fsync`) or `--to s3`
//! ([`S3Sink`], configured from the environment like the tool: `BACKUP_S3_BUCKET`,
//! `BACKUP_S3_ENDPOINT`, `BACKUP_S3_PART_SIZE`, `BACKUP_S3_CONCURRENCY`, `AWS_*`, ...).
//!
//! Run: `cargo run --release --example sink_throughput -- --size-gib 1 --to local:/tmp/x`
//! (see `scripts/bench-s3.sh`).

use std::time::Instant;

use anyhow::Context;
use backup::core::Component;
use backup::storage::{LocalSink, S3Sink, Sink};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

/// Fills `buf` (length a multiple of 8) with xorshift64 output.
fn fill(state: &mut u64, buf: &mut [u8]) {
    let mut x = *state;
    for word in buf.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    *state = x;
}

/// Peak resident set size of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("parsing VmHWM")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut size_gib = 2.0_f64;
    let mut to: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size-gib" => {
                size_gib = args
                    .next()
                    .context("--size-gib needs a value")?
                    .parse()
                    .context("--size-gib takes a number")?;
            }
            "--to" => to = Some(args.next().context("--to needs local:DIR or s3")?),
            "-h" | "--help" => {
                println!("usage: sink_throughput [--size-gib F] --to local:DIR|s3");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    anyhow::ensure!(
        size_gib.is_finite() && size_gib > 0.0,
        "--size-gib must be a positive number"
    );
    let to = to.context("--to local:DIR or --to s3 is required")?;

    let sink: Box<dyn Sink> = if let Some(dir) = to.strip_prefix("local:") {
        Box::new(LocalSink::new(dir)?)
    } else if to == "s3" {
        let sections = [backup::core::S3Settings::SECTION];
        let config = backup::core::Config::load(&sections, std::env::vars(), None)?
            .component::<backup::core::S3Settings>()?
            .config
            .context("BACKUP_S3_BUCKET is not set")?;
        eprintln!(
            "s3: part size {} MiB, concurrency {}",
            config.part_size / MIB,
            config.concurrency
        );
        Box::new(S3Sink::new(config).await?)
    } else {
        anyhow::bail!("--to takes local:DIR or s3, not {to:?}");
    };

    let total = (size_gib * (1024.0 * 1024.0 * 1024.0)).round() as u64;
    let key = format!("sink-throughput/{}.bin", std::process::id());
    let mut buf = vec![0u8; CHUNK];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;

    let started = Instant::now();
    let mut writer = sink.writer(&key).await?;
    let mut written = 0u64;
    while written < total {
        let n = usize::try_from((total - written).min(CHUNK as u64))?;
        fill(&mut state, &mut buf);
        writer
            .write_all(&buf[..n])
            .await
            .with_context(|| format!("writing to {}", sink.describe()))?;
        written += n as u64;
    }
    let meta = writer.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        meta.size == total,
        "committed {} bytes, expected {total}",
        meta.size
    );

    let mib_s = total as f64 / MIB as f64 / seconds;
    println!("destination: {}", sink.describe());
    println!("bytes: {total}");
    println!("seconds: {seconds:.3}");
    println!("MiB/s: {mib_s:.1}");
    println!("peak_rss_kib: {}", peak_rss_kib()?);
    sink.delete(&key).await?;
    Ok(())
}
