//! `PostgresRestore` and `PgDumpCheck` against a real throwaway cluster: exact restores, and
//! every failure leaves the target as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use backup_core::RestoreTarget;
use backup_sources::postgres::{
    DumpFormat, PgDumpCheck, PostgresRestore, RestoreOptions, ASIDE_INFIX, SCRATCH_INFIX,
};
use backup_sources::SourceError;
use backup_testkit::PgCluster;
use common::*;

fn downcast(e: backup_core::BoxError) -> SourceError {
    *e.downcast::<SourceError>().expect("a SourceError")
}

fn options(target: &str, create: bool, replace: bool) -> RestoreOptions {
    RestoreOptions {
        target_db: target.to_owned(),
        create,
        replace,
        terminate_connections: false,
        owner: None,
    }
}

async fn restore(
    cluster: &PgCluster,
    options: RestoreOptions,
    stream: backup_core::ByteStream,
) -> Result<backup_core::RestoreSummary, SourceError> {
    PostgresRestore::new(conn(cluster, "postgres"), options)
        .restore(stream)
        .await
        .map_err(downcast)
}

/// Databases whose names show a restore's scratch or aside copies.
async fn leftovers(cluster: &PgCluster) -> Vec<String> {
    databases(cluster)
        .await
        .into_iter()
        .filter(|d| d.contains(&format!("_{SCRATCH_INFIX}_")) || d.contains(ASIDE_INFIX))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_and_custom_dumps_restore_exactly_into_new_databases() {
    let cluster = cluster_with_sample().await;
    let original = fingerprint(&cluster, APP_DB).await;
    assert!(original.0.len() >= 8);
    for (format, target) in [
        (DumpFormat::Plain, "restored_plain"),
        (DumpFormat::Custom, "restored custom \"db\""),
    ] {
        let (bytes, _) = dump(&cluster, APP_DB, format).await;
        let len = bytes.len() as u64;
        let summary = restore(&cluster, options(target, true, false), stream(bytes))
            .await
            .unwrap();
        assert_eq!(summary.plain_bytes, len);
        assert!(
            summary.notes[0].contains("created database"),
            "{:?}",
            summary.notes
        );
        let all = summary.notes.join("\n");
        assert!(all.contains("completion marker"), "{all}");
        assert!(all.contains("dumped by pg_dump"), "{all}");
        if format == DumpFormat::Custom {
            assert!(all.contains("pg_restore"), "{all}");
        }
        assert_eq!(fingerprint(&cluster, target).await, original, "{format:?}");
    }
    // The view and function came along and work.
    let client = cluster.connect("restored_plain").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM upcoming_appointments", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    client
        .query_one(
            "SELECT business_revenue(1, '2020-01-01', '2030-01-01')",
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_non_empty_targets_are_refused_without_the_right_flag() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;

    let err = restore(
        &cluster,
        options("nope", false, false),
        stream(bytes.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SourceError::DatabaseMissing { .. }), "{err}");
    assert!(err.to_string().contains("--create"), "{err}");
    assert!(!cluster.database_exists("nope").await.unwrap());

    let before = fingerprint(&cluster, APP_DB).await;
    // `create` does not allow overwriting an existing database either.
    let err = restore(
        &cluster,
        options(APP_DB, true, false),
        stream(bytes.clone()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SourceError::DatabaseNotEmpty { tables, .. } if tables >= 8),
        "{err}"
    );
    assert!(err.to_string().contains("--replace"), "{err}");
    assert_eq!(fingerprint(&cluster, APP_DB).await, before);

    let err = restore(
        &cluster,
        options(&"x".repeat(64), true, false),
        stream(bytes),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SourceError::InvalidDatabaseName { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_empty_database_is_restored_in_place() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    cluster.create_database("empty").await.unwrap();
    let summary = restore(&cluster, options("empty", false, false), stream(bytes))
        .await
        .unwrap();
    assert!(
        summary.notes[0].contains("existing empty database"),
        "{:?}",
        summary.notes
    );
    assert_eq!(
        fingerprint(&cluster, "empty").await,
        fingerprint(&cluster, APP_DB).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_swaps_in_the_restored_database_and_keeps_the_old_one_aside() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Custom).await;
    let wanted = fingerprint(&cluster, APP_DB).await;

    // The target: different contents, owned by another role.
    cluster.create_database("live").await.unwrap();
    let admin = cluster.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE ROLE app_owner; ALTER DATABASE live OWNER TO app_owner;")
        .await
        .unwrap();
    let live = cluster.connect("live").await.unwrap();
    live.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'old data');")
        .await
        .unwrap();
    drop(live);
    let old = fingerprint(&cluster, "live").await;

    let summary = restore(&cluster, options("live", false, true), stream(bytes))
        .await
        .unwrap();
    assert_eq!(fingerprint(&cluster, "live").await, wanted);
    let asides: Vec<String> = databases(&cluster)
        .await
        .into_iter()
        .filter(|d| d.starts_with("live_before_restore_"))
        .collect();
    assert_eq!(asides.len(), 1, "{asides:?}");
    let aside = &asides[0];
    assert_eq!(
        aside.len(),
        "live_before_restore_YYYYMMDD_HHMMSS".len(),
        "{aside}"
    );
    assert_eq!(fingerprint(&cluster, aside).await, old);
    assert!(
        summary.notes[0].contains(aside.as_str()),
        "{:?}",
        summary.notes
    );
    assert!(
        !databases(&cluster)
            .await
            .iter()
            .any(|d| d.starts_with("live_restore_")),
        "scratch database left behind"
    );
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'live'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_owner", "the replacement keeps the owner");
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_refuses_a_database_in_use_unless_told_to_disconnect_it() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    cluster.create_database("busy").await.unwrap();
    let app = cluster.connect("busy").await.unwrap();
    app.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42);")
        .await
        .unwrap();

    let err = restore(
        &cluster,
        options("busy", false, true),
        stream(bytes.clone()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SourceError::DatabaseInUse { sessions: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--terminate-connections"), "{err}");
    assert_eq!(leftovers(&cluster).await, Vec::<String>::new());
    let x: i32 = app.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
    assert_eq!(x, 42);

    let mut opts = options("busy", false, true);
    opts.terminate_connections = true;
    let summary = restore(&cluster, opts, stream(bytes)).await.unwrap();
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("disconnected 1 session")),
        "{:?}",
        summary.notes
    );
    assert!(
        app.query_one("SELECT 1", &[]).await.is_err(),
        "session was terminated"
    );
    assert_eq!(
        fingerprint(&cluster, "busy").await,
        fingerprint(&cluster, APP_DB).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_failing_half_way_leaves_every_target_untouched() {
    let cluster = cluster_with_sample().await;
    for format in [DumpFormat::Plain, DumpFormat::Custom] {
        let (bytes, _) = dump(&cluster, APP_DB, format).await;
        let half = bytes.len() / 2;

        // --create: the database made for the restore is gone again.
        let err = restore(
            &cluster,
            options("fresh", true, false),
            failing_stream(bytes.clone(), half),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(INJECTED), "{msg}");
        assert!(msg.contains("dropped again"), "{msg}");
        assert!(
            !cluster.database_exists("fresh").await.unwrap(),
            "{format:?}"
        );

        // In place, into an empty database: still empty (rolled back).
        cluster.create_database("empty").await.unwrap();
        let err = restore(
            &cluster,
            options("empty", false, false),
            failing_stream(bytes.clone(), half),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("rolled back"), "{err}");
        assert_eq!(table_count(&cluster, "empty").await, 0, "{format:?}");
        cluster
            .connect("postgres")
            .await
            .unwrap()
            .batch_execute("DROP DATABASE empty")
            .await
            .unwrap();

        // --replace: the target keeps its contents, no scratch database is left.
        let before = fingerprint(&cluster, APP_DB).await;
        let err = restore(
            &cluster,
            options(APP_DB, false, true),
            failing_stream(bytes, half),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("is unchanged") && msg.contains("was dropped"),
            "{msg}"
        );
        assert_eq!(fingerprint(&cluster, APP_DB).await, before);
        assert_eq!(leftovers(&cluster).await, Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_dump_without_its_completion_marker_is_rolled_back() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    // Every statement is there and would succeed; only the marker is missing, as when a
    // dump was cut off at a statement boundary.
    let cut = without_trailer(&bytes);
    cluster.create_database("empty").await.unwrap();
    let err = restore(
        &cluster,
        options("empty", false, false),
        stream(cut.clone()),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("incomplete"), "{msg}");
    assert!(msg.contains("rolled back"), "{msg}");
    assert_eq!(table_count(&cluster, "empty").await, 0);

    let err = restore(&cluster, options("fresh", true, false), stream(cut))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert!(!cluster.database_exists("fresh").await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_custom_archive_is_rolled_back() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Custom).await;
    let cut = bytes[..bytes.len() * 2 / 3].to_vec();
    cluster.create_database("empty").await.unwrap();
    let err = restore(&cluster, options("empty", false, false), stream(cut))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pg_restore failed"), "{msg}");
    assert_eq!(table_count(&cluster, "empty").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sql_error_is_reported_with_psql_output_and_rolled_back() {
    let cluster = PgCluster::start().await.unwrap();
    cluster.create_database("empty").await.unwrap();
    let sql = b"CREATE TABLE first (x int);\nINSERT INTO first VALUES (1);\nSELECT 1/0;\n\
                --\n-- PostgreSQL database dump complete\n--\n\n"
        .to_vec();
    let err = restore(&cluster, options("empty", false, false), stream(sql))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("psql failed"), "{msg}");
    assert!(msg.contains("division by zero"), "{msg}");
    assert_eq!(table_count(&cluster, "empty").await, 0);

    // Without the completion marker too: psql's own error is the one worth reporting.
    let sql = b"CREATE TABLE first (x int);\nSELECT * FROM no_such_table;\n".to_vec();
    let err = restore(&cluster, options("empty", false, false), stream(sql))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no_such_table") && msg.contains("psql failed"),
        "{msg}"
    );
    assert_eq!(table_count(&cluster, "empty").await, 0);

    // Not a dump at all.
    let err = restore(
        &cluster,
        options("empty", false, false),
        stream(vec![0x1f, 0x8b, 8, 0, 0, 0]),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("gzip"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_restore_never_commits() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    cluster.create_database("empty").await.unwrap();
    let mut target =
        PostgresRestore::new(conn(&cluster, "postgres"), options("empty", false, false));
    let stalled = stalling_stream(bytes.clone(), bytes.len() - 200);
    let result = tokio::time::timeout(Duration::from_secs(3), target.restore(stalled)).await;
    assert!(
        result.is_err(),
        "the restore should still be waiting for data"
    );
    // Dropping the future killed psql before its input was closed: the server rolls back.
    for _ in 0..100 {
        let sessions: i64 = cluster
            .connect("postgres")
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'empty'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(table_count(&cluster, "empty").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_objects_are_refused_in_place_but_restore_into_a_new_database() {
    let cluster = PgCluster::start().await.unwrap();
    cluster.create_database("lo").await.unwrap();
    cluster
        .connect("lo")
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE docs (id int PRIMARY KEY, blob oid); \
             INSERT INTO docs VALUES (1, lo_from_bytea(0, 'large object body'));",
        )
        .await
        .unwrap();
    let (bytes, _) = dump(&cluster, "lo", DumpFormat::Plain).await;
    cluster.create_database("empty").await.unwrap();
    let err = restore(
        &cluster,
        options("empty", false, false),
        stream(bytes.clone()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("large objects"), "{err}");
    assert_eq!(table_count(&cluster, "empty").await, 0);

    let summary = restore(&cluster, options("lo_copy", true, false), stream(bytes))
        .await
        .unwrap();
    assert!(summary.notes.iter().any(|n| n.contains("large objects")));
    let body: Vec<u8> = cluster
        .connect("lo_copy")
        .await
        .unwrap()
        .query_one("SELECT lo_get(blob) FROM docs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, b"large object body");
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_check_accepts_complete_dumps_and_rejects_truncated_ones() {
    let cluster = cluster_with_sample().await;
    let databases_before = databases(&cluster).await;
    for format in [DumpFormat::Plain, DumpFormat::Custom] {
        let (bytes, _) = dump(&cluster, APP_DB, format).await;
        let len = bytes.len() as u64;
        let summary = PgDumpCheck::new()
            .restore(stream(bytes.clone()))
            .await
            .unwrap();
        assert_eq!(summary.plain_bytes, len);
        let notes = summary.notes.join("\n");
        assert!(notes.contains("no database was touched"), "{notes}");
        assert!(
            notes.contains(match format {
                DumpFormat::Plain => "plain SQL",
                _ => "custom archive",
            }),
            "{notes}"
        );

        let truncated = match format {
            DumpFormat::Plain => without_trailer(&bytes),
            _ => bytes[..bytes.len() / 2].to_vec(),
        };
        let err = downcast(
            PgDumpCheck::new()
                .restore(stream(truncated))
                .await
                .unwrap_err(),
        );
        let msg = err.to_string();
        assert!(
            msg.contains("incomplete") || msg.contains("pg_restore failed"),
            "{msg}"
        );

        let err = downcast(
            PgDumpCheck::new()
                .restore(failing_stream(bytes, 1000))
                .await
                .unwrap_err(),
        );
        assert!(err.to_string().contains(INJECTED), "{err}");
    }
    let err = downcast(
        PgDumpCheck::new()
            .restore(stream(Vec::new()))
            .await
            .unwrap_err(),
    );
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(databases(&cluster).await, databases_before);
}

/// psql runs in restricted mode with a key of the tool's: a backslash command in a backup
/// never runs — not in a dump that lacks pg_dump's `\restrict` line, not after an
/// `\unrestrict` with pg_dump's own key (which is written in the dump), not after SQL on the
/// same line — and the restore fails and rolls back. A real pg_dump of this machine (whose
/// plain dumps carry their own `\restrict`) still restores exactly.
#[tokio::test(flavor = "multi_thread")]
async fn backslash_commands_in_a_backup_never_run() {
    let cluster = cluster_with_sample().await;
    let (bytes, _) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    let text = String::from_utf8(bytes.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let shell = format!("\\! touch {}\n", marker.display());
    let complete = "--\n-- PostgreSQL database dump complete\n--\n\n";
    let dump_key = text
        .lines()
        .find_map(|l| l.strip_prefix("\\restrict "))
        .map(str::to_owned);
    let mut attacks = vec![
        format!("CREATE TABLE first (x int);\n{shell}{complete}"),
        format!("SELECT 1; {shell}{complete}"),
        format!("\\unrestrict x\n{shell}{complete}"),
    ];
    if let Some(key) = &dump_key {
        // pg_dump's own key, in front of its own dump: lifts pg_dump's restriction, not ours.
        let at = text.find("SET ").unwrap();
        attacks.push(format!(
            "{}\\unrestrict {key}\n{shell}{}",
            &text[..at],
            &text[at..]
        ));
    }
    cluster.create_database("empty").await.unwrap();
    for (i, sql) in attacks.into_iter().enumerate() {
        let err = restore(
            &cluster,
            options("empty", false, false),
            stream(sql.into_bytes()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("psql failed"), "attack {i}: {err}");
        assert!(!marker.exists(), "attack {i} ran a shell command");
        assert_eq!(table_count(&cluster, "empty").await, 0, "attack {i}");
    }
    // The genuine dump restores, with its own \restrict pair dropped.
    let summary = restore(&cluster, options("copy", true, false), stream(bytes))
        .await
        .unwrap();
    assert!(
        summary.notes.iter().any(|n| n.contains("restricted mode")),
        "{:?}",
        summary.notes
    );
    assert_eq!(
        fingerprint(&cluster, "copy").await,
        fingerprint(&cluster, APP_DB).await
    );
    assert!(
        dump_key.is_some(),
        "pg_dump of this machine writes \\restrict"
    );
}
