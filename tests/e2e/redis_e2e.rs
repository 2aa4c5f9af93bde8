//! End-to-end tests of `backup-redis` and `restore-redis` against real throwaway
//! `redis-server`s loaded with a data set holding every type and encoding Redis 7 writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use backup_testkit::{
    assert_snapshots_match, load_redis_sample, redis_functions, redis_snapshot, KeySnapshot,
    RedisOptions, RedisServer, REDIS_SAMPLE_DBS, REDIS_SAMPLE_EMPTY_DB,
};
use tempfile::TempDir;

use crate::harness::{
    assert_exit, assert_success, clean_command, files_under, stderr, stdout, write_key,
};

/// TTLs of a restored key may differ by the time the test took.
const TTL_TOLERANCE_MS: i64 = 60_000;

type Snapshot = BTreeMap<(u8, Vec<u8>), KeySnapshot>;

/// Databases compared: the sample's, plus one it leaves empty.
fn dbs() -> Vec<u8> {
    let mut dbs = REDIS_SAMPLE_DBS.to_vec();
    dbs.push(REDIS_SAMPLE_EMPTY_DB);
    dbs
}

/// A password-protected Redis with the sample data, a backup directory and a key file.
pub struct RedisWorld {
    pub redis: RedisServer,
    pub dir: TempDir,
    pub backups: PathBuf,
    pub key_file: PathBuf,
    pub snapshot: Snapshot,
    pub functions: Vec<String>,
}

impl RedisWorld {
    pub fn new() -> Self {
        Self::with(RedisOptions {
            password: Some("s3cret-redis-pw".into()),
            ..RedisOptions::default()
        })
    }

    pub fn with(options: RedisOptions) -> Self {
        let redis = RedisServer::start_with(options).expect("start redis-server");
        let mut conn = redis.client().expect("connect");
        load_redis_sample(&mut conn, 1).expect("sample data");
        let snapshot = redis_snapshot(&mut conn, &dbs()).expect("snapshot");
        let functions = redis_functions(&mut conn).expect("functions");
        let dir = tempfile::tempdir().expect("tempdir");
        let backups = dir.path().join("backups");
        let key_file = dir.path().join("encryption.key");
        write_key(&key_file, "correct horse battery staple\n");
        Self {
            redis,
            dir,
            backups,
            key_file,
            snapshot,
            functions,
        }
    }

    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.redis.env().into_iter().collect();
        env.insert(
            "BACKUP_LOCAL_DIR".into(),
            self.backups.display().to_string(),
        );
        env.insert(
            "BACKUP_ENCRYPTION_KEY_FILE".into(),
            self.key_file.display().to_string(),
        );
        env
    }

    pub fn run(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = clean_command(name, &self.env());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("run binary")
    }

    /// `backup-redis`, asserting success; the object key it printed.
    pub fn backup(&self, args: &[&str]) -> String {
        let out = self.run("backup-redis", args, &[]);
        assert_success(&out, "backup-redis");
        stdout(&out).trim().to_owned()
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.backups.join(key)
    }

    /// Files under the backup directory, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        files_under(&self.backups)
    }

    /// Asserts that `server` holds exactly the sample data and functions.
    pub fn assert_holds_sample(&self, server: &RedisServer) {
        let mut conn = server.client().expect("connect to restored server");
        let restored = redis_snapshot(&mut conn, &dbs()).expect("snapshot restored");
        assert_snapshots_match(&self.snapshot, &restored, TTL_TOLERANCE_MS);
        assert_eq!(
            redis_functions(&mut conn).expect("functions"),
            self.functions,
            "function libraries"
        );
    }
}

fn decrypt_to_rdb(w: &RedisWorld, key: &str, out: &Path) {
    let script = format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{} -in {} | gunzip > {}",
        w.key_file.display(),
        w.path(key).display(),
        out.display()
    );
    let status = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn flip_byte(path: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = ((bytes.len() as f64) * at_fraction) as usize;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn backup_stores_an_encrypted_rdb_with_manifest_and_latest_copy_that_redis_loads() {
    let w = RedisWorld::new();
    let key = w.backup(&[]);
    assert!(
        key.starts_with("redis/redis_backup_") && key.ends_with(".rdb.gz.enc"),
        "{key}"
    );
    let file = key.rsplit('/').next().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path(&format!("{key}.manifest.json"))).unwrap())
            .unwrap();
    let source = &manifest["source"];
    assert_eq!(source["type"], "redis", "{manifest:#}");
    assert!(source["server_version"].as_str().unwrap().starts_with('7'));
    assert_eq!(source["rdb_version"], 10, "{manifest:#}");
    let per_db = source["keys_per_db"].as_object().unwrap();
    for db in REDIS_SAMPLE_DBS {
        let expected = w.snapshot.keys().filter(|(d, _)| d == db).count();
        assert_eq!(per_db[&db.to_string()], expected, "db {db}: {manifest:#}");
    }
    assert!(!per_db.contains_key(&REDIS_SAMPLE_EMPTY_DB.to_string()));
    assert_eq!(
        w.files(),
        [
            format!("redis/latest/{file}"),
            format!("redis/latest/{file}.manifest.json"),
            key.clone(),
            format!("{key}.manifest.json"),
        ]
    );

    // Interop: openssl + gunzip give an RDB that redis-server itself loads.
    let rdb = w.dir.path().join("dump.rdb");
    decrypt_to_rdb(&w, &key, &rdb);
    let loaded = RedisServer::start_with(RedisOptions {
        rdb_file: Some(rdb),
        ..RedisOptions::default()
    })
    .unwrap();
    w.assert_holds_sample(&loaded);

    // A second backup replaces the latest copy.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = w.backup(&[]);
    assert_ne!(second, key);
    let second_file = second.rsplit('/').next().unwrap();
    let latest: Vec<String> = w
        .files()
        .into_iter()
        .filter(|f| f.starts_with("redis/latest/"))
        .collect();
    assert_eq!(
        latest,
        [
            format!("redis/latest/{second_file}"),
            format!("redis/latest/{second_file}.manifest.json"),
        ]
    );
    assert_eq!(
        std::fs::read(w.path(&second)).unwrap(),
        std::fs::read(w.path(&latest[0])).unwrap()
    );
}

#[test]
fn file_mode_restore_replaces_dump_rdb_and_the_restarted_server_holds_the_data() {
    let w = RedisWorld::new();
    w.backup(&[]);

    // The target: a stopped server's data directory holding another dump.rdb.
    let mut target = RedisServer::start().unwrap();
    {
        let mut conn = target.client().unwrap();
        redis::cmd("SET")
            .arg("old-key")
            .arg("old")
            .query::<()>(&mut conn)
            .unwrap();
        redis::cmd("SAVE").query::<()>(&mut conn).unwrap();
    }
    let rdb_path = target.rdb_path();
    let log = w.dir.path().join("commands.log");
    let stop = format!("echo stop >> {}", log.display());
    let start = format!("echo start >> {}", log.display());
    target.stop().unwrap();

    let out = w.run(
        "restore-redis",
        &[
            "--latest",
            "--rdb-path",
            rdb_path.to_str().unwrap(),
            "--stop-cmd",
            &stop,
            "--start-cmd",
            &start,
        ],
        &[],
    );
    assert_success(&out, "restore-redis --rdb-path");
    assert!(stdout(&out).contains("complete"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "stop\nstart\n");
    target.restart().unwrap();
    w.assert_holds_sample(&target);
    // The old file is kept aside.
    let kept: Vec<_> = std::fs::read_dir(target.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert_eq!(kept.len(), 1, "old dump.rdb kept aside");
}

#[test]
fn online_restore_replays_every_key_with_ttls_and_refuses_clashes_without_replace() {
    let w = RedisWorld::new();
    w.backup(&[]);
    let target = RedisServer::start_with(RedisOptions {
        password: Some("target-pw".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    // The whole URL, password included, from the environment (never argv).
    let url = target.url();
    let out = w.run(
        "restore-redis",
        &["--latest", "--online"],
        &[("REDIS_TARGET_URL", &url)],
    );
    assert_success(&out, "restore-redis --online");
    w.assert_holds_sample(&target);
    assert!(!stderr(&out).contains("target-pw") && !stdout(&out).contains("target-pw"));
    // From here on: --target-url without the password, which comes from a file.
    let password_file = w.dir.path().join("target.pw");
    std::fs::write(&password_file, "target-pw\n").unwrap();
    let password_file = password_file.display().to_string();
    let url = format!("redis://127.0.0.1:{}", target.port());

    // Again: every key clashes now; nothing may be written, the keys are listed.
    let mut conn = target.client().unwrap();
    redis::cmd("SELECT").arg(0).query::<()>(&mut conn).unwrap();
    redis::cmd("SET")
        .arg("marker-written-after-restore")
        .arg("1")
        .query::<()>(&mut conn)
        .unwrap();
    let out = w.run(
        "restore-redis",
        &["--latest", "--online", "--target-url", &url],
        &[("REDIS_TARGET_PASSWORD_FILE", &password_file)],
    );
    assert_exit(&out, 2, "online restore onto existing keys");
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    // With --replace it goes through.
    let out = w.run(
        "restore-redis",
        &["--latest", "--online", "--replace", "--target-url", &url],
        &[("REDIS_TARGET_PASSWORD_FILE", &password_file)],
    );
    assert_success(&out, "restore-redis --online --replace");
    let marker: Option<String> = redis::cmd("GET")
        .arg("marker-written-after-restore")
        .query(&mut conn)
        .unwrap();
    assert_eq!(marker.as_deref(), Some("1"), "unrelated keys are kept");
}

#[test]
fn the_source_password_is_never_sent_to_a_restore_target_and_argv_holds_none() {
    let w = RedisWorld::new();
    w.backup(&[]);
    let target = RedisServer::start_with(RedisOptions {
        password: Some("shared-pw".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    // REDIS_PASSWORD is the source's; even when it would open the target, it is not sent
    // there: the target's password comes from REDIS_TARGET_URL or its password file only.
    let url = format!("redis://127.0.0.1:{}", target.port());
    let out = w.run(
        "restore-redis",
        &["--latest", "--online", "--target-url", &url],
        &[("REDIS_PASSWORD", "shared-pw")],
    );
    assert_exit(&out, 2, "online restore without the target's own password");
    assert!(!stderr(&out).contains("shared-pw"), "{}", stderr(&out));
    // A password in --target-url (visible to every user in the process list) is refused.
    let out = w.run(
        "restore-redis",
        &["--latest", "--online", "--target-url", &target.url()],
        &[],
    );
    assert_exit(&out, 3, "a password in --target-url");
    assert!(
        stderr(&out).contains("REDIS_TARGET_PASSWORD_FILE"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("shared-pw"), "{}", stderr(&out));
}

#[test]
fn dry_run_and_list_describe_the_backup_and_change_nothing() {
    let w = RedisWorld::new();
    let key = w.backup(&[]);
    let out = w.run("restore-redis", &["--list"], &[]);
    assert_success(&out, "--list");
    let file = key.rsplit('/').next().unwrap();
    assert!(stdout(&out).contains(file), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).matches("redis_backup_").count(),
        1,
        "latest/ copy not listed"
    );
    let out = w.run("restore-redis", &["--latest", "--dry-run"], &[]);
    assert_success(&out, "--dry-run");
    let text = stdout(&out);
    assert!(text.contains("dry run OK"), "{text}");
    assert!(text.contains("stream") && text.contains("zset"), "{text}");
}

#[test]
fn unencrypted_backups_need_no_key_and_gunzip_to_a_loadable_rdb() {
    let w = RedisWorld::new();
    let out = w.run(
        "backup-redis",
        &[],
        &[
            ("BACKUP_REDIS_ENCRYPT", "false"),
            ("BACKUP_ENCRYPTION_KEY_FILE", "/nonexistent/key"),
        ],
    );
    assert_success(&out, "plain backup");
    let key = stdout(&out).trim().to_owned();
    assert!(key.ends_with(".rdb.gz"), "{key}");
    let rdb = w.dir.path().join("plain.rdb");
    let status = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("gunzip -c {} > {}", w.path(&key).display(), rdb.display()),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let loaded = RedisServer::start_with(RedisOptions {
        rdb_file: Some(rdb),
        ..RedisOptions::default()
    })
    .unwrap();
    w.assert_holds_sample(&loaded);
}

#[test]
fn unencrypted_backups_are_signed_when_a_key_is_present_and_damage_is_refused() {
    let w = RedisWorld::new();
    let out = w.run("backup-redis", &["--no-encrypt"], &[]);
    assert_success(&out, "plain backup with a key present");
    let key = stdout(&out).trim().to_owned();
    assert!(key.ends_with(".rdb.gz"), "{key}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path(&format!("{key}.manifest.json"))).unwrap())
            .unwrap();
    assert!(manifest["hmac"].is_string(), "unsigned: {manifest}");
    assert!(manifest["encryption"].is_null(), "{manifest}");
    let name = key.rsplit('/').next().unwrap().to_owned();
    let out = w.run("restore-redis", &["--file", &name, "--dry-run"], &[]);
    assert_success(&out, "dry run of the signed plain backup");
    assert!(stdout(&out).contains("backup verified"), "{}", stdout(&out));

    // A flipped byte: refused by its hash, with or without the key at hand.
    let object = w.path(&key);
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    let out = w.run("restore-redis", &["--file", &name, "--dry-run"], &[]);
    assert_exit(&out, 2, "a damaged plain backup");
    let out = w.run(
        "restore-redis",
        &["--file", &name, "--dry-run"],
        &[("BACKUP_ENCRYPTION_KEY_FILE", "/nonexistent/key")],
    );
    assert_exit(&out, 2, "a damaged plain backup, no key");

    // Its manifest edited to match the damage (no key to sign it): refused with the key.
    let mut manifest = manifest;
    manifest["sha256"] = "00".repeat(32).into();
    std::fs::write(
        w.path(&format!("{key}.manifest.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = w.run("restore-redis", &["--file", &name, "--dry-run"], &[]);
    assert_exit(&out, 2, "a plain backup whose manifest was edited");
    assert!(stderr(&out).contains("HMAC"), "{}", stderr(&out));
}

#[test]
fn damaged_backups_are_refused_and_the_target_file_is_untouched() {
    let w = RedisWorld::new();
    let key = w.backup(&[]);
    let target_dir = w.dir.path().join("target");
    std::fs::create_dir(&target_dir).unwrap();
    let rdb_path = target_dir.join("dump.rdb");
    std::fs::write(&rdb_path, b"the old file").unwrap();

    // A flipped byte in the stored object: the SHA-256 check refuses it before anything.
    let object = w.path(&key);
    let original = std::fs::read(&object).unwrap();
    flip_byte(&object, 0.5);
    let out = w.run(
        "restore-redis",
        &["--file", &key, "--rdb-path", rdb_path.to_str().unwrap()],
        &[],
    );
    assert_exit(&out, 2, "flipped byte");
    assert_eq!(std::fs::read(&rdb_path).unwrap(), b"the old file");

    // Truncated.
    std::fs::write(&object, &original[..original.len() / 2]).unwrap();
    let out = w.run(
        "restore-redis",
        &["--file", &key, "--rdb-path", rdb_path.to_str().unwrap()],
        &[],
    );
    assert_exit(&out, 2, "truncated");
    assert!(stderr(&out).contains("bytes"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&rdb_path).unwrap(), b"the old file");
    let left: Vec<_> = std::fs::read_dir(&target_dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "no temp file left: {left:?}");

    // Wrong key.
    std::fs::write(&object, &original).unwrap();
    let wrong = w.dir.path().join("wrong.key");
    write_key(&wrong, "not the key\n");
    let out = w.run(
        "restore-redis",
        &["--file", &key, "--rdb-path", rdb_path.to_str().unwrap()],
        &[("BACKUP_ENCRYPTION_KEY_FILE", wrong.to_str().unwrap())],
    );
    assert_exit(&out, 2, "wrong key");
    assert_eq!(std::fs::read(&rdb_path).unwrap(), b"the old file");
}

#[test]
fn a_legacy_plain_rdb_gz_with_a_corrupt_rdb_inside_is_refused_by_its_crc() {
    // The old script's kind of object: no manifest, plain gzip; the RDB inside has a flipped
    // byte, so only the RDB's own CRC-64 can tell.
    let w = RedisWorld::new();
    let mut conn = w.redis.client().unwrap();
    redis::cmd("SAVE").query::<()>(&mut conn).unwrap();
    let rdb = w.dir.path().join("corrupt.rdb");
    std::fs::copy(w.redis.rdb_path(), &rdb).unwrap();
    flip_byte(&rdb, 0.6);
    std::fs::create_dir_all(w.backups.join("redis")).unwrap();
    let legacy = w.backups.join("redis/redis_backup_20240115_020000.rdb.gz");
    let status = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("gzip -c {} > {}", rdb.display(), legacy.display()),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = w.run("restore-redis", &["--list"], &[]);
    assert!(stdout(&out).contains("legacy"), "{}", stdout(&out));
    let target = w.dir.path().join("dump.rdb");
    let out = w.run(
        "restore-redis",
        &["--latest", "--rdb-path", target.to_str().unwrap()],
        &[],
    );
    assert_exit(&out, 2, "corrupt legacy RDB");
    assert!(!target.exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn server_down_wrong_password_and_missing_permission_fail_with_exit_2_and_leave_nothing() {
    let w = RedisWorld::with(RedisOptions {
        password: Some("s3cret-redis-pw".into()),
        acl_users: vec![(
            "nosync".into(),
            "nosync-pw".into(),
            "~* &* +@all -sync -psync".into(),
        )],
        ..RedisOptions::default()
    });
    // Nothing listens on port 1.
    let out = w.run("backup-redis", &[], &[("REDIS_PORT", "1")]);
    assert_exit(&out, 2, "server down");
    assert!(stderr(&out).contains("REDIS_HOST"), "{}", stderr(&out));
    let out = w.run("backup-redis", &[], &[("REDIS_PASSWORD", "wrong-pw-123")]);
    assert_exit(&out, 2, "wrong password");
    assert!(stderr(&out).contains("REDIS_PASSWORD"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong-pw-123"), "{}", stderr(&out));
    let out = w.run(
        "backup-redis",
        &[],
        &[
            ("REDIS_USERNAME", "nosync"),
            ("REDIS_PASSWORD", "nosync-pw"),
        ],
    );
    assert_exit(&out, 2, "no SYNC permission");
    assert!(
        stderr(&out).to_lowercase().contains("sync"),
        "{}",
        stderr(&out)
    );
    assert!(w.files().is_empty(), "left behind: {:?}", w.files());
}

#[test]
fn diskless_replication_and_the_file_method_both_make_restorable_backups() {
    let w = RedisWorld::with(RedisOptions {
        diskless_sync: true,
        ..RedisOptions::default()
    });
    let diskless = w.backup(&[]);
    let rdb = w.dir.path().join("diskless.rdb");
    decrypt_to_rdb(&w, &diskless, &rdb);
    let loaded = RedisServer::start_with(RedisOptions {
        rdb_file: Some(rdb),
        ..RedisOptions::default()
    })
    .unwrap();
    w.assert_holds_sample(&loaded);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rdb_path = w.redis.rdb_path();
    let by_file = w.backup(&["--method", "file", "--rdb-path", rdb_path.to_str().unwrap()]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.path(&format!("{by_file}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["method"], "file", "{manifest:#}");
    let rdb = w.dir.path().join("file.rdb");
    decrypt_to_rdb(&w, &by_file, &rdb);
    let loaded = RedisServer::start_with(RedisOptions {
        rdb_file: Some(rdb),
        ..RedisOptions::default()
    })
    .unwrap();
    w.assert_holds_sample(&loaded);
}

#[test]
fn restore_without_a_mode_is_a_usage_error() {
    let w = RedisWorld::new();
    let out = w.run("restore-redis", &["--latest"], &[]);
    assert_exit(&out, 3, "no mode");
    assert!(stderr(&out).contains("--rdb-path"), "{}", stderr(&out));
}

// The in-process S3 server needs a runtime thread of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_keeps_a_latest_copy_there_and_restores_from_it() {
    let w = RedisWorld::new();
    let s3 = backup_testkit::S3Server::start().await.unwrap();
    s3.create_bucket("backups").await.unwrap();
    let s3_env = s3.env("backups");
    let mut env: Vec<(&str, &str)> = s3_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("BACKUP_LOCAL_DIR", ""));
    let out = w.run("backup-redis", &[], &env);
    assert_success(&out, "backup-redis to S3");
    let key = stdout(&out).trim().to_owned();
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket("backups")
        .prefix("redis/")
        .send()
        .await
        .unwrap();
    let names: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let file = key.rsplit('/').next().unwrap();
    assert!(names.contains(&format!("redis/latest/{file}")), "{names:?}");
    assert!(names.contains(&key), "{names:?}");

    let target = RedisServer::start().unwrap();
    let url = target.url();
    let out = w.run(
        "restore-redis",
        &["--latest", "--online", "--target-url", &url],
        &env,
    );
    assert_success(&out, "online restore from S3");
    w.assert_holds_sample(&target);
}

#[test]
fn file_mode_warns_when_the_server_uses_aof() {
    let w = RedisWorld::new();
    w.backup(&[]);
    // The target server runs with appendonly yes; REDIS_* point at it.
    let target = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let rdb_path = target.rdb_path();
    let port = target.port().to_string();
    let out = w.run(
        "restore-redis",
        &["--latest", "--rdb-path", rdb_path.to_str().unwrap()],
        &[("REDIS_PORT", port.as_str()), ("REDIS_PASSWORD", "")],
    );
    assert_success(&out, "file restore next to an AOF server");
    let err = stderr(&out);
    assert!(err.contains("AOF") || err.contains("appendonly"), "{err}");
    assert!(rdb_path.is_file());
}
