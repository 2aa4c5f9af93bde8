//! Point-in-time restore: a real PostgreSQL archiving through `backup-wal push` to local disk
//! and the in-process S3 server, a physical base backup (`backup-database --physical`),
//! writes across several segments, a marker at a recorded time, more writes; then
//! `restore-database --pitr` to the marker (exactly the rows committed before it), to
//! `latest` (everything), with a segment missing (the gap named, nothing written) and with a
//! tampered segment (recovery stops, nothing forged replayed).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use backup_testkit::{table_checksums, PgCluster, S3Server};

use crate::harness::*;
use crate::wal::{archiving_cluster, run, server_dir, Scratch, BUCKET};

/// Switches to a new WAL segment and waits until the server archived the one it left.
async fn switch_and_wait(pg: &PgCluster) -> String {
    let client = pg.connect("postgres").await.unwrap();
    let left: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        let (last, failed): (String, i64) = (row.get(0), row.get(1));
        assert_eq!(
            failed,
            0,
            "archiving failed; server log:\n{}",
            std::fs::read_to_string(pg.log_path()).unwrap_or_default()
        );
        if last.get(..24).is_some_and(|l| l >= left.as_str()) {
            return left;
        }
        assert!(Instant::now() < deadline, "{left} was never archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the server of `data_dir` (as the server's user).
fn stop_server(pg: &PgCluster, data_dir: &Path) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(pg.bin_dir().join("pg_ctl"));
    cmd.args(["stop", "-m", "immediate", "-D"]).arg(data_dir);
    if let Some((uid, gid)) = PgCluster::server_user().unwrap() {
        cmd.uid(uid).gid(gid);
    }
    let _ = cmd.output();
}

/// A client of the restored server on `port` (the source's roles and password).
async fn connect(pg: &PgCluster, port: u16) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(port)
        .user(pg.user())
        .password(pg.password())
        .dbname("postgres");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Runs `restore-database TARGET... --target-dir DATA --start --port P EXTRA...`; returns its
/// output and P.
async fn restore_started(
    env: &BTreeMap<String, String>,
    target: &[&str],
    data: &Path,
    extra: &[&str],
) -> (std::process::Output, u16) {
    let port = free_port();
    let port_text = port.to_string();
    let mut args = target.to_vec();
    args.extend([
        "--target-dir",
        data.to_str().unwrap(),
        "--start",
        "--port",
        &port_text,
    ]);
    args.extend(extra);
    (run("restore-database", &args, env).await, port)
}

/// The server restored into `data` and listening on `port` holds exactly `expected`; it is
/// stopped then.
async fn assert_restored(
    pg: &PgCluster,
    port: u16,
    data: &Path,
    expected: &BTreeMap<String, backup_testkit::TableChecksum>,
    what: &str,
) {
    let client = connect(pg, port).await;
    assert_eq!(&table_checksums(&client).await.unwrap(), expected, "{what}");
    drop(client);
    stop_server(pg, data);
}

/// The server's clock now, as a `--pitr` target ('YYYY-MM-DD HH:MM:SS.ffffff+00').
async fn server_time(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
             'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn with_pg(env: &BTreeMap<String, String>, pg: &PgCluster) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.extend(pg.env("postgres"));
    env
}

// The in-process S3 server needs a runtime thread of its own while the binaries run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_to_a_marker_restores_exactly_what_was_committed_before_it_and_latest_everything() {
    let scratch = Scratch::new();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let env = scratch.env(Some(&s3));
    let pg = archiving_cluster(&env).await;
    let env = with_pg(&env, &pg);
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE bookings (id serial PRIMARY KEY, note text, at timestamptz DEFAULT \
             clock_timestamp()); INSERT INTO bookings (note) SELECT 'before base ' || g FROM \
             generate_series(1, 2000) g;",
        )
        .await
        .unwrap();

    let out = run("backup-database", &["--physical"], &env).await;
    assert_success(&out, "backup-database --physical");
    let base = stdout(&out).trim().to_owned();
    assert!(
        base.starts_with("base/randevubu_backup_") && base.ends_with(".tar.gz.enc"),
        "{base}"
    );
    let recorded: serde_json::Value = serde_json::from_slice(
        &std::fs::read(scratch.backups.join(format!("{base}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["source"]["type"], "postgresql-physical");
    for fact in [
        "start_lsn",
        "stop_lsn",
        "wal_start",
        "wal_stop",
        "system_identifier",
    ] {
        assert!(recorded["source"][fact].is_string(), "{fact}: {recorded}");
    }

    // Writes across several segments, then the marker, then more writes.
    for round in 0..2 {
        client
            .batch_execute(&format!(
                "INSERT INTO bookings (note) SELECT 'round {round} ' || g FROM \
                 generate_series(1, 3000) g"
            ))
            .await
            .unwrap();
        switch_and_wait(&pg).await;
    }
    client
        .batch_execute("INSERT INTO bookings (note) VALUES ('marker')")
        .await
        .unwrap();
    let target = server_time(&client).await;
    let at_marker = table_checksums(&client).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .batch_execute(
            "INSERT INTO bookings (note) SELECT 'after ' || g FROM generate_series(1, 500) g; \
             UPDATE bookings SET note = note || ' (changed later)' WHERE id % 7 = 0;",
        )
        .await
        .unwrap();
    switch_and_wait(&pg).await;
    let at_end = table_checksums(&client).await.unwrap();
    assert_ne!(at_marker, at_end);

    // To the marker's time: exactly what was committed before it.
    let restored = server_dir(&scratch.dir.path().join("restored"));
    let at_marker_dir = restored.join("at_marker");
    let data = at_marker_dir.clone();
    let (out, port) = restore_started(&env, &["--pitr", &target], &data, &[]).await;
    assert_success(&out, "restore-database --pitr TIME --start");
    let report = stdout(&out);
    assert!(report.contains(&base), "{report}");
    assert!(
        report.contains("recovery stopping before commit"),
        "{report}"
    );
    let mode = std::fs::metadata(&data).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    if let Some((uid, _)) = PgCluster::server_user().unwrap() {
        assert_eq!(mode.uid(), uid);
    }
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("archive_mode = 'off'"), "{auto}");
    assert!(auto.contains("backup-wal"), "{auto}");
    assert!(
        !auto.contains(s3.secret_key()),
        "a secret in the restore_command: {auto}"
    );
    let restored_client = connect(&pg, port).await;
    assert_eq!(table_checksums(&restored_client).await.unwrap(), at_marker);
    let in_recovery: bool = restored_client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "promoted");
    drop(restored_client);
    stop_server(&pg, &data);

    // latest: everything archived; the local copy of the base backup is damaged, so the
    // restore streams S3's copy (the damaged stream's files never reach the data directory).
    let base_path = scratch.backups.join(&base);
    let pristine_base = std::fs::read(&base_path).unwrap();
    let mut damaged_base = pristine_base.clone();
    let middle = damaged_base.len() / 2;
    damaged_base[middle] ^= 1;
    std::fs::write(&base_path, &damaged_base).unwrap();
    let data = restored.join("latest");
    let (out, port) = restore_started(&env, &["--pitr", "latest"], &data, &["--json"]).await;
    assert_success(&out, "restore-database --pitr latest --start");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["base_backup"], base.as_str(), "{report}");
    assert_eq!(report["destination"], "s3", "{report}");
    assert!(stderr(&out).contains("cannot be used"), "{}", stderr(&out));
    assert!(
        report["recovery"]["promoted"].as_bool().unwrap(),
        "{report}"
    );
    std::fs::write(&base_path, &pristine_base).unwrap();
    assert_restored(&pg, port, &data, &at_end, "latest").await;

    // A timeline switch: the cluster restored to the marker (promoted onto timeline 2) is
    // made to archive into the same place; its history file goes along with its first
    // segment, and a restore to latest follows timeline 2.
    let port = free_port();
    let archive_command = format!("{} push %p", bin("backup-wal").display());
    let mut start = std::process::Command::new(pg.bin_dir().join("pg_ctl"));
    start
        .args(["start", "-w", "-D"])
        .arg(&at_marker_dir)
        .arg("-l")
        .arg(at_marker_dir.join("log/timeline2.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c archive_mode=on -c \"archive_command={archive_command}\""
        ))
        .envs(&env);
    {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = PgCluster::server_user().unwrap() {
            start.uid(uid).gid(gid).env("HOME", std::env::temp_dir());
        }
    }
    let out = start.output().unwrap();
    assert_success(&out, "starting the restored cluster with archiving");
    let timeline2 = connect(&pg, port).await;
    timeline2
        .batch_execute(
            "INSERT INTO bookings (note) SELECT 'timeline 2 ' || g FROM generate_series(1, 800) g",
        )
        .await
        .unwrap();
    let left: String = timeline2
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    assert!(left.starts_with("00000002"), "{left}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last: Option<String> = timeline2
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .unwrap()
            .get(0);
        if last.as_deref().is_some_and(|l| l >= left.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timeline 2's {left} was never archived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_timeline2 = table_checksums(&timeline2).await.unwrap();
    drop(timeline2);
    stop_server(&pg, &at_marker_dir);
    assert!(
        scratch
            .backups
            .join("wal/00000002/00000002.history.gz.enc.manifest.json")
            .is_file(),
        "{:?}",
        files_under(&scratch.backups.join("wal"))
    );
    let data = restored.join("timeline2");
    let (out, port) = restore_started(&env, &["--pitr", "latest"], &data, &["--json"]).await;
    assert_success(&out, "restore-database --pitr latest along timeline 2");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["replay"]["timelines"],
        serde_json::json!([1, 2]),
        "{report}"
    );
    assert_eq!(report["recovery"]["new_timeline"], 3, "{report}");
    assert_restored(&pg, port, &data, &at_timeline2, "along timeline 2").await;

    // A target directory that is not empty is refused.
    let out = run(
        "restore-database",
        &["--pitr", "latest", "--target-dir", data.to_str().unwrap()],
        &env,
    )
    .await;
    assert_exit(&out, 2, "pitr into a non-empty directory");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));

    // A tampered segment on both destinations: recovery stops at it (exit 126 from fetch is
    // fatal to PostgreSQL) and the restore fails, naming it.
    let segments = |root: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join("wal/00000001"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 24 + ".gz.enc".len() && n.ends_with(".gz.enc"))
            .collect();
        names.sort();
        names
    };
    let stored = segments(&scratch.backups);
    assert!(stored.len() >= 4, "{stored:?}");
    let wal_start = recorded["source"]["wal_start"].as_str().unwrap();
    let victim = stored
        .iter()
        .find(|n| {
            n.as_str() > wal_start
                && !n.starts_with(recorded["source"]["wal_stop"].as_str().unwrap())
        })
        .unwrap()
        .clone();
    let key = format!("wal/00000001/{victim}");
    let local = scratch.backups.join(&key);
    let pristine = std::fs::read(&local).unwrap();
    let mut damaged = pristine.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&local, &damaged).unwrap();
    s3.client()
        .put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(damaged.into())
        .send()
        .await
        .unwrap();
    let data = restored.join("tampered");
    let (out, _) = restore_started(
        &env,
        &["--pitr", "latest"],
        &data,
        &["--recovery-timeout", "120"],
    )
    .await;
    assert_exit(&out, 2, "pitr over a tampered segment");
    let err = stderr(&out);
    assert!(err.contains("did not finish recovery"), "{err}");
    assert!(err.contains(victim.trim_end_matches(".gz.enc")), "{err}");
    stop_server(&pg, &data);

    // The segment missing from both destinations: the gap is named before anything is
    // written.
    std::fs::remove_file(&local).unwrap();
    std::fs::remove_file(scratch.backups.join(format!("{key}.manifest.json"))).unwrap();
    s3.client()
        .delete_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    let data = restored.join("gap");
    let out = run(
        "restore-database",
        &["--pitr", "latest", "--target-dir", data.to_str().unwrap()],
        &env,
    )
    .await;
    assert_exit(&out, 2, "pitr over a gap");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{} is missing",
            victim.trim_end_matches(".gz.enc")
        )),
        "{err}"
    );
    assert!(err.contains("newest point reachable"), "{err}");
    assert!(!data.exists(), "nothing written");
}

#[tokio::test]
async fn retention_keeps_the_wal_back_to_the_oldest_kept_base_backup_and_status_shows_its_age() {
    let scratch = Scratch::new();
    let env = scratch.env(None);
    let pg = archiving_cluster(&env).await;
    let env = with_pg(&env, &pg);
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE bookings (id serial PRIMARY KEY, note text); INSERT INTO bookings \
             (note) SELECT 'first ' || g FROM generate_series(1, 1000) g",
        )
        .await
        .unwrap();
    let out = run("backup-database", &["--physical"], &env).await;
    assert_success(&out, "first base backup");
    let first = stdout(&out).trim().to_owned();
    for _ in 0..2 {
        client
            .batch_execute(
                "INSERT INTO bookings (note) SELECT 'more' FROM generate_series(1, 2000)",
            )
            .await
            .unwrap();
        switch_and_wait(&pg).await;
    }
    // A point between the two base backups: a restore to it starts from the first.
    let between = server_time(&client).await;
    let at_between = table_checksums(&client).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = run("backup-database", &["--physical"], &env).await;
    assert_success(&out, "second base backup");
    let second = stdout(&out).trim().to_owned();
    assert_ne!(first, second);
    let restore_point_lsn: String = client
        .query_one("SELECT pg_create_restore_point('before_last')::text", &[])
        .await
        .unwrap()
        .get(0);
    let at_restore_point = table_checksums(&client).await.unwrap();
    // A transaction whose id is a target.
    let xid: String = {
        client.batch_execute("BEGIN").await.unwrap();
        client
            .batch_execute("INSERT INTO bookings (note) VALUES ('the xid')")
            .await
            .unwrap();
        let xid: String = client
            .query_one("SELECT txid_current()::text", &[])
            .await
            .unwrap()
            .get(0);
        client.batch_execute("COMMIT").await.unwrap();
        xid
    };
    let at_xid = table_checksums(&client).await.unwrap();
    client
        .batch_execute("INSERT INTO bookings (note) SELECT 'last' FROM generate_series(1, 500)")
        .await
        .unwrap();
    switch_and_wait(&pg).await;
    let at_end = table_checksums(&client).await.unwrap();

    let out = run("backup-status", &[], &env).await;
    assert!(
        stdout(&out).contains("wal      newest archived 0000000100000000"),
        "{}",
        stdout(&out)
    );

    let second_start = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(scratch.backups.join(format!("{second}.manifest.json"))).unwrap(),
    )
    .unwrap()["source"]["wal_start"]
        .as_str()
        .unwrap()
        .to_owned();
    let segments = || -> Vec<String> {
        let mut names: Vec<String> = files_under(&scratch.backups.join("wal/00000001"))
            .into_iter()
            .filter(|n| n.ends_with(".gz.enc") && n.len() == 24 + ".gz.enc".len())
            .map(|n| n[..24].to_owned())
            .collect();
        names.sort();
        names
    };
    let before = segments();
    let older: Vec<&String> = before.iter().filter(|n| **n < second_start).collect();
    assert!(!older.is_empty(), "{before:?} vs {second_start}");

    let data = server_dir(&scratch.dir.path().join("restored")).join("between");
    let (out, port) = restore_started(&env, &["--pitr", &between], &data, &["--json"]).await;
    assert_success(&out, "restore to a time between the base backups");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["base_backup"], first.as_str(), "{report}");
    assert_restored(&pg, port, &data, &at_between, "between").await;

    let out = run(
        "backup-prune",
        &["--kind", "base", "--retention-days", "0", "--dry-run"],
        &env,
    )
    .await;
    assert_success(&out, "backup-prune --dry-run");
    let plan = stdout(&out);
    assert!(
        plan.contains(&format!("from {second_start} on (the start of {second}")),
        "{plan}"
    );
    // The older segments, and the first base backup's label among them.
    assert!(
        plan.contains(&format!(
            "would delete {} older ({} to {})",
            older.len() + 1,
            older[0],
            older[older.len() - 1]
        )),
        "{plan}"
    );
    assert_eq!(segments(), before, "a dry run deletes nothing");

    let out = run(
        "backup-prune",
        &["--kind", "base", "--retention-days", "0"],
        &env,
    )
    .await;
    assert_success(&out, "backup-prune");
    assert!(
        !scratch.backups.join(&first).exists(),
        "the older base backup goes"
    );
    assert!(scratch.backups.join(&second).exists(), "the newest stays");
    let after = segments();
    assert!(
        after.iter().all(|n| *n >= second_start),
        "{after:?} vs {second_start}"
    );
    assert_eq!(after.len(), before.len() - older.len());

    // What is kept is enough: the newest base backup and its WAL restore everything, a named
    // restore point, its WAL position and a transaction id each what they name.
    for (flag, value, expected) in [
        ("--pitr", "latest", &at_end),
        ("--target-name", "before_last", &at_restore_point),
        (
            "--target-lsn",
            restore_point_lsn.as_str(),
            &at_restore_point,
        ),
        ("--target-xid", xid.as_str(), &at_xid),
    ] {
        let data = scratch.dir.path().join(format!("restored/{}", &flag[2..]));
        let (out, port) = restore_started(&env, &[flag, value], &data, &[]).await;
        let what = format!("restore with {flag} {value} after retention");
        assert_success(&out, &what);
        assert_restored(&pg, port, &data, expected, &what).await;
    }
}

#[tokio::test]
async fn backup_all_takes_a_base_backup_when_one_is_due_and_not_before() {
    let scratch = Scratch::new();
    let env = scratch.env(None);
    let pg = archiving_cluster(&env).await;
    pg.create_database("randevubu").await.unwrap();
    pg.connect("randevubu")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE bookings (id int); INSERT INTO bookings VALUES (1)")
        .await
        .unwrap();
    let mut env = env;
    env.extend(pg.env("randevubu"));
    env.insert("BACKUP_WAL_BASE_BACKUP".into(), "weekly".into());
    env.insert(
        "BACKUP_LOG_DIR".into(),
        scratch.dir.path().join("no-logs").display().to_string(),
    );
    env.insert("BACKUP_SKIP_COMPONENTS".into(), "logs".into());

    let out = run("backup-all", &["--json"], &env).await;
    assert_success(&out, "backup-all with a base backup due");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "base")
        .unwrap_or_else(|| panic!("{report:#}"))
        .clone();
    assert_eq!(base["status"], "success", "{base:#}");
    let object = base["objects"]["local"].as_str().unwrap();
    assert!(object.starts_with("base/randevubu_backup_"), "{object}");
    assert_eq!(base["verification"][0]["ok"], true, "{base:#}");
    assert!(
        !report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("WAL archiving")),
        "{report:#}"
    );

    let out = run("backup-all", &["--json"], &env).await;
    assert_success(&out, "backup-all with a recent base backup");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "base")
        .unwrap()
        .clone();
    assert!(
        base["skipped_because"]
            .as_str()
            .unwrap()
            .contains("not due yet"),
        "{base:#}"
    );
}

#[tokio::test]
async fn a_base_backup_of_a_server_that_does_not_archive_says_what_to_set() {
    let w = World::new(1).await;
    let out = w.run("backup-database", &["--physical"], &[]);
    assert_exit(&out, 2, "a base backup without archiving");
    let err = stderr(&out);
    assert!(err.contains("archive_mode = on"), "{err}");
    assert!(err.contains("backup-wal push %p"), "{err}");
    assert!(w.files().is_empty(), "nothing stored: {:?}", w.files());
}
