//! End-to-end tests: the real `backup-database` and `restore-database` binaries against a real
//! throwaway PostgreSQL, with the real openssl, gunzip and psql for interop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup_all;
mod cluster;
mod config_file;
mod entry_points;
mod files;
mod harness;
mod keys;
mod pitr;
mod redis_e2e;
mod redis_hostile;
mod security;
mod wal;

use std::time::Duration;

use backup_testkit::{sequence_values, table_checksums, PgCluster};
use harness::*;

/// `restore-database` arguments that put the newest backup in place of the source database,
/// disconnecting other sessions (the test's own may linger, as an application's would).
const REPLACE_LATEST: &[&str] = &[
    "--latest",
    "--target-db",
    SOURCE_DB,
    "--replace",
    "--terminate-connections",
];

#[tokio::test]
async fn backup_then_restore_into_a_new_database_gives_identical_tables() {
    let w = World::new(1).await;
    let key = w.backup(&[]);
    assert!(
        key.starts_with("database/randevubu_backup_") && key.ends_with(".sql.gz.enc"),
        "{key}"
    );
    assert!(w.object_path(&key).is_file());
    let manifest_path = w.object_path(&format!("{key}.manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["source"]["database"], SOURCE_DB);
    assert!(manifest["source"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15"));
    assert_eq!(manifest["encryption"]["cipher"], "aes-256-cbc");
    assert_eq!(manifest["encryption"]["iterations"], 10000);
    assert_eq!(manifest["compression"]["algorithm"], "gzip");
    assert_eq!(manifest["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["hmac"].as_str().is_some());

    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "restored", "--create"],
        &[],
    );
    assert_success(&out, "restore --latest");
    assert!(
        stdout(&out).contains("restore complete"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("restored").await);
}

#[tokio::test]
async fn zstd_and_custom_format_backups_restore_identically() {
    let w = World::new(1).await;
    let key = w.backup(&[
        "--compression",
        "zstd",
        "--compression-threads",
        "2",
        "--format",
        "custom",
    ]);
    assert!(key.ends_with(".dump.zst.enc"), "{key}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.object_path(&format!("{key}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["compression_threads"], 2, "{manifest}");
    let name = key.rsplit('/').next().unwrap();
    let out = w.run(
        "restore-database",
        &["--file", name, "--target-db", "restored", "--create"],
        &[],
    );
    assert_success(&out, "restore --file");
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("restored").await);
}

#[tokio::test]
async fn our_backup_decrypts_with_openssl_and_loads_with_psql() {
    let w = World::new(1).await;
    let key = w.backup(&[]);
    w.pg.create_database("by_openssl").await.unwrap();
    let mut env = w.env();
    env.insert("PGPASSWORD".into(), w.pg.password().to_owned());
    let script = format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{key_file} -in {obj} | gunzip \
         | psql -X -q -v ON_ERROR_STOP=1 -h {host} -p {port} -U {user} -d by_openssl >/dev/null",
        key_file = w.key_file.display(),
        obj = w.object_path(&key).display(),
        host = w.pg.host(),
        port = w.pg.port(),
        user = w.pg.user(),
    );
    sh(&script, &env);
    assert_eq!(
        w.checksums(SOURCE_DB).await,
        w.checksums("by_openssl").await
    );
}

/// Makes a backup exactly as the old `backup-database.sh` did, under `name`.
fn legacy_backup(w: &World, name: &str) {
    std::fs::create_dir_all(w.backups.join("database")).unwrap();
    let mut env = w.env();
    env.insert("PGPASSWORD".into(), w.pg.password().to_owned());
    let script = format!(
        "pg_dump -h {host} -p {port} -U {user} -d {db} | gzip \
         | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:{key_file} > {out}",
        host = w.pg.host(),
        port = w.pg.port(),
        user = w.pg.user(),
        db = SOURCE_DB,
        key_file = w.key_file.display(),
        out = w.backups.join("database").join(name).display(),
    );
    sh(&script, &env);
}

#[tokio::test]
async fn a_backup_made_by_the_old_shell_script_is_listed_as_legacy_and_restores() {
    let w = World::new(1).await;
    legacy_backup(&w, "randevubu_backup_20240115_020000.sql.gz.enc");

    let out = w.run("restore-database", &["--list"], &[]);
    assert_success(&out, "--list");
    let text = stdout(&out);
    assert!(
        text.contains("randevubu_backup_20240115_020000.sql.gz.enc"),
        "{text}"
    );
    assert!(text.contains("legacy"), "{text}");
    assert!(text.contains("2024-01-15 02:00:00"), "{text}");

    // A legacy backup cannot be authenticated: --latest does not choose it on its own.
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "from_legacy", "--create"],
        &[],
    );
    assert_exit(&out, 2, "--latest with only a legacy backup");
    assert!(stderr(&out).contains("--allow-legacy"), "{}", stderr(&out));
    assert!(!w.databases().await.contains(&"from_legacy".to_owned()));

    // With --allow-legacy (or BACKUP_ALLOW_LEGACY=true) it does, with a warning.
    let out = w.run(
        "restore-database",
        &[
            "--latest",
            "--allow-legacy",
            "--target-db",
            "from_legacy",
            "--create",
        ],
        &[],
    );
    assert_success(&out, "restore legacy --latest --allow-legacy");
    assert!(
        stderr(&out).contains("cannot be authenticated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        w.checksums(SOURCE_DB).await,
        w.checksums("from_legacy").await
    );

    // By name it restores without the flag, with the same warning.
    let out = w.run(
        "restore-database",
        &[
            "--file",
            "randevubu_backup_20240115_020000.sql.gz.enc",
            "--dry-run",
        ],
        &[("BACKUP_ALLOW_LEGACY", "false")],
    );
    assert_success(&out, "legacy by name");
    assert!(
        stderr(&out).contains("cannot be authenticated"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains("verified"),
        "a legacy backup was called verified: {}",
        stdout(&out)
    );
}

#[tokio::test]
async fn list_json_latest_and_date_select_the_right_backups() {
    let w = World::new(1).await;
    legacy_backup(&w, "randevubu_backup_20240115_020000.sql.gz.enc");
    legacy_backup(&w, "randevubu_backup_20240115_230000.sql.gz.enc");
    legacy_backup(&w, "randevubu_backup_20240116_020000.sql.gz.enc");
    let ours = w.backup(&[]);

    let out = w.run("restore-database", &["--list", "--json"], &[]);
    assert_success(&out, "--list --json");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0]["name"],
        "randevubu_backup_20240115_020000.sql.gz.enc"
    );
    assert_eq!(rows[0]["status"], "legacy");
    assert_eq!(rows[0]["time"], "2024-01-15T02:00:00+00:00");
    assert_eq!(rows[3]["key"], ours.as_str());
    assert_eq!(rows[3]["status"], "complete");
    assert_eq!(rows[3]["key_id"].as_str().unwrap().len(), 16);

    // --date picks the newest of that UTC day; --latest the newest overall. Dry runs say which.
    // That day has legacy backups only: they are chosen only when allowed.
    let out = w.run(
        "restore-database",
        &["--date", "2024-01-15", "--dry-run"],
        &[],
    );
    assert_exit(&out, 2, "--date of a day with legacy backups only");
    assert!(stderr(&out).contains("--allow-legacy"), "{}", stderr(&out));
    let out = w.run(
        "restore-database",
        &["--date", "2024-01-15", "--dry-run"],
        &[("BACKUP_ALLOW_LEGACY", "true")],
    );
    assert_success(&out, "--date --dry-run");
    assert!(
        stdout(&out).contains("randevubu_backup_20240115_230000"),
        "{}",
        stdout(&out)
    );
    let out = w.run("restore-database", &["--latest", "--dry-run"], &[]);
    assert_success(&out, "--latest --dry-run");
    assert!(stdout(&out).contains(&ours), "{}", stdout(&out));

    let out = w.run(
        "restore-database",
        &["--date", "2023-12-31", "--dry-run"],
        &[],
    );
    assert_exit(&out, 2, "--date with no backup");
    assert!(stderr(&out).contains("2024-01-16"), "{}", stderr(&out));
    let out = w.run("restore-database", &["--date", "15/01/2024"], &[]);
    assert_exit(&out, 3, "malformed --date");
}

#[tokio::test]
async fn dry_run_verifies_the_whole_backup_and_touches_no_database() {
    let w = World::new(1).await;
    w.backup(&[]);
    let before = w.databases().await;
    let out = w.run(
        "restore-database",
        &[
            "--latest",
            "--dry-run",
            "--target-db",
            "never_created",
            "--create",
        ],
        &[],
    );
    assert_success(&out, "--dry-run");
    assert!(stdout(&out).contains("dry run OK"), "{}", stdout(&out));
    assert_eq!(before, w.databases().await);
}

/// Flips one byte in the middle of the stored object.
fn flip_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn damaged_or_wrongly_keyed_backups_are_refused_and_the_target_is_untouched() {
    let w = World::new(1).await;
    let key = w.backup(&[]);
    let object = w.object_path(&key);
    let pristine = std::fs::read(&object).unwrap();
    // A target that already holds data; --replace would swap it if the restore went through.
    let target_before = w.checksums(SOURCE_DB).await;
    let dbs_before = w.databases().await;

    let attempt = |what: &str| {
        let out = w.run("restore-database", REPLACE_LATEST, &[]);
        assert_exit(&out, 2, what);
        stderr(&out)
    };

    flip_byte(&object);
    let err = attempt("flipped byte");
    assert!(
        err.contains("SHA-256") || err.contains("integrity"),
        "{err}"
    );
    assert_eq!(w.checksums(SOURCE_DB).await, target_before);
    assert_eq!(w.databases().await, dbs_before);

    std::fs::write(&object, &pristine[..pristine.len() - 1000]).unwrap();
    let err = attempt("truncated");
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(w.checksums(SOURCE_DB).await, target_before);

    std::fs::write(&object, &pristine).unwrap();
    let manifest = w.object_path(&format!("{key}.manifest.json"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"plain\"", "\"custom\"")).unwrap();
    let err = attempt("tampered manifest");
    assert!(err.contains("HMAC"), "{err}");
    std::fs::write(&manifest, text).unwrap();

    let other_key = w.dir.path().join("other.key");
    write_key(&other_key, "a different key\n");
    let out = w.run(
        "restore-database",
        REPLACE_LATEST,
        &[("BACKUP_ENCRYPTION_KEY_FILE", other_key.to_str().unwrap())],
    );
    assert_exit(&out, 2, "wrong key");
    assert!(stderr(&out).contains("key id"), "{}", stderr(&out));

    assert_eq!(w.checksums(SOURCE_DB).await, target_before);
    assert_eq!(w.databases().await, dbs_before);

    // The key rotated: the old key in the keyring directory is found by derivation (the
    // manifest names its key by an id derived from its own salt, not by a fixed label).
    let ring_dir = w.dir.path().join("keys.d");
    std::fs::create_dir(&ring_dir).unwrap();
    write_key(&ring_dir.join("old.key"), "correct horse battery staple\n");
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "rotated", "--create"],
        &[
            ("BACKUP_ENCRYPTION_KEY_FILE", other_key.to_str().unwrap()),
            ("BACKUP_KEYRING_DIR", ring_dir.to_str().unwrap()),
        ],
    );
    assert_success(&out, "restore with the old key in the keyring");
    assert_eq!(w.checksums("rotated").await, target_before);

    // The untouched backup still restores: the refusals were about the damage, nothing else.
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "fine", "--create"],
        &[],
    );
    assert_success(&out, "pristine restore");
}

#[tokio::test]
async fn a_legacy_backup_with_a_wrong_key_or_cut_short_is_refused_and_leaves_nothing() {
    let w = World::new(1).await;
    let name = "randevubu_backup_20240115_020000.sql.gz.enc";
    legacy_backup(&w, name);
    let path = w.backups.join("database").join(name);
    let dbs_before = w.databases().await;

    let other_key = w.dir.path().join("other.key");
    write_key(&other_key, "a different key\n");
    let out = w.run(
        "restore-database",
        &["--file", name, "--target-db", "legacy_target", "--create"],
        &[("BACKUP_ENCRYPTION_KEY_FILE", other_key.to_str().unwrap())],
    );
    assert_exit(&out, 2, "legacy wrong key");
    assert_eq!(w.databases().await, dbs_before, "no database left behind");

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2 / 16 * 16]).unwrap();
    let out = w.run(
        "restore-database",
        &["--file", name, "--target-db", "legacy_target", "--create"],
        &[],
    );
    assert_exit(&out, 2, "legacy truncated");
    assert_eq!(w.databases().await, dbs_before, "no database left behind");
}

#[tokio::test]
async fn replace_keeps_the_old_database_under_a_before_restore_name() {
    let w = World::new(1).await;
    let original = w.checksums(SOURCE_DB).await;
    w.backup(&[]);
    // Change the live database after the backup.
    let client = w.pg.connect(SOURCE_DB).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE added_after_backup (id int); INSERT INTO added_after_backup VALUES (1);",
        )
        .await
        .unwrap();
    drop(client);
    let changed = w.checksums(SOURCE_DB).await;
    assert_ne!(changed, original);

    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", SOURCE_DB],
        &[],
    );
    assert_exit(
        &out,
        2,
        "restore over a database with tables, without --replace",
    );
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    assert_eq!(w.checksums(SOURCE_DB).await, changed);

    // The test's own sessions may linger for a moment: --terminate-connections ends them, as
    // an operator would for a live application.
    let out = w.run("restore-database", REPLACE_LATEST, &[]);
    assert_success(&out, "--replace");
    assert_eq!(w.checksums(SOURCE_DB).await, original);
    let aside: Vec<String> = w
        .databases()
        .await
        .into_iter()
        .filter(|d| d.starts_with("randevubu_before_restore_"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(w.checksums(&aside[0]).await, changed);
}

/// A misconfigured run (`POSTGRES_DB` unset: the `postgres` database) or a database without
/// user tables is not a successful backup: exit 2 naming the database, nothing stored.
#[tokio::test]
async fn an_empty_database_is_not_a_successful_backup_unless_allowed() {
    let w = World::new(1).await;
    w.pg.create_database("hollow").await.unwrap();
    let hollow = w.pg.connect("hollow").await.unwrap();
    // A view, a function and an extension, but no table of its own.
    hollow
        .batch_execute(
            "CREATE EXTENSION pgcrypto; CREATE VIEW v AS SELECT 1 AS one; \
             CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        )
        .await
        .unwrap();
    let mut unset = w.env();
    unset.remove("POSTGRES_DB");
    let runs = [
        (
            "POSTGRES_DB unset",
            clean_command("backup-database", &unset).output(),
        ),
        (
            "no user tables",
            w.command("backup-database")
                .env("POSTGRES_DB", "hollow")
                .output(),
        ),
    ];
    for ((what, out), db) in runs.into_iter().zip(["postgres", "hollow"]) {
        let out = out.unwrap();
        assert_exit(&out, 2, what);
        let err = stderr(&out);
        assert!(err.contains(&format!("database \"{db}\"")), "{what}: {err}");
        assert!(err.contains("no user tables"), "{what}: {err}");
        assert!(err.contains("POSTGRES_DB"), "{what}: {err}");
        assert!(err.contains("--allow-empty"), "{what}: {err}");
        assert!(stdout(&out).trim().is_empty(), "{what}: no name printed");
    }
    assert!(files_under(&w.backups).is_empty(), "nothing stored");

    // Asked for, by flag or by setting, it is backed up.
    let out = w.run(
        "backup-database",
        &["--allow-empty"],
        &[("POSTGRES_DB", "hollow")],
    );
    assert_success(&out, "--allow-empty");
    let out = w.run(
        "backup-database",
        &[],
        &[("POSTGRES_DB", "hollow"), ("POSTGRES_ALLOW_EMPTY", "true")],
    );
    assert_success(&out, "POSTGRES_ALLOW_EMPTY=true");
}

/// `pg_dump --schema-only` of `db` on `cluster`, without the random `\restrict` key lines.
pub(crate) fn schema_only(cluster: &PgCluster, db: &str) -> String {
    let out = std::process::Command::new(cluster.bin_dir().join("pg_dump"))
        .args(["--schema-only", "--no-password"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", cluster.password())
        .env("PGDATABASE", db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Objects owned by an application role, with grants to a second one, restored into a new
/// cluster (initdb'd, never the source): without the roles the restore fails; with
/// `--with-globals` the roles come first (password included), owners and grants are kept, and
/// a second run finds the roles there and changes nothing.
#[tokio::test]
async fn with_globals_a_new_server_gets_the_roles_owners_and_grants_back() {
    let w = World::new(1).await;
    let source = w.pg.connect(SOURCE_DB).await.unwrap();
    source
        .batch_execute(
            "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw-1'; \
             CREATE ROLE \"Read Only\" NOLOGIN; \
             GRANT \"Read Only\" TO app_owner; \
             ALTER ROLE app_owner SET statement_timeout = '5min'; \
             CREATE TABLE owned (id serial PRIMARY KEY, v text); \
             INSERT INTO owned (v) SELECT md5(i::text) FROM generate_series(1, 500) i; \
             CREATE VIEW owned_view AS SELECT id FROM owned; \
             ALTER TABLE owned OWNER TO app_owner; \
             ALTER VIEW owned_view OWNER TO app_owner; \
             GRANT SELECT ON owned TO \"Read Only\"; \
             CREATE EXTENSION pgcrypto; \
             CREATE FUNCTION owned_digest() RETURNS text LANGUAGE sql \
               AS 'SELECT encode(digest(string_agg(v, '','' ORDER BY id), ''sha256''), ''hex'') FROM owned'; \
             ALTER FUNCTION owned_digest() OWNER TO app_owner; \
             SELECT setval('owned_id_seq', 4242);",
        )
        .await
        .unwrap();
    let expected = w.checksums(SOURCE_DB).await;
    let key = w.backup(&[]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.object_path(&format!("{key}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let globals = &manifest["attachments"]["globals.sql"];
    assert!(globals["plain_bytes"].as_u64().unwrap() > 0, "{manifest}");
    let text = manifest.to_string();
    assert!(
        !text.contains("app_owner"),
        "the roles are encrypted: {text}"
    );
    assert_eq!(manifest["source"]["globals"]["role_passwords"], true);

    let target = PgCluster::start().await.unwrap();
    let mut env = w.env();
    env.extend(target.env(SOURCE_DB));
    let restore = |args: &[&str]| clean_command("restore-database", &env).args(args).output();

    // Without the roles, the dump's ALTER ... OWNER TO fails on the new server.
    let out = restore(&["--latest", "--create"]).unwrap();
    assert_exit(&out, 2, "restore without the roles");
    assert!(stderr(&out).contains("app_owner"), "{}", stderr(&out));

    let out = restore(&["--latest", "--dry-run", "--with-globals"]).unwrap();
    assert_success(&out, "dry run with globals");
    assert!(
        stdout(&out).contains("roles in the backup: Read Only, app_owner, postgres"),
        "{}",
        stdout(&out)
    );

    let out = restore(&["--latest", "--create", "--with-globals"]).unwrap();
    assert_success(&out, "restore with globals");
    let report = stdout(&out);
    assert!(
        report.contains("roles created: Read Only, app_owner ("),
        "{report}"
    );
    assert!(report.contains("left unchanged: postgres"), "{report}");
    assert!(report.contains("matches the backup"), "{report}");
    assert!(
        report.contains(&format!("{} tables", expected.len())),
        "{report}"
    );
    assert!(report.contains("1 memberships"), "{report}");
    assert!(
        !report.contains("SCRAM"),
        "no password hash in the report: {report}"
    );

    let restored = target.connect(SOURCE_DB).await.unwrap();
    let checksums = table_checksums(&restored).await.unwrap();
    assert_eq!(checksums, expected);
    assert_eq!(
        sequence_values(&restored).await.unwrap(),
        sequence_values(&source).await.unwrap(),
        "every sequence's value"
    );
    assert_eq!(
        schema_only(&target, SOURCE_DB),
        schema_only(&w.pg, SOURCE_DB),
        "pg_dump --schema-only of both sides"
    );
    let row = restored
        .query_one(
            "SELECT (SELECT tableowner FROM pg_tables WHERE tablename = 'owned'), \
                    (SELECT viewowner FROM pg_views WHERE viewname = 'owned_view'), \
                    has_table_privilege('Read Only', 'owned', 'SELECT'), \
                    pg_has_role('app_owner', 'Read Only', 'MEMBER')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app_owner");
    assert_eq!(row.get::<_, String>(1), "app_owner");
    assert!(row.get::<_, bool>(2), "the grant is back");
    assert!(row.get::<_, bool>(3), "the membership is back");
    // The application role logs in with its old password.
    let (app, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=app_owner password=owner-pw-1 dbname={SOURCE_DB}",
            target.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("app_owner logs in with its old password");
    tokio::spawn(connection);
    let timeout: String = app
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "5min", "the role's settings are back");

    // Again, with the report as JSON: the roles exist and are left as they are.
    let out = restore(&[
        "--latest",
        "--target-db",
        "again",
        "--create",
        "--with-globals",
        "--json",
    ])
    .unwrap();
    assert_success(&out, "second restore with globals");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["matches_backup"], true, "{report}");
    assert_eq!(report["database"], "again");
    assert_eq!(report["backup"].as_str().unwrap(), key);
    assert!(report["backup_started_at"].is_string(), "{report}");
    assert_eq!(
        report["tables"].as_object().unwrap().len(),
        expected.len(),
        "{report}"
    );
    assert_eq!(report["tables"]["public.owned"], 500);
    assert_eq!(report["recorded_tables"], expected.len());
    let globals = &report["globals"];
    assert_eq!(globals["roles_created"], serde_json::json!([]));
    assert_eq!(
        globals["roles_existing"],
        serde_json::json!(["Read Only", "app_owner", "postgres"])
    );

    // The other restores print text, and say so when asked for JSON.
    let out = clean_command("restore-files", &env)
        .args(["--kind", "config", "--latest", "--json", "--target-dir"])
        .arg(w.dir.path().join("files"))
        .output()
        .unwrap();
    assert_exit(&out, 3, "restore-files --json without --list");
    assert!(
        stderr(&out).contains("--json goes with --list"),
        "{}",
        stderr(&out)
    );
}

/// A backup user that may not read role passwords (as on a managed server): the roles are
/// captured without them and a warning says so; `--no-role-passwords` asks for that directly.
#[tokio::test]
async fn roles_are_captured_without_passwords_where_the_server_refuses_them() {
    let w = World::new(1).await;
    let source = w.pg.connect(SOURCE_DB).await.unwrap();
    source
        .batch_execute(
            "CREATE ROLE dumper LOGIN PASSWORD 'dumper-pw'; \
             DO $$ DECLARE s text; BEGIN \
               FOR s IN SELECT nspname FROM pg_namespace \
                        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
               LOOP \
                 EXECUTE format('GRANT USAGE ON SCHEMA %I TO dumper', s); \
                 EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO dumper', s); \
                 EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO dumper', s); \
               END LOOP; END $$;",
        )
        .await
        .unwrap();
    let globals_of = |name: &str| -> serde_json::Value {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(w.object_path(&format!("{name}.manifest.json"))).unwrap(),
        )
        .unwrap();
        manifest["source"]["globals"].clone()
    };
    let out = w.run(
        "backup-database",
        &[],
        &[
            ("POSTGRES_USER", "dumper"),
            ("POSTGRES_PASSWORD", "dumper-pw"),
        ],
    );
    assert_success(&out, "backup by a user without superuser");
    assert!(
        stderr(&out).contains("without them"),
        "a warning says so: {}",
        stderr(&out)
    );
    assert_eq!(globals_of(stdout(&out).trim())["role_passwords"], false);

    std::thread::sleep(Duration::from_millis(1100));
    let out = w.run("backup-database", &["--no-role-passwords"], &[]);
    assert_success(&out, "--no-role-passwords");
    assert!(!stderr(&out).contains("without them"), "{}", stderr(&out));
    assert_eq!(globals_of(stdout(&out).trim())["role_passwords"], false);

    // Not captured at all: --with-globals says the backup holds none.
    std::thread::sleep(Duration::from_millis(1100));
    let out = w.run("backup-database", &[], &[("POSTGRES_GLOBALS", "false")]);
    assert_success(&out, "POSTGRES_GLOBALS=false");
    let name = stdout(&out).trim().to_owned();
    assert_eq!(globals_of(&name), serde_json::Value::Null);
    let file = name.rsplit('/').next().unwrap();
    let out = w.run(
        "restore-database",
        &["--file", file, "--dry-run", "--with-globals"],
        &[],
    );
    assert_exit(&out, 2, "--with-globals of a backup without globals");
    assert!(stderr(&out).contains("holds no roles"), "{}", stderr(&out));
}

#[tokio::test]
async fn an_unreachable_server_fails_with_exit_2_and_leaves_no_backup() {
    let w = World::new(1).await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = w.run("backup-database", &[], &[("POSTGRES_PORT", &closed_port)]);
    assert_exit(&out, 2, "unreachable server");
    assert!(stderr(&out).contains(&closed_port), "{}", stderr(&out));
    assert!(
        !w.backups.exists(),
        "nothing may be left behind, not even the directory: {:?}",
        w.files()
    );
    // So there is nothing to list: a directory that does not exist is a configuration error.
    let out = w.run("restore-database", &["--list"], &[]);
    assert_exit(&out, 3, "--list of a directory that was never created");
}

#[tokio::test]
async fn a_wrong_password_fails_with_exit_2_without_printing_the_password() {
    let w = World::new(1).await;
    let out = w.run(
        "backup-database",
        &[],
        &[("POSTGRES_PASSWORD", "not-the-password-x9")],
    );
    assert_exit(&out, 2, "wrong password");
    let err = stderr(&out);
    assert!(!err.contains("not-the-password-x9"), "{err}");
    assert!(!err.contains(w.pg.password()), "{err}");
    assert!(w.files().is_empty(), "{:?}", w.files());
}

#[tokio::test]
async fn configuration_errors_exit_3_with_advice() {
    let w = World::new(1).await;

    let out = w.run("backup-database", &[], &[("BACKUP_LOCAL_DIR", "")]);
    assert_exit(&out, 3, "no destination");
    assert!(
        stderr(&out).contains("BACKUP_LOCAL_DIR"),
        "{}",
        stderr(&out)
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&w.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = w.run("backup-database", &[], &[]);
    assert_exit(&out, 3, "world-readable key");
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&w.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let empty = w.dir.path().join("empty.key");
    write_key(&empty, "\n");
    let out = w.run(
        "backup-database",
        &["--key-file", empty.to_str().unwrap()],
        &[],
    );
    assert_exit(&out, 3, "empty key");
    assert!(stderr(&out).contains("empty.key"), "{}", stderr(&out));

    let missing = w.dir.path().join("missing.key");
    let out = w.run(
        "backup-database",
        &["--key-file", missing.to_str().unwrap()],
        &[],
    );
    assert_exit(&out, 3, "missing key");

    let out = w.run("backup-database", &["--compression", "lz4"], &[]);
    assert_exit(&out, 3, "unknown compression");
    assert!(w.files().is_empty(), "{:?}", w.files());
}

#[tokio::test]
async fn two_backups_a_second_apart_are_both_kept() {
    let w = World::new(1).await;
    let first = w.backup(&[]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = w.backup(&[]);
    assert_ne!(first, second);
    let out = w.run("restore-database", &["--list", "--json"], &[]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["status"] == "complete"));
}

#[tokio::test]
async fn file_accepts_a_path_outside_the_backup_directory_and_uses_the_manifest_beside_it() {
    let w = World::new(1).await;
    let key = w.backup(&[]);
    let elsewhere = w.dir.path().join("usb");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let name = key.rsplit('/').next().unwrap();
    let copied = elsewhere.join(name);
    std::fs::copy(w.object_path(&key), &copied).unwrap();
    let manifest = format!("{name}.manifest.json");
    std::fs::copy(
        w.object_path(&format!("{key}.manifest.json")),
        elsewhere.join(&manifest),
    )
    .unwrap();
    // The copy is verified against its manifest: damage it and it is refused.
    flip_byte(&copied);
    let out = w.run(
        "restore-database",
        &["--file", copied.to_str().unwrap(), "--dry-run"],
        &[],
    );
    assert_exit(&out, 2, "damaged copy");
    std::fs::copy(w.object_path(&key), &copied).unwrap();
    let out = w.run(
        "restore-database",
        &[
            "--file",
            copied.to_str().unwrap(),
            "--target-db",
            "from_copy",
            "--create",
        ],
        &[],
    );
    assert_success(&out, "--file PATH");
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("from_copy").await);
}

#[tokio::test]
async fn sigterm_during_a_backup_stops_it_and_leaves_nothing_behind() {
    let w = World::new(15).await;
    let child = w
        .command("backup-database")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the backup is being written (its temp file exists), then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !w.files().iter().any(|f| f.contains(".tmp-")) {
        assert!(
            std::time::Instant::now() < deadline,
            "backup never started writing: {:?}",
            w.files()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2, "SIGTERM during backup");
    assert!(
        stderr(&out).contains("interrupted by SIGTERM"),
        "{}",
        stderr(&out)
    );
    assert!(w.files().is_empty(), "left behind: {:?}", w.files());
}

#[tokio::test]
async fn the_embedding_examples_back_up_and_restore_without_the_testkit() {
    let w = World::new(1).await;
    let run = |name: &str, args: &[&str]| {
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join(name);
        assert!(
            path.is_file(),
            "{} is not built: run `cargo build --workspace --examples` (scripts/test.sh does)",
            path.display()
        );
        let mut cmd = std::process::Command::new(path);
        cmd.env_clear()
            .envs(w.env())
            .env("PATH", std::env::var("PATH").unwrap());
        cmd.args(args).output().unwrap()
    };
    let out = run("embed_backup", &[]);
    assert_success(&out, "examples/embed_backup.rs");
    let key = stdout(&out).trim().to_owned();
    assert!(w.object_path(&key).is_file(), "{key}");
    assert!(w.object_path(&format!("{key}.manifest.json")).is_file());
    // The binaries see the example's backup as complete.
    let out = w.run("restore-database", &["--list"], &[]);
    assert!(stdout(&out).contains("complete"), "{}", stdout(&out));
    let out = run("embed_restore", &["from_example"]);
    assert_success(&out, "examples/embed_restore.rs");
    assert_eq!(
        w.checksums(SOURCE_DB).await,
        w.checksums("from_example").await
    );
}

/// Runs `name` with the world's environment plus the S3 server's for `bucket`.
fn run_with_s3(
    w: &World,
    s3: &backup_testkit::S3Server,
    bucket: &str,
    name: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> std::process::Output {
    let s3_env = s3.env(bucket);
    let mut all: Vec<(&str, &str)> = s3_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(extra);
    w.run(name, args, &all)
}

// The in-process S3 server needs a runtime thread of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_goes_to_local_disk_and_s3_and_restores_from_either() {
    let w = World::new(1).await;
    let s3 = backup_testkit::S3Server::start().await.unwrap();
    s3.create_bucket("backups").await.unwrap();
    let prefix = [
        ("BACKUP_S3_PREFIX", "prod"),
        ("BACKUP_S3_PART_SIZE", "5MiB"),
    ];

    let out = run_with_s3(&w, &s3, "backups", "backup-database", &[], &prefix);
    assert_success(&out, "backup to local + s3");
    let key = stdout(&out).trim().to_owned();
    assert!(w.object_path(&key).is_file());
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket("backups")
        .prefix("prod/database/")
        .send()
        .await
        .unwrap();
    let names: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(names.contains(&format!("prod/{key}")), "{names:?}");
    assert!(
        names.contains(&format!("prod/{key}.manifest.json")),
        "{names:?}"
    );

    let out = run_with_s3(&w, &s3, "backups", "restore-database", &["--list"], &prefix);
    assert_success(&out, "--list");
    assert!(stdout(&out).contains("local,s3"), "{}", stdout(&out));

    // From S3 explicitly, then from S3 because the local copy is damaged; each time the
    // object is downloaded exactly once (verified into a private copy, restored from that).
    let size = std::fs::metadata(w.object_path(&key)).unwrap().len();
    let s3_key = format!("prod/{key}");
    s3.clear_requests();
    let out = run_with_s3(
        &w,
        &s3,
        "backups",
        "restore-database",
        &[
            "--latest",
            "--from",
            "s3",
            "--target-db",
            "from_s3",
            "--create",
        ],
        &prefix,
    );
    assert_success(&out, "--from s3");
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("from_s3").await);
    assert_eq!(s3.bytes_served("backups", &s3_key), size, "one download");

    flip_byte(&w.object_path(&key));
    s3.clear_requests();
    let out = run_with_s3(
        &w,
        &s3,
        "backups",
        "restore-database",
        &["--latest", "--target-db", "fallback", "--create"],
        &prefix,
    );
    assert_success(&out, "fallback to s3");
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("trying the next destination"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("fallback").await);
    assert_eq!(s3.bytes_served("backups", &s3_key), size, "one download");

    // A local copy cut short falls back too, and with no intact copy anywhere nothing is
    // restored and each destination's problem is named.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(w.object_path(&key))
        .unwrap();
    file.set_len(size / 2).unwrap();
    let out = run_with_s3(
        &w,
        &s3,
        "backups",
        "restore-database",
        &["--latest", "--target-db", "fallback2", "--create"],
        &prefix,
    );
    assert_success(&out, "fallback from a truncated local copy");
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("fallback2").await);
    let mut damaged = s3
        .client()
        .get_object()
        .bucket("backups")
        .key(&s3_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec();
    damaged[1000] ^= 1;
    s3.client()
        .put_object()
        .bucket("backups")
        .key(&s3_key)
        .body(damaged.into())
        .send()
        .await
        .unwrap();
    let out = run_with_s3(
        &w,
        &s3,
        "backups",
        "restore-database",
        &["--latest", "--target-db", "nowhere", "--create"],
        &prefix,
    );
    assert_exit(&out, 2, "no intact copy");
    let err = stderr(&out);
    assert!(err.contains("no destination holds a usable copy"), "{err}");
    assert!(err.contains("local:") && err.contains("s3:"), "{err}");
    assert!(
        !w.databases().await.contains(&"nowhere".to_owned()),
        "nothing created"
    );
}

// The in-process S3 server needs a runtime thread of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_s3_destination_still_commits_the_local_copy_and_exits_1() {
    let w = World::new(1).await;
    let s3 = backup_testkit::S3Server::start().await.unwrap();
    // The bucket does not exist: every S3 request fails.
    let out = run_with_s3(&w, &s3, "missing-bucket", "backup-database", &[], &[]);
    assert_exit(&out, 1, "partial: local ok, s3 failed");
    let key = stdout(&out).trim().to_owned();
    assert!(w.object_path(&key).is_file(), "local copy committed");
    assert!(w.object_path(&format!("{key}.manifest.json")).is_file());
    assert!(stderr(&out).contains("s3"), "{}", stderr(&out));
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "restored", "--create"],
        &[],
    );
    assert_success(&out, "restore of the local copy");
}

// The in-process S3 server needs a runtime thread of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_s3_upload_aborts_it_and_leaves_no_pending_upload() {
    let w = World::new(15).await;
    let s3 = backup_testkit::S3Server::start().await.unwrap();
    s3.create_bucket("backups").await.unwrap();
    // Uncompressed, so the dump is several 5 MiB parts long.
    let child = w
        .command("backup-database")
        .envs(s3.env("backups"))
        .env("BACKUP_COMPRESSION", "none")
        .env("BACKUP_S3_PART_SIZE", "5MiB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s3.requests_of("UploadPart").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no part was ever uploaded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_exit(&out, 2, "SIGTERM during an S3 upload");
    assert!(
        !s3.requests_of("AbortMultipartUpload").is_empty(),
        "the upload was not aborted"
    );
    let pending = s3
        .client()
        .list_multipart_uploads()
        .bucket("backups")
        .send()
        .await
        .unwrap();
    assert!(pending.uploads().is_empty(), "{:?}", pending.uploads());
    let objects = s3
        .client()
        .list_objects_v2()
        .bucket("backups")
        .send()
        .await
        .unwrap();
    assert!(objects.contents().is_empty(), "{:?}", objects.contents());
    assert!(w.files().is_empty(), "left behind locally: {:?}", w.files());
}
