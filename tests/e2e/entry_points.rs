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
        ("backup-all.sh", "backup-all"),
        ("backup-database.sh", "backup-database"),
        ("backup-redis.sh", "backup-redis"),
        ("restore-database.sh", "restore-database"),
        ("security-scan.sh", "security-scan"),
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
}

/// The old crontab's schedule, kept in `backup/backup-schedule.cron`: each job line has five
/// time fields and runs an entry point that exists; the systemd units start programs this
/// workspace builds.
#[test]
fn the_schedule_and_the_units_run_what_exists() {
    let cron = std::fs::read_to_string(repo().join("backup/backup-schedule.cron")).unwrap();
    let jobs: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for (job, when, script) in [
        (jobs[0], "0 2 * * *", "scripts/backup-all.sh"),
        (jobs[1], "0 3 * * 0", "scripts/security-scan.sh"),
    ] {
        assert!(job.starts_with(when), "{job}");
        assert!(job.contains(&format!("bash {script}")), "{job}");
        assert!(repo().join(script).is_file(), "{script}");
        assert!(
            !job.contains('%') || job.contains("\\%"),
            "unescaped % in {job}"
        );
    }
    for (unit, program) in [
        ("backup-all.service", "backup-all"),
        ("backup-status.service", "backup-status"),
        ("security-scan.service", "security-scan"),
    ] {
        let text = std::fs::read_to_string(repo().join("deploy").join(unit)).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("ExecStart=/usr/local/bin/{program}"))),
            "{unit}"
        );
        bin(program);
        for hardening in [
            "ProtectSystem=strict",
            "NoNewPrivileges=true",
            "User=backup",
        ] {
            assert!(text.contains(hardening), "{unit} lacks {hardening}");
        }
    }
}
