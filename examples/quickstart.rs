//! Quickstart: a complete backup and verified restore, embedded in a program.
//!
//! Starts a throwaway PostgreSQL with sample booking data, backs it up (pg_dump -> gzip ->
//! AES-256-CBC) to `./quickstart-backups`, lists the backups, dry-runs the newest, restores it
//! into a new database and compares every table with the original. Then the same for Redis:
//! a throwaway `redis-server` with every type and encoding, a backup over the replication
//! protocol, a dry run that parses every key, and an online restore into a second server,
//! compared key by key. Last, the nightly job: the `backup-all` program over both servers, a
//! sample config directory and a log directory, announced to a webhook receiver started here,
//! then `backup-status`.
//!
//! Run: `bash scripts/quickstart.sh` (installs what is missing), or
//! `cargo run --example quickstart -- [--scale N]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use backup::core::{
    catalog, list_backups, restore_backup, run_backup, BackupKind, BackupOptions, Compression,
    Selection,
};
use backup::crypto::{EncryptionKey, Keyring, DEFAULT_PBKDF2_ITERATIONS};
use backup::sources::postgres::{
    DumpFormat, PgConnection, PgDumpCheck, PostgresRestore, PostgresSource, RestoreOptions,
};
use backup::sources::redis::{
    BackupMethod, OnlineRestoreOptions, RdbCheck, RedisConfig, RedisOnlineRestore, RedisSource,
};
use backup::storage::{LocalSink, Sink};
use backup_testkit::{
    diff_snapshots, load_redis_sample, load_sample_data, redis_snapshot, table_checksums,
    PgCluster, RedisOptions, RedisServer, REDIS_SAMPLE_DBS, REDIS_SAMPLE_EMPTY_DB,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale: u32 = std::env::args()
        .skip_while(|a| a != "--scale")
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("--scale takes a number")?
        .unwrap_or(2);

    println!("1. Starting a throwaway PostgreSQL with sample data (scale {scale})...");
    let pg = PgCluster::start().await?;
    pg.create_database("randevubu").await?;
    load_sample_data(&pg.connect("randevubu").await?, scale).await?;
    println!("   PostgreSQL on {}:{}", pg.host(), pg.port());

    // The key file: first line is the passphrase, mode 0600, exactly as openssl reads it.
    let key_path = Path::new("quickstart.key");
    if !key_path.exists() {
        std::fs::write(key_path, format!("quickstart-{}\n", std::process::id()))?;
        std::fs::set_permissions(key_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let key = EncryptionKey::from_file(key_path)?;
    let sink = LocalSink::new("quickstart-backups")?;

    // The connection comes from the same variables the binaries read.
    let env = pg.env("randevubu");
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let connection = PgConnection::from_env_map(&lookup)?;

    println!("2. Backing up to {} ...", sink.describe());
    let mut source = PostgresSource::new(connection.clone(), DumpFormat::Plain);
    let options = BackupOptions::default()
        .with_name_prefix("randevubu")
        .with_compression(Compression::gzip())
        .with_iterations(DEFAULT_PBKDF2_ITERATIONS)
        .encrypted_with(key.clone());
    let report = run_backup(&mut source, &sink, &options, None).await?;
    println!(
        "   {}: {} bytes of SQL stored as {} bytes in {:.2}s (key id {})",
        report.key,
        report.manifest.raw_bytes,
        report.manifest.stored_bytes,
        report.elapsed.as_secs_f64(),
        report.manifest.key_id().unwrap_or("-")
    );

    println!("3. Listing backups:");
    let entries = list_backups(&sink, BackupKind::DATABASE).await?;
    for e in &entries {
        println!(
            "   {}  {}  {:>9} bytes  {}",
            e.file_name(),
            e.timestamp().format("%Y-%m-%d %H:%M:%S UTC"),
            e.size,
            e.status
        );
    }
    let newest = catalog::select(&entries, &Selection::Latest, false)?;
    let keyring = Keyring::new(key);

    println!("4. Dry run of the newest backup (verify, decrypt, decompress, check the dump):");
    let checked =
        restore_backup(&sink, newest, Some(&keyring), &mut PgDumpCheck::new(), None).await?;
    println!("   OK, {} bytes of SQL", checked.plain_bytes);

    println!("5. Restoring into a new database 'randevubu_restored':");
    let mut target = PostgresRestore::new(
        connection,
        RestoreOptions::into_database("randevubu_restored").creating(),
    );
    let summary = restore_backup(&sink, newest, Some(&keyring), &mut target, None).await?;
    for note in summary.notes {
        println!("   {note}");
    }

    println!("6. Comparing every table:");
    let original = table_checksums(&pg.connect("randevubu").await?).await?;
    let restored = table_checksums(&pg.connect("randevubu_restored").await?).await?;
    let mut all_equal = true;
    for (table, sum) in &original {
        let same = restored.get(table) == Some(sum);
        all_equal &= same;
        println!(
            "   {:<28} {:>7} rows  {}",
            table,
            sum.rows,
            if same { "identical" } else { "DIFFERENT" }
        );
    }
    all_equal &= original.len() == restored.len();
    if !all_equal {
        anyhow::bail!("restored database differs from the original");
    }
    println!("   Restored database is identical.");

    println!("7. Starting a throwaway Redis with every type and encoding, and backing it up:");
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(format!("quickstart-{}", std::process::id())),
        ..RedisOptions::default()
    })?;
    let stats = load_redis_sample(&mut redis.client()?, 1)?;
    let redis_env = redis.env();
    let lookup = |name: &str| {
        redis_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let config = RedisConfig::from_lookup(&lookup)?;
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let options = BackupOptions {
        name_prefix: "redis".into(),
        ..options
    };
    let report = run_backup(&mut source, &sink, &options, None).await?;
    println!(
        "   {}: {} keys, {} bytes of RDB stored as {} bytes",
        report.key,
        stats.total_keys(),
        report.manifest.raw_bytes,
        report.manifest.stored_bytes
    );
    let entries = list_backups(&sink, BackupKind::REDIS).await?;
    let newest = catalog::select(&entries, &Selection::Latest, false)?;

    println!("8. Dry run: verify, decrypt, decompress and parse every key:");
    let checked = restore_backup(
        &sink,
        newest,
        Some(&keyring),
        &mut RdbCheck::default(),
        None,
    )
    .await?;
    for note in checked.notes {
        println!("   {note}");
    }

    println!("9. Online restore into a second, empty Redis, compared key by key:");
    let target = RedisServer::start()?;
    let target_url = target.url();
    let target_config =
        RedisConfig::from_lookup(&|name: &str| (name == "REDIS_URL").then(|| target_url.clone()))?;
    let mut restore = RedisOnlineRestore::new(target_config, OnlineRestoreOptions::default());
    restore_backup(&sink, newest, Some(&keyring), &mut restore, None).await?;
    let mut dbs = REDIS_SAMPLE_DBS.to_vec();
    dbs.push(REDIS_SAMPLE_EMPTY_DB);
    let before = redis_snapshot(&mut redis.client()?, &dbs)?;
    let after = redis_snapshot(&mut target.client()?, &dbs)?;
    let differences = diff_snapshots(&before, &after, 60_000);
    if !differences.is_empty() {
        anyhow::bail!("restored Redis differs: {}", differences.join("; "));
    }
    println!("   {} keys identical (type, value, TTL)", after.len());

    println!(
        "10. The nightly job: backup-all over both servers, a sample config directory and a log"
    );
    println!("    directory, announced to a webhook receiver on this machine; then backup-status:");
    nightly(&pg, &redis, key_path)?;

    println!("Done. Backups are in ./quickstart-backups; try:");
    println!(
        "   BACKUP_LOCAL_DIR=quickstart-backups BACKUP_ENCRYPTION_KEY_FILE=quickstart.key \\\n     cargo run -p backup-cli --bin restore-database -- --list   (or restore-redis)"
    );
    Ok(())
}

/// Runs the installed-style `backup-all` binary (built beside this example) over the
/// throwaway servers, with a webhook receiver that prints what it is sent, then `backup-status`.
fn nightly(pg: &PgCluster, redis: &RedisServer, key: &Path) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("no target directory")?;
    let program = |name: &str| -> anyhow::Result<PathBuf> {
        let path = bin_dir.join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is not built: run `cargo build -p backup-cli --bins` (scripts/quickstart.sh does)",
            path.display()
        );
        Ok(path)
    };
    let config_dir = Path::new("quickstart-config");
    std::fs::create_dir_all(config_dir.join("nginx"))?;
    std::fs::write(
        config_dir.join("nginx/site.conf"),
        "server { listen 443 ssl; }\n",
    )?;
    std::fs::write(config_dir.join("app.env.example"), "BOOKING_SLOTS=48\n")?;
    let log_dir = Path::new("quickstart-logs");
    std::fs::create_dir_all(log_dir)?;
    std::fs::write(log_dir.join("app.log"), "booking service started\n")?;
    let webhook = start_webhook()?;

    let mut env: Vec<(String, String)> = pg.env("randevubu");
    env.extend(redis.env());
    env.extend([
        (
            "BACKUP_LOCAL_DIR".to_owned(),
            "quickstart-backups".to_owned(),
        ),
        (
            "BACKUP_ENCRYPTION_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
        (
            "BACKUP_CONFIG_PATHS".to_owned(),
            config_dir.display().to_string(),
        ),
        ("BACKUP_LOG_DIR".to_owned(), log_dir.display().to_string()),
        ("BACKUP_NOTIFICATION_URL".to_owned(), webhook),
    ]);
    let run = |name: &str, args: &[&str]| -> anyhow::Result<std::process::Output> {
        let mut cmd = std::process::Command::new(program(name)?);
        // Only this environment: nothing of the caller's shell points elsewhere.
        for (k, _) in std::env::vars() {
            if k.starts_with("BACKUP_") || k.starts_with("POSTGRES_") || k.starts_with("REDIS_") {
                cmd.env_remove(k);
            }
        }
        Ok(cmd.envs(env.iter().cloned()).args(args).output()?)
    };
    let out = run("backup-all", &["--verify", "full", "--drill"])?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        // The summary lines, without their timestamps.
        if let Some(rest) = line.split_once(" INFO ").map(|(_, r)| r) {
            let status = rest.split_whitespace().nth(1).unwrap_or("");
            let summary = ["success", "partial", "failed", "skipped"].contains(&status);
            if summary || rest.contains("restore drill") {
                println!("    {rest}");
            }
        }
    }
    anyhow::ensure!(
        out.status.success(),
        "backup-all failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("backup-status", &[])?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("    backup-status: {line}");
    }
    anyhow::ensure!(out.status.success(), "backup-status: {}", out.status);
    Ok(())
}

/// A webhook receiver on 127.0.0.1 that prints the `text` of each notification.
fn start_webhook() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hooks/quickstart", listener.local_addr()?);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(note) = serde_json::from_slice::<serde_json::Value>(&body) {
                    println!(
                        "    webhook received: {}",
                        note["text"].as_str().unwrap_or("")
                    );
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Ok(url)
}
