//! `PostgresSource` (pg_dump) against a real throwaway cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use backup_core::{BackupKind, Source};
use backup_sources::postgres::{DumpFormat, PgConnection, PostgresSource, DUMP_COMPLETE_MARKER};
use backup_sources::SourceError;
use backup_testkit::PgCluster;
use common::*;
use tokio::io::AsyncReadExt;

fn downcast(e: backup_core::BoxError) -> SourceError {
    *e.downcast::<SourceError>().expect("a SourceError")
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_dump_reports_facts_and_ends_with_the_marker() {
    let cluster = cluster_with_sample().await;
    let source = PostgresSource::new(conn(&cluster, APP_DB), DumpFormat::Plain);
    assert_eq!(source.kind(), BackupKind::DATABASE);
    assert_eq!(source.extension(), "sql");
    let (bytes, facts) = dump(&cluster, APP_DB, DumpFormat::Plain).await;
    assert!(bytes.len() > 1_000_000, "{} bytes", bytes.len());
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(DUMP_COMPLETE_MARKER));
    assert!(text.contains("Çağla") || text.contains("Şükrü") || text.contains("Gülşen"));
    assert_eq!(facts.source_type, "postgresql");
    assert_eq!(facts.database.as_deref(), Some(APP_DB));
    let server = facts.server_version.clone().unwrap();
    assert!(server.starts_with(char::is_numeric), "{server}");
    assert_eq!(facts.details["dump_format"], "plain");
    let pg_dump = facts.details["pg_dump_version"].as_str().unwrap();
    assert_eq!(pg_dump.split('.').next(), server.split('.').next());
    // The facts serialise flat into the manifest's `source` object.
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["type"], "postgresql");
    assert_eq!(json["dump_format"], "plain");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_dump_is_an_uncompressed_archive() {
    let cluster = cluster_with_sample().await;
    let source = PostgresSource::new(conn(&cluster, APP_DB), DumpFormat::Custom);
    assert_eq!(source.extension(), "dump");
    let (bytes, facts) = dump(&cluster, APP_DB, DumpFormat::Custom).await;
    assert!(bytes.starts_with(b"PGDMP"));
    assert_eq!(facts.details["dump_format"], "custom");
    // --compress=0: the pipeline compresses, so the table data is readable in the archive.
    let needle = "Yılmaz".as_bytes();
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_gets_the_password_only_through_its_environment() {
    let cluster = cluster_with_sample().await;
    let password = cluster.password().to_owned();
    let mut source = PostgresSource::new(conn(&cluster, APP_DB), DumpFormat::Plain);
    let mut stream = source.open().await.unwrap();
    // pg_dump blocks on the full pipe until we read, so it is still running here.
    let pid = source.child_pid().expect("pg_dump running");
    // Right after spawning, the child may still be between fork and exec; wait for pg_dump.
    let mut cmdline = Vec::new();
    for _ in 0..200 {
        cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline.starts_with(b"/") && !cmdline.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(argv[0].ends_with("pg_dump"), "{argv:?}");
    assert_eq!(&argv[1..], ["--no-password"]);
    for arg in &argv {
        assert!(!arg.contains(&password), "password in argv: {argv:?}");
        assert!(!arg.contains(&cluster.port().to_string()), "{argv:?}");
    }
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(env.contains(&format!("PGPASSWORD={password}")));
    assert!(env.contains(&format!("PGPORT={}", cluster.port())));
    assert!(env.contains(&format!("PGDATABASE={APP_DB}")));
    assert!(env.contains(&"PGCONNECT_TIMEOUT=10".to_owned()));
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await.unwrap();
    source.finish().await.unwrap();
    assert!(source.child_pid().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_fails_fast_with_a_clear_error() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conn = PgConnection::new("127.0.0.1", port, "postgres", "app").with_password("s3cr3t-pw");
    let started = Instant::now();
    let mut source = PostgresSource::new(conn, DumpFormat::Plain);
    let err = downcast(source.open().await.err().expect("open must fail"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(
        msg.contains("POSTGRES_HOST") && msg.contains("POSTGRES_PORT"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t-pw"));
    // finish without a successful open is an error, not a hang.
    assert!(source.finish().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_missing_database_are_reported_clearly() {
    let cluster = PgCluster::start().await.unwrap();
    let wrong = "Wr0ng-pässword!";
    let c = conn(&cluster, "postgres");
    let bad = PgConnection::new(c.host(), c.port(), c.user(), c.dbname()).with_password(wrong);
    let err = downcast(
        PostgresSource::new(bad, DumpFormat::Plain)
            .open()
            .await
            .err()
            .expect("open must fail"),
    );
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Authentication { .. }), "{msg}");
    assert!(msg.contains("POSTGRES_PASSWORD"), "{msg}");
    assert!(msg.contains("password authentication failed"), "{msg}");
    for text in [msg.clone(), format!("{err:?}")] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(cluster.password()), "{text}");
    }

    // No password at all, where the server wants one.
    let none = PgConnection::new(c.host(), c.port(), c.user(), c.dbname());
    let err = downcast(
        PostgresSource::new(none, DumpFormat::Plain)
            .open()
            .await
            .err()
            .expect("open must fail"),
    );
    assert!(err.to_string().contains("POSTGRES_PASSWORD"), "{err}");

    let err = downcast(
        PostgresSource::new(conn(&cluster, "no_such_db"), DumpFormat::Plain)
            .open()
            .await
            .err()
            .expect("open must fail"),
    );
    assert!(matches!(err, SourceError::NoSuchDatabase { .. }), "{err}");
    assert!(err.to_string().contains("POSTGRES_DB"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn finish_fails_and_stops_pg_dump_when_the_stream_was_not_read_to_the_end() {
    let cluster = cluster_with_sample().await;
    let mut source = PostgresSource::new(conn(&cluster, APP_DB), DumpFormat::Plain);
    let mut stream = source.open().await.unwrap();
    let pid = source.child_pid().unwrap();
    let mut part = vec![0u8; 4096];
    stream.read_exact(&mut part).await.unwrap();
    let err = downcast(source.finish().await.expect_err("finish must fail"));
    assert!(err.to_string().contains("not read to its end"), "{err}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pg_dump {pid} still running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_failure_is_reported_with_its_stderr() {
    let cluster = cluster_with_sample().await;
    // A role that may log in but not read the tables: pg_dump starts, then fails.
    let admin = cluster.connect(APP_DB).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE dumper LOGIN PASSWORD 'dumper-pw'; \
             GRANT USAGE ON SCHEMA public TO dumper;",
        )
        .await
        .unwrap();
    let c = conn(&cluster, APP_DB);
    let limited =
        PgConnection::new(c.host(), c.port(), "dumper", APP_DB).with_password("dumper-pw");
    let mut source = PostgresSource::new(limited, DumpFormat::Plain);
    let mut stream = source.open().await.unwrap();
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await.unwrap();
    let err = downcast(source.finish().await.expect_err("finish must fail"));
    let msg = err.to_string();
    // pg_dump's failure, with the server and database it was dumping.
    let SourceError::AtServer {
        endpoint, source, ..
    } = &err
    else {
        panic!("{msg}");
    };
    assert!(
        matches!(
            **source,
            SourceError::ToolFailed {
                tool: "pg_dump",
                ..
            }
        ),
        "{msg}"
    );
    assert_eq!(*endpoint, c.endpoint(), "{msg}");
    assert!(msg.contains(&format!("database {APP_DB:?}")), "{msg}");
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(!msg.contains("dumper-pw"), "{msg}");
}
