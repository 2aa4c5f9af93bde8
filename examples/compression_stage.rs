//! The compression stage alone, per thread count: reads a file (e.g. a `pg_dump` output) once
//! per run through `Compression::encoder_with_threads` into a counter and prints MB/s, the
//! speed-up over one thread and the scaling efficiency (speed-up / threads), and the output
//! size against one thread's. Used by `scripts/bench.sh --threads`.
//!
//! ```sh
//! cargo run --release --example compression_stage -- --input dump.sql --threads 1,2,4 \
//!     [--compression gzip|zstd|gzip:9|...]
//! ```

use std::time::Instant;

use backup::core::Compression;
use tokio::io::AsyncReadExt;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let input = arg(&args, "--input").ok_or_else(|| anyhow::anyhow!("--input FILE"))?;
    let threads: Vec<u32> = arg(&args, "--threads")
        .unwrap_or_else(|| "1,2".to_owned())
        .split(',')
        .map(|t| t.trim().parse())
        .collect::<Result<_, _>>()?;
    let compressions: Vec<Compression> = arg(&args, "--compression")
        .unwrap_or_else(|| "gzip,zstd".to_owned())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let bytes = std::fs::metadata(&input)?.len();
    println!(
        "{:<16} {:>7} {:>10} {:>9} {:>10} {:>13} {:>9}",
        "codec", "threads", "seconds", "MB/s", "speed-up", "efficiency", "size"
    );
    for compression in compressions {
        let mut base: Option<(f64, u64, u32)> = None;
        for &t in &threads {
            let file = tokio::fs::File::open(&input).await?;
            let started = Instant::now();
            let mut stream = compression.encoder_with_threads(file, t);
            let mut buf = vec![0u8; 1 << 20];
            let mut out: u64 = 0;
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                out += n as u64;
            }
            let seconds = started.elapsed().as_secs_f64();
            let (base_seconds, base_size, base_threads) = *base.get_or_insert((seconds, out, t));
            let speedup = base_seconds / seconds;
            let efficiency = speedup * f64::from(base_threads) / f64::from(t);
            println!(
                "{:<16} {:>7} {:>10.2} {:>9.1} {:>9.2}x {:>12.0}% {:>8.4}x",
                compression.to_string(),
                t,
                seconds,
                bytes as f64 / 1e6 / seconds,
                speedup,
                efficiency * 100.0,
                out as f64 / base_size as f64
            );
        }
    }
    println!(
        "input {} MB; speed-up, efficiency (speed-up per thread added) and size against the \
         first thread count's run",
        bytes / 1_000_000
    );
    Ok(())
}
