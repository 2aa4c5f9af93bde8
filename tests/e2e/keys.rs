//! `backup-key` end to end: a rotation keeps every backup restorable, `reencrypt` moves the old
//! key's backups (on the local directory and in S3) to the new key so that the old key can go,
//! and a backup whose key is gone fails naming the key it needs.

use std::process::{Command, Output};

use backup_testkit::S3Server;

use crate::harness::*;

const BUCKET: &str = "key-rotation";

/// Runs `cmd` to its end off the runtime's threads (the S3 server needs them).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run binary"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rotated_key_keeps_every_backup_restorable_and_reencrypt_retires_the_old_one() {
    let w = World::new(1).await;
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let mut env = w.env();
    env.extend(s3.env(BUCKET));
    let tool = |name: &str, args: &[&str]| {
        let mut cmd = clean_command(name, &env);
        cmd.args(args);
        run(cmd)
    };

    // generate: a new key file, never over an existing one.
    let fresh = w.dir.path().join("fresh/encryption.key");
    let out = tool(
        "backup-key",
        &["generate", "--key-file", fresh.to_str().unwrap()],
    )
    .await;
    assert_success(&out, "backup-key generate");
    assert_eq!(stdout(&out).trim().len(), 16, "{}", stdout(&out));
    let out = tool("backup-key", &["generate"]).await;
    assert_exit(&out, 3, "generate over the existing key");
    assert!(
        stderr(&out).contains("backup-key rotate"),
        "{}",
        stderr(&out)
    );

    let out = tool("backup-key", &["id"]).await;
    assert_success(&out, "backup-key id");
    let first_id = stdout(&out).trim().to_owned();

    // A backup with the first key, on both destinations.
    let first_tables = w.checksums(SOURCE_DB).await;
    let out = tool("backup-database", &[]).await;
    assert_success(&out, "first backup");
    let first = stdout(&out).trim().to_owned();

    // Rotate: the first key goes to keys.d beside the key file.
    let out = tool("backup-key", &["rotate"]).await;
    assert_success(&out, "backup-key rotate");
    let second_id = stdout(&out).trim().to_owned();
    assert_ne!(second_id, first_id);
    let retired = w.dir.path().join(format!("keys.d/{first_id}.key"));
    assert!(retired.is_file(), "{}", stderr(&out));

    // A second backup, with the new key, of changed data.
    let client = w.pg.connect(SOURCE_DB).await.unwrap();
    client
        .batch_execute("CREATE TABLE after_rotation AS SELECT generate_series(1, 100) AS n")
        .await
        .unwrap();
    let second_tables = w.checksums(SOURCE_DB).await;
    let out = tool("backup-database", &[]).await;
    assert_success(&out, "second backup");
    let second = stdout(&out).trim().to_owned();

    // Both restore, each with its own key, found by the manifest's signature.
    let restore = |file: &str, from: &str, db: &str, extra: &[&str]| {
        let mut cmd = clean_command("restore-database", &env);
        cmd.args([
            "--file",
            file,
            "--from",
            from,
            "--target-db",
            db,
            "--create",
        ]);
        cmd.args(extra);
        run(cmd)
    };
    assert_success(
        &restore(&first, "local", "first_a", &[]).await,
        "restore first",
    );
    assert_success(
        &restore(&second, "s3", "second_a", &[]).await,
        "restore second",
    );
    assert_eq!(w.checksums("first_a").await, first_tables);
    assert_eq!(w.checksums("second_a").await, second_tables);

    // The old key is needed by the first backup, on both destinations.
    let out = tool("backup-key", &["list"]).await;
    assert_success(&out, "backup-key list");
    let listing = stdout(&out);
    assert!(
        listing.contains(&format!("{second_id}  current  1 backup(s)"))
            || listing.contains(&format!("{second_id}  current  2 backup(s)")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("{first_id}  older    2 backup(s)")),
        "{listing}"
    );

    // Re-encrypt: the plan first, then the work.
    let out = tool(
        "backup-key",
        &["reencrypt", "--key-id", &first_id, "--dry-run"],
    )
    .await;
    assert_success(&out, "reencrypt --dry-run");
    assert_eq!(
        stdout(&out).matches("would re-encrypt").count(),
        2,
        "{}",
        stdout(&out)
    );
    let out = tool(
        "backup-key",
        &["reencrypt", "--key-id", &first_id, "--json"],
    )
    .await;
    assert_success(&out, "reencrypt");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["items"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["current_key"], second_id.as_str());

    let out = tool("backup-key", &["list"]).await;
    let listing = stdout(&out);
    assert!(
        listing.contains(&format!(
            "{first_id}  older    0 backup(s)  (needed by no backup: retirable)"
        )),
        "{listing}"
    );
    // security-scan says the same.
    let out = tool("security-scan", &["--json"]).await;
    let scan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let old_key = scan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == format!("keyring.{first_id}").as_str())
        .unwrap_or_else(|| panic!("{scan:#}"));
    assert!(
        old_key["what"].as_str().unwrap().contains("retirable"),
        "{old_key}"
    );

    // Retire the old key: every backup still restores, from both destinations, roles too
    // (the manifest's encrypted attachment was re-encrypted with the backup).
    std::fs::remove_file(&retired).unwrap();
    for (from, db) in [("local", "first_b"), ("s3", "first_c")] {
        let out = restore(&first, from, db, &["--with-globals"]).await;
        assert_success(
            &out,
            &format!("restore the re-encrypted backup from {from}"),
        );
        assert_eq!(w.checksums(db).await, first_tables, "{from}");
    }
    assert_success(
        &restore(&second, "local", "second_b", &[]).await,
        "restore second again",
    );

    // A backup whose key is gone fails, naming the key id its manifest records.
    let out = tool("backup-key", &["rotate"]).await;
    assert_success(&out, "second rotation");
    std::fs::remove_file(w.dir.path().join(format!("keys.d/{second_id}.key"))).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.object_path(&format!("{second}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let recorded = manifest["encryption"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = restore(&second, "local", "second_c", &[]).await;
    assert_exit(&out, 2, "restore without its key");
    let err = stderr(&out);
    assert!(
        err.contains("not loaded") && err.contains(&recorded),
        "{err}"
    );
    assert!(!w.databases().await.contains(&"second_c".to_owned()));
}

#[tokio::test]
async fn with_object_lock_every_backup_and_manifest_is_locked_and_prune_plans_around_them() {
    let w = World::new(1).await;
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    let mut env = w.env();
    env.remove("BACKUP_LOCAL_DIR");
    env.extend(s3.env(BUCKET));
    env.insert("BACKUP_S3_OBJECT_LOCK".into(), "governance".into());
    env.insert("BACKUP_S3_OBJECT_LOCK_DAYS".into(), "2".into());
    let tool = |name: &str, args: &[&str], env: &std::collections::BTreeMap<String, String>| {
        let mut cmd = clean_command(name, env);
        cmd.args(args);
        run(cmd)
    };
    let mut backups = Vec::new();
    for _ in 0..2 {
        let out = tool("backup-database", &[], &env).await;
        assert_success(&out, "backup-database with Object Lock");
        backups.push(stdout(&out).trim().to_owned());
    }

    // Every upload of a backup or a manifest carries the lock and a checksum; claims do not.
    let mut locked_uploads = 0;
    for request in s3.requests() {
        if !matches!(request.operation, "PutObject" | "CreateMultipartUpload") {
            continue;
        }
        let key = request.key().unwrap();
        if key.ends_with(".claim") {
            assert_eq!(request.header("x-amz-object-lock-mode"), None, "{key}");
            continue;
        }
        assert!(
            key.ends_with(".enc") || key.ends_with(".manifest.json"),
            "{key}"
        );
        assert_eq!(
            request.header("x-amz-object-lock-mode"),
            Some("GOVERNANCE"),
            "{key}"
        );
        assert!(
            request
                .header("x-amz-object-lock-retain-until-date")
                .is_some(),
            "{key}"
        );
        if request.operation == "PutObject" {
            assert!(request.header("content-md5").is_some(), "{key}");
        }
        locked_uploads += 1;
    }
    assert_eq!(locked_uploads, 4, "two backups and their manifests");
    for key in &backups {
        for object in [key.clone(), format!("{key}.manifest.json")] {
            let (mode, until) = s3.retention(BUCKET, &object).expect("locked");
            assert_eq!(mode, "GOVERNANCE");
            let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
            let hours = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
            assert!((46..=48).contains(&hours), "{object}: {hours} h");
        }
    }

    // Retention 0 days would delete the older backup, but it is locked: the plan says so and
    // nothing is deleted (on S3 the delete would only have hidden it).
    let out = tool(
        "backup-prune",
        &["--retention-days", "0", "--dry-run"],
        &env,
    )
    .await;
    assert_success(&out, "prune --dry-run");
    assert!(stdout(&out).contains("locked until"), "{}", stdout(&out));
    // The lock is found without the setting too (an object locked earlier stays locked).
    let mut unset = env.clone();
    unset.remove("BACKUP_S3_OBJECT_LOCK");
    let out = tool("backup-prune", &["--retention-days", "0"], &unset).await;
    assert_success(&out, "prune");
    assert!(stdout(&out).contains("locked until"), "{}", stdout(&out));
    assert!(
        s3.deleted_while_locked().is_empty(),
        "{:?}",
        s3.deleted_while_locked()
    );
    let out = tool("restore-database", &["--list", "--json"], &env).await;
    assert_success(&out, "--list");
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}
