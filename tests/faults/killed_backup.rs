//! `kill -9` of `backup-database` at many moments: whatever the moment, no backup that is
//! listed as complete is damaged, nothing half-written is ever chosen, and the next backup
//! works.

use std::time::Duration;

use crate::harness::{assert_success, stdout, World};

/// Whatever a failed or killed backup left is a claim, a temporary file, or a backup with its
/// manifest or its claim: never an object that would pass for an old script's backup.
pub(crate) fn assert_nothing_passes_for_an_old_backup(w: &World, when: &str) {
    for file in w.files() {
        let ok = file.ends_with(".claim")
            || file.contains("/.tmp-")
            || file.ends_with(".manifest.json")
            || w.object_path(&format!("{file}.manifest.json")).is_file()
            || w.object_path(&format!("{file}.claim")).is_file();
        assert!(ok, "{when}: {file} left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_at_any_moment_leaves_nothing_that_passes_for_complete() {
    let w = World::new(2).await;
    // From before the first byte to after the commit, in 60 ms steps.
    for step in 0..12u64 {
        let mut child = w
            .command("backup-database")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn backup-database");
        std::thread::sleep(Duration::from_millis(step * 60));
        let _ = child.kill();
        child.wait().expect("reap");

        let out = w.run("restore-database", &["--list", "--json"], &[]);
        if !w.backups.exists() {
            // Killed before it wrote anything: nothing to list (exit 3 says so).
            continue;
        }
        assert_success(&out, "--list after a kill");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        for row in &rows {
            let status = row["status"].as_str().unwrap();
            assert!(
                ["complete", "in progress"].contains(&status),
                "after a kill at {} ms: {row}",
                step * 60
            );
            if status == "complete" {
                let name = row["name"].as_str().unwrap();
                let out = w.run("restore-database", &["--file", name, "--dry-run"], &[]);
                assert_success(&out, &format!("dry run of {name} after a kill"));
            }
        }
        assert_nothing_passes_for_an_old_backup(&w, &format!("after a kill at {} ms", step * 60));
    }
    // The next backup works and restores.
    let key = w.backup(&[]);
    let out = w.run("restore-database", &["--file", &key, "--dry-run"], &[]);
    assert_success(&out, "dry run of the backup after the kills");
    assert!(stdout(&out).contains("dry run OK"), "{}", stdout(&out));
}
