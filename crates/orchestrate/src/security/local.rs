//! The checks of this host: the key file, the keyring, the local backup directory, the
//! process and the configuration file. Each takes plain values (paths, ids, times), so that it
//! can be tested with real files of real modes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use backup_core::reencrypt::KeyUsage;
use backup_crypto::Keyring;
use chrono::{DateTime, Utc};

use super::{Finding, Severity};

/// Estimated bits below which a key is weak (high), and below which it is only medium.
pub const WEAK_BITS: u32 = 64;
/// Estimated bits of a strong key: at least 128 (32 random bytes give 256).
pub const STRONG_BITS: u32 = 128;
/// The default rotation period, `BACKUP_KEY_MAX_AGE_DAYS`.
pub const DEFAULT_KEY_MAX_AGE_DAYS: u32 = 90;
/// The most entries of a directory tree looked at.
const MAX_ENTRIES: usize = 100_000;
/// The most names a finding lists.
const LISTED: usize = 5;

/// The key file: present, mode, owner, strength, not inside a backed-up path, no writable
/// directory above it. `euid` is the user running backups; `backed_up` the paths that config
/// and log backups archive.
pub fn key_file_findings(key_file: &Path, euid: u32, backed_up: &[PathBuf]) -> Vec<Finding> {
    let shown = key_file.display();
    let meta = match std::fs::metadata(key_file) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![Finding::fail(
                "key_file.present",
                Severity::Critical,
                format!("the key file {shown} cannot be read: {e}"),
                format!(
                    "restore the key from its offline copy to {shown} (mode 0600), or, for a new \
                     installation, `backup-key generate`; without it no backup can be made or \
                     restored"
                ),
            )]
        }
    };
    let mut out = vec![Finding::pass(
        "key_file.present",
        format!("key file {shown} is present"),
    )];
    let mode = meta.mode() & 0o7777;
    out.push(if mode & 0o077 != 0 {
        Finding::fail(
            "key_file.mode",
            Severity::High,
            format!("key file {shown} has mode {mode:04o}: group or others can read it"),
            format!(
                "`chmod 600 {shown}`, and rotate the key (`backup-key rotate`) if others may \
                 have read it"
            ),
        )
    } else if mode != 0o600 && mode != 0o400 {
        Finding::fail(
            "key_file.mode",
            Severity::Low,
            format!("key file {shown} has mode {mode:04o} (expected 0600 or 0400)"),
            format!("`chmod 600 {shown}`"),
        )
    } else {
        Finding::pass("key_file.mode", format!("mode {mode:04o}"))
    });
    out.push(if meta.uid() == euid {
        Finding::pass(
            "key_file.owner",
            format!("owned by user id {euid}, who runs backups"),
        )
    } else {
        Finding::fail(
            "key_file.owner",
            Severity::Medium,
            format!(
                "key file {shown} belongs to user id {}, but backups run as user id {euid}",
                meta.uid()
            ),
            format!("`chown {euid} {shown}` (the user that runs the backups)"),
        )
    });
    match backup_crypto::key_file_strength(key_file) {
        Ok(strength) => out.push(strength_finding(strength, &shown.to_string())),
        Err(e) => out.push(Finding::unknown(
            "key_file.strength",
            format!("the key could not be read to estimate its strength: {e}"),
        )),
    }
    let real = std::fs::canonicalize(key_file).unwrap_or_else(|_| key_file.to_path_buf());
    let inside: Vec<String> = backed_up
        .iter()
        .filter(|p| {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| (*p).clone());
            real.starts_with(&p)
        })
        .map(|p| p.display().to_string())
        .collect();
    out.push(if inside.is_empty() {
        Finding::pass(
            "key_file.backed_up",
            "not inside a path that config or log backups archive",
        )
    } else {
        Finding::fail(
            "key_file.backed_up",
            Severity::Medium,
            format!(
                "key file {shown} lies inside {}, which config or log backups archive; this tool \
                 leaves it out of its archives, but any other copy of that directory (a manual \
                 tar, another backup tool) carries the key beside the backups",
                inside.join(", ")
            ),
            "move the key out of the backed-up directories (e.g. to /etc/backup/, mode 0700) and \
             set BACKUP_ENCRYPTION_KEY_FILE",
        )
    });
    out.push(writable_parents_finding(&real));
    out
}

fn strength_finding(strength: backup_crypto::KeyStrength, shown: &str) -> Finding {
    let what = format!(
        "key in {shown}: about {} bits (estimated from its form: {})",
        strength.bits, strength.form
    );
    let fix = "replace it with a random key: `backup-key rotate` (32 random bytes); old backups \
               stay readable through the keyring";
    if strength.bits < WEAK_BITS {
        Finding::fail(
            "key_file.strength",
            Severity::High,
            format!("{what}: weak"),
            fix,
        )
    } else if strength.bits < STRONG_BITS {
        Finding::fail(
            "key_file.strength",
            Severity::Medium,
            format!("{what}: below the {STRONG_BITS} bits of a strong key"),
            fix,
        )
    } else {
        Finding::pass("key_file.strength", what)
    }
}

/// A directory above `path` that group or others can write to (without the sticky bit, they
/// can replace the key; with it, only its owner can).
fn writable_parents_finding(path: &Path) -> Finding {
    let mut open = Vec::new();
    let mut sticky = Vec::new();
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            if mode & 0o1000 != 0 {
                sticky.push(format!("{} ({mode:04o})", dir.display()));
            } else {
                open.push(format!("{} ({mode:04o})", dir.display()));
            }
        }
    }
    if !open.is_empty() {
        Finding::fail(
            "key_file.directories",
            Severity::High,
            format!(
                "group or others can write to {} above the key file: they can replace the key",
                open.join(", ")
            ),
            "`chmod go-w` those directories, or move the key to a directory only its owner can \
             write (/etc/backup, mode 0700)",
        )
    } else if !sticky.is_empty() {
        Finding::fail(
            "key_file.directories",
            Severity::Medium,
            format!(
                "the key file lies under {}, writable by others (sticky: only owners may remove \
                 files)",
                sticky.join(", ")
            ),
            "move the key to a private directory (/etc/backup, mode 0700)",
        )
    } else {
        Finding::pass(
            "key_file.directories",
            "no directory above the key file is writable by group or others",
        )
    }
}

/// The keyring: which backups still need each key (`usage`, when the destinations could be
/// read), and the current key's age (`current_since`: when it was made, the key file's
/// modification time) against the rotation period.
pub fn keyring_findings(
    ring: &Keyring,
    usage: Option<&KeyUsage>,
    current_since: Option<DateTime<Utc>>,
    max_age_days: u32,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, key) in ring.keys().enumerate() {
        let id = key.id();
        let needed = usage.map(|u| u.by_key.get(id.as_str()).copied().unwrap_or(0));
        let check = format!("keyring.{id}");
        out.push(match (i, needed) {
            (0, Some(n)) => Finding::pass(check, format!("current key {id}: {n} backup(s)")),
            (0, None) => Finding::pass(check, format!("current key {id}")),
            (_, Some(0)) => Finding::pass(
                check,
                format!(
                    "older key {id}: needed by no stored backup, retirable (move its file out \
                     of the keyring; keep an offline copy for a while)"
                ),
            ),
            (_, Some(n)) => Finding::pass(
                check,
                format!(
                    "older key {id}: needed by {n} backup(s); `backup-key reencrypt --key-id \
                     {id}` moves them to the current key"
                ),
            ),
            (_, None) => Finding::unknown(
                check,
                format!("older key {id}: the destinations could not be read to count its backups"),
            ),
        });
    }
    if let Some(usage) = usage {
        if !usage.unknown.is_empty() {
            out.push(Finding::fail(
                "keyring.missing",
                Severity::High,
                format!(
                    "{} backup(s) need a key that is not loaded (or their manifests were \
                     forged): {}",
                    usage.unknown.len(),
                    listed(&usage.unknown)
                ),
                "put the old key file in the keyring directory (BACKUP_KEYRING_DIR); if no key \
                 opens them, they cannot be restored",
            ));
        }
        if !usage.legacy_encrypted.is_empty() {
            out.push(Finding::pass(
                "keyring.legacy",
                format!(
                    "{} encrypted backup(s) of the old scripts have no manifest naming their \
                     key: keep the old keys until retention deletes them",
                    usage.legacy_encrypted.len()
                ),
            ));
        }
    }
    let max_age = chrono::TimeDelta::days(i64::from(max_age_days));
    out.push(match current_since {
        Some(since) if now - since > max_age => Finding::fail(
            "keyring.rotation",
            Severity::Medium,
            format!(
                "the current key is {} days old; the rotation period is {max_age_days} days \
                 (BACKUP_KEY_MAX_AGE_DAYS)",
                (now - since).num_days()
            ),
            "`backup-key rotate`, then `backup-key reencrypt --key-id OLD` to retire the old key",
        ),
        Some(since) => Finding::pass(
            "keyring.rotation",
            format!(
                "the current key is {} days old (rotation every {max_age_days} days)",
                (now - since).num_days()
            ),
        ),
        None => Finding::unknown("keyring.rotation", "the key file's age could not be read"),
    });
    out
}

/// The local backup directory: nothing in it readable by group or others, no plaintext backup
/// where encryption is configured (`plaintext_ok(key)` says where it is not), every file owned
/// by `euid`.
pub fn directory_findings(
    dir: &Path,
    euid: u32,
    plaintext_ok: &dyn Fn(&str) -> bool,
) -> Vec<Finding> {
    let shown = dir.display();
    if !dir.is_dir() {
        return vec![Finding::unknown(
            "local.permissions",
            format!("local backup directory {shown} does not exist (yet)"),
        )];
    }
    let mut readable = Vec::new();
    let mut foreign = Vec::new();
    let mut plaintext = Vec::new();
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                break;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let relative = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            if meta.is_dir() {
                if meta.mode() & 0o007 != 0 {
                    readable.push(format!("{relative}/"));
                }
                stack.push(path);
                continue;
            }
            if meta.mode() & 0o044 != 0 {
                readable.push(relative.clone());
            }
            if meta.uid() != euid {
                foreign.push(relative.clone());
            }
            let is_backup =
                backup_core::BackupName::parse(&relative, backup_core::BackupKind::DATABASE)
                    .is_some_and(|name| !name.encrypted);
            if is_backup && !plaintext_ok(&relative) {
                plaintext.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    out.push(if readable.is_empty() {
        Finding::pass(
            "local.permissions",
            format!("nothing in {shown} is readable by group or others"),
        )
    } else {
        Finding::fail(
            "local.permissions",
            Severity::High,
            format!(
                "{} file(s) or directories in {shown} are readable by group or others: {}",
                readable.len(),
                listed(&readable)
            ),
            format!("`chmod -R go-rwx {shown}`, and run backups with `umask 077`"),
        )
    });
    out.push(if plaintext.is_empty() {
        Finding::pass(
            "local.plaintext",
            "no unencrypted backup where encryption is configured",
        )
    } else {
        Finding::fail(
            "local.plaintext",
            Severity::High,
            format!(
                "{} unencrypted backup(s) in {shown} although encryption is configured: {}",
                plaintext.len(),
                listed(&plaintext)
            ),
            "make a new encrypted backup and delete these (they are readable by whoever gets \
             the disk)",
        )
    });
    out.push(if foreign.is_empty() {
        Finding::pass(
            "local.owner",
            format!("every file in {shown} belongs to user id {euid}"),
        )
    } else {
        Finding::fail(
            "local.owner",
            Severity::Medium,
            format!(
                "{} file(s) in {shown} belong to another user than the one running backups \
                 ({euid}): {}",
                foreign.len(),
                listed(&foreign)
            ),
            format!("`chown -R {euid} {shown}`"),
        )
    });
    out
}

/// The process: running as root (`euid` 0) is medium.
pub fn process_findings(euid: u32) -> Vec<Finding> {
    vec![if euid == 0 {
        Finding::fail(
            "process.root",
            Severity::Medium,
            "backups run as root: a flaw in any tool they run (pg_dump, redis, the scanners) \
             has the whole machine",
            "run the backups as a dedicated user (`backup`, see the README's install steps)",
        )
    } else {
        Finding::pass(
            "process.root",
            format!("running as user id {euid}, not root"),
        )
    }]
}

/// The configuration file: secrets in it (`secrets`, the names of the settings that hold one)
/// are high: the file is often readable by more people than the environment.
pub fn config_file_findings(file: Option<&Path>, secrets: &[String]) -> Vec<Finding> {
    match file {
        None => vec![Finding::pass("config.secrets", "no configuration file")],
        Some(path) if secrets.is_empty() => vec![Finding::pass(
            "config.secrets",
            format!("no secret in {}", path.display()),
        )],
        Some(path) => vec![Finding::fail(
            "config.secrets",
            Severity::High,
            format!(
                "the configuration file {} holds secrets: {}",
                path.display(),
                secrets.join(", ")
            ),
            "move them into the environment (an EnvironmentFile of mode 0600) and delete them \
             from the file; rotate them if the file was readable by others",
        )],
    }
}

/// The exposure of the backups to these credentials: a host that can write backups and whose
/// configuration prunes them can delete them, unless they are locked.
pub fn exposure_findings(s3: bool, object_lock: bool, prune: bool) -> Vec<Finding> {
    vec![match (s3, object_lock, prune) {
        (true, true, _) => Finding::pass(
            "exposure.delete",
            "S3 backups are uploaded under Object Lock: these credentials cannot destroy them \
             before their date",
        ),
        (true, false, true) => Finding::fail(
            "exposure.delete",
            Severity::Medium,
            "Object Lock is off and this configuration prunes with the same credentials that \
             write: whoever holds them (or ransomware on this host) can delete every backup",
            "create the bucket with Object Lock and set BACKUP_S3_OBJECT_LOCK=governance (see \
             the README, Immutable backups), or prune from another host with its own \
             credentials",
        ),
        (true, false, false) => Finding::fail(
            "exposure.delete",
            Severity::Low,
            "Object Lock is off: if these credentials may delete, they can delete every backup",
            "set BACKUP_S3_OBJECT_LOCK=governance with an Object Lock bucket, and a role that \
             cannot delete versions (README, Immutable backups)",
        ),
        (false, _, _) => Finding::fail(
            "exposure.delete",
            Severity::Medium,
            "backups are only on this host's disk: whoever controls the host controls every copy",
            "add an S3 destination with Object Lock (BACKUP_S3_BUCKET, BACKUP_S3_OBJECT_LOCK)",
        ),
    }]
}

fn listed(items: &[String]) -> String {
    let mut shown: Vec<&str> = items.iter().take(LISTED).map(String::as_str).collect();
    if items.len() > LISTED {
        shown.push("...");
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::CheckState;
    use backup_crypto::EncryptionKey;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} in {findings:#?}"))
    }

    fn severity_of(findings: &[Finding], check: &str) -> Option<Severity> {
        let f = find(findings, check);
        (f.state == CheckState::Fail).then_some(f.severity)
    }

    /// A private directory (0700) holding a key file written with `contents` and `mode`.
    fn key_in(dir: &Path, contents: &str, mode: u32) -> PathBuf {
        let private = dir.join("etc-backup");
        std::fs::create_dir_all(&private).unwrap();
        chmod(&private, 0o700);
        let key = private.join("encryption.key");
        std::fs::write(&key, contents).unwrap();
        chmod(&key, mode);
        key
    }

    const STRONG: &str = "cwoPE6ZBxGTj1AjNnkcTsW6wGtm/Izm/aqF1IGFYXfY=\n";

    #[test]
    fn a_missing_key_file_is_critical() {
        let dir = tempfile::tempdir().unwrap();
        let findings = key_file_findings(&dir.path().join("nope.key"), me(), &[]);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            severity_of(&findings, "key_file.present"),
            Some(Severity::Critical)
        );
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("backup-key generate"));
    }

    #[test]
    fn the_key_files_mode_owner_and_strength_are_judged() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path(), STRONG, 0o600);
        let good = key_file_findings(&key, me(), &[]);
        for check in [
            "key_file.present",
            "key_file.mode",
            "key_file.owner",
            "key_file.strength",
            "key_file.backed_up",
        ] {
            assert_eq!(severity_of(&good, check), None, "{check}: {good:#?}");
        }
        assert!(
            find(&good, "key_file.strength").what.contains("256 bits"),
            "{good:#?}"
        );
        chmod(&key, 0o400);
        assert_eq!(
            severity_of(&key_file_findings(&key, me(), &[]), "key_file.mode"),
            None
        );

        chmod(&key, 0o644);
        let open = key_file_findings(&key, me(), &[]);
        assert_eq!(severity_of(&open, "key_file.mode"), Some(Severity::High));
        assert!(find(&open, "key_file.mode").what.contains("0644"));
        chmod(&key, 0o700);
        assert_eq!(
            severity_of(&key_file_findings(&key, me(), &[]), "key_file.mode"),
            Some(Severity::Low)
        );
        chmod(&key, 0o600);
        let other_user = key_file_findings(&key, me() + 1, &[]);
        assert_eq!(
            severity_of(&other_user, "key_file.owner"),
            Some(Severity::Medium)
        );

        std::fs::write(&key, "password\n").unwrap();
        let weak = key_file_findings(&key, me(), &[]);
        assert_eq!(
            severity_of(&weak, "key_file.strength"),
            Some(Severity::High)
        );
        assert!(
            !find(&weak, "key_file.strength").what.contains("password"),
            "never the key"
        );
        std::fs::write(&key, "correct horse battery staple sunset orange river\n").unwrap();
        let medium = key_file_findings(&key, me(), &[]);
        assert_eq!(
            severity_of(&medium, "key_file.strength"),
            Some(Severity::Medium)
        );
    }

    #[test]
    fn a_key_inside_a_backed_up_path_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path(), STRONG, 0o600);
        let findings = key_file_findings(&key, me(), &[dir.path().to_path_buf()]);
        assert_eq!(
            severity_of(&findings, "key_file.backed_up"),
            Some(Severity::Medium)
        );
        let elsewhere = key_file_findings(&key, me(), &[dir.path().join("other")]);
        assert_eq!(severity_of(&elsewhere, "key_file.backed_up"), None);
    }

    #[test]
    fn a_writable_directory_above_the_key_is_high_and_a_sticky_one_medium() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let key = key_in(&open, STRONG, 0o600);
        chmod(&open, 0o777);
        let findings = key_file_findings(&key, me(), &[]);
        assert_eq!(
            severity_of(&findings, "key_file.directories"),
            Some(Severity::High)
        );
        assert!(find(&findings, "key_file.directories")
            .what
            .contains("0777"));
        chmod(&open, 0o1777);
        let sticky = writable_parents_finding(&key);
        // Other ancestors (the temporary directory's) may be sticky too, never open.
        assert_eq!(sticky.severity, Severity::Medium, "{sticky:?}");
        chmod(&open, 0o755);
        // A path whose every directory only root can write.
        let system = writable_parents_finding(Path::new("/usr/bin/env"));
        assert_eq!(system.state, CheckState::Pass, "{system:?}");
    }

    #[test]
    fn the_keyring_says_which_keys_are_needed_retirable_or_missing_and_the_keys_age() {
        let current = EncryptionKey::from_passphrase("current").unwrap();
        let needed = EncryptionKey::from_passphrase("needed").unwrap();
        let retirable = EncryptionKey::from_passphrase("retirable").unwrap();
        let mut ring = Keyring::new(current.clone());
        ring.add(needed.clone());
        ring.add(retirable.clone());
        let usage = KeyUsage {
            by_key: [(current.id().to_string(), 4), (needed.id().to_string(), 2)]
                .into_iter()
                .collect(),
            unknown: vec!["database/x_backup_20240101_000000.sql.gz.enc".into()],
            legacy_encrypted: vec![],
        };
        let now = Utc::now();
        let findings = keyring_findings(
            &ring,
            Some(&usage),
            Some(now - chrono::TimeDelta::days(10)),
            90,
            now,
        );
        assert!(find(&findings, &format!("keyring.{}", needed.id()))
            .what
            .contains("needed by 2"));
        assert!(find(&findings, &format!("keyring.{}", retirable.id()))
            .what
            .contains("retirable"));
        assert_eq!(
            severity_of(&findings, "keyring.missing"),
            Some(Severity::High)
        );
        assert_eq!(severity_of(&findings, "keyring.rotation"), None);
        let old = keyring_findings(
            &ring,
            Some(&usage),
            Some(now - chrono::TimeDelta::days(120)),
            90,
            now,
        );
        assert_eq!(
            severity_of(&old, "keyring.rotation"),
            Some(Severity::Medium)
        );
        assert!(find(&old, "keyring.rotation").what.contains("120 days"));
        let unread = keyring_findings(&ring, None, None, 90, now);
        assert_eq!(
            find(&unread, &format!("keyring.{}", needed.id())).state,
            CheckState::Unknown
        );
    }

    #[test]
    fn the_local_directory_is_checked_for_modes_plaintext_and_owners() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backups");
        for sub in ["database", "redis"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            chmod(&root.join(sub), 0o700);
        }
        chmod(&root, 0o700);
        let encrypted = root.join("database/randevubu_backup_20240101_020000.sql.gz.enc");
        std::fs::write(&encrypted, "x").unwrap();
        chmod(&encrypted, 0o600);
        let redis = root.join("redis/redis_backup_20240101_020000.rdb.gz");
        std::fs::write(&redis, "x").unwrap();
        chmod(&redis, 0o600);
        let redis_ok = |key: &str| key.starts_with("redis/");
        let clean = directory_findings(&root, me(), &redis_ok);
        for check in ["local.permissions", "local.plaintext", "local.owner"] {
            assert_eq!(severity_of(&clean, check), None, "{check}: {clean:#?}");
        }
        let nothing_plain = |_: &str| false;
        let plain = directory_findings(&root, me(), &nothing_plain);
        assert_eq!(severity_of(&plain, "local.plaintext"), Some(Severity::High));
        assert!(find(&plain, "local.plaintext")
            .what
            .contains("redis_backup_"));

        chmod(&encrypted, 0o644);
        let readable = directory_findings(&root, me(), &redis_ok);
        assert_eq!(
            severity_of(&readable, "local.permissions"),
            Some(Severity::High)
        );
        assert!(find(&readable, "local.permissions")
            .what
            .contains("randevubu_backup_"));
        let foreign = directory_findings(&root, me() + 1, &redis_ok);
        assert_eq!(severity_of(&foreign, "local.owner"), Some(Severity::Medium));
        let missing = directory_findings(&dir.path().join("none"), me(), &redis_ok);
        assert_eq!(missing[0].state, CheckState::Unknown);
    }

    #[test]
    fn root_secrets_and_exposure() {
        assert_eq!(
            severity_of(&process_findings(0), "process.root"),
            Some(Severity::Medium)
        );
        assert_eq!(severity_of(&process_findings(1000), "process.root"), None);
        let file = Path::new("/etc/backup/backup.toml");
        let secrets = config_file_findings(Some(file), &["[postgres] password".to_owned()]);
        assert_eq!(
            severity_of(&secrets, "config.secrets"),
            Some(Severity::High)
        );
        assert!(secrets[0].what.contains("[postgres] password"));
        assert_eq!(
            severity_of(&config_file_findings(Some(file), &[]), "config.secrets"),
            None
        );
        assert_eq!(
            severity_of(&exposure_findings(true, false, true), "exposure.delete"),
            Some(Severity::Medium)
        );
        assert_eq!(
            severity_of(&exposure_findings(true, false, false), "exposure.delete"),
            Some(Severity::Low)
        );
        assert_eq!(
            severity_of(&exposure_findings(true, true, true), "exposure.delete"),
            None
        );
        assert_eq!(
            severity_of(&exposure_findings(false, false, true), "exposure.delete"),
            Some(Severity::Medium)
        );
    }
}
