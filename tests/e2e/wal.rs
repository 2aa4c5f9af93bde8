//! `backup-wal`: a real PostgreSQL archiving its WAL through `backup-wal push`, to local disk
//! and the in-process S3 server; `backup-wal fetch` with openssl and gunzip as the referees;
//! pushes ahead, idempotency and conflicts, tampering, and a push killed mid-upload.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backup_testkit::{PgCluster, PgOptions, S3Server};
use tempfile::TempDir;

use crate::harness::*;

pub(crate) const BUCKET: &str = "wal";

/// A scratch directory the server's user can use: a backup directory and a key file.
pub(crate) struct Scratch {
    pub dir: TempDir,
    pub backups: PathBuf,
    pub key_file: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let backups = dir.path().join("backups");
        std::fs::create_dir(&backups).unwrap();
        let key_file = dir.path().join("encryption.key");
        write_key(&key_file, "correct horse battery staple\n");
        PgCluster::give_to_server(dir.path()).unwrap();
        Self {
            dir,
            backups,
            key_file,
        }
    }

    pub fn env(&self, s3: Option<&S3Server>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "BACKUP_LOCAL_DIR".to_owned(),
            self.backups.display().to_string(),
        );
        env.insert(
            "BACKUP_ENCRYPTION_KEY_FILE".to_owned(),
            self.key_file.display().to_string(),
        );
        if let Some(s3) = s3 {
            env.extend(s3.env(BUCKET));
        }
        env
    }
}

/// `name` with `env`, as the server's user (as PostgreSQL runs its archive and restore
/// commands: the key file and the backup directory are that user's).
pub(crate) fn as_server(name: &str, env: &BTreeMap<String, String>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = clean_command(name, env);
    if let Some((uid, gid)) = PgCluster::server_user().unwrap() {
        // Not root's home: the AWS SDK would try to read root's ~/.aws as that user.
        cmd.uid(uid).gid(gid).env("HOME", std::env::temp_dir());
    }
    cmd
}

/// Creates `path` (and its parents) for the server's user.
pub(crate) fn server_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    PgCluster::give_to_server(path).unwrap();
    path.to_owned()
}

pub(crate) async fn run(
    name: &str,
    args: &[&str],
    env: &BTreeMap<String, String>,
) -> std::process::Output {
    let mut cmd = as_server(name, env);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run binary"))
        .await
        .unwrap()
}

/// A cluster archiving with `backup-wal push %p` into `env`'s destinations.
pub(crate) async fn archiving_cluster(env: &BTreeMap<String, String>) -> PgCluster {
    let command = format!("{} push %p", bin("backup-wal").display());
    PgCluster::start_with(PgOptions {
        settings: vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), command),
            ("wal_level".into(), "replica".into()),
        ],
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..PgOptions::default()
    })
    .await
    .unwrap()
}

/// Waits until the server archived at least `count` files, with no failure; returns the last.
pub(crate) async fn archived(pg: &PgCluster, count: i64) -> String {
    let client = pg.connect("postgres").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let row = client
            .query_one(
                "SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, \
                 coalesce(last_failed_wal, '') FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        let (done, last, failed, failed_wal): (i64, String, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            failed,
            0,
            "archiving {failed_wal} failed; server log:\n{}",
            std::fs::read_to_string(pg.log_path()).unwrap_or_default()
        );
        if done >= count {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {count} files archived; server log:\n{}",
            std::fs::read_to_string(pg.log_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes some rows and switches to a new segment, `times` times.
pub(crate) async fn write_segments(pg: &PgCluster, times: usize) {
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS filler (id serial, pad text)")
        .await
        .unwrap();
    for _ in 0..times {
        client
            .batch_execute(
                "INSERT INTO filler (pad) SELECT repeat(md5(g::text), 8) \
                 FROM generate_series(1, 5000) g; SELECT pg_switch_wal();",
            )
            .await
            .unwrap();
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

pub(crate) fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Files in `dir` (names), sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// The in-process S3 server needs a runtime thread of its own while the binaries run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_archives_through_backup_wal_and_fetch_gives_back_each_verified_file() {
    let scratch = Scratch::new();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let env = scratch.env(Some(&s3));
    let pg = archiving_cluster(&env).await;
    write_segments(&pg, 3).await;
    let last = archived(&pg, 3).await;
    assert_eq!(last.len(), 24, "{last}");

    // Stored on both destinations, with a signed manifest recording the plain file's hash.
    let key = format!("wal/00000001/{last}.gz.enc");
    let object = scratch.backups.join(&key);
    assert!(object.is_file(), "{:?}", files_under(&scratch.backups));
    let recorded = manifest(&scratch.backups.join(format!("{key}.manifest.json")));
    assert_eq!(recorded["kind"], "wal");
    assert_eq!(recorded["source"]["type"], "postgresql-wal");
    assert_eq!(recorded["source"]["wal_file"], last.as_str());
    assert_eq!(recorded["source"]["wal_segment_size"], 16 << 20);
    assert!(recorded["hmac"].is_string());
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("wal/00000001/")
        .send()
        .await
        .unwrap();
    let s3_keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(s3_keys.contains(&key.as_str()), "{s3_keys:?}");
    assert!(
        s3_keys.contains(&format!("{key}.manifest.json").as_str()),
        "{s3_keys:?}"
    );

    // fetch gives back what openssl and gunzip make of the stored object, and its hash is the
    // one the manifest records.
    let out_dir = server_dir(&scratch.dir.path().join("restore/pg_wal"));
    let fetched = out_dir.join("RECOVERYXLOG");
    let out = run(
        "backup-wal",
        &["fetch", &last, fetched.to_str().unwrap()],
        &env,
    )
    .await;
    assert_success(&out, "backup-wal fetch");
    let plain = std::fs::read(&fetched).unwrap();
    assert_eq!(plain.len(), 16 << 20);
    assert_eq!(
        sha256_hex(&plain),
        recorded["source"]["plain_sha256"].as_str().unwrap()
    );
    let by_openssl = scratch.dir.path().join("by_openssl");
    sh(
        &format!(
            "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{} -in {} | gunzip > {}",
            scratch.key_file.display(),
            object.display(),
            by_openssl.display()
        ),
        &BTreeMap::new(),
    );
    assert_eq!(std::fs::read(&by_openssl).unwrap(), plain);

    // Pushing the same file again succeeds without a write; other contents under its name are
    // refused, on every destination.
    let again = server_dir(&scratch.dir.path().join("again"));
    let same = again.join(&last);
    std::fs::write(&same, &plain).unwrap();
    PgCluster::give_to_server(&same).unwrap();
    let out = run(
        "backup-wal",
        &["push", same.to_str().unwrap(), "--json"],
        &env,
    )
    .await;
    assert_success(&out, "push of a stored file");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stored"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["already"],
        serde_json::json!(["local", "s3"]),
        "{report}"
    );
    let mut other = plain.clone();
    let end = other.len() - 1;
    other[end] ^= 0xff;
    std::fs::write(&same, &other).unwrap();
    let out = run("backup-wal", &["push", same.to_str().unwrap()], &env).await;
    assert_exit(&out, 2, "push of other contents under a stored name");
    assert!(stderr(&out).contains("other contents"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&by_openssl).unwrap(),
        std::fs::read(&fetched).unwrap(),
        "nothing replaced"
    );

    // Not in the archive: exit 1, nothing written.
    let missing = out_dir.join("MISSING");
    let out = run(
        "backup-wal",
        &[
            "fetch",
            "0000000100000000000000FE",
            missing.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_exit(&out, 1, "fetch of a file not archived");
    assert!(
        stderr(&out).contains("not in the archive"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists());

    // A damaged local copy: with the local destination alone, exit 126 (PostgreSQL stops
    // the recovery) and nothing left; with S3 too, S3's copy is used and the damage named.
    let pristine = std::fs::read(&object).unwrap();
    let mut damaged = pristine.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&object, &damaged).unwrap();
    let mut local_only = env.clone();
    local_only.retain(|k, _| !k.starts_with("BACKUP_S3") && !k.starts_with("AWS_"));
    let target = out_dir.join("000000010000000000000099");
    let out = run(
        "backup-wal",
        &["fetch", &last, target.to_str().unwrap()],
        &local_only,
    )
    .await;
    assert_exit(&out, 126, "fetch of a damaged copy");
    // Found by the stored bytes' SHA-256 at the end, or earlier by gzip's own check of the
    // garbled plaintext, depending on where the flipped byte lands.
    assert!(
        stderr(&out).contains("failed its integrity check"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    assert_eq!(
        names_in(&out_dir),
        ["RECOVERYXLOG", "backup_wal_spool"],
        "nothing left behind"
    );
    let spooled = names_in(&out_dir.join("backup_wal_spool/fetch"));
    assert!(!spooled.iter().any(|n| n.starts_with('.')), "{spooled:?}");
    let out = run(
        "backup-wal",
        &["fetch", &last, target.to_str().unwrap()],
        &env,
    )
    .await;
    assert_success(&out, "fetch falls back to S3");
    assert!(stderr(&out).contains("local"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), plain);
    std::fs::remove_file(&target).unwrap();

    // A manifest changed by someone without the key is refused.
    std::fs::write(&object, &pristine).unwrap();
    let manifest_path = scratch.backups.join(format!("{key}.manifest.json"));
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let forged = text.replace(
        recorded["source"]["plain_sha256"].as_str().unwrap(),
        &sha256_hex(&other),
    );
    std::fs::write(&manifest_path, forged).unwrap();
    let out = run(
        "backup-wal",
        &["fetch", &last, target.to_str().unwrap()],
        &local_only,
    )
    .await;
    assert_exit(&out, 126, "fetch with a forged manifest");
    assert!(stderr(&out).contains("HMAC"), "{}", stderr(&out));
    assert!(!target.exists());
    std::fs::write(&manifest_path, text).unwrap();

    // No key: exit 126 too (a missing key must not read as the end of the archive).
    let mut no_key = local_only.clone();
    no_key.insert(
        "BACKUP_ENCRYPTION_KEY_FILE".into(),
        scratch.dir.path().join("absent.key").display().to_string(),
    );
    let out = run(
        "backup-wal",
        &["fetch", &last, target.to_str().unwrap()],
        &no_key,
    )
    .await;
    assert_exit(&out, 126, "fetch without the key");
    assert!(!target.exists());
}

/// A fake segment of `size` bytes (a power of two, at least 1 MiB) with a segment's long page
/// header, its bytes from `seed`.
fn fake_segment(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    bytes[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    bytes[2..4].copy_from_slice(&2u16.to_le_bytes());
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    bytes[24..32].copy_from_slice(&7_000_000_000_000_000_001u64.to_le_bytes());
    bytes[32..36].copy_from_slice(&(size as u32).to_le_bytes());
    bytes[36..40].copy_from_slice(&8192u32.to_le_bytes());
    bytes
}

/// A `pg_wal` directory with `count` fake 1 MiB segments, each marked ready.
fn fake_pg_wal(root: &Path, count: u8) -> (PathBuf, Vec<String>) {
    let wal = root.join("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    let names: Vec<String> = (1..=count)
        .map(|i| format!("0000000100000000000000{i:02X}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(wal.join(name), fake_segment(1 << 20, i as u8)).unwrap();
        std::fs::write(wal.join("archive_status").join(format!("{name}.ready")), "").unwrap();
    }
    PgCluster::give_to_server(root).unwrap();
    (wal, names)
}

#[tokio::test]
async fn a_push_takes_the_ready_files_along_and_fetch_reads_ahead() {
    let scratch = Scratch::new();
    let mut env = scratch.env(None);
    env.insert("BACKUP_WAL_PUSH_CONCURRENCY".into(), "4".into());
    env.insert("BACKUP_WAL_FETCH_AHEAD".into(), "3".into());
    let (wal, names) = fake_pg_wal(scratch.dir.path(), 5);

    let out = run(
        "backup-wal",
        &["push", wal.join(&names[0]).to_str().unwrap(), "--json"],
        &env,
    )
    .await;
    assert_success(&out, "push with files ready");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ahead: Vec<&str> = report["ahead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["error"].is_null(), "{a}");
            a["file"].as_str().unwrap()
        })
        .collect();
    let mut ahead = ahead;
    ahead.sort_unstable();
    assert_eq!(ahead, [&names[1], &names[2], &names[3]]);
    let stored = names_in(&scratch.backups.join("wal/00000001"));
    for name in &names[..4] {
        assert!(
            stored.contains(&format!("{name}.gz.enc.manifest.json")),
            "{stored:?}"
        );
    }
    assert!(
        !stored.iter().any(|n| n.starts_with(&names[4])),
        "{stored:?}"
    );
    assert_eq!(
        names_in(&wal.join("backup_wal_spool/push")),
        names[1..4].to_vec()
    );

    // PostgreSQL's call for a file pushed ahead only checks its hash.
    let out = run(
        "backup-wal",
        &["push", wal.join(&names[1]).to_str().unwrap(), "--json"],
        &env,
    )
    .await;
    assert_success(&out, "push of a file pushed ahead");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pushed_ahead_earlier"], true, "{report}");
    assert!(!names_in(&wal.join("backup_wal_spool/push")).contains(&names[1]));

    // A file changed after it was pushed ahead is not waved through by its record.
    std::fs::write(wal.join(&names[2]), fake_segment(1 << 20, 200)).unwrap();
    let out = run(
        "backup-wal",
        &["push", wal.join(&names[2]).to_str().unwrap()],
        &env,
    )
    .await;
    assert_exit(&out, 2, "push of a file changed since it was pushed ahead");
    assert!(stderr(&out).contains("other contents"), "{}", stderr(&out));

    // fetch: the file asked for, and the next two segments ahead into the spool; the call
    // for the next one takes it from there.
    let restore = server_dir(&scratch.dir.path().join("restore/pg_wal"));
    let out = run(
        "backup-wal",
        &[
            "fetch",
            &names[0],
            restore.join("RECOVERYXLOG").to_str().unwrap(),
            "--json",
        ],
        &env,
    )
    .await;
    assert_success(&out, "fetch with read-ahead");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["from"], "local", "{report}");
    let mut ahead: Vec<String> = report["ahead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    ahead.sort();
    assert_eq!(ahead, [names[1].clone(), names[2].clone()]);
    assert_eq!(
        std::fs::read(restore.join("RECOVERYXLOG")).unwrap(),
        fake_segment(1 << 20, 0)
    );
    let out = run(
        "backup-wal",
        &[
            "fetch",
            &names[1],
            restore.join("RECOVERYXLOG").to_str().unwrap(),
            "--json",
        ],
        &env,
    )
    .await;
    assert_success(&out, "fetch of a file fetched ahead");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["from"], "spool", "{report}");
    assert_eq!(
        std::fs::read(restore.join("RECOVERYXLOG")).unwrap(),
        fake_segment(1 << 20, 1)
    );
    // The spool keeps only the window ahead of the file asked for.
    assert!(!names_in(&restore.join("backup_wal_spool/fetch")).contains(&names[0]));
}

// The in-process S3 server needs a runtime thread of its own while the binaries run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_killed_mid_upload_leaves_nothing_taken_for_archived_and_the_retry_stores_it() {
    let scratch = Scratch::new();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let mut env = scratch.env(Some(&s3));
    env.insert("BACKUP_S3_PART_SIZE".into(), "5MiB".into());
    env.insert("BACKUP_COMPRESSION".into(), "none".into());
    let (wal, names) = fake_pg_wal(scratch.dir.path(), 0);
    let name = "000000010000000000000007";
    let segment = fake_segment(16 << 20, 7);
    std::fs::write(wal.join(name), &segment).unwrap();
    PgCluster::give_to_server(&wal).unwrap();
    assert!(names.is_empty());
    let key = format!("wal/00000001/{name}.enc");

    // The upload's parts hang; the push is killed while they do.
    s3.stall("UploadPart", "");
    let mut child = as_server("backup-wal", &env)
        .args(["push", wal.join(name).to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3.requests_of("UploadPart").is_empty() {
        assert!(Instant::now() < deadline, "no part was ever sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    s3.clear_faults();

    // Nothing that looks archived: no manifest on either destination (the local copy, written
    // in the same pass, was never committed either), so fetch says "not in the archive".
    let local = files_under(&scratch.backups);
    assert!(
        !local.iter().any(|f| f.ends_with(".manifest.json")),
        "{local:?}"
    );
    let out = run(
        "backup-wal",
        &[
            "fetch",
            name,
            scratch.dir.path().join("x").to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_exit(&out, 1, "fetch after a killed push");

    // PostgreSQL tries again: the dead run's claim is taken over and the file stored.
    let out = run(
        "backup-wal",
        &["push", wal.join(name).to_str().unwrap()],
        &env,
    )
    .await;
    assert_success(&out, "push after a killed push");
    assert!(scratch.backups.join(&key).is_file());
    let claims: Vec<String> = files_under(&scratch.backups)
        .into_iter()
        .filter(|f| f.ends_with(".claim"))
        .collect();
    assert!(claims.is_empty(), "{claims:?}");
    let target = scratch.dir.path().join("fetched");
    let out = run(
        "backup-wal",
        &["fetch", name, target.to_str().unwrap(), "--json"],
        &env,
    )
    .await;
    assert_success(&out, "fetch after the retry");
    assert_eq!(std::fs::read(&target).unwrap(), segment);
}
