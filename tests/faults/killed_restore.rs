//! `kill -9` of `restore-database` while psql is loading rows: psql's input ends without the
//! tool's `COMMIT`, so nothing of the half-read backup may be committed, whether the restore
//! went into a database it created, an existing empty one, or the scratch database of
//! `--replace`.

use std::time::{Duration, Instant};

use crate::harness::{assert_success, World, SOURCE_DB};

/// Rows of the slow table; each costs about 2 ms to insert during a restore (its CHECK sleeps
/// in every session but the testkit's own), so its COPY runs for several seconds.
const SLOW_ROWS: u32 = 3000;

/// Rows of the table dumped right after the slow one: single integers, so that wherever the
/// kill cuts the stream in their `COPY` data the rows read so far are valid and, without the
/// fix, would be committed (a cut row of text columns could fail the COPY and hide the bug).
const FILLER_ROWS: u32 = 200_000;

/// Adds a table whose rows are slow to insert, dumped before the other tables' data (`aa_`),
/// so that a restore spends seconds in its `COPY` while megabytes of the dump are still to be
/// sent (`ab_filler`, then the sample tables): the tool is killed mid-stream, not after it
/// sent everything (and its `COMMIT`).
pub(crate) async fn add_slow_table(w: &World) {
    let client = w.pg.connect(SOURCE_DB).await.expect("connect");
    client
        .batch_execute(&format!(
            "CREATE FUNCTION public.slow_ok(i int) RETURNS boolean LANGUAGE sql \
                 AS $$SELECT current_setting('application_name') = 'backup-testkit' \
                       OR pg_sleep(0.002) IS NOT NULL$$;
             CREATE TABLE public.aa_slow (i int CHECK (public.slow_ok(i)));
             INSERT INTO public.aa_slow SELECT g FROM generate_series(1, {SLOW_ROWS}) g;
             CREATE TABLE public.ab_filler (i int);
             INSERT INTO public.ab_filler SELECT g FROM generate_series(1, {FILLER_ROWS}) g;"
        ))
        .await
        .expect("slow table");
}

/// Waits until some session of database `db_like` (a LIKE pattern) runs the slow table's COPY.
async fn wait_for_slow_copy(w: &World, db_like: &str) -> String {
    let client = w.pg.connect("postgres").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client
            .query(
                "SELECT datname::text FROM pg_stat_activity \
                 WHERE datname LIKE $1 AND query LIKE 'COPY public.aa_slow%' AND state = 'active'",
                &[&db_like],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "the restore never reached the slow COPY"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no session is connected to `db` (the orphaned psql finished).
async fn wait_for_no_sessions(w: &World, db: &str) {
    let client = w.pg.connect("postgres").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if n == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "sessions on {db:?} never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tables (and their total rows) in the public schema of `db`.
async fn tables_and_rows(w: &World, db: &str) -> (i64, i64) {
    let checks = w.checksums(db).await;
    let rows = checks.values().map(|c| c.rows).sum();
    (checks.len() as i64, rows)
}

/// Starts `restore-database ARGS`, waits for the slow COPY in a database matching `db_like`,
/// lets it insert for a moment, then kills the tool with SIGKILL. Returns the database the
/// COPY ran in.
async fn kill_restore_mid_copy(w: &World, args: &[&str], db_like: &str) -> String {
    let mut child = w
        .command("restore-database")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn restore-database");
    let db = wait_for_slow_copy(w, db_like).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    wait_for_no_sessions(w, &db).await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_mid_copy_commits_nothing_into_a_new_database() {
    let w = World::new(1).await;
    add_slow_table(&w).await;
    let key = w.backup(&[]);

    let db = kill_restore_mid_copy(
        &w,
        &["--file", &key, "--target-db", "killed_new", "--create"],
        "killed_new",
    )
    .await;
    assert_eq!(db, "killed_new");
    assert_eq!(
        tables_and_rows(&w, "killed_new").await,
        (0, 0),
        "a killed restore committed part of the backup"
    );

    // The same backup restores completely when left alone.
    let out = w.run(
        "restore-database",
        &["--file", &key, "--target-db", "killed_new"],
        &[],
    );
    assert_success(&out, "restore after the killed one");
    assert_eq!(
        w.checksums("killed_new").await,
        w.checksums(SOURCE_DB).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_mid_copy_commits_nothing_into_an_existing_empty_database() {
    let w = World::new(1).await;
    add_slow_table(&w).await;
    let key = w.backup(&[]);
    w.pg.create_database("empty_target").await.expect("create");

    kill_restore_mid_copy(
        &w,
        &["--file", &key, "--target-db", "empty_target"],
        "empty_target",
    )
    .await;
    assert_eq!(tables_and_rows(&w, "empty_target").await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_killed_mid_copy_leaves_the_target_and_no_committed_scratch_rows() {
    let w = World::new(1).await;
    add_slow_table(&w).await;
    let key = w.backup(&[]);
    let before = w.checksums(SOURCE_DB).await;

    let scratch = kill_restore_mid_copy(
        &w,
        &[
            "--file",
            &key,
            "--target-db",
            SOURCE_DB,
            "--replace",
            "--terminate-connections",
        ],
        "randevubu_restore_%",
    )
    .await;
    assert_eq!(w.checksums(SOURCE_DB).await, before, "target changed");
    assert_eq!(
        tables_and_rows(&w, &scratch).await,
        (0, 0),
        "the scratch database {scratch:?} kept committed rows"
    );
}
