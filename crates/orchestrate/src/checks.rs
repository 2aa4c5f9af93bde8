//! The checks of a run besides the backups: each backup re-read from every destination
//! (verification), the services' health, and the disks' free space.

use std::path::{Path, PathBuf};
use std::time::Instant;

use backup_core::catalog::entry_for_key;
use backup_core::HashingReader;
use backup_core::{restore_backup_via, BackupKind, Destinations, RestoreTarget};
use backup_crypto::Keyring;
use backup_sources::postgres::PgConnection;
use backup_sources::redis::{RedisClient, RedisConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::job::BackupRun;
use crate::run_config::VerifyMode;

/// The verification of one backup on one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The destination.
    pub destination: String,
    /// The object checked.
    pub object: String,
    /// `hash` or `full`.
    pub mode: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (`size and SHA-256 match the manifest`, or what did not).
    pub detail: String,
}

/// Verifies `run`'s backup on every destination where it committed, as `mode` says; `check`
/// makes the parsing target of a `full` verification (a dump check, an RDB check, a tar
/// check). Each verification is added to `run`; a destination whose copy fails is marked
/// failed in it (so the component is partial or failed).
pub async fn verify_run(
    run: &mut BackupRun,
    destinations: &Destinations,
    kind: BackupKind,
    mode: VerifyMode,
    keyring: Option<&Keyring>,
    spool_dir: &Path,
    check: &(dyn Fn() -> Box<dyn RestoreTarget> + Sync),
) {
    if mode == VerifyMode::None {
        return;
    }
    let mut done = Vec::new();
    for (destination, (name, result)) in destinations.iter().zip(run.results.iter_mut()) {
        let Ok(report) = &result.result else {
            continue;
        };
        let key = report.key.clone();
        let expected = report.manifest.stored_digest();
        let sink = destination.sink();
        let outcome = match mode {
            VerifyMode::Hash | VerifyMode::None => {
                rehash(sink, &key, &expected.size, &expected.sha256).await
            }
            VerifyMode::Full => {
                async {
                    let entry = entry_for_key(sink, kind, &key)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut target = check();
                    let summary =
                        restore_backup_via(sink, &entry, keyring, target.as_mut(), None, spool_dir)
                            .await
                            .map_err(|e| e.to_string())?;
                    let mut detail = format!(
                        "decrypted, decompressed and parsed to the end ({} of data)",
                        backup_core::human_bytes(summary.plain_bytes)
                    );
                    for note in summary.notes {
                        detail.push_str("; ");
                        detail.push_str(&note);
                    }
                    Ok(detail)
                }
                .await
            }
        };
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        if ok {
            tracing::info!("verified {key} on {name}: {detail}");
        } else {
            tracing::error!("verification of {key} on {name} failed: {detail}");
            result.result = Err(backup_core::CoreError::Config(format!(
                "stored, but the stored copy failed verification ({}): {detail}",
                mode.name()
            )));
        }
        done.push(Verification {
            destination: name.clone(),
            object: key,
            mode: mode.name().to_owned(),
            ok,
            detail,
        });
    }
    run.verification.extend(done);
}

/// Reads `key` back and compares its size and SHA-256 with the manifest's.
async fn rehash(
    sink: &dyn backup_storage::Sink,
    key: &str,
    size: &u64,
    sha256: &str,
) -> Result<String, String> {
    let reader = sink.get(key).await.map_err(|e| e.to_string())?;
    let mut hashing = HashingReader::new(reader);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = hashing
            .read(&mut buffer)
            .await
            .map_err(|e| format!("reading it back: {e}"))?;
        if n == 0 {
            break;
        }
    }
    let found = hashing.digest();
    if found.size != *size {
        return Err(format!(
            "{} bytes stored, the manifest says {size}",
            found.size
        ));
    }
    if found.sha256 != sha256 {
        return Err(format!(
            "SHA-256 {} does not match the manifest's {sha256}",
            found.sha256
        ));
    }
    Ok(format!(
        "size ({}) and SHA-256 match the manifest",
        backup_core::human_bytes(found.size)
    ))
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `postgres` or `redis`.
    pub service: String,
    /// Where it is (`host:port/db`).
    pub endpoint: String,
    /// Whether it answered.
    pub ok: bool,
    /// Round trip of the query, in milliseconds, when it answered.
    pub latency_ms: Option<f64>,
    /// The error when it did not.
    pub error: Option<String>,
}

/// `SELECT 1` on the database server.
pub async fn postgres_health(connection: &PgConnection) -> Health {
    let started = Instant::now();
    let result = async {
        let client = connection.connect().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    health("postgres", connection.endpoint(), started, result.await)
}

/// `PING` on the Redis server.
pub async fn redis_health(config: &RedisConfig) -> Health {
    let started = Instant::now();
    let result = async {
        let mut client = RedisClient::connect(config)
            .await
            .map_err(|e| e.to_string())?;
        let reply = client
            .command(&[b"PING"])
            .await
            .map_err(|e| e.to_string())?;
        match reply.as_text() {
            Some(text) if text == "PONG" => Ok(()),
            _ => Err(format!("PING answered {reply:?}")),
        }
    };
    health("redis", config.endpoint(), started, result.await)
}

fn health(service: &str, endpoint: String, started: Instant, result: Result<(), String>) -> Health {
    let latency = started.elapsed();
    match &result {
        Ok(()) => tracing::info!(
            "{service} at {endpoint}: healthy ({:.1} ms)",
            latency.as_secs_f64() * 1000.0
        ),
        Err(e) => tracing::warn!("{service} at {endpoint}: unhealthy: {e}"),
    }
    Health {
        service: service.to_owned(),
        endpoint,
        ok: result.is_ok(),
        latency_ms: result.is_ok().then_some(latency.as_secs_f64() * 1000.0),
        error: result.err(),
    }
}

/// The space of the file system holding one directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// What the directory is for (`backups`, `logs`).
    pub role: String,
    /// The directory.
    pub path: PathBuf,
    /// Size of the file system, bytes.
    pub total_bytes: u64,
    /// Free space available to this user, bytes.
    pub available_bytes: u64,
    /// Percentage used (of what is not reserved), as `df` shows it.
    pub used_percent: f64,
    /// Whether it is above the warning threshold.
    pub warning: bool,
}

/// The space of the file system holding `path` (or its nearest existing parent); `None` when
/// none can be read.
pub fn disk_usage(role: &str, path: &Path, warn_percent: u8) -> Option<Disk> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    // The field types differ between platforms (u32 or u64).
    #[allow(clippy::unnecessary_cast)]
    let (fragment, blocks, free, available) = (
        (stat.fragment_size() as u64).max(1),
        stat.blocks() as u64,
        stat.blocks_free() as u64,
        stat.blocks_available() as u64,
    );
    let total = blocks.saturating_mul(fragment);
    let free = free.saturating_mul(fragment);
    let available = available.saturating_mul(fragment);
    let used = total.saturating_sub(free);
    // As df: used / (used + available), leaving out the space reserved for root.
    let usable = used + available;
    let used_percent = if usable == 0 {
        0.0
    } else {
        used as f64 * 100.0 / usable as f64
    };
    Some(Disk {
        role: role.to_owned(),
        path: path.to_path_buf(),
        total_bytes: total,
        available_bytes: available,
        used_percent,
        warning: used_percent > f64::from(warn_percent),
    })
}
