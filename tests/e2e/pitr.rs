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
    let target: String = client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
             'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
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
    let data = restored.join("at_marker");
    let port = free_port();
    let out = run(
        "restore-database",
        &[
            "--pitr",
            &target,
            "--target-dir",
            data.to_str().unwrap(),
            "--start",
            "--port",
            &port.to_string(),
        ],
        &env,
    )
    .await;
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

    // latest: everything archived.
    let data = restored.join("latest");
    let port = free_port();
    let out = run(
        "restore-database",
        &[
            "--pitr",
            "latest",
            "--target-dir",
            data.to_str().unwrap(),
            "--start",
            "--port",
            &port.to_string(),
            "--json",
        ],
        &env,
    )
    .await;
    assert_success(&out, "restore-database --pitr latest --start");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["base_backup"], base.as_str(), "{report}");
    assert!(
        report["recovery"]["promoted"].as_bool().unwrap(),
        "{report}"
    );
    let restored_client = connect(&pg, port).await;
    assert_eq!(table_checksums(&restored_client).await.unwrap(), at_end);
    drop(restored_client);
    stop_server(&pg, &data);

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
    let port = free_port();
    let out = run(
        "restore-database",
        &[
            "--pitr",
            "latest",
            "--target-dir",
            data.to_str().unwrap(),
            "--start",
            "--port",
            &port.to_string(),
            "--recovery-timeout",
            "120",
        ],
        &env,
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
