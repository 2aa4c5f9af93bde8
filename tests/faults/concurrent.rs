//! Runs that meet: several `backup-database` at once into one directory, and `backup-prune`
//! running beside backups. Every run that says it made a backup made a distinct, complete,
//! restorable one.

use std::collections::BTreeSet;
use std::process::Stdio;

use crate::harness::{assert_success, stdout, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_backups_started_at_once_give_three_complete_distinct_backups() {
    let w = World::new(1).await;
    let children: Vec<_> = (0..3)
        .map(|_| {
            w.command("backup-database")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn backup-database")
        })
        .collect();
    let mut names = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_success(&out, "concurrent backup-database");
        names.insert(stdout(&out).trim().to_owned());
    }
    assert_eq!(
        names.len(),
        3,
        "two runs reported the same backup: {names:?}"
    );

    let out = w.run("restore-database", &["--list", "--json"], &[]);
    assert_success(&out, "--list");
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let rows = listed.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{listed}");
    for row in rows {
        assert_eq!(row["status"], "complete", "{row}");
        assert!(
            names.contains(row["key"].as_str().unwrap_or_default()),
            "{row}"
        );
    }
    for name in &names {
        let out = w.run("restore-database", &["--file", name, "--dry-run"], &[]);
        assert_success(&out, "dry run of each concurrent backup");
    }
    assert!(
        w.files()
            .iter()
            .all(|f| !f.ends_with(".claim") && !f.contains(".tmp-")),
        "claims or temporary files left: {:?}",
        w.files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_prune_running_beside_backups_never_deletes_one_that_reported_success() {
    let w = World::new(1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let stop = std::sync::Arc::clone(&stop);
        let mut cmd = w.command("backup-prune");
        cmd.args(["--retention-days", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = cmd.status();
                runs += 1;
            }
            runs
        })
    };
    for _ in 0..8 {
        let out = w.run("backup-database", &[], &[]);
        assert_success(&out, "backup-database beside backup-prune");
        let key = stdout(&out).trim().to_owned();
        // The backup that was just reported is the newest complete one: prune must keep it,
        // with its manifest, whatever moment it ran at.
        assert!(w.object_path(&key).is_file(), "{key} was pruned");
        assert!(
            w.object_path(&format!("{key}.manifest.json")).is_file(),
            "the manifest of {key} was pruned"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = pruner.join().expect("pruner thread");
    assert!(runs > 0, "backup-prune never ran");
}
