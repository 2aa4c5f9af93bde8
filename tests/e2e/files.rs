//! `backup-files`: configuration and log archives end to end, read back with openssl, gunzip
//! and GNU tar; the key never in them; log retention after a log backup.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::harness::*;

/// The environment of a files command: the backup directory and the key file.
fn env_for(backups: &std::path::Path, key: &std::path::Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("BACKUP_LOCAL_DIR".to_owned(), backups.display().to_string()),
        (
            "BACKUP_ENCRYPTION_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
    ])
}

#[test]
fn a_config_backup_opens_with_stock_tools_and_never_holds_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app-config");
    std::fs::create_dir_all(config.join("nginx")).unwrap();
    std::fs::write(config.join("nginx/nginx.conf"), b"worker_processes 4;\n").unwrap();
    std::os::unix::fs::symlink("nginx/nginx.conf", config.join("main.conf")).unwrap();
    // The key lies under the configured path by mistake.
    let key = config.join("encryption.key");
    write_key(&key, "correct horse battery staple\n");
    let backups = dir.path().join("backups");
    let mut env = env_for(&backups, &key);
    env.insert(
        "BACKUP_CONFIG_PATHS".to_owned(),
        config.display().to_string(),
    );
    let out = clean_command("backup-files", &env)
        .args(["--kind", "config", "--json"])
        .output()
        .unwrap();
    assert_success(&out, "backup-files --kind config");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let object = doc["object"].as_str().unwrap().to_owned();
    assert!(
        object.starts_with("config/config_backup_") && object.ends_with(".tar.gz.enc"),
        "{object}"
    );
    assert_eq!(doc["manifest"]["source"]["files"], 1, "{doc}");
    assert!(
        stderr(&out).contains("left out of the archive"),
        "{}",
        stderr(&out)
    );

    let extracted = dir.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    let script = format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{key} -in {obj} | gunzip | tar -xf - -C {to}",
        key = key.display(),
        obj = backups.join(&object).display(),
        to = extracted.display()
    );
    let out = sh(&script, &BTreeMap::new());
    assert_success(&out, "openssl | gunzip | tar -x");
    let restored = extracted.join(config.display().to_string().trim_start_matches('/'));
    assert_eq!(
        std::fs::read(restored.join("nginx/nginx.conf")).unwrap(),
        b"worker_processes 4;\n"
    );
    assert_eq!(
        std::fs::read_link(restored.join("main.conf")).unwrap(),
        std::path::PathBuf::from("nginx/nginx.conf")
    );
    assert!(!restored.join("encryption.key").exists());

    // A configured path that does not exist is a failed backup, with nothing left behind.
    env.insert(
        "BACKUP_CONFIG_PATHS".to_owned(),
        format!("{}:/nonexistent/conf", config.display()),
    );
    let out = clean_command("backup-files", &env)
        .args(["--kind", "config"])
        .output()
        .unwrap();
    assert_exit(&out, 2, "missing configured path");
    assert!(
        stderr(&out).contains("/nonexistent/conf"),
        "{}",
        stderr(&out)
    );
    let objects: Vec<_> = std::fs::read_dir(backups.join("config"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        objects.len(),
        2,
        "only the first backup and its manifest: {objects:?}"
    );
}

#[test]
fn a_log_backup_then_deletes_old_local_logs_but_not_recent_or_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for name in ["old.log", "today.log", "open.log"] {
        std::fs::write(logs.join(name), b"line\n").unwrap();
    }
    let old = SystemTime::now() - Duration::from_secs(20 * 24 * 60 * 60);
    for name in ["old.log", "open.log"] {
        let file = std::fs::File::options()
            .write(true)
            .open(logs.join(name))
            .unwrap();
        file.set_modified(old).unwrap();
    }
    let held = std::fs::File::open(logs.join("open.log")).unwrap();
    let key = dir.path().join("k");
    write_key(&key, "correct horse battery staple\n");
    let backups = dir.path().join("backups");
    let mut env = env_for(&backups, &key);
    env.insert("BACKUP_LOG_DIR".to_owned(), logs.display().to_string());
    env.insert("BACKUP_LOG_RETENTION_DAYS".to_owned(), "14".to_owned());
    let out = clean_command("backup-files", &env)
        .args(["--kind", "logs"])
        .output()
        .unwrap();
    assert_success(&out, "backup-files --kind logs");
    let object = stdout(&out).trim().to_owned();
    assert!(object.starts_with("logs/logs_backup_"), "{object}");
    assert!(backups.join(&object).is_file());
    assert!(!logs.join("old.log").exists(), "deleted after the backup");
    assert!(logs.join("today.log").exists());
    assert!(logs.join("open.log").exists(), "open: kept");
    drop(held);
}

#[test]
fn restore_files_lists_checks_and_restores_a_config_backup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app-config");
    std::fs::create_dir_all(config.join("nginx")).unwrap();
    std::fs::write(config.join("nginx/nginx.conf"), b"worker_processes 4;\n").unwrap();
    let key = dir.path().join("encryption.key");
    write_key(&key, "correct horse battery staple\n");
    let backups = dir.path().join("backups");
    let mut env = env_for(&backups, &key);
    env.insert(
        "BACKUP_CONFIG_PATHS".to_owned(),
        config.display().to_string(),
    );
    let run = |args: &[&str]| {
        clean_command(args[0], &env)
            .args(&args[1..])
            .output()
            .unwrap()
    };
    let out = run(&["backup-files", "--kind", "config"]);
    assert_success(&out, "backup-files");
    let object = stdout(&out).trim().to_owned();

    let out = run(&["restore-files", "--kind", "config", "--list"]);
    assert_success(&out, "--list");
    let name = object.rsplit('/').next().unwrap();
    assert!(
        stdout(&out).contains(name) && stdout(&out).contains("complete"),
        "{}",
        stdout(&out)
    );

    let target = dir.path().join("restored");
    let target_s = target.display().to_string();
    let out = run(&[
        "restore-files",
        "--kind",
        "config",
        "--latest",
        "--target-dir",
        &target_s,
        "--dry-run",
    ]);
    assert_success(&out, "--dry-run");
    assert!(
        stdout(&out).contains("would restore file") && stdout(&out).contains("nginx.conf"),
        "{}",
        stdout(&out)
    );
    assert!(!target.exists(), "a dry run writes nothing");

    let out = run(&[
        "restore-files",
        "--kind",
        "config",
        "--latest",
        "--target-dir",
        &target_s,
    ]);
    assert_success(&out, "restore-files");
    assert!(
        stdout(&out).contains("restore complete"),
        "{}",
        stdout(&out)
    );
    let restored = target.join(config.display().to_string().trim_start_matches('/'));
    assert_eq!(
        std::fs::read(restored.join("nginx/nginx.conf")).unwrap(),
        b"worker_processes 4;\n"
    );

    // Again into the same place: refused (exit 2) naming the file, unless --overwrite.
    let out = run(&[
        "restore-files",
        "--kind",
        "config",
        "--latest",
        "--target-dir",
        &target_s,
    ]);
    assert_exit(&out, 2, "existing files");
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    let out = run(&[
        "restore-files",
        "--kind",
        "config",
        "--latest",
        "--target-dir",
        &target_s,
        "--overwrite",
    ]);
    assert_success(&out, "--overwrite");

    // No --target-dir: a usage error.
    let out = run(&["restore-files", "--kind", "config", "--latest"]);
    assert_exit(&out, 3, "no target dir");
}

#[test]
fn an_unreadable_file_is_a_warning_in_the_manifest_not_a_failed_backup() {
    use std::os::unix::fs::PermissionsExt;
    // Run as an unprivileged user (root reads every file): nobody, through setpriv, which
    // needs root itself (the CI machine runs as root; see also the owner test).
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("conf");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("readable.conf"), b"ok\n").unwrap();
    std::fs::write(config.join("secret.conf"), b"root only\n").unwrap();
    std::fs::set_permissions(
        config.join("secret.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let key = dir.path().join("k");
    write_key(&key, "correct horse battery staple\n");
    std::os::unix::fs::chown(&key, Some(NOBODY), Some(NOBODY)).unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::os::unix::fs::chown(&backups, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut env = env_for(&backups, &key);
    env.insert(
        "BACKUP_CONFIG_PATHS".to_owned(),
        config.display().to_string(),
    );
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("backup-files"))
        .args(["--kind", "config", "--json"])
        .env_clear()
        .envs(&env)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_success(&out, "backup-files as nobody");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["manifest"]["source"]["files"], 1, "{doc}");
    let warnings = doc["manifest"]["source"]["warnings"].to_string();
    assert!(
        warnings.contains("secret.conf") && warnings.contains("cannot read it"),
        "{warnings}"
    );
    assert!(stderr(&out).contains("secret.conf"), "{}", stderr(&out));
}
