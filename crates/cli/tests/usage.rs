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
        "backup-files",
        "restore-files",
        "backup-prune",
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

#[test]
fn print_config_shows_every_setting_with_its_origin_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.toml");
    std::fs::write(
        &file,
        "backup_retention_days = 7\n\n[postgres]\nhost = \"db.internal\"\n\n[notify]\n\
         url = \"https://hooks.example/T0KEN\"\n",
    )
    .unwrap();
    for name in [
        "backup-database",
        "restore-database",
        "backup-redis",
        "restore-redis",
        "backup-files",
        "restore-files",
        "backup-prune",
    ] {
        let mut cmd = bin(name);
        if name.ends_with("-files") {
            cmd.args(["--kind", "config"]);
        }
        let out = cmd
            .args(["--print-config", "--key-file", "/etc/other.key"])
            .arg("--config")
            .arg(&file)
            .env("POSTGRES_PASSWORD", "hunter2")
            .env("REDIS_URL", "redis://:s3cret@cache:6379")
            .env("BACKUP_LOCAL_DIR", "/var/backups/x")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        for expected in [
            "[local]",
            "dir = \"/var/backups/x\"",
            "BACKUP_LOCAL_DIR: environment BACKUP_LOCAL_DIR",
            "key_file = \"/etc/other.key\"",
            "BACKUP_ENCRYPTION_KEY_FILE: flag --key-file",
            "host = \"db.internal\"",
            "[postgres] host",
            "days = \"7\"",
            "backup_retention_days",
            "port = \"5432\"",
            "POSTGRES_PORT: default",
            "# password = <redacted>",
            "# url = <redacted>",
            "[redis]",
            "[s3]",
            "[notify]",
            "[files]",
            "log_dir = \"/var/log/randevubu\"",
        ] {
            assert!(
                text.contains(expected),
                "{name}: {expected:?} missing:\n{text}"
            );
        }
        for secret in ["hunter2", "s3cret", "T0KEN"] {
            assert!(
                !text.contains(secret) && !err.contains(secret),
                "{name}: {secret}"
            );
        }
        assert!(err.contains("deprecated"), "{name}: {err}");
    }
}

#[test]
fn print_config_of_an_invalid_configuration_exits_3_listing_each_problem() {
    let out = bin("backup-database")
        .arg("--print-config")
        .env("BACKUP_COMPRESSION", "lz4")
        .env("REDIS_PORT", "sixty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("compression = \"lz4\""), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("[pipeline]") && err.contains("BACKUP_COMPRESSION"),
        "{err}"
    );
    assert!(
        err.contains("[redis]") && err.contains("REDIS_PORT"),
        "{err}"
    );
}

#[test]
fn flags_take_typed_values_and_say_which() {
    let out = bin("backup-database")
        .args(["--compression", "lz4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("gzip") && err.contains("zstd") && err.contains("none"),
        "{err}"
    );
    let out = bin("backup-database").arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--print-config"), "{help}");
    for value in ["- gzip:", "- zstd:", "- none:"] {
        assert!(help.contains(value), "{value} missing:\n{help}");
    }
}

#[test]
fn a_secret_in_the_config_file_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.toml");
    std::fs::write(&file, "[postgres]\npassword = \"hunter2\"\n").unwrap();
    let out = bin("backup-prune")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("POSTGRES_PASSWORD in the environment"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn every_command_is_one_program_started_under_its_name() {
    // The multi-call program, by first argument.
    let out = bin("backup-tool")
        .args(["backup-prune", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("Usage: backup-prune"));
    let out = bin("backup-tool").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("restore-files"));
    let out = bin("backup-tool")
        .arg("backup-everything")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));

    // A launcher alone (no backup-tool beside it or on PATH) says what is missing, exit 3.
    let dir = tempfile::tempdir().unwrap();
    let launcher = assert_cmd::cargo::cargo_bin("backup-database");
    let alone = dir.path().join("backup-database");
    std::fs::copy(&launcher, &alone).unwrap();
    let out = std::process::Command::new(&alone)
        .arg("--version")
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("backup-tool") && err.contains("beside it or on PATH"),
        "{err}"
    );
    // Beside it, through a link: it runs as the command it was started as.
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("backup-tool"),
        dir.path().join("backup-tool"),
    )
    .unwrap();
    let out = std::process::Command::new(&alone)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("backup-database "));
}
