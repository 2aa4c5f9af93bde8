//! A standalone loopback S3 server for benchmarks (`scripts/bench-s3.sh`).
//!
//! Starts [`backup_testkit::S3Server`] (s3s + s3s-fs: objects are files in a temporary
//! directory, SigV4 checked) on `127.0.0.1`, creates one bucket, and prints on stdout
//!
//! ```text
//! # s3 server files under: <temporary directory base>
//! export BACKUP_S3_BUCKET=bench
//! export BACKUP_S3_ENDPOINT=http://127.0.0.1:PORT
//! ...
//! READY
//! ```
//!
//! then serves until SIGTERM, SIGINT or end of stdin, and removes its files. The files live
//! in a fresh directory under `$TMPDIR` (default `/tmp`): point `TMPDIR` at the disk you
//! compare against.
//!
//! Run: `cargo run --release --example s3_server -- [--bucket NAME]`.

use std::io::{Read, Write};

use anyhow::Context;
use backup_testkit::S3Server;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut bucket = "bench".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bucket" => bucket = args.next().context("--bucket needs a name")?,
            "-h" | "--help" => {
                println!("usage: s3_server [--bucket NAME]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (usage: s3_server [--bucket NAME])"),
        }
    }

    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;

    let server = S3Server::start().await?;
    server.create_bucket(&bucket).await?;

    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "# s3 server files under: {}",
            std::env::temp_dir().display()
        )?;
        for (name, value) in server.env(&bucket) {
            writeln!(out, "export {name}={value}")?;
        }
        writeln!(out, "READY")?;
        out.flush()?;
    }

    // End of stdin, read on a plain thread (blocking).
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });

    let reason = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        _ = eof_rx => "end of stdin",
    };
    eprintln!("s3_server: {reason}, stopping");
    drop(server);
    Ok(())
}
