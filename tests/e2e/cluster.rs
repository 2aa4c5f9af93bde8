//! Several databases of one server: `backup-database --all-databases` and `POSTGRES_DB=a,b`
//! (one object per database, names carrying the database, one run recorded in each
//! manifest), `restore-database --all --with-globals` of a whole cluster into a new, empty
//! one (initdb'd, never the source) from S3 with nothing but the key file and the bucket,
//! `--list` grouped by database, `--database NAME`, retention per database and `backup-all`.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use backup_testkit::{sequence_values, table_checksums, PgCluster, S3Server};

use crate::harness::*;
use crate::schema_only;

const BUCKET: &str = "cluster-backups";

/// Runs `cmd` to its end off the runtime's threads (the S3 server needs them).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run binary"))
        .await
        .unwrap()
}

async fn databases(cluster: &PgCluster) -> Vec<String> {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .query("SELECT datname FROM pg_database ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// A second database, `billing`, owned by an application role, with objects owned by it,
/// grants to a second role, a sequence moved on, a view, a function and pgcrypto; the first
/// database gets an object of the role too. And a database without tables.
async fn second_database(w: &World) {
    let admin = w.pg.connect("postgres").await.unwrap();
    for sql in [
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw-2'",
        "CREATE ROLE reporting NOLOGIN",
        "GRANT reporting TO app_owner",
        "CREATE DATABASE billing OWNER app_owner",
        "CREATE DATABASE empty_one",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let billing = w.pg.connect("billing").await.unwrap();
    billing
        .batch_execute(
            "CREATE EXTENSION pgcrypto; \
             CREATE TABLE invoices (id serial PRIMARY KEY, amount numeric, memo text); \
             INSERT INTO invoices (amount, memo) \
               SELECT i * 1.5, md5(i::text) FROM generate_series(1, 300) i; \
             CREATE VIEW big_invoices AS SELECT id FROM invoices WHERE amount > 100; \
             CREATE FUNCTION invoice_digest() RETURNS text LANGUAGE sql \
               AS 'SELECT encode(digest(string_agg(memo, '','' ORDER BY id), ''sha256''), ''hex'') FROM invoices'; \
             ALTER TABLE invoices OWNER TO app_owner; \
             ALTER VIEW big_invoices OWNER TO app_owner; \
             ALTER FUNCTION invoice_digest() OWNER TO app_owner; \
             GRANT SELECT ON invoices TO reporting; \
             SELECT setval('invoices_id_seq', 9001);",
        )
        .await
        .unwrap();
    let main = w.pg.connect(SOURCE_DB).await.unwrap();
    main.batch_execute(
        "CREATE TABLE app_notes (id bigserial PRIMARY KEY, note text); \
         INSERT INTO app_notes (note) VALUES ('a'), ('b'); \
         ALTER TABLE app_notes OWNER TO app_owner;",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_whole_cluster_comes_back_into_an_empty_one_from_the_bucket_and_the_key_alone() {
    let w = World::new(1).await;
    second_database(&w).await;
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let mut env = w.env();
    env.remove("BACKUP_LOCAL_DIR");
    env.extend(s3.env(BUCKET));

    let mut backup = clean_command("backup-database", &env);
    backup.arg("--all-databases");
    let out = run(backup).await;
    assert_success(&out, "backup-database --all-databases");
    let keys: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("database/randevubu_billing_backup_")
            && keys[1].starts_with("database/randevubu_randevubu_backup_"),
        "{keys:?}"
    );
    assert!(
        stderr(&out).contains("left out, without user tables: empty_one, postgres"),
        "{}",
        stderr(&out)
    );
    // Each manifest records the same run and carries the roles.
    let mut runs = Vec::new();
    for key in &keys {
        let body = s3
            .client()
            .get_object()
            .bucket(BUCKET)
            .key(format!("{key}.manifest.json"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            manifest["attachments"]["globals.sql"]["plain_bytes"]
                .as_u64()
                .unwrap()
                > 0
        );
        runs.push(manifest["source"]["cluster_run"].clone());
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(
        runs[0]["databases"],
        serde_json::json!(["billing", "randevubu"])
    );

    // Listing: grouped by database.
    let mut list = clean_command("restore-database", &env);
    list.arg("--list");
    let out = run(list).await;
    assert_success(&out, "--list");
    let text = stdout(&out);
    assert!(
        text.contains("database billing (randevubu_billing_backup_*):")
            && text.contains("database randevubu (randevubu_randevubu_backup_*):"),
        "{text}"
    );
    let mut list = clean_command("restore-database", &env);
    list.args(["--list", "--json"]);
    let out = run(list).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dbs: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs, ["billing", "randevubu"], "{rows}");

    // A new server with nothing but the key file and the bucket.
    let target = PgCluster::start().await.unwrap();
    let mut bare: BTreeMap<String, String> = s3.env(BUCKET).into_iter().collect();
    bare.insert(
        "BACKUP_ENCRYPTION_KEY_FILE".into(),
        w.key_file.display().to_string(),
    );
    bare.extend(target.env("postgres"));
    let restore = |args: &[&str]| {
        let mut cmd = clean_command("restore-database", &bare);
        cmd.args(args);
        cmd
    };
    let out = run(restore(&["--all", "--latest", "--with-globals"])).await;
    assert_success(&out, "restore-database --all --latest --with-globals");
    let report = stdout(&out);
    assert!(
        report.contains("roles created: app_owner, reporting ("),
        "{report}"
    );
    assert!(
        report.contains("database billing: database/randevubu_billing_backup_"),
        "{report}"
    );
    assert!(report.contains("(restored)"), "{report}");
    assert_eq!(report.matches("matches the backup").count(), 2, "{report}");

    for db in ["billing", SOURCE_DB] {
        let source = w.pg.connect(db).await.unwrap();
        let restored = target.connect(db).await.unwrap();
        assert_eq!(
            table_checksums(&restored).await.unwrap(),
            table_checksums(&source).await.unwrap(),
            "{db}: every table"
        );
        assert_eq!(
            sequence_values(&restored).await.unwrap(),
            sequence_values(&source).await.unwrap(),
            "{db}: every sequence"
        );
        assert_eq!(
            schema_only(&target, db),
            schema_only(&w.pg, db),
            "{db}: pg_dump --schema-only of both sides"
        );
    }
    let admin = target.connect("postgres").await.unwrap();
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'billing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_owner", "the database keeps its owner");
    let (app, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=app_owner password=owner-pw-2 dbname=billing",
            target.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("app_owner logs in with its old password");
    tokio::spawn(connection);
    let digest: String = app
        .query_one("SELECT invoice_digest()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(digest.len(), 64);

    // A second run finds databases with tables: refused before anything is written.
    let before = databases(&target).await;
    let out = run(restore(&["--all", "--latest", "--with-globals"])).await;
    assert_exit(&out, 2, "a second --all without --replace");
    assert!(stderr(&out).contains("billing"), "{}", stderr(&out));
    assert_eq!(databases(&target).await, before, "nothing was created");
    assert_eq!(
        schema_only(&target, "billing"),
        schema_only(&w.pg, "billing")
    );

    // A dry run checks every backup end to end and touches nothing.
    let out = run(restore(&["--all", "--latest", "--dry-run"])).await;
    assert_success(&out, "--all --dry-run");
    assert_eq!(
        stdout(&out).matches("verified and complete").count(),
        2,
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn named_databases_have_their_own_series_retention_and_restores() {
    let w = World::new(1).await;
    second_database(&w).await;
    let several = [("POSTGRES_DB", "randevubu,billing")];
    let first = w.run("backup-database", &[], &several);
    assert_success(&first, "POSTGRES_DB=randevubu,billing");
    let first: Vec<String> = stdout(&first).lines().map(str::to_owned).collect();
    assert_eq!(first.len(), 2);
    assert!(first[0].starts_with("database/randevubu_randevubu_backup_"));
    assert!(first[1].starts_with("database/randevubu_billing_backup_"));
    std::thread::sleep(Duration::from_millis(1100));
    let second = w.run("backup-database", &[], &several);
    assert_success(&second, "second run");
    let second: Vec<String> = stdout(&second).lines().map(str::to_owned).collect();

    // One database's restore: say which.
    let out = w.run("restore-database", &["--latest"], &several);
    assert_exit(&out, 3, "--latest with several databases configured");
    assert!(stderr(&out).contains("--database NAME"), "{}", stderr(&out));
    let out = w.run(
        "restore-database",
        &[
            "--database",
            "billing",
            "--latest",
            "--target-db",
            "billing_copy",
            "--create",
        ],
        &several,
    );
    assert_success(&out, "--database billing");
    assert!(stdout(&out).contains(&second[1]), "{}", stdout(&out));
    assert_eq!(
        w.checksums("billing_copy").await,
        w.checksums("billing").await
    );

    // Retention judges each database's series on its own: with 0 days each keeps its
    // newest, and one database's backups never push the other's out.
    let out = w.run("backup-prune", &["--retention-days", "0"], &[]);
    assert_success(&out, "backup-prune");
    let left: Vec<String> = w
        .files()
        .into_iter()
        .filter(|f| f.starts_with("database/") && !f.ends_with(".manifest.json"))
        .collect();
    let mut expected = second.clone();
    expected.sort();
    assert_eq!(left, expected);

    // backup-all: one component per database.
    let out = w.run(
        "backup-all",
        &[
            "--json",
            "--skip",
            "redis",
            "--skip",
            "config",
            "--skip",
            "logs",
            "--no-prune",
        ],
        &several,
    );
    assert_success(&out, "backup-all with two databases");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let components: Vec<(&str, &str)> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["component"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        components.contains(&("database:randevubu", "success"))
            && components.contains(&("database:billing", "success")),
        "{report:#}"
    );
}
