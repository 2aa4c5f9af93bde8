//! LocalSink behaviour beyond the conformance suite: on-disk layout, atomic commit through
//! temporary files, full disks, stale temporary files, symbolic links and permissions.

// Clippy's allow-unwrap-in-tests covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use backup_storage::{LocalSink, LockMode, ObjectWriter, Sink, StorageError};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

const BACKUP_KEY: &str = "database/randevubu_backup_20240115_020000.sql.gz.enc";

fn sink_in(dir: &tempfile::TempDir) -> LocalSink {
    LocalSink::new(dir.path().join("backups")).unwrap()
}

/// Every file under `dir` (recursively, not following symbolic links) whose name starts with
/// `.tmp-`.
fn temp_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_modified(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

async fn open_writer_with(sink: &LocalSink, key: &str, data: &[u8]) -> Box<dyn ObjectWriter> {
    let mut writer = sink.writer(key).await.unwrap();
    writer.write_all(data).await.unwrap();
    writer.flush().await.unwrap();
    writer
}

fn keys(objects: &[backup_storage::ObjectMeta]) -> Vec<&str> {
    objects.iter().map(|meta| meta.key.as_str()).collect()
}

#[tokio::test]
async fn objects_are_files_at_root_slash_key() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    sink.put(BACKUP_KEY, Bytes::from_static(b"encrypted dump"))
        .await
        .unwrap();

    let expected = dir.path().join("backups").join(BACKUP_KEY);
    assert_eq!(sink.path_of(BACKUP_KEY).unwrap(), expected);
    assert_eq!(std::fs::read(&expected).unwrap(), b"encrypted dump");
    assert_eq!(sink.root(), dir.path().join("backups"));
    assert!(sink.describe().contains(&sink.root().display().to_string()));
}

#[tokio::test]
async fn files_written_by_other_tools_are_listed_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    // As the old backup scripts left them under $BACKUP_LOCAL_DIR.
    let legacy = sink
        .root()
        .join("redis/redis_backup_20240114_020000.rdb.gz");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, b"old rdb").unwrap();

    let listed = sink.list("redis/").await.unwrap();
    assert_eq!(keys(&listed), ["redis/redis_backup_20240114_020000.rdb.gz"]);
    assert_eq!(listed[0].size, 7);
    assert_eq!(
        sink.get_bytes("redis/redis_backup_20240114_020000.rdb.gz", 100)
            .await
            .unwrap(),
        "old rdb"
    );
}

#[tokio::test]
async fn path_of_rejects_invalid_and_overlong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    for bad in ["../escape", "/etc/passwd", "a//b", ""] {
        assert!(
            matches!(sink.path_of(bad), Err(StorageError::InvalidKey { .. })),
            "{bad:?}"
        );
    }
    // The file name must leave room for `.tmp-<name>.<16 hex>` within 255 bytes.
    let longest = format!("database/{}", "n".repeat(233));
    sink.put(&longest, Bytes::from_static(b"x")).await.unwrap();
    let too_long = format!("database/{}", "n".repeat(234));
    assert!(matches!(
        sink.writer(&too_long).await.map(drop),
        Err(StorageError::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn open_writer_exists_only_as_a_temp_file_beside_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    let final_path = sink.path_of(BACKUP_KEY).unwrap();

    let writer = open_writer_with(&sink, BACKUP_KEY, &[7; 1000]).await;

    assert!(!final_path.exists(), "the final file exists before commit");
    let temps = temp_files_under(sink.root());
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(
        temps[0].parent(),
        final_path.parent(),
        "temp file in another folder"
    );
    let temp_name = temps[0].file_name().unwrap().to_str().unwrap();
    let random = temp_name
        .strip_prefix(".tmp-randevubu_backup_20240115_020000.sql.gz.enc.")
        .unwrap_or_else(|| panic!("unexpected temp name {temp_name}"));
    assert_eq!(random.len(), 16, "{temp_name}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{temp_name}");
    assert_eq!(std::fs::read(&temps[0]).unwrap().len(), 1000);
    assert!(sink.list("").await.unwrap().is_empty());

    let meta = writer.commit().await.unwrap();
    assert_eq!(meta.size, 1000);
    assert_eq!(std::fs::read(&final_path).unwrap(), [7; 1000]);
    assert!(temp_files_under(sink.root()).is_empty());
}

#[tokio::test]
async fn dropped_writer_removes_its_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    let writer = open_writer_with(&sink, BACKUP_KEY, &[1; 300_000]).await;
    assert_eq!(temp_files_under(sink.root()).len(), 1);

    drop(writer);

    assert!(temp_files_under(sink.root()).is_empty());
    assert!(!sink.path_of(BACKUP_KEY).unwrap().exists());
}

#[tokio::test]
async fn aborted_writer_removes_its_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    let writer = open_writer_with(&sink, BACKUP_KEY, &[1; 300_000]).await;
    assert_eq!(temp_files_under(sink.root()).len(), 1);

    writer.abort().await.unwrap();

    assert!(temp_files_under(sink.root()).is_empty());
    assert!(!sink.path_of(BACKUP_KEY).unwrap().exists());
}

#[tokio::test]
async fn remove_stale_temp_files_removes_only_old_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    sink.put(BACKUP_KEY, Bytes::from_static(b"complete backup"))
        .await
        .unwrap();
    // A crash mid-write: the writer's `Drop` never runs.
    std::mem::forget(open_writer_with(&sink, "database/crashed.sql.gz.enc", b"partial").await);
    std::mem::forget(open_writer_with(&sink, "redis/latest/crashed.rdb.gz", b"partial").await);
    let old_leftovers = temp_files_under(sink.root());
    assert_eq!(old_leftovers.len(), 2);
    for path in &old_leftovers {
        set_modified(path, Duration::from_secs(2 * 3600));
    }
    // A write still in progress, and an old file that only looks similar.
    let in_progress = open_writer_with(&sink, "database/in-progress.sql.gz.enc", b"x").await;
    let lookalike = sink.root().join("database/.tmp-notes");
    std::fs::write(&lookalike, b"not ours").unwrap();
    set_modified(&lookalike, Duration::from_secs(2 * 3600));
    set_modified(
        &sink.path_of(BACKUP_KEY).unwrap(),
        Duration::from_secs(2 * 3600),
    );

    // Through the Sink trait, as backup-prune calls it.
    let removed = sink
        .remove_incomplete(Duration::from_secs(3600))
        .await
        .unwrap();

    let expected: Vec<String> = old_leftovers
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(removed, expected);
    assert!(old_leftovers.iter().all(|path| !path.exists()));
    assert!(lookalike.exists());
    assert_eq!(
        temp_files_under(sink.root()).len(),
        2,
        "in-progress + lookalike"
    );
    in_progress.commit().await.unwrap();
    assert_eq!(
        keys(&sink.list("database/").await.unwrap()),
        ["database/in-progress.sql.gz.enc", BACKUP_KEY]
    );
}

#[tokio::test]
async fn list_skips_temp_files_symlinks_and_names_that_are_not_keys() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    sink.put("db/real.sql", Bytes::from_static(b"real"))
        .await
        .unwrap();
    let _open = open_writer_with(&sink, "db/open.sql", b"partial").await;
    std::mem::forget(open_writer_with(&sink, "db/crashed.sql", b"partial").await);
    std::fs::write(sink.root().join("db/back\\slash"), b"not a key").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.sql"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, sink.root().join("linked")).unwrap();
    std::os::unix::fs::symlink(
        sink.root().join("db/real.sql"),
        sink.root().join("db/alias.sql"),
    )
    .unwrap();

    assert_eq!(keys(&sink.list("").await.unwrap()), ["db/real.sql"]);
    assert_eq!(keys(&sink.list("db/").await.unwrap()), ["db/real.sql"]);
    assert!(sink.list("linked/").await.unwrap().is_empty());
    assert!(sink.list("linked/secret").await.unwrap().is_empty());
}

#[tokio::test]
async fn committed_files_are_0600_and_created_folders_0700() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new/backups");
    let sink = LocalSink::new(&root).unwrap();
    assert!(
        !root.exists(),
        "the root is created by the first write, not before"
    );

    let writer = open_writer_with(&sink, "database/daily/x.enc", b"secret").await;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&temp_files_under(&root)[0]), 0o600, "temp file mode");
    writer.commit().await.unwrap();
    assert_eq!(mode(&root.join("database/daily/x.enc")), 0o600);
    assert_eq!(mode(&root.join("database")), 0o700);
    assert_eq!(mode(&root.join("database/daily")), 0o700);

    // Replacing a file someone made world-readable makes it private again.
    std::fs::set_permissions(
        root.join("database/daily/x.enc"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    sink.put("database/daily/x.enc", Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(mode(&root.join("database/daily/x.enc")), 0o600);
}

#[tokio::test]
async fn existing_folders_keep_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    std::fs::create_dir_all(root.join("database")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(
        root.join("database"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let sink = LocalSink::new(&root).unwrap();
    sink.put(BACKUP_KEY, Bytes::from_static(b"x"))
        .await
        .unwrap();

    assert_eq!(mode(&root), 0o750);
    assert_eq!(mode(&root.join("database")), 0o755);
}

#[tokio::test]
async fn a_file_where_a_folder_should_be_is_not_found_and_blocks_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink_in(&dir);
    sink.put("database", Bytes::from_static(b"a file"))
        .await
        .unwrap();

    assert!(sink.get(BACKUP_KEY).await.err().unwrap().is_not_found());
    assert!(sink.head(BACKUP_KEY).await.unwrap_err().is_not_found());
    sink.delete(BACKUP_KEY).await.unwrap();
    match sink.put(BACKUP_KEY, Bytes::from_static(b"x")).await {
        Err(StorageError::Io { op, .. }) => assert_eq!(op, "create directory"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(temp_files_under(sink.root()).is_empty());
}

#[tokio::test]
async fn new_fails_when_the_root_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(
        LocalSink::new(&file),
        Err(StorageError::Config(_))
    ));
}

#[tokio::test]
async fn a_dangling_link_as_root_or_a_linked_folder_under_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    match LocalSink::new(&dangling) {
        Err(StorageError::Config(message)) => assert!(message.contains("does not exist")),
        other => panic!("expected a configuration error, got {other:?}"),
    }

    // A `database` folder that is a link: written through, never listed. Refused.
    let root = dir.path().join("backups");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("database")).unwrap();
    match LocalSink::new(&root) {
        Err(StorageError::Config(message)) => {
            assert!(message.contains("symbolic link"), "{message}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }

    // The root itself may be a link (a mounted volume).
    let linked_root = dir.path().join("linked-root");
    std::os::unix::fs::symlink(&elsewhere, &linked_root).unwrap();
    let sink = LocalSink::new(&linked_root).unwrap();
    sink.put("database/x.sql", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        keys(&sink.list("database/").await.unwrap()),
        ["database/x.sql"]
    );
}

/// The name of the full-disk test, which runs itself again in a private mount namespace.
const FULL_DISK_TEST: &str = "write_to_a_full_filesystem_fails_and_leaves_no_temp_file";
/// Set in the re-run: it is inside the private mount namespace and does the real work.
const IN_PRIVATE_MOUNT_NAMESPACE: &str = "BACKUP_STORAGE_TEST_IN_PRIVATE_MOUNT_NAMESPACE";

/// A real `ENOSPC`, from a 1 MiB tmpfs.
///
/// Mounting needs CAP_SYS_ADMIN in the mount namespace, and a mount in the test's own
/// namespace would outlive a crashed test. So the test re-runs its own binary (only this test)
/// under `unshare --mount --map-root-user`: a new user namespace (in which we are root; this
/// works unprivileged where user namespaces are enabled, and as root) with a private mount
/// namespace, where it mounts the tmpfs. The mount vanishes with that process. If neither is
/// possible the test fails and says why; it never skips.
#[test]
fn write_to_a_full_filesystem_fails_and_leaves_no_temp_file() {
    if std::env::var_os(IN_PRIVATE_MOUNT_NAMESPACE).is_some() {
        full_filesystem_checks();
        return;
    }
    let test_binary = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "--map-root-user", "--"])
        .arg(&test_binary)
        .args([FULL_DISK_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_PRIVATE_MOUNT_NAMESPACE, "1")
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `unshare` (util-linux), needed to mount a tiny tmpfs: {error}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the full-disk test failed in its private mount namespace ({}).\n\
         If `unshare` itself failed: run the tests as root or enable unprivileged user \
         namespaces (sysctl kernel.unprivileged_userns_clone=1 / \
         user.max_user_namespaces > 0).\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
}

/// Unmounts the tmpfs when dropped (before its `TempDir` is removed), even after a panic.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn full_filesystem_checks() {
    let mount_point = tempfile::tempdir().unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(mount_point.path())
        .output()
        .unwrap();
    assert!(
        mount.status.success(),
        "mounting a 1 MiB tmpfs failed: {}",
        String::from_utf8_lossy(&mount.stderr)
    );
    let _unmount = Unmount(mount_point.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = LocalSink::new(mount_point.path().join("backups")).unwrap();
        for abort in [false, true] {
            write_error_on_full_disk_leaves_no_temp_file(&sink, abort).await;
        }
        commit_error_on_full_disk_leaves_no_temp_file(&sink).await;
    });
}

fn is_enospc(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
}

/// Writes 4 MiB into 1 MiB: a write (or at the latest the commit) reports ENOSPC; dropping or
/// aborting the writer then leaves no temporary file and frees the space.
async fn write_error_on_full_disk_leaves_no_temp_file(sink: &LocalSink, abort: bool) {
    let mut writer = sink.writer(BACKUP_KEY).await.unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let mut write_error = None;
    for _ in 0..64 {
        if let Err(error) = writer.write_all(&chunk).await {
            write_error = Some(error);
            break;
        }
    }
    match write_error {
        Some(error) => {
            assert!(is_enospc(&error), "expected ENOSPC from write, got {error}");
            if abort {
                writer.abort().await.unwrap();
            } else {
                drop(writer);
            }
        }
        None => match writer.commit().await {
            Err(StorageError::Io { source, .. }) if is_enospc(&source) => {}
            other => panic!("4 MiB into a 1 MiB tmpfs: expected ENOSPC, got {other:?}"),
        },
    }
    assert!(temp_files_under(sink.root()).is_empty(), "temp file left");
    assert!(sink.head(BACKUP_KEY).await.unwrap_err().is_not_found());
    // The space came back: a 600 KiB object fits again.
    sink.put("after-full.bin", Bytes::from(vec![1; 600 * 1024]))
        .await
        .unwrap();
    sink.delete("after-full.bin").await.unwrap();
}

/// With a nearly full disk, a small write stays in the writer's buffer and the failure comes
/// from `commit`: it returns the error and removes the temporary file.
async fn commit_error_on_full_disk_leaves_no_temp_file(sink: &LocalSink) {
    let filler_path = sink.root().join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![0; 4096];
    loop {
        match io::Write::write_all(&mut filler, &chunk) {
            Ok(()) => {}
            Err(error) if is_enospc(&error) => break,
            Err(error) => panic!("filling the tmpfs: {error}"),
        }
    }
    let full = filler.metadata().unwrap().len();
    filler.set_len(full.saturating_sub(64 * 1024)).unwrap();

    let mut writer = sink.writer(BACKUP_KEY).await.unwrap();
    // 200 KiB: less than the writer's 256 KiB buffer, so no write reaches the disk yet.
    for _ in 0..50 {
        writer.write_all(&chunk).await.unwrap();
    }
    match writer.commit().await {
        Err(StorageError::Io { op, source, .. }) if is_enospc(&source) => {
            assert_eq!(op, "write");
        }
        other => panic!("commit on a full disk: expected ENOSPC, got {other:?}"),
    }
    assert!(temp_files_under(sink.root()).is_empty(), "temp file left");
    assert!(sink.head(BACKUP_KEY).await.unwrap_err().is_not_found());
    drop(filler);
    std::fs::remove_file(filler_path).unwrap();
}

/// Backups share the directory's lock, retention takes it alone: an exclusive lock waits for
/// every shared one and gives up with `Locked` after its wait; a shared one waits for the
/// exclusive one; released locks free the way. The lock is the directory itself (a backup
/// creates it first): nothing is left in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_share_the_directory_lock_and_retention_takes_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let sink = LocalSink::new(&root).unwrap();
    let other = LocalSink::new(&root).unwrap();
    let short = Duration::from_millis(300);
    // Retention on a directory that does not exist: nothing to lock, nothing created.
    assert!(sink
        .lock(LockMode::Exclusive, short)
        .await
        .unwrap()
        .is_none());
    assert!(!root.exists());

    let first = sink.lock(LockMode::Shared, short).await.unwrap().unwrap();
    assert!(root.is_dir(), "a backup's lock creates the directory");
    let second = other.lock(LockMode::Shared, short).await.unwrap().unwrap();
    let err = other.lock(LockMode::Exclusive, short).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Locked {
                wanted: "exclusive",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("backup-prune"), "{err}");
    drop(first);
    assert!(
        other.lock(LockMode::Exclusive, short).await.is_err(),
        "one backup still holds it"
    );
    // The exclusive lock is granted as soon as the last backup lets go.
    let waiting = tokio::spawn(async move {
        other
            .lock(LockMode::Exclusive, Duration::from_secs(10))
            .await
            .map(|l| l.is_some())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiting.is_finished(),
        "granted while a backup held the lock"
    );
    drop(second);
    let exclusive = LocalSink::new(&root).unwrap();
    assert!(waiting.await.unwrap().unwrap());
    // Held exclusively (by the task's lock, dropped with it) or not, a shared lock works now;
    // while an exclusive one is held, it waits and gives up.
    let held = exclusive
        .lock(LockMode::Exclusive, short)
        .await
        .unwrap()
        .unwrap();
    let err = sink.lock(LockMode::Shared, short).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Locked {
                wanted: "shared",
                ..
            }
        ),
        "{err}"
    );
    drop(held);
    assert!(sink.lock(LockMode::Shared, short).await.unwrap().is_some());
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "no lock file is left"
    );
}
