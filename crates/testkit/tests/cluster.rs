//! The throwaway cluster, sample data and checksums against real PostgreSQL servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use backup_testkit::{
    load_sample_data, sequence_values, table_checksums, PgCluster, PgOptions, SAMPLE_TABLES,
};
use nix::sys::signal::kill;
use nix::unistd::Pid;

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie would still count, but we reap the postmaster.
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Pids of the processes whose parent is `parent` (the postmaster's backends and workers).
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces; fields follow the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_starts_and_requires_the_password_over_tcp() {
    let cluster = PgCluster::start().await.unwrap();
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.user(), "postgres");
    assert!(cluster.port() > 0);
    assert!(cluster.password().len() >= 16);
    assert!(cluster.bin_dir().join("pg_dump").is_file());

    let client = cluster.connect("postgres").await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let method: String = client
        .query_one("SHOW password_encryption", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "scram-sha-256");

    // Wrong password over TCP: refused with invalid_password.
    let mut config = cluster.config("postgres");
    config.password("definitely-wrong");
    let Err(err) = config.connect(tokio_postgres::NoTls).await else {
        panic!("a wrong password was accepted");
    };
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );

    // No password at all over TCP: refused too.
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(cluster.port())
        .user("postgres")
        .dbname("postgres");
    assert!(config.connect(tokio_postgres::NoTls).await.is_err());

    // The Unix socket in the cluster's directory is trusted.
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user("postgres")
        .dbname("postgres");
    let (socket_client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    socket_client.query_one("SELECT 1", &[]).await.unwrap();

    // The URL form works with the same credentials.
    let (url_client, conn) =
        tokio_postgres::connect(&cluster.database_url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    url_client.query_one("SELECT 1", &[]).await.unwrap();

    let env = cluster.env("appdb");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("POSTGRES_HOST").as_deref(), Some("127.0.0.1"));
    assert_eq!(get("POSTGRES_PORT"), Some(cluster.port().to_string()));
    assert_eq!(get("POSTGRES_USER").as_deref(), Some("postgres"));
    assert_eq!(
        get("POSTGRES_PASSWORD").as_deref(),
        Some(cluster.password())
    );
    assert_eq!(get("POSTGRES_DB").as_deref(), Some("appdb"));
}

#[tokio::test(flavor = "multi_thread")]
async fn chosen_password_with_url_special_characters_works() {
    let password = "p@ss:w/rd %?#äö".to_owned();
    let cluster = PgCluster::start_with(PgOptions {
        password: Some(password.clone()),
        ..PgOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(cluster.password(), password);
    let (client, conn) =
        tokio_postgres::connect(&cluster.database_url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clusters_run_at_once() {
    let (a, b) = tokio::join!(PgCluster::start(), PgCluster::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.password(), b.password());
    a.create_database("only_in_a").await.unwrap();
    assert!(a.database_exists("only_in_a").await.unwrap());
    assert!(!b.database_exists("only_in_a").await.unwrap());
    assert!(a
        .databases()
        .await
        .unwrap()
        .contains(&"only_in_a".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_data_is_deterministic_and_checksums_see_changes() {
    let (a, b) = tokio::join!(PgCluster::start(), PgCluster::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create_database("app").await.unwrap();
    b.create_database("app").await.unwrap();
    let ca = a.connect("app").await.unwrap();
    let cb = b.connect("app").await.unwrap();
    let (la, lb) = tokio::join!(load_sample_data(&ca, 1), load_sample_data(&cb, 1));
    la.unwrap();
    lb.unwrap();

    let sums_a = table_checksums(&ca).await.unwrap();
    let sums_b = table_checksums(&cb).await.unwrap();
    let keys: Vec<&str> = sums_a.keys().map(String::as_str).collect();
    assert_eq!(keys, SAMPLE_TABLES);
    assert_eq!(sums_a, sums_b);
    assert_eq!(sums_a["public.businesses"].rows, 10);
    assert_eq!(sums_a["public.customers"].rows, 1500);
    assert_eq!(sums_a["public.appointments"].rows, 4000);
    assert!(sums_a.values().all(|s| s.rows > 0));
    let seq_a = sequence_values(&ca).await.unwrap();
    assert_eq!(seq_a, sequence_values(&cb).await.unwrap());
    assert_eq!(seq_a["public.customers_id_seq"], Some(1500));
    assert!(seq_a["public.invoice_number_seq"].unwrap() >= 100_000);

    // Realistic content: unicode survives, values vary, NULLs occur.
    let row = ca
        .query_one(
            "SELECT count(DISTINCT full_name), count(*) FILTER (WHERE email IS NULL), \
                    bool_or(full_name ~ '[ğüşıöçİ]'), count(DISTINCT notes) \
             FROM customers",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) > 500, "names should vary");
    assert!(row.get::<_, i64>(1) > 0, "some emails are NULL");
    assert!(row.get::<_, bool>(2), "Turkish letters present");
    assert!(row.get::<_, i64>(3) > 300, "notes should vary");
    let emoji: bool = ca
        .query_one(
            "SELECT bool_or(comment LIKE '%😍%' OR comment LIKE '%💯%') FROM reviews",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(emoji);

    // The session settings used for loading were reset.
    let tz: String = ca.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    let tz_b: String = cb.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(tz, tz_b);

    // One changed value changes exactly that table's checksum, not its row count.
    ca.execute("UPDATE customers SET notes = 'değişti' WHERE id = 7", &[])
        .await
        .unwrap();
    let changed = table_checksums(&ca).await.unwrap();
    for (table, sum) in &changed {
        if table == "public.customers" {
            assert_ne!(sum.md5, sums_b[table].md5);
            assert_eq!(sum.rows, sums_b[table].rows);
        } else {
            assert_eq!(sum, &sums_b[table], "{table}");
        }
    }
    // Row order does not matter, content does: delete and re-insert the same row.
    cb.batch_execute(
        "CREATE TEMP TABLE keep AS SELECT * FROM reviews WHERE id = 3; \
         DELETE FROM reviews WHERE id = 3; INSERT INTO reviews SELECT * FROM keep;",
    )
    .await
    .unwrap();
    assert_eq!(table_checksums(&cb).await.unwrap(), sums_b);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_cluster_kills_every_server_process_and_removes_the_directory() {
    let cluster = PgCluster::start().await.unwrap();
    let client = cluster.connect("postgres").await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    let pid = cluster.pid().unwrap();
    let dir = cluster.socket_dir().to_path_buf();
    assert!(alive(pid));
    let backends = children_of(pid);
    assert!(!backends.is_empty(), "the postmaster has children");
    drop(cluster);
    assert!(!alive(pid), "postmaster {pid} still running");
    // Backends exit with the postmaster; give the kernel a moment to reap them.
    let mut left: Vec<u32> = backends.clone();
    for _ in 0..100 {
        left.retain(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.contains("postgres"))
                .unwrap_or(false)
        });
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(left.is_empty(), "server processes left behind: {left:?}");
    assert!(!Path::new(&dir).exists(), "{} not removed", dir.display());
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_shuts_the_server_down_cleanly() {
    let mut cluster = PgCluster::start().await.unwrap();
    let pid = cluster.pid().unwrap();
    cluster.stop().await.unwrap();
    assert!(!alive(pid));
    assert!(cluster.pid().is_none());
    assert!(cluster.connect("postgres").await.is_err());
    let log = std::fs::read_to_string(cluster.log_path()).unwrap();
    assert!(log.contains("database system is shut down"), "{log}");
    cluster.stop().await.unwrap();
}
