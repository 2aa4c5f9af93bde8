//! `backup-all` and `backup-status` end to end: a real PostgreSQL, a real redis-server, a
//! configuration directory, a log directory and a local webhook receiver.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_testkit::RedisServer;

use crate::harness::*;

/// A webhook receiver on 127.0.0.1 that records each POST body and answers as told.
pub(crate) struct Webhook {
    pub(crate) url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    /// Answers every request with 200 after `delay`.
    pub(crate) fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/hooks/T000/SECRET-TOKEN",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    std::thread::sleep(delay);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                });
            }
        });
        Self { url, bodies }
    }

    pub(crate) fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// PostgreSQL with sample data, Redis with a few keys, a configuration directory and a log
/// directory, and the environment of `backup-all` over them.
struct Site {
    w: World,
    redis: RedisServer,
    config_dir: PathBuf,
    log_dir: PathBuf,
}

impl Site {
    async fn new() -> Self {
        let w = World::new(1).await;
        let redis = RedisServer::start().unwrap();
        let mut client = redis.client().unwrap();
        for i in 0..50 {
            redis::cmd("SET")
                .arg(format!("booking:{i}"))
                .arg(format!("value {i}"))
                .query::<()>(&mut client)
                .unwrap();
        }
        let config_dir = w.dir.path().join("app-config");
        std::fs::create_dir_all(config_dir.join("nginx")).unwrap();
        std::fs::write(config_dir.join("nginx/site.conf"), "listen 443;\n").unwrap();
        let log_dir = w.dir.path().join("logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        std::fs::write(log_dir.join("app.log"), "started\n").unwrap();
        Self {
            w,
            redis,
            config_dir,
            log_dir,
        }
    }

    fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.w.env();
        env.extend(self.redis.env());
        env.insert(
            "BACKUP_CONFIG_PATHS".into(),
            self.config_dir.display().to_string(),
        );
        env.insert("BACKUP_LOG_DIR".into(), self.log_dir.display().to_string());
        env
    }

    fn run(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = clean_command(name, &self.env());
        cmd.envs(extra.iter().copied()).args(args);
        cmd.output().unwrap()
    }

    fn reports(&self) -> Vec<PathBuf> {
        list(&self.w.backups.join("reports/orchestration"))
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn component<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

#[tokio::test]
async fn a_healthy_site_is_backed_up_verified_reported_logged_and_announced() {
    let site = Site::new().await;
    let hook = Webhook::start(Duration::ZERO);
    let out = site.run(
        "backup-all",
        &["--json"],
        &[("BACKUP_NOTIFICATION_URL", &hook.url)],
    );
    assert_success(&out, "backup-all");
    let report = json(&out);
    assert_eq!(report["status"], "success");
    assert_eq!(report["exit_code"], 0);
    for name in ["database", "redis", "config", "logs"] {
        let c = component(&report, name);
        assert_eq!(c["status"], "success", "{c:#}");
        let object = c["objects"]["local"].as_str().unwrap();
        assert!(object.starts_with(&format!("{name}/")), "{object}");
        assert!(site.w.object_path(object).is_file(), "{object}");
        assert!(c["stored_bytes"].as_u64().unwrap() > 0);
        assert_eq!(c["verification"][0]["ok"], true, "{c:#}");
        assert_eq!(c["verification"][0]["mode"], "hash");
    }
    assert!(component(&report, "database")["objects"]["local"]
        .as_str()
        .unwrap()
        .starts_with("database/randevubu_backup_"));
    let health = report["health"].as_array().unwrap();
    assert_eq!(health.len(), 2, "{health:?}");
    assert!(health
        .iter()
        .all(|h| h["ok"] == true && h["latency_ms"].is_number()));
    assert!(report["retention"].is_object(), "{:#}", report["retention"]);
    assert_eq!(report["disks"][0]["role"], "backups");

    // The report and the run log on the destination, the log also under BACKUP_LOG_DIR.
    let run_id = report["run_id"].as_str().unwrap();
    let stored = site.w.object_path(&format!(
        "reports/orchestration/backup_report_{run_id}.json"
    ));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(stored["status"], "success");
    assert_eq!(stored["notification"]["sent"], true);
    let log = std::fs::read_to_string(
        site.w
            .object_path(&format!("logs/orchestration/backup_{run_id}.log")),
    )
    .unwrap();
    assert!(log.contains("database: success"), "{log}");
    assert!(log.contains("backup-all success"), "{log}");
    let local_log =
        std::fs::read_to_string(site.log_dir.join(format!("backup_{run_id}.log"))).unwrap();
    assert!(local_log.starts_with(&log[..log.len().min(200)]));
    // No secret in the log or the report.
    for secret in [site.w.pg.password(), "SECRET-TOKEN"] {
        assert!(!log.contains(secret), "secret in the run log");
        assert!(!stdout(&out).contains(secret), "secret in the report");
        assert!(!stderr(&out).contains(secret), "secret on stderr");
    }

    // The notification: status, a readable text, the component figures.
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let note = &bodies[0];
    assert_eq!(note["status"], "success");
    let text = note["text"].as_str().unwrap();
    assert!(text.starts_with("Backup succeeded on "), "{text}");
    assert!(
        text.contains("database ok") && text.contains("redis ok"),
        "{text}"
    );
    let db = note["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "database")
        .unwrap();
    assert_eq!(
        db["stored_bytes"],
        component(&report, "database")["stored_bytes"]
    );

    // The database backup restores.
    let out = site.run(
        "restore-database",
        &["--latest", "--target-db", "from_all", "--create"],
        &[],
    );
    assert_success(&out, "restore of backup-all's database backup");
    assert_eq!(
        site.w.checksums(SOURCE_DB).await,
        site.w.checksums("from_all").await
    );

    // backup-status: fresh and successful; the Prometheus file parses.
    let prom = site.w.dir.path().join("backup.prom");
    let out = site.run(
        "backup-status",
        &["--prometheus", prom.to_str().unwrap()],
        &[],
    );
    assert_success(&out, "backup-status");
    assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));
    let metrics = parse_prometheus(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(metrics["backup_status_exit_code"], 0.0);
    assert_eq!(metrics["backup_last_run_exit_code"], 0.0);
    assert_eq!(
        metrics["backup_component_stored_bytes{component=\"database\"}"],
        component(&report, "database")["stored_bytes"]
            .as_f64()
            .unwrap()
    );
    assert!(metrics.contains_key("backup_last_success_timestamp_seconds"));
}

/// Every sample of a node_exporter textfile, by name and labels; panics on a malformed line.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        assert!(!name.contains('{') || name.ends_with('}'), "{line:?}");
        samples.insert(name.to_owned(), value.parse::<f64>().unwrap());
    }
    samples
}

#[tokio::test]
async fn redis_down_is_partial_and_the_database_backup_is_intact() {
    let mut site = Site::new().await;
    site.redis.stop().unwrap();
    let hook = Webhook::start(Duration::ZERO);
    let out = site.run(
        "backup-all",
        &["--json"],
        &[("BACKUP_NOTIFICATION_URL", &hook.url)],
    );
    assert_exit(&out, 1, "backup-all with Redis down");
    let report = json(&out);
    assert_eq!(report["status"], "partial");
    assert_eq!(component(&report, "redis")["status"], "failed");
    assert!(component(&report, "redis")["error"].is_string());
    assert_eq!(component(&report, "database")["status"], "success");
    let redis_health = report["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["service"] == "redis")
        .unwrap();
    assert_eq!(redis_health["ok"], false);
    assert_eq!(hook.bodies()[0]["status"], "partial");
    assert!(hook.bodies()[0]["text"]
        .as_str()
        .unwrap()
        .contains("redis failed"));
    let out = site.run(
        "restore-database",
        &["--latest", "--target-db", "after_partial", "--create"],
        &[],
    );
    assert_success(&out, "restore after a partial run");

    let out = site.run("backup-status", &[], &[]);
    assert_exit(&out, 1, "backup-status after a partial run");
    assert!(stdout(&out).starts_with("partial:"), "{}", stdout(&out));
}

#[tokio::test]
async fn everything_down_is_a_failure_and_nothing_configured_is_exit_3() {
    let mut site = Site::new().await;
    site.redis.stop().unwrap();
    site.w.pg.stop().await.unwrap();
    let hook = Webhook::start(Duration::ZERO);
    let missing = site.w.dir.path().join("no-such-config");
    let out = site.run(
        "backup-all",
        &["--json"],
        &[
            ("BACKUP_NOTIFICATION_URL", &hook.url),
            ("BACKUP_CONFIG_PATHS", missing.to_str().unwrap()),
            ("BACKUP_LOG_DIR", missing.to_str().unwrap()),
        ],
    );
    assert_exit(&out, 2, "backup-all with everything down");
    let report = json(&out);
    assert_eq!(report["status"], "failure");
    for name in ["database", "redis", "config", "logs"] {
        assert_eq!(component(&report, name)["status"], "failed", "{name}");
    }
    assert_eq!(hook.bodies()[0]["status"], "failure");
    let out = site.run("backup-status", &[], &[]);
    assert_exit(&out, 2, "backup-status after a failed run");

    // Nothing configured at all: every component skipped, exit 3.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    write_key(&key, "correct horse battery staple\n");
    let env = BTreeMap::from([
        (
            "BACKUP_LOCAL_DIR".to_owned(),
            dir.path().join("b").display().to_string(),
        ),
        (
            "BACKUP_ENCRYPTION_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
        ("BACKUP_SKIP_COMPONENTS".to_owned(), "logs".to_owned()),
    ]);
    let out = clean_command("backup-all", &env)
        .arg("--json")
        .output()
        .unwrap();
    assert_exit(&out, 3, "nothing configured");
    let report = json(&out);
    assert_eq!(component(&report, "database")["status"], "skipped");
    assert!(report["warnings"][0]
        .as_str()
        .unwrap()
        .contains("nothing is configured"));

    // No destination: exit 3 before anything runs.
    let out = site.run("backup-all", &[], &[("BACKUP_LOCAL_DIR", "")]);
    assert_exit(&out, 3, "no destination");
    assert!(
        stderr(&out).contains("BACKUP_LOCAL_DIR"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn only_the_database_configured_skips_the_rest_and_succeeds() {
    let w = World::new(1).await;
    let out = clean_command("backup-all", &w.env())
        .args(["--json", "--skip", "logs"])
        .output()
        .unwrap();
    assert_success(&out, "database only");
    let report = json(&out);
    assert_eq!(component(&report, "database")["status"], "success");
    for name in ["redis", "config", "logs"] {
        let c = component(&report, name);
        assert_eq!(c["status"], "skipped", "{name}");
        assert!(c["skipped_because"].is_string());
    }
}

#[tokio::test]
async fn a_second_run_exits_3_naming_the_first_and_a_killed_run_leaves_no_lock() {
    let site = Site::new().await;
    // A "Redis" that accepts connections and never answers keeps the first run busy.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let mut first = clean_command("backup-all", &site.env())
        .env("REDIS_PORT", &port)
        .env("BACKUP_TIMEOUT_PER_COMPONENT", "60s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = site.w.backups.join(".backup-all.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = first.id().to_string();
    while std::fs::read_to_string(&lock)
        .ok()
        .as_deref()
        .map(str::trim)
        != Some(pid.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = site.run("backup-all", &[], &[]);
    assert_exit(&out, 3, "second run while the first holds the lock");
    assert!(
        stderr(&out).contains(&format!("PID {pid}")),
        "{}",
        stderr(&out)
    );

    // kill -9: the lock dies with the process; the next run proceeds.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lock.exists(), "the lock file stays");
    let out = site.run("backup-all", &[], &[]);
    assert_success(&out, "run after a killed run");
    drop(silent);
}

#[tokio::test]
async fn a_dead_or_hanging_webhook_never_changes_the_exit_code() {
    let site = Site::new().await;
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let out = site.run(
        "backup-all",
        &["--json", "--no-prune"],
        &[
            ("BACKUP_NOTIFICATION_URL", &dead),
            ("BACKUP_NOTIFY_TRIES", "2"),
        ],
    );
    assert_success(&out, "dead webhook");
    let report = json(&out);
    assert_eq!(report["notification"]["sent"], false);
    assert!(report["retention"].is_null(), "--no-prune");
    assert!(report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("webhook")));

    // A webhook that takes 30 s to answer: 1 s per try, 2 tries, then the run ends.
    let slow = Webhook::start(Duration::from_secs(30));
    let started = Instant::now();
    let out = site.run(
        "backup-all",
        &["--json"],
        &[
            ("BACKUP_NOTIFICATION_URL", &slow.url),
            ("BACKUP_NOTIFY_TIMEOUT", "1"),
            ("BACKUP_NOTIFY_TRIES", "2"),
        ],
    );
    assert_success(&out, "slow webhook");
    assert!(started.elapsed() < Duration::from_secs(25));
    let report = json(&out);
    assert_eq!(report["notification"]["sent"], false);
    assert_eq!(report["notification"]["attempts"], 2);
    // BACKUP_NOTIFY_ON=failure: a successful run is not announced.
    let quiet = Webhook::start(Duration::ZERO);
    let out = site.run(
        "backup-all",
        &[],
        &[
            ("BACKUP_NOTIFICATION_URL", &quiet.url),
            ("BACKUP_NOTIFY_ON", "failure"),
        ],
    );
    assert_success(&out, "notify on failure only");
    assert!(quiet.bodies().is_empty());
}

#[tokio::test]
async fn verify_full_parses_every_backup_and_status_judges_stale_and_missing() {
    let site = Site::new().await;
    let out = site.run("backup-status", &[], &[]);
    assert_exit(&out, 3, "the backup directory does not exist yet");
    std::fs::create_dir_all(&site.w.backups).unwrap();
    let out = site.run("backup-status", &[], &[]);
    assert_exit(&out, 2, "no report yet");
    assert!(stdout(&out).starts_with("missing:"), "{}", stdout(&out));

    let out = site.run("backup-all", &["--json", "--verify", "full"], &[]);
    assert_success(&out, "--verify full");
    let report = json(&out);
    for name in ["database", "redis", "config", "logs"] {
        let v = &component(&report, name)["verification"][0];
        assert_eq!(v["mode"], "full", "{name}");
        assert_eq!(v["ok"], true, "{name}: {v}");
    }
    assert_eq!(site.reports().len(), 1);

    // The same report, aged: stale (exit 2) with the default --max-age of 26 h, fine with a
    // longer one.
    let path = &site.reports()[0];
    let mut aged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::hours(30)).to_rfc3339();
    aged["finished_at"] = old.clone().into();
    aged["started_at"] = old.into();
    std::fs::write(path, serde_json::to_vec(&aged).unwrap()).unwrap();
    let out = site.run("backup-status", &["--json"], &[]);
    assert_exit(&out, 2, "stale report");
    assert_eq!(json(&out)["state"], "stale");
    let out = site.run("backup-status", &["--max-age", "2d"], &[]);
    assert_success(&out, "report within --max-age 2d");
}

#[tokio::test]
async fn the_drill_restores_into_a_scratch_database_compares_and_drops_it() {
    let site = Site::new().await;
    // Left behind by a drill that was killed, and a database that only looks like one.
    let leftover = "randevubu_drill_20200101_000000";
    site.w.pg.create_database(leftover).await.unwrap();
    site.w
        .pg
        .create_database("randevubu_drill_keep")
        .await
        .unwrap();
    let out = site.run("backup-all", &["--json", "--drill"], &[]);
    assert_success(&out, "backup-all --drill");
    let report = json(&out);
    let databases = site.w.databases().await;
    assert!(!databases.contains(&leftover.to_owned()), "{databases:?}");
    assert!(databases.contains(&"randevubu_drill_keep".to_owned()));
    assert!(report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains(leftover)));
    let drill = &component(&report, "database")["drill"];
    assert_eq!(drill["ok"], true, "{drill:#}");
    let rows: u64 = site
        .w
        .checksums(SOURCE_DB)
        .await
        .values()
        .map(|t| t.rows as u64)
        .sum();
    assert_eq!(drill["found"], rows, "{drill:#}");
    assert!(drill["compared"].as_u64().unwrap() >= 3, "{drill:#}");
    let scratch = drill["scratch_database"].as_str().unwrap();
    assert!(scratch.starts_with("randevubu_drill_"), "{scratch}");
    assert!(
        !site.w.databases().await.contains(&scratch.to_owned()),
        "the scratch database was not dropped"
    );
    let manifest = &component(&report, "database")["manifest"];
    assert!(manifest["source"]["table_rows"].is_object(), "{manifest:#}");
    let redis = &component(&report, "redis")["drill"];
    assert_eq!(redis["ok"], true, "{redis:#}");
    assert_eq!(redis["found"], 50);
}

/// The drill through the library, with recorded counts that differ from what the backup
/// holds (as if rows had been lost between the dump and its record): the component fails and
/// the scratch database is still dropped.
#[tokio::test]
async fn a_drill_whose_restored_counts_differ_from_the_record_fails_the_component() {
    use backup::core::{Destination, Destinations};
    use backup::orchestrate::{back_up, database_drill, recorded_row_counts, BackupJob};
    use backup::sources::postgres::{DumpFormat, PgConnection, PostgresConfig};

    let w = World::new(1).await;
    let env = w.env();
    let connection = PgConnection::from_env_map(&|k: &str| env.get(k).cloned()).unwrap();
    let postgres = PostgresConfig::new(connection.clone());
    std::fs::create_dir_all(&w.backups).unwrap();
    let sink = backup::storage::LocalSink::new(&w.backups).unwrap();
    let destinations = Destinations::new(vec![Destination::new("local", Box::new(sink))]);
    let keyring = backup::crypto::Keyring::new(
        backup::crypto::EncryptionKey::from_file(&w.key_file).unwrap(),
    );
    let mut job = BackupJob::default();
    job.options = job.options.encrypted_with(keyring.current().clone());
    let mut source = PostgresConfig::source(&postgres, DumpFormat::Plain)
        .unwrap()
        .with_row_counts();
    let mut run = back_up(&mut source, &destinations, &job, None)
        .await
        .unwrap();
    let mut recorded = recorded_row_counts(&run.committed().unwrap().manifest).unwrap();
    assert!(!recorded.is_empty());
    let table = recorded.keys().next().unwrap().clone();
    *recorded.get_mut(&table).unwrap() += 1;
    let spool = w.dir.path().to_path_buf();
    database_drill(
        &mut run,
        &destinations,
        &postgres,
        &keyring,
        &spool,
        Some(recorded),
    )
    .await;
    let drill = run.drill.clone().unwrap();
    assert!(!drill.ok);
    assert_eq!(drill.differences.len(), 1, "{:?}", drill.differences);
    assert!(
        drill.differences[0].starts_with(&table),
        "{:?}",
        drill.differences
    );
    assert_eq!(run.status(), backup::core::RunStatus::Failed);
    assert!(run.failures().iter().any(|f| f.contains("restore drill")));
    let scratch = drill.scratch_database.unwrap();
    assert!(!w.databases().await.contains(&scratch));
}

/// `--verify hash` through the library: a copy damaged right after it was stored (between the
/// commit and the check) fails that destination, and with it the run.
#[tokio::test]
async fn verify_hash_catches_an_object_damaged_right_after_it_was_stored() {
    use backup::core::{BackupKind, Destination, Destinations, MemorySource, RunStatus};
    use backup::orchestrate::{back_up, verify_run, BackupJob, VerifyMode};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    std::fs::create_dir_all(&root).unwrap();
    let destinations = Destinations::new(vec![Destination::new(
        "local",
        Box::new(backup::storage::LocalSink::new(&root).unwrap()),
    )]);
    let data = vec![7u8; 256 * 1024];
    let mut source = MemorySource::new(BackupKind::CONFIG, "tar", data);
    let mut run = back_up(&mut source, &destinations, &BackupJob::default(), None)
        .await
        .unwrap();
    let key = run.committed().unwrap().key.clone();
    let path = root.join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let no_check = || -> Box<dyn backup::core::RestoreTarget> { unreachable!("hash only") };
    verify_run(
        &mut run,
        &destinations,
        BackupKind::CONFIG,
        VerifyMode::Hash,
        None,
        dir.path(),
        &no_check,
    )
    .await;
    assert_eq!(run.verification.len(), 1);
    assert!(!run.verification[0].ok);
    assert!(
        run.verification[0].detail.contains("SHA-256"),
        "{}",
        run.verification[0].detail
    );
    assert_eq!(run.status(), RunStatus::Failed);
}
