//! The old scripts' entry points (`scripts/backup-database.sh`, ...) run the new commands with
//! the same arguments and exit codes, found on PATH, else in the checkout's target/release.

use std::path::{Path, PathBuf};

use crate::harness::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `bash SCRIPT ARGS` with `PATH` set to `path`, in a clean environment.
fn shim(script: &Path, args: &[&str], path: &str) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn the_old_entry_points_run_the_new_commands_with_their_exit_codes() {
    let built = bin("backup-database");
    let built_dir = built.parent().unwrap().display().to_string();
    let path = format!("{built_dir}:/usr/bin:/bin");
    for (script, command) in [
        ("backup-database.sh", "backup-database"),
        ("backup-redis.sh", "backup-redis"),
        ("restore-database.sh", "restore-database"),
    ] {
        let out = shim(&repo().join("scripts").join(script), &["--version"], &path);
        assert_success(&out, script);
        assert!(
            stdout(&out).starts_with(&format!("{command} ")),
            "{}",
            stdout(&out)
        );
        // Usage errors keep their exit code 3 through the shim.
        let out = shim(
            &repo().join("scripts").join(script),
            &["--no-such-flag"],
            &path,
        );
        assert_exit(&out, 3, script);
    }

    // Not on PATH and not built here: exit 3 saying what to do. (A copy of the scripts in a
    // directory without a target/.)
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(scripts.join("lib")).unwrap();
    for file in ["backup-database.sh", "lib/command.sh"] {
        std::fs::copy(repo().join("scripts").join(file), scripts.join(file)).unwrap();
    }
    let out = shim(
        &scripts.join("backup-database.sh"),
        &["--version"],
        "/usr/bin:/bin",
    );
    assert_exit(&out, 3, "not installed");
    assert!(
        stderr(&out).contains("cargo build --release -p backup-cli"),
        "{}",
        stderr(&out)
    );

    let out = shim(&repo().join("scripts/security-scan.sh"), &[], &path);
    assert_exit(&out, 3, "security-scan.sh");
    assert!(
        stderr(&out).contains("not available yet"),
        "{}",
        stderr(&out)
    );
}
