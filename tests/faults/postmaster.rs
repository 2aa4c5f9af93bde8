//! The PostgreSQL server dies under the tool: its postmaster is killed with `SIGKILL` (the OOM
//! killer, `kill -9`) while `backup-database` streams the dump, and while
//! `restore-database --replace` loads the scratch database. Either way the tool fails
//! (exit 2) naming the server, nothing half-written passes for a backup, the target keeps
//! exactly its old data, no scratch database holds committed rows, and once the server is
//! started again the next run works.

use std::collections::BTreeMap;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_exit, assert_success, stderr, stdout, World, SOURCE_DB};

/// Sample data scale of the backup case: big enough that the debug build's `backup-database`
/// streams for a second or more (scale 6 takes 0.6 s).
const BACKUP_SCALE: u32 = 12;

/// Waits (up to 60 s) until a session matching `condition` (SQL over `pg_stat_activity`) is
/// active; returns its database.
async fn wait_for_session(w: &World, condition: &str, what: &str) -> String {
    let client = w.pg.connect("postgres").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client
            .query(
                &format!(
                    "SELECT datname::text FROM pg_stat_activity \
                     WHERE state = 'active' AND {condition}"
                ),
                &[],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn(w: &World, name: &str, args: &[&str]) -> Child {
    w.command(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// Waits for `child` (at most 60 s: a tool that hangs on a dead server is a failure too).
async fn finish(child: Child, what: &str) -> Output {
    let pid = child.id();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(Duration::from_secs(60), waiter).await {
        Ok(out) => out.expect("join").expect("wait"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} still runs 60 s after its server was killed");
        }
    }
}

/// Asserts that the tool's output names the server it lost (address and port, said when it
/// connected), and that its error names the database and says the connection was lost.
fn assert_names_the_server(w: &World, out: &Output, what: &str) {
    let err = stderr(out);
    let address = format!("{}:{}", w.pg.host(), w.pg.port());
    let error = &err[err.find("error:").unwrap_or(0)..];
    assert!(
        error.contains(&address),
        "{what}: the error does not name the server {address}:\n{err}"
    );
    assert!(
        error.contains(SOURCE_DB)
            && (error.contains("server closed the connection")
                || error.contains("connection to server was lost")),
        "{what}: the error does not say that the server of {SOURCE_DB:?} went away:\n{err}"
    );
}

/// Table count and total rows of `db`.
async fn tables_and_rows(w: &World, db: &str) -> (usize, i64) {
    let sums = w.checksums(db).await;
    (sums.len(), sums.values().map(|c| c.rows).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_server_is_killed_mid_dump_fails_and_leaves_nothing_that_passes_for_a_backup(
) {
    let mut w = World::new(BACKUP_SCALE).await;
    let child = spawn(&w, "backup-database", &[]);
    // pg_dump's session is streaming table data: the backup has started writing.
    wait_for_session(
        &w,
        "application_name = 'backup' AND query LIKE 'COPY %'",
        "pg_dump's COPY",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.pg.sigkill_postmaster()
        .await
        .expect("SIGKILL the postmaster");
    let out = finish(child, "backup-database").await;
    assert_exit(&out, 2, "backup-database whose server was killed");
    assert_names_the_server(&w, &out, "backup-database");
    assert!(
        stdout(&out).trim().is_empty(),
        "printed a key: {}",
        stdout(&out)
    );

    // Nothing is listed as complete, and nothing left would pass for an old script's backup.
    let out = w.run("restore-database", &["--list", "--json"], &[]);
    if w.backups.exists() && !w.files().is_empty() {
        assert_success(&out, "--list after the failed backup");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        for row in &rows {
            assert_ne!(row["status"], "complete", "listed as complete: {row}");
            assert_ne!(row["status"], "legacy", "passes for a legacy backup: {row}");
        }
    }
    crate::killed_backup::assert_nothing_passes_for_an_old_backup(&w, "after the failed backup");
    // Unlike a killed tool, a failing one cleans up: nothing at all is left (no claim either).
    let files = w.files();
    assert!(files.is_empty(), "the failed backup left {files:?}");

    // Once the server is back, the next backup works and restores exactly.
    w.pg.restart().await.expect("restart PostgreSQL");
    let key = w.backup(&[]);
    let out = w.run(
        "restore-database",
        &["--file", &key, "--target-db", "after_crash", "--create"],
        &[],
    );
    assert_success(&out, "restore of the backup after the crash");
    assert_eq!(
        w.checksums("after_crash").await,
        w.checksums(SOURCE_DB).await,
        "the backup after the crash does not restore the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_whose_server_is_killed_mid_restore_keeps_the_old_database_and_commits_no_scratch_rows(
) {
    let mut w = World::new(1).await;
    crate::killed_restore::add_slow_table(&w).await;
    let client = w.pg.connect(SOURCE_DB).await.expect("connect");
    w.backup(&[]);
    let backed_up = w.checksums(SOURCE_DB).await;
    // The database changes after the backup: a restore (even half of one) would show.
    client
        .batch_execute(
            "CREATE TABLE public.zz_after_backup AS SELECT 42 AS answer; \
             DELETE FROM public.aa_slow WHERE i % 2 = 0;",
        )
        .await
        .expect("change after the backup");
    drop(client);
    let before = w.checksums(SOURCE_DB).await;
    assert_ne!(before, backed_up);

    let args = [
        "--latest",
        "--target-db",
        SOURCE_DB,
        "--replace",
        "--terminate-connections",
    ];
    let child = spawn(&w, "restore-database", &args);
    let scratch = wait_for_session(
        &w,
        "datname LIKE 'randevubu\\_restore\\_%' AND query LIKE 'COPY public.aa_slow%'",
        "the scratch database's COPY",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.pg.sigkill_postmaster()
        .await
        .expect("SIGKILL the postmaster");
    let out = finish(child, "restore-database --replace").await;
    assert_exit(
        &out,
        2,
        "restore-database --replace whose server was killed",
    );
    assert_names_the_server(&w, &out, "restore-database --replace");

    w.pg.restart().await.expect("restart PostgreSQL");
    assert_eq!(
        w.checksums(SOURCE_DB).await,
        before,
        "the target does not hold exactly its old data after the crash"
    );
    let databases = w.databases().await;
    let leftovers: Vec<&String> = databases
        .iter()
        .filter(|d| !["postgres", SOURCE_DB].contains(&d.as_str()))
        .collect();
    for db in &leftovers {
        assert_eq!(
            db.as_str(),
            scratch,
            "unexpected database {db:?} after the crash"
        );
        assert_eq!(
            tables_and_rows(&w, db).await,
            (0, 0),
            "the scratch database {db:?} kept committed tables or rows"
        );
    }
    if !leftovers.is_empty() {
        // The tool could not drop it (the server was gone): it says so, and how.
        let err = stderr(&out);
        assert!(
            err.contains(&scratch) && err.contains("drop it"),
            "the scratch database {scratch:?} was left without a word:\n{err}"
        );
    }

    // A leftover scratch database is dropped by a later --replace once it is older than ten
    // minutes (by the stamp in its name; a younger one may belong to a restore running now):
    // make it look an hour old.
    let aged = if leftovers.is_empty() {
        None
    } else {
        let stamp = (chrono::Utc::now() - chrono::TimeDelta::hours(1))
            .format("%Y%m%d_%H%M%S")
            .to_string();
        let aged = format!("{SOURCE_DB}_restore_{stamp}");
        let client = w.pg.connect("postgres").await.expect("connect");
        client
            .batch_execute(&format!(
                "ALTER DATABASE \"{scratch}\" RENAME TO \"{aged}\""
            ))
            .await
            .expect("age the leftover");
        Some(aged)
    };

    // The next --replace works: the backup's data, the old database kept aside.
    let out = w.run("restore-database", &args, &[]);
    assert_success(&out, "--replace after the crash");
    if let Some(aged) = &aged {
        assert!(
            !w.databases().await.contains(aged),
            "the leftover scratch database {aged:?} was not dropped"
        );
    }
    assert_eq!(w.checksums(SOURCE_DB).await, backed_up, "restored data");
    let kept: BTreeMap<String, _> = {
        let mut kept = BTreeMap::new();
        for db in w.databases().await {
            if db.starts_with("randevubu_before_restore_") {
                kept.insert(db.clone(), w.checksums(&db).await);
            }
        }
        kept
    };
    assert_eq!(kept.len(), 1, "kept databases: {:?}", kept.keys());
    assert_eq!(
        kept.values().next().unwrap(),
        &before,
        "the database kept aside is not the old one"
    );
}
