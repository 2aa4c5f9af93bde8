//! `kill -9` of `backup-key reencrypt` at many moments: whatever the moment, the backup is
//! either complete and restorable or in progress (never chosen, never pruned), and the next
//! run finishes the re-encryption so that the old key can go.

use std::path::Path;
use std::time::Instant;

use crate::harness::{assert_success, stdout, World};

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reencrypt_killed_at_any_moment_loses_nothing_and_the_next_run_finishes() {
    let w = World::new(2).await;
    let backup = w.backup(&[]);
    let first_id = stdout(&w.run("backup-key", &["id"], &[])).trim().to_owned();
    assert_success(&w.run("backup-key", &["rotate"], &[]), "rotate");
    let pristine = w.dir.path().join("pristine");
    copy_tree(&w.backups, &pristine);

    // How long a whole run takes here, to spread the kills over it.
    let started = Instant::now();
    assert_success(
        &w.run("backup-key", &["reencrypt", "--key-id", &first_id], &[]),
        "a whole run",
    );
    let whole = started.elapsed();
    let steps = 12u32;
    for step in 0..steps {
        copy_tree(&pristine, &w.backups);
        let mut child = w
            .command("backup-key")
            .args(["reencrypt", "--key-id", &first_id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn backup-key");
        std::thread::sleep(whole * step / steps);
        let _ = child.kill();
        child.wait().expect("reap");
        let when = format!("killed at {step}/{steps} of {whole:?}");

        // Nothing half-visible: complete (and verifiable with the keyring) or in progress.
        let out = w.run("restore-database", &["--list", "--json"], &[]);
        assert_success(&out, &format!("--list, {when}"));
        let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{when}: {rows:?}");
        match rows[0]["status"].as_str().unwrap() {
            "complete" => assert_success(
                &w.run("restore-database", &["--file", &backup, "--dry-run"], &[]),
                &format!("dry run, {when}"),
            ),
            "in progress" => {}
            other => panic!("{when}: the backup is {other}"),
        }

        // The next run finishes it: the old key is needed by nothing.
        assert_success(
            &w.run("backup-key", &["reencrypt", "--key-id", &first_id], &[]),
            &format!("the run after, {when}"),
        );
        let leftovers: Vec<String> = w
            .files()
            .into_iter()
            // A killed write's temporary file (`.tmp-*`) is the sink's, as after any killed
            // write: backup-prune removes it after a day.
            .filter(|f| !f.contains("/.tmp-"))
            .filter(|f| f.contains(".reencrypt") || f.ends_with(".claim") || f == "reencrypt.run")
            .collect();
        assert!(leftovers.is_empty(), "{when}: {leftovers:?}");
        let out = w.run("backup-key", &["list", "--json"], &[]);
        let keys: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let old = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == first_id.as_str())
            .unwrap();
        assert_eq!(old["backups"], 0, "{when}: {keys}");
    }

    // Without the old key, the backup restores to the same tables.
    std::fs::remove_file(w.dir.path().join(format!("keys.d/{first_id}.key"))).unwrap();
    assert_success(
        &w.run(
            "restore-database",
            &["--file", &backup, "--target-db", "after_kills", "--create"],
            &[],
        ),
        "restore with the new key alone",
    );
    assert_eq!(
        w.checksums("after_kills").await,
        w.checksums(crate::harness::SOURCE_DB).await
    );
}
