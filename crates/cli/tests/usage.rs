//! Usage and configuration errors of the binaries, which need no database: `--help` teaches,
//! and every usage or configuration mistake exits 3 (never clap's 2, which means "failed").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;

/// A binary with no inherited configuration that could point somewhere real.
fn bin(name: &str) -> Command {
    let mut cmd = Command::cargo_bin(name).unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKUP_")
            || k.starts_with("POSTGRES_")
            || k.starts_with("REDIS_")
            || k == "DATABASE_URL"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    for name in [
        "backup-database",
        "restore-database",
        "backup-redis",
        "restore-redis",
    ] {
        let out = bin(name).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Examples:"), "{name}: {text}");
        assert!(text.contains("Exit codes"), "{name}: {text}");
    }
}

#[test]
fn usage_errors_exit_3() {
    for (name, args) in [
        ("backup-database", &["--no-such-flag"][..]),
        ("backup-database", &["--format", "tar"][..]),
        ("restore-database", &[][..]),
        ("restore-database", &["--latest", "--list"][..]),
        ("restore-database", &["--date", "15/01/2024"][..]),
        (
            "restore-database",
            &["--latest", "--terminate-connections"][..],
        ),
        ("backup-redis", &["--method", "tar"][..]),
        // --method file needs the RDB path.
        (
            "backup-redis",
            &["--method", "file", "--local-dir", "/tmp"][..],
        ),
        ("restore-redis", &[][..]),
        // A mode is required, and only one.
        ("restore-redis", &["--latest"][..]),
        ("restore-redis", &["--latest", "--online", "--dry-run"][..]),
        ("restore-redis", &["--latest", "--replace"][..]),
        ("restore-redis", &["--latest", "--stop-cmd", "true"][..]),
        // --json is honoured by --list, and refused where it would be ignored.
        ("restore-database", &["--latest", "--dry-run", "--json"][..]),
        ("restore-redis", &["--latest", "--dry-run", "--json"][..]),
        // --allow-unverified names one backup.
        ("restore-database", &["--latest", "--allow-unverified"][..]),
    ] {
        let out = bin(name).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{name} {args:?}");
        assert!(!out.stderr.is_empty(), "{name} {args:?} says nothing");
    }
}

#[test]
fn no_destination_exits_3_saying_what_to_set() {
    for (name, args) in [
        ("backup-database", &[][..]),
        ("restore-database", &["--latest"][..]),
        ("backup-redis", &[][..]),
        ("restore-redis", &["--latest", "--dry-run"][..]),
    ] {
        let out = bin(name).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("BACKUP_LOCAL_DIR"), "{name}: {err}");
    }
}

#[test]
fn a_bad_config_file_exits_3_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.toml");
    std::fs::write(&file, "backup_locl_dir = \"/x\"\n").unwrap();
    let out = bin("backup-database")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("backup_locl_dir"), "{err}");
}
