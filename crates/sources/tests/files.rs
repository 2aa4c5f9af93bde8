//! The files source: a tar archive of configuration directories and logs, read back with the
//! `tar` crate and with GNU tar.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backup_core::{BackupKind, Source};
use backup_sources::files::{FilesKind, FilesSource};
use tokio::io::AsyncReadExt;

/// Runs `source` to its end: the archive bytes and the facts (or the first error).
async fn run(source: &mut FilesSource) -> Result<(Vec<u8>, backup_core::SourceFacts), String> {
    let mut stream = source.open().await.map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes).await;
    drop(stream);
    let facts = source.finish().await.map_err(|e| e.to_string())?;
    read.map_err(|e| e.to_string())?;
    Ok((bytes, facts))
}

/// Every entry of `archive`: name -> (type, mode, mtime, content or link target).
fn entries(archive: &[u8]) -> BTreeMap<String, (tar::EntryType, u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let header = entry.header().clone();
        let mut content = Vec::new();
        if header.entry_type() == tar::EntryType::Symlink {
            content = entry
                .link_name()
                .unwrap()
                .unwrap()
                .display()
                .to_string()
                .into_bytes();
        } else {
            entry.read_to_end(&mut content).unwrap();
        }
        out.insert(
            name,
            (
                header.entry_type(),
                header.mode().unwrap(),
                header.mtime().unwrap(),
                content,
            ),
        );
    }
    out
}

/// `dir` relative name as stored: the absolute path without its leading `/`.
fn stored(path: &Path) -> String {
    path.display()
        .to_string()
        .trim_start_matches('/')
        .to_owned()
}

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("nginx/sites")).unwrap();
    std::fs::write(root.join("nginx/nginx.conf"), b"worker_processes 4;\n").unwrap();
    std::fs::set_permissions(
        root.join("nginx/nginx.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(root.join("nginx/sites/app"), b"server { listen 80; }\n").unwrap();
    std::os::unix::fs::symlink("../nginx.conf", root.join("nginx/sites/link")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("escaping")).unwrap();
    // The key and the keyring live under a configured path by mistake.
    std::fs::write(root.join("encryption.key"), b"secret passphrase\n").unwrap();
    std::fs::create_dir(root.join("keyring")).unwrap();
    std::fs::write(root.join("keyring/old.key"), b"old passphrase\n").unwrap();
}

#[tokio::test]
async fn a_config_tree_is_archived_with_modes_mtimes_and_links_but_never_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    tree(&root);
    let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()])
        .excluding(&root.join("encryption.key"))
        .excluding(&root.join("keyring"));
    assert_eq!(source.kind(), BackupKind::CONFIG);
    assert_eq!(source.name_prefix(), Some("config"));
    let (archive, facts) = run(&mut source).await.unwrap();
    let found = entries(&archive);
    let base = stored(&root);
    let conf = &found[&format!("{base}/nginx/nginx.conf")];
    assert_eq!(conf.0, tar::EntryType::Regular);
    assert_eq!(conf.1 & 0o777, 0o640);
    let mtime = std::fs::metadata(root.join("nginx/nginx.conf"))
        .unwrap()
        .mtime() as u64;
    assert_eq!(conf.2, mtime);
    assert_eq!(conf.3, b"worker_processes 4;\n");
    let link = &found[&format!("{base}/nginx/sites/link")];
    assert_eq!(
        (link.0, link.3.as_slice()),
        (tar::EntryType::Symlink, &b"../nginx.conf"[..])
    );
    // A link out of the tree is stored as a link; what it points to is not archived.
    let escaping = &found[&format!("{base}/escaping")];
    assert_eq!(escaping.0, tar::EntryType::Symlink);
    assert!(!found.keys().any(|k| k.contains("shadow")), "{found:?}");
    // Never the key or the keyring.
    assert!(
        !found
            .keys()
            .any(|k| k.contains("encryption.key") || k.contains("keyring")),
        "{:?}",
        found.keys()
    );
    assert!(
        !archive.windows(6).any(|w| w == b"secret"),
        "key bytes in the archive"
    );
    assert_eq!(facts.details["files"], 2);
    assert_eq!(facts.details["links"], 2);
    assert_eq!(facts.details["excluded"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn include_and_exclude_globs_choose_what_is_archived() {
    use backup_sources::files::Filter;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    tree(&root);
    std::fs::create_dir_all(root.join("cache/x")).unwrap();
    std::fs::write(root.join("cache/x/big.conf"), b"cached").unwrap();
    let filter = Filter::new(&["**/*.conf".to_owned()], &["**/cache/**".to_owned()]).unwrap();
    let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()]).with_filter(filter);
    let (archive, facts) = run(&mut source).await.unwrap();
    let files: Vec<String> = entries(&archive)
        .into_iter()
        .filter(|(_, e)| e.0 != tar::EntryType::Directory)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(files, vec![format!("{}/nginx/nginx.conf", stored(&root))]);
    assert!(
        facts.details["filtered"].as_u64().unwrap() >= 5,
        "{:?}",
        facts.details
    );
}

#[tokio::test]
async fn gnu_tar_lists_and_extracts_the_archive_identically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    tree(&root);
    // A long name (over tar's 100 bytes) and a non-ASCII one.
    let deep = root.join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("Yılmaz-ü.conf"), b"x=1\n").unwrap();
    let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()]);
    let (archive, _) = run(&mut source).await.unwrap();
    let file = dir.path().join("a.tar");
    std::fs::write(&file, &archive).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(&file)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let restored = out.join(stored(&root));
    for rel in ["nginx/nginx.conf", "nginx/sites/app", "encryption.key"] {
        assert_eq!(
            std::fs::read(restored.join(rel)).unwrap(),
            std::fs::read(root.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(
        std::fs::read(
            restored.join(
                PathBuf::from("d".repeat(60))
                    .join("e".repeat(60))
                    .join("Yılmaz-ü.conf")
            )
        )
        .unwrap(),
        b"x=1\n"
    );
    assert_eq!(
        std::fs::read_link(restored.join("nginx/sites/link")).unwrap(),
        PathBuf::from("../nginx.conf")
    );
    let mode = std::fs::metadata(restored.join("nginx/nginx.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[tokio::test]
async fn a_log_growing_while_it_is_read_is_stored_consistently_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let live = logs.join("app.log");
    let mut file = std::fs::File::create(&live).unwrap();
    let line = [b'x'; 1023];
    for _ in 0..(32 * 1024) {
        file.write_all(&line).unwrap();
        file.write_all(b"\n").unwrap();
    }
    // Keeps appending while the archive is written.
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                file.write_all(b"another line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut source = FilesSource::new(FilesKind::Logs, vec![logs.clone()]);
    let result = run(&mut source).await;
    stop.store(true, Ordering::SeqCst);
    appender.join().unwrap();
    let (archive, facts) = result.unwrap();
    let found = entries(&archive);
    let stored_log = &found[&format!("{}/app.log", stored(&logs))];
    // A valid archive holding a prefix of the log, whole lines up to the size at open.
    assert!(stored_log.3.len() >= 32 * 1024 * 1024);
    assert!(std::fs::read(&live).unwrap().starts_with(&stored_log.3));
    let warnings = facts.details["warnings"].to_string();
    assert!(warnings.contains("grew while it was read"), "{warnings}");
    assert_eq!(source.name_prefix(), Some("logs"));
}

#[tokio::test]
async fn a_missing_path_is_an_error_and_special_files_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = FilesSource::new(FilesKind::Config, vec![dir.path().join("nope")]);
    let err = run(&mut source).await.unwrap_err();
    assert!(
        err.contains("nope") && err.contains("check the configured paths"),
        "{err}"
    );
    let mut source = FilesSource::new(FilesKind::Config, vec![PathBuf::from("/etc/../etc")]);
    assert!(run(&mut source).await.unwrap_err().contains(".."));
    let mut source = FilesSource::new(FilesKind::Config, vec![]);
    assert!(run(&mut source)
        .await
        .unwrap_err()
        .contains("BACKUP_CONFIG_PATHS"));

    let root = dir.path().join("conf");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.conf"), b"a").unwrap();
    let fifo = root.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()]);
    let (archive, facts) = run(&mut source).await.unwrap();
    assert!(entries(&archive).contains_key(&format!("{}/a.conf", stored(&root))));
    let warnings = facts.details["warnings"].to_string();
    assert!(
        warnings.contains("a named pipe, not archived"),
        "{warnings}"
    );
}

#[tokio::test]
async fn a_consumer_that_stops_early_fails_the_backup_and_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("big");
    std::fs::create_dir(&root).unwrap();
    let mut f = std::fs::File::create(root.join("blob")).unwrap();
    f.write_all(&vec![7u8; 8 * 1024 * 1024]).unwrap();
    let mut source = FilesSource::new(FilesKind::Config, vec![root]);
    let mut stream = source.open().await.unwrap();
    let mut first = vec![0u8; 4096];
    stream.read_exact(&mut first).await.unwrap();
    drop(stream);
    let err = source.finish().await.unwrap_err().to_string();
    assert!(err.contains("writing the archive failed"), "{err}");
}

mod restore {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use backup_core::{ByteStream, RestoreTarget};
    use backup_sources::files::{
        FilesCheck, FilesExtract, FilesKind, FilesRestoreOptions, FilesSource, Planned,
    };

    use super::run;

    fn stream(bytes: &[u8]) -> ByteStream {
        Box::new(std::io::Cursor::new(bytes.to_vec()))
    }

    fn options(target: &Path, overwrite: bool) -> FilesRestoreOptions {
        FilesRestoreOptions {
            target_dir: target.to_path_buf(),
            overwrite,
        }
    }

    /// A check, then (when it passed) the extraction, as `check_then_extract` runs them.
    async fn restore(
        archive: &[u8],
        target: &Path,
        overwrite: bool,
    ) -> Result<Vec<Planned>, String> {
        let mut check = FilesCheck::new(options(target, overwrite));
        check
            .restore(stream(archive))
            .await
            .map_err(|e| e.to_string())?;
        let mut extract = FilesExtract::new(options(target, overwrite));
        extract
            .restore(stream(archive))
            .await
            .map_err(|e| e.to_string())?;
        Ok(check.plan)
    }

    /// One raw tar entry: the name (and link) bytes as given, unchecked, as a hostile archive
    /// would carry them.
    fn raw_entry(out: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn finish(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_backup_restores_with_contents_modes_mtimes_owners_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("conf");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.conf"), b"a=1\n").unwrap();
        std::fs::set_permissions(
            root.join("sub/a.conf"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/a.conf", root.join("a-link")).unwrap();
        // As root (the CI runs as root) an owner is restored; otherwise the files stay ours.
        let as_root = nix_uid() == 0;
        if as_root {
            std::os::unix::fs::chown(root.join("sub/a.conf"), Some(1234), Some(2345)).unwrap();
        }
        let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()]);
        let (archive, _) = run(&mut source).await.unwrap();
        let target = dir.path().join("target");
        let plan = restore(&archive, &target, false).await.unwrap();
        assert!(
            plan.iter().any(|p| matches!(p, Planned::Link(..))),
            "{plan:?}"
        );
        let base = target.join(root.display().to_string().trim_start_matches('/'));
        let restored = std::fs::metadata(base.join("sub/a.conf")).unwrap();
        let original = std::fs::metadata(root.join("sub/a.conf")).unwrap();
        assert_eq!(std::fs::read(base.join("sub/a.conf")).unwrap(), b"a=1\n");
        assert_eq!(restored.mode() & 0o7777, 0o640);
        assert_eq!(restored.mtime(), original.mtime());
        if as_root {
            assert_eq!((restored.uid(), restored.gid()), (1234, 2345));
        }
        assert_eq!(
            std::fs::read_link(base.join("a-link")).unwrap(),
            std::path::PathBuf::from("sub/a.conf")
        );
        // No temporary names left.
        assert!(!files_under(&target).iter().any(|f| f.contains(".restore-")));

        // Again: every file exists now. Without --overwrite nothing is written and all are
        // named; with it, they are replaced.
        std::fs::write(base.join("sub/a.conf"), b"changed\n").unwrap();
        let err = restore(&archive, &target, false).await.unwrap_err();
        assert!(
            err.contains("--overwrite") && err.contains("a.conf"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(base.join("sub/a.conf")).unwrap(),
            b"changed\n"
        );
        // What a restore killed half-way through a.conf left (its process is gone), beside
        // names that only look alike: the first goes, the others stay.
        let sub = base.join("sub");
        let stale = sub.join(".a.conf.restore-999999999-0123456789abcdef");
        let live = sub.join(format!(
            ".a.conf.restore-{}-0123456789abcdef",
            std::process::id()
        ));
        let foreign = sub.join(".a.conf.restore-notes");
        for path in [&stale, &live, &foreign] {
            std::fs::write(path, b"partial").unwrap();
        }
        restore(&archive, &target, true).await.unwrap();
        assert_eq!(std::fs::read(base.join("sub/a.conf")).unwrap(), b"a=1\n");
        assert!(!stale.exists(), "a dead restore's leftover stays");
        assert!(live.exists() && foreign.exists());
    }

    fn nix_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    }

    #[tokio::test]
    async fn hostile_archives_are_refused_with_nothing_written_anywhere() {
        use tar::EntryType::{Link, Regular, Symlink};
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "absolute",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"/tmp/evil", Regular, b"", b"x");
                    finish(a)
                },
                "absolute",
            ),
            (
                "dot-dot",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"ok.txt", Regular, b"", b"fine");
                    raw_entry(&mut a, b"a/../../evil", Regular, b"", b"x");
                    finish(a)
                },
                "'..'",
            ),
            (
                "escaping link",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"link", Symlink, b"../../etc", b"");
                    finish(a)
                },
                "outside the target",
            ),
            (
                "absolute link",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"link", Symlink, b"/etc", b"");
                    finish(a)
                },
                "absolute path",
            ),
            (
                "link then a file through it",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"dir", Symlink, b"sub", b"");
                    raw_entry(&mut a, b"dir/file", Regular, b"", b"x");
                    finish(a)
                },
                "a link in the archive",
            ),
            (
                "hard link",
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"hard", Link, b"ok.txt", b"");
                    finish(a)
                },
                "only files, directories and symbolic links",
            ),
        ];
        for (what, archive, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("target");
            std::fs::create_dir(&target).unwrap();
            let err = restore(&archive, &target, true).await.unwrap_err();
            assert!(
                err.contains(expected) && err.contains("nothing was written"),
                "{what}: {err}"
            );
            assert!(
                files_under(&target).is_empty(),
                "{what}: {:?}",
                files_under(&target)
            );
            assert!(
                files_under(dir.path()) == vec!["target".to_owned()],
                "{what}"
            );
        }
        assert!(!Path::new("/tmp/evil").exists());

        // A link already on disk inside the target is not followed either.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("etc")).unwrap();
        let mut a = Vec::new();
        raw_entry(&mut a, b"etc/passwd", Regular, b"", b"root::0:0\n");
        let err = restore(&finish(a), &target, true).await.unwrap_err();
        assert!(err.contains("a link on disk"), "{err}");
        assert!(files_under(&outside).is_empty());

        // A truncated archive fails the check: nothing written.
        let dir = tempfile::tempdir().unwrap();
        let mut a = Vec::new();
        raw_entry(&mut a, b"big", Regular, b"", &vec![1u8; 4096]);
        a.truncate(2048);
        let target = dir.path().join("t");
        assert!(restore(&a, &target, true).await.is_err());
        assert!(files_under(&target).is_empty());
    }

    /// Every file's name, kind, mode, mtime, owner, contents and link target under `dir`.
    fn described(dir: &Path) -> Vec<String> {
        files_under(dir)
            .into_iter()
            .map(|name| {
                let path = dir.join(&name);
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let what = if meta.is_symlink() {
                    format!("-> {}", std::fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    "dir".to_owned()
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    format!(
                        "{} bytes, sum {}",
                        bytes.len(),
                        bytes.iter().map(|b| u64::from(*b)).sum::<u64>()
                    )
                };
                let mtime = if meta.is_dir() { 0 } else { meta.mtime() };
                format!(
                    "{name} {what} mode {:o} mtime {mtime} owner {}:{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_fresh_directory_gets_the_same_tree_as_a_careful_extraction() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("base/5")).unwrap();
        // Larger than the write buffer, and not a multiple of a page.
        let big: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(root.join("base/5/16384"), &big).unwrap();
        std::fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::set_permissions(
            root.join("base/5/16384"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            root.join("base"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("base/5", root.join("link")).unwrap();
        if nix_uid() == 0 {
            std::os::unix::fs::chown(root.join("PG_VERSION"), Some(1234), Some(2345)).unwrap();
        }
        let mut source = FilesSource::new(FilesKind::Config, vec![root.clone()]);
        let (archive, _) = run(&mut source).await.unwrap();

        let careful = dir.path().join("careful");
        restore(&archive, &careful, false).await.unwrap();
        let fresh = dir.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        let summary = FilesExtract::into_fresh_directory(fresh.clone())
            .restore(stream(&archive))
            .await
            .unwrap();
        assert_eq!(summary.plain_bytes, archive.len() as u64);
        assert_eq!(described(&fresh), described(&careful));
        let base = fresh.join(root.display().to_string().trim_start_matches('/'));
        assert_eq!(std::fs::read(base.join("base/5/16384")).unwrap(), big);
        assert!(!files_under(&fresh).iter().any(|f| f.contains(".restore-")));
    }

    #[tokio::test]
    async fn a_fresh_directory_refuses_hostile_entries_and_writes_nothing_outside() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let escape = "../outside/evil";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"ok", Regular, b"", b"fine");
                    raw_entry(&mut a, escape.as_bytes(), Regular, b"", b"x");
                    finish(a)
                },
                "'..'",
            ),
            (
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"dir", Symlink, b"../outside", b"");
                    finish(a)
                },
                "outside the target",
            ),
            (
                {
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"dir", Symlink, b"sub", b"");
                    raw_entry(&mut a, b"dir/file", Regular, b"", b"x");
                    finish(a)
                },
                "a link in the archive",
            ),
            (
                {
                    // The same name twice: the second would overwrite the first.
                    let mut a = Vec::new();
                    raw_entry(&mut a, b"twice", Regular, b"", b"first");
                    raw_entry(&mut a, b"twice", Regular, b"", b"second");
                    finish(a)
                },
                "exists",
            ),
        ];
        for (i, (archive, expected)) in cases.into_iter().enumerate() {
            let target = dir.path().join(format!("fresh{i}"));
            std::fs::create_dir(&target).unwrap();
            let err = FilesExtract::into_fresh_directory(target.clone())
                .restore(stream(&archive))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "case {i}: {err}");
            assert!(files_under(&outside).is_empty(), "case {i}");
            if expected == "exists" {
                assert_eq!(std::fs::read(target.join("twice")).unwrap(), b"first");
            }
        }
    }
}
