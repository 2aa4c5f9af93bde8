//! `backup-prune` end to end on a temporary BACKUP_LOCAL_DIR holding complete, legacy,
//! incomplete, in-progress and damaged backups of several kinds, run reports and logs, and
//! leftovers (temporary files, claims of killed runs): the dry run names every decision and
//! deletes nothing; the real run deletes exactly the planned backups (manifests included) and
//! the stale leftovers, and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use assert_cmd::Command;
use backup_core::{
    BackupKind, Compression, EncryptionInfo, Manifest, SourceFacts, MANIFEST_FORMAT_VERSION,
    TIMESTAMP_FORMAT,
};
use backup_crypto::EncryptionKey;
use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The binary with no inherited configuration that could point somewhere real.
fn prune() -> Command {
    let mut cmd = Command::cargo_bin("backup-prune").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKUP_") || k.starts_with("POSTGRES_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format(TIMESTAMP_FORMAT).to_string()
}

fn write(root: &Path, key: &str, data: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A complete backup: the object, then a signed manifest naming it.
fn complete(root: &Path, key: &str, kind: BackupKind, signing: &EncryptionKey) {
    write(root, key, b"stored bytes");
    let t = Utc::now();
    let mut manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        kind,
        object_key: key.to_owned(),
        started_at: t,
        finished_at: t,
        source: SourceFacts {
            source_type: "test".into(),
            ..Default::default()
        },
        compression: Compression::gzip(),
        // As the name says: `.enc` objects are encrypted.
        encryption: key.ends_with(".enc").then(|| EncryptionInfo {
            cipher: "aes-256-cbc".into(),
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations: 10_000,
            key_id: signing.id().to_string(),
        }),
        raw_bytes: 100,
        stored_bytes: 12,
        sha256: "ab".repeat(32),
        tool: "test".into(),
        hmac: None,
        mac_kdf: None,
        attachments: Default::default(),
        compression_threads: None,
    };
    let json = manifest.to_signed_json(Some(signing)).unwrap();
    write(root, &format!("{key}.manifest.json"), &json);
}

/// Every file under `root`, as relative paths.
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// A populated backup directory and what the default policy (30 days) decides about it.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Object key -> the decision text the dry run must print for it.
    expected: Vec<(String, String)>,
    /// Files the real run must delete (objects and their manifests).
    doomed_files: BTreeSet<String>,
    /// Files every real run deletes, whatever the policy: backups that lost their manifest
    /// over a day ago, and claims of killed runs.
    always_doomed: BTreeSet<String>,
    stale_tmp: String,
    stale_claim: String,
    fresh_tmp: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let key = EncryptionKey::from_passphrase("prune cli test").unwrap();
    let now = Utc::now().trunc_subsecs(0);
    let ago = |days: i64| now - Duration::days(days) - Duration::hours(1);
    let db = |days: i64| format!("database/randevubu_backup_{}.sql.gz.enc", stamp(ago(days)));
    let redis = |days: i64| format!("redis/redis_backup_{}.rdb.gz", stamp(ago(days)));

    let mut expected = Vec::new();
    let mut doomed_files = BTreeSet::new();
    let delete = "delete: older than 30 days and kept by no rule";

    // database: complete 100, 60, 40, 10, 1 days old; legacy 50 and 5; damaged 90.
    for days in [100, 60, 40] {
        complete(&root, &db(days), BackupKind::DATABASE, &key);
        expected.push((db(days), delete.to_owned()));
        doomed_files.insert(db(days));
        doomed_files.insert(format!("{}.manifest.json", db(days)));
    }
    complete(&root, &db(10), BackupKind::DATABASE, &key);
    expected.push((db(10), "keep: within 30 days".into()));
    complete(&root, &db(1), BackupKind::DATABASE, &key);
    expected.push((db(1), "keep: newest complete backup, within 30 days".into()));
    // Older than every complete backup and without a manifest: made by the old scripts.
    write(&root, &db(120), b"legacy");
    expected.push((db(120), delete.to_owned()));
    doomed_files.insert(db(120));
    // Without a manifest but newer than complete ones: lost its commit marker. Deleted once
    // it is a day old, kept before.
    let mut always_doomed = BTreeSet::new();
    let incomplete_stale = "delete: incomplete (no manifest) for over a day: cannot be verified";
    for days in [50, 5] {
        write(&root, &db(days), b"incomplete");
        expected.push((db(days), incomplete_stale.to_owned()));
        doomed_files.insert(db(days));
        always_doomed.insert(db(days));
    }
    write(&root, &db(0), b"incomplete");
    expected.push((
        db(0),
        "keep: incomplete (no manifest), kept for a day".into(),
    ));
    // A backup being written: its object is stored, its claim is there, its manifest is not.
    let running = format!(
        "database/randevubu_backup_{}.sql.gz.enc",
        stamp(now - Duration::minutes(10))
    );
    write(&root, &running, b"being written");
    write(&root, &format!("{running}.claim"), b"{}");
    expected.push((running, "keep: being written by a run in progress".into()));
    // The claim of a run killed two days ago before it wrote anything.
    let stale_claim = format!(
        "database/randevubu_backup_{}.sql.gz.enc.claim",
        stamp(ago(2))
    );
    write(&root, &stale_claim, b"{}");
    age_file(&root.join(&stale_claim), 2);
    always_doomed.insert(stale_claim.clone());
    write(&root, &db(90), b"damaged");
    write(&root, &format!("{}.manifest.json", db(90)), b"{oops");
    expected.push((db(90), "keep: damaged, inspect by hand".into()));
    write(&root, "database/README.txt", b"not a backup");

    // redis: the only complete backup is 45 days old, kept anyway; an older legacy one goes.
    complete(&root, &redis(45), BackupKind::REDIS, &key);
    expected.push((redis(45), "keep: newest complete backup".into()));
    write(&root, &redis(70), b"legacy");
    expected.push((redis(70), delete.to_owned()));
    doomed_files.insert(redis(70));
    // The `latest/` copy is not a backup of its own.
    write(
        &root,
        &format!("redis/latest/redis_backup_{}.rdb.gz", stamp(ago(70))),
        b"copy",
    );

    // Run logs and reports.
    let log = |days: i64| format!("logs/orchestration/backup_{}.log", stamp(ago(days)));
    let report = |days: i64| {
        format!(
            "reports/orchestration/backup_report_{}.json",
            stamp(ago(days))
        )
    };
    write(&root, &log(40), b"log");
    expected.push((log(40), delete.to_owned()));
    doomed_files.insert(log(40));
    write(&root, &log(2), b"log");
    expected.push((
        log(2),
        "keep: newest complete backup, within 30 days".into(),
    ));
    write(&root, &report(35), b"{}");
    expected.push((report(35), delete.to_owned()));
    doomed_files.insert(report(35));
    write(&root, &report(3), b"{}");
    expected.push((
        report(3),
        "keep: newest complete backup, within 30 days".into(),
    ));

    // Temporary files of interrupted writes: one two days old, one fresh.
    let stale_tmp = format!(
        "database/.tmp-randevubu_backup_{}.sql.gz.enc.0123456789abcdef",
        stamp(ago(2))
    );
    write(&root, &stale_tmp, b"partial");
    age_file(&root.join(&stale_tmp), 2);
    always_doomed.insert(stale_tmp.clone());
    let fresh_tmp = format!(
        "database/.tmp-randevubu_backup_{}.sql.gz.enc.fedcba9876543210",
        stamp(now)
    );
    write(&root, &fresh_tmp, b"in progress");

    Fixture {
        _dir: dir,
        root,
        expected,
        doomed_files,
        always_doomed,
        stale_tmp,
        stale_claim,
        fresh_tmp,
    }
}

/// Sets the modification time of `path` to `days` days ago.
fn age_file(path: &Path, days: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - std::time::Duration::from_secs(days * 24 * 3600))
        .unwrap();
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn dry_run_prints_every_decision_and_deletes_nothing() {
    let f = fixture();
    let before = files(&f.root);
    let out = prune()
        .args(["--dry-run", "--local-dir"])
        .arg(&f.root)
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (key, decision) in &f.expected {
        let line = text
            .lines()
            .find(|l| l.contains(key.as_str()))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"));
        assert!(line.contains(decision.as_str()), "{key}: {line}");
    }
    assert!(text.contains("dry run"), "{text}");
    assert!(text.contains("24h"), "{text}");
    assert!(!text.contains("README"), "{text}");
    assert!(!text.contains("latest/"), "{text}");
    assert_eq!(files(&f.root), before, "a dry run deletes nothing");
}

#[test]
fn dry_run_json_has_one_decision_per_backup() {
    let f = fixture();
    let before = files(&f.root);
    let out = prune()
        .args(["--dry-run", "--json", "--local-dir"])
        .arg(&f.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["policy"]["within_days"], 30);
    let mut seen = Vec::new();
    for kind in v["destinations"][0]["kinds"].as_array().unwrap() {
        assert!(kind["error"].is_null(), "{kind}");
        for d in kind["decisions"].as_array().unwrap() {
            seen.push((
                d["key"].as_str().unwrap().to_owned(),
                d["action"].as_str().unwrap().to_owned(),
                d["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(seen.len(), f.expected.len(), "{seen:#?}");
    for (key, decision) in &f.expected {
        let (_, action, text) = seen.iter().find(|(k, _, _)| k == key).unwrap();
        assert!(text.starts_with(decision.as_str()), "{key}: {text}");
        assert_eq!(action, &decision[..decision.find(':').unwrap()]);
    }
    assert_eq!(files(&f.root), before);
}

#[test]
fn real_run_deletes_exactly_the_planned_backups_and_stale_temporary_files() {
    let f = fixture();
    let before = files(&f.root);
    let out = prune().arg("--local-dir").arg(&f.root).output().unwrap();
    let text = stdout_of(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = files(&f.root);
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    let mut expected_gone = f.doomed_files.clone();
    expected_gone.insert(f.stale_tmp.clone());
    expected_gone.insert(f.stale_claim.clone());
    assert_eq!(gone, expected_gone);
    assert!(after.contains(&f.fresh_tmp), "a fresh temporary file stays");

    for (key, decision) in &f.expected {
        let deleted_line = format!("deleted {key}");
        assert_eq!(
            text.contains(&deleted_line),
            decision.starts_with("delete"),
            "{key}:\n{text}"
        );
    }
    assert!(text.contains("kept: damaged, inspect by hand"), "{text}");
    assert!(text.contains("removed 2 older than 24h"), "{text}");
    assert!(text.contains(&f.stale_tmp), "{text}");
    assert!(text.contains(&f.stale_claim), "{text}");

    // Nothing left to do: a second run deletes nothing more.
    let again = prune().arg("--local-dir").arg(&f.root).output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(files(&f.root), after);
}

#[test]
fn flags_and_environment_set_the_policy_and_kinds() {
    let f = fixture();
    let before = files(&f.root);
    // Only database, 0 days, keep the 2 newest: every other database backup goes, except
    // the damaged one.
    let out = prune()
        .env("BACKUP_RETENTION_DAYS", "365")
        .args([
            "--dry-run",
            "--json",
            "--kind",
            "database",
            "--retention-days",
            "0",
            "--keep-last",
            "2",
            "--local-dir",
        ])
        .arg(&f.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["policy"]["within_days"], 0,
        "the flag beats the environment"
    );
    assert_eq!(v["policy"]["keep_last"], 2);
    let kinds = v["destinations"][0]["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0]["kind"], "database");
    let kept: Vec<&str> = kinds[0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "keep")
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert!(kept[0].starts_with("keep: damaged"), "{kept:?}");
    assert_eq!(kept[1], "keep: last #2");
    assert_eq!(kept[2], "keep: newest complete backup, last #1");
    assert_eq!(kept[3], "keep: incomplete (no manifest), kept for a day");
    assert_eq!(kept[4], "keep: being written by a run in progress");

    // The environment alone: 365 days keeps every backup.
    let out = prune()
        .env("BACKUP_RETENTION_DAYS", "365")
        .arg("--local-dir")
        .arg(&f.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let after = files(&f.root);
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(
        gone, f.always_doomed,
        "only leftovers and day-old incomplete backups go"
    );
}

#[test]
fn help_and_usage_errors() {
    let out = prune().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout_of(&out);
    for needle in [
        "Examples:",
        "Exit codes",
        "--keep-daily",
        "--dry-run",
        "ISO week",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--keep-last", "many"][..],
        &["--kind", "wal"][..],
        &["--retention-days", "-1"][..],
        &["--no-such-flag"][..],
    ] {
        let out = prune()
            .args(args)
            .arg("--local-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    // No destination, or a bad BACKUP_RETENTION_DAYS: configuration errors, exit 3.
    let out = prune().arg("--dry-run").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BACKUP_LOCAL_DIR"));
    let out = prune()
        .env("BACKUP_RETENTION_DAYS", "a month")
        .arg("--local-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BACKUP_RETENTION_DAYS"));
}
