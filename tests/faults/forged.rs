//! A writer without the key (anyone who can write to the bucket or the backup directory)
//! tries to get their own SQL restored: a forged unsigned manifest, a future-dated object with
//! another prefix, a signed backup whose manifest was deleted and whose ciphertext was
//! flipped. None of it is chosen automatically, and none of it reaches psql as if it were good.

use std::path::Path;

use crate::harness::{assert_exit, assert_success, stderr, stdout, World};

/// Plain SQL that, if it ever ran, would leave a table and a file as evidence.
fn evil_sql(evidence: &Path) -> Vec<u8> {
    format!(
        "CREATE TABLE pwned (i int);\n\\! touch {}\n-- PostgreSQL database dump complete\n",
        evidence.display()
    )
    .into_bytes()
}

/// `data` through a command (`gzip -c`, `sha256sum`) that reads stdin, its stdout returned.
fn filter(cmd: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd} failed");
    out.stdout
}

fn gzip(data: &[u8]) -> Vec<u8> {
    filter("gzip", &["-c"], data)
}

fn sha256_hex(data: &[u8]) -> String {
    String::from_utf8_lossy(&filter("sha256sum", &[], data)[..64]).into_owned()
}

async fn pwned(w: &World, db: &str) -> bool {
    let client = w.pg.connect(db).await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'pwned'", &[])
        .await
        .unwrap()
        .get(0);
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_unsigned_manifest_is_listed_damaged_and_never_restored() {
    let w = World::new(1).await;
    let real = w.backup(&[]);
    let evidence = w.dir.path().join("pwned-by-shell");
    let gz = gzip(&evil_sql(&evidence));
    let forged = "database/randevubu_backup_20991231_235959.sql.gz.enc";
    std::fs::write(w.object_path(forged), &gz).unwrap();
    // A manifest copied from the real one and edited by hand: right size and hash, no
    // encryption, no signature.
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.object_path(&format!("{real}.manifest.json"))).unwrap(),
    )
    .unwrap();
    manifest["object_key"] = forged.into();
    manifest["encryption"] = serde_json::Value::Null;
    manifest["stored_bytes"] = gz.len().into();
    manifest["sha256"] = sha256_hex(&gz).into();
    manifest.as_object_mut().unwrap().remove("hmac");
    std::fs::write(
        w.object_path(&format!("{forged}.manifest.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();

    let out = w.run("restore-database", &["--list", "--json"], &[]);
    assert_success(&out, "--list");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.iter().find(|r| r["key"] == forged).unwrap();
    assert_eq!(row["status"], "damaged", "{row}");

    // --latest does not pass over a damaged "newest" backup silently: it stops, naming it,
    // and with --allow-older restores the real one.
    let out = w.run("restore-database", &["--latest", "--dry-run"], &[]);
    assert_exit(&out, 2, "--latest with a damaged newest backup");
    assert!(stderr(&out).contains(forged), "{}", stderr(&out));
    let out = w.run(
        "restore-database",
        &["--latest", "--allow-older", "--dry-run"],
        &[],
    );
    assert_success(&out, "--latest --allow-older passes over the forgery");
    assert!(stdout(&out).contains(&real), "{}", stdout(&out));

    let out = w.run(
        "restore-database",
        &["--file", forged, "--target-db", "victim", "--create"],
        &[],
    );
    assert_exit(&out, 2, "restore of the forged backup by name");
    assert!(!w.databases().await.contains(&"victim".to_owned()));
    assert!(
        !evidence.exists(),
        "psql ran the forged backup's shell command"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_another_prefix_and_legacy_objects_are_not_chosen_automatically() {
    let w = World::new(1).await;
    let real = w.backup(&[]);
    let evidence = w.dir.path().join("pwned-by-shell");
    // Another prefix, a future date, plain SQL, no manifest.
    std::fs::write(
        w.object_path("database/x_backup_20991231_235959.sql"),
        evil_sql(&evidence),
    )
    .unwrap();
    let out = w.run("restore-database", &["--list"], &[]);
    assert_success(&out, "--list");
    assert!(!stdout(&out).contains("x_backup_"), "{}", stdout(&out));
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "restored", "--create"],
        &[("BACKUP_ALLOW_LEGACY", "true")],
    );
    assert_success(&out, "--latest");
    assert!(stdout(&out).contains(&real), "{}", stdout(&out));
    assert!(!pwned(&w, "restored").await);
    assert!(!evidence.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_backup_whose_manifest_was_deleted_and_bits_flipped_is_not_restored() {
    let w = World::new(1).await;
    let older = w.backup(&[]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = w.backup(&["--compression", "none"]);
    assert_ne!(older, newer);
    // Deleting the manifest downgrades nothing: the object is newer than a signed backup, so
    // it is `incomplete`, never chosen by --latest.
    std::fs::remove_file(w.object_path(&format!("{newer}.manifest.json"))).unwrap();
    let path = w.object_path(&newer);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip bits in a middle block: CBC garbles that block and flips the same bits in the next
    // one, a chosen-text edit of an uncompressed dump.
    let mid = bytes.len() / 2 / 16 * 16;
    bytes[mid] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let out = w.run("restore-database", &["--list", "--json"], &[]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.iter().find(|r| r["key"] == newer.as_str()).unwrap();
    assert_eq!(row["status"], "incomplete", "{row}");

    // --latest does not quietly fall back to the older backup: the newest is from today.
    let out = w.run("restore-database", &["--latest", "--dry-run"], &[]);
    assert_exit(
        &out,
        2,
        "--latest with a newest backup that cannot be restored",
    );
    assert!(stderr(&out).contains(&newer), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-older"), "{}", stderr(&out));
    let out = w.run(
        "restore-database",
        &["--latest", "--allow-older", "--dry-run"],
        &[],
    );
    assert_success(&out, "--latest --allow-older");
    assert!(stdout(&out).contains(&older), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("passed over the newer backup {newer}")),
        "{}",
        stderr(&out)
    );

    let name = newer.rsplit('/').next().unwrap();
    let out = w.run(
        "restore-database",
        &["--file", name, "--target-db", "flipped", "--create"],
        &[],
    );
    assert_exit(
        &out,
        2,
        "an incomplete backup by name without --allow-unverified",
    );
    assert!(
        stderr(&out).contains("--allow-unverified"),
        "{}",
        stderr(&out)
    );
    assert!(!w.databases().await.contains(&"flipped".to_owned()));
}
