//! Redis restores against real redis-server instances: file mode (rename into place, stop /
//! start commands, Docker through a fake `docker`), online `RESTORE`, and the dry run. Every
//! failure leaves the target as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use backup_core::{ByteStream, RestoreSummary, RestoreTarget};
use backup_sources::redis::{
    aof_warning, aof_warning_for_dir, choose_spare, FileRestoreOptions, OnlineRestoreOptions,
    RdbCheck, RedisClient, RedisConfig, RedisError, RedisFileRestore, RedisOnlineRestore, Resp,
    SpareDb, Staging,
};
use backup_testkit::{
    assert_snapshots_match, load_redis_sample, redis_functions, redis_snapshot, RedisOptions,
    RedisServer, SampleStats, REDIS_SAMPLE_LIBRARY,
};
use tokio::io::{AsyncRead, ReadBuf};

/// Databases compared: the sample's, an empty one, and the last.
const DBS: &[u8] = &[0, 1, 2, 7, 15];
/// TTLs of a restored key may be this much lower than the original's.
const TTL_TOLERANCE_MS: i64 = 20_000;

fn debug_server() -> RedisServer {
    RedisServer::start_with(RedisOptions {
        config: vec![("enable-debug-command".to_owned(), "local".to_owned())],
        ..RedisOptions::default()
    })
    .unwrap()
}

fn config_of(server: &RedisServer) -> RedisConfig {
    let env = server.env();
    RedisConfig::from_lookup(&|k| {
        env.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}

async fn client_of(server: &RedisServer) -> RedisClient {
    RedisClient::connect(&config_of(server)).await.unwrap()
}

async fn cmd(client: &mut RedisClient, args: &[&str]) -> Resp {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let reply = client.command(&args).await.unwrap();
    assert!(!reply.is_error(), "{args:?}: {reply:?}");
    reply
}

/// `SAVE`, then the bytes of the RDB file.
async fn save(server: &RedisServer) -> Vec<u8> {
    let mut client = client_of(server).await;
    cmd(&mut client, &["SAVE"]).await;
    std::fs::read(server.rdb_path()).unwrap()
}

/// A server with the sample data, and its RDB.
async fn sample_rdb() -> (RedisServer, SampleStats, Vec<u8>) {
    let server = debug_server();
    let stats = load_redis_sample(&mut server.client().unwrap(), 1).unwrap();
    let rdb = save(&server).await;
    (server, stats, rdb)
}

/// A small RDB: a few keys in two databases.
async fn small_rdb() -> Vec<u8> {
    let server = RedisServer::start().unwrap();
    let mut c = client_of(&server).await;
    cmd(&mut c, &["SET", "a", "1"]).await;
    cmd(&mut c, &["RPUSH", "l", "x", "y"]).await;
    cmd(&mut c, &["SELECT", "3"]).await;
    cmd(&mut c, &["HSET", "h", "f", "v"]).await;
    save(&server).await
}

fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::new(std::io::Cursor::new(bytes))
}

/// Gives `limit` bytes of `data`, then an error (as a failed verification would).
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
    limit: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos >= this.limit {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "HMAC mismatch: the backup was modified",
            )));
        }
        let n = buf.remaining().min(this.limit - this.pos).min(64 * 1024);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn downcast(e: backup_core::BoxError) -> RedisError {
    match e.downcast::<RedisError>() {
        Ok(e) => *e,
        Err(other) => panic!("not a RedisError: {other}"),
    }
}

async fn file_restore(
    options: FileRestoreOptions,
    s: ByteStream,
) -> Result<RestoreSummary, RedisError> {
    RedisFileRestore::new(options)
        .restore(s)
        .await
        .map_err(downcast)
}

fn local_options(target: &Path, log: Option<&Path>) -> FileRestoreOptions {
    FileRestoreOptions {
        rdb_path: Some(target.to_path_buf()),
        stop_cmd: log.map(|l| format!("echo stop >> '{}'", l.display())),
        start_cmd: log.map(|l| format!("echo start >> '{}'", l.display())),
        ..FileRestoreOptions::default()
    }
}

/// Names in `dir` other than `keep`.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

// ------------------------------------------------------------------------------- file mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_restore_replaces_the_file_and_the_data_matches() {
    let (source, stats, rdb) = sample_rdb().await;
    let expected = redis_snapshot(&mut source.client().unwrap(), DBS).unwrap();
    let expected_functions = redis_functions(&mut source.client().unwrap()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous data").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let root = is_root();
    if root {
        std::os::unix::fs::chown(&target, Some(1), Some(2)).unwrap();
    }
    let log = dir.path().join("hooks.log");
    let summary = file_restore(local_options(&target, Some(&log)), stream(rdb.clone()))
        .await
        .unwrap();

    assert_eq!(std::fs::read_to_string(&log).unwrap(), "stop\nstart\n");
    assert_eq!(std::fs::read(&target).unwrap(), rdb);
    assert_eq!(summary.plain_bytes, rdb.len() as u64);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (1, 2));
    }
    // The previous file is kept aside; nothing else is left behind.
    let names = dir_names(dir.path());
    assert_eq!(names.len(), 3, "{names:?}");
    let kept = names
        .iter()
        .find(|n| n.starts_with("dump.rdb.before-restore-"))
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join(kept)).unwrap(),
        b"previous data"
    );
    let notes = summary.notes.join("\n");
    assert!(notes.contains(kept.as_str()), "{notes}");
    assert!(notes.contains("checksum verified"), "{notes}");
    assert!(
        notes.contains(&format!("{} keys in 3 database(s)", stats.total_keys())),
        "{notes}"
    );
    assert!(notes.contains("1 function library"), "{notes}");
    assert!(!notes.contains("WARNING"), "{notes}");

    // A fresh server loads the restored file: same keys, values, TTLs and functions.
    let restored = RedisServer::start_with(RedisOptions {
        rdb_file: Some(target.clone()),
        ..RedisOptions::default()
    })
    .unwrap();
    let actual = redis_snapshot(&mut restored.client().unwrap(), DBS).unwrap();
    assert_snapshots_match(&expected, &actual, TTL_TOLERANCE_MS);
    assert_eq!(
        redis_functions(&mut restored.client().unwrap()).unwrap(),
        expected_functions
    );
}

#[tokio::test]
async fn file_restore_without_a_previous_file() {
    let rdb = small_rdb().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    let summary = file_restore(local_options(&target, None), stream(rdb.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), rdb);
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(dir_names(dir.path()), ["dump.rdb"]);
    let notes = summary.notes.join("\n");
    assert!(notes.contains("there was no previous"), "{notes}");
    assert!(notes.contains("no stop command was given"), "{notes}");
    assert!(notes.contains("db 3: 1 keys (hash 1)"), "{notes}");

    // As root, into a directory owned by another user (redis in /var/lib/redis): the new
    // file belongs to that user, mode 0600.
    if is_root() {
        let owned = dir.path().join("redis-owned");
        std::fs::create_dir(&owned).unwrap();
        std::os::unix::fs::chown(&owned, Some(1), Some(2)).unwrap();
        let target = owned.join("dump.rdb");
        file_restore(local_options(&target, None), stream(rdb))
            .await
            .unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1, 2, 0o600)
        );
    }
}

/// A target directory with a previous file and a hook log; checks that a failed restore left
/// it exactly as it was and ran no hook (or only `expected_log`).
struct Untouched {
    dir: tempfile::TempDir,
    target: PathBuf,
    log: PathBuf,
}

impl Untouched {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dump.rdb");
        std::fs::write(&target, b"REDIS0010 previous").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let log = dir.path().join("hooks.log");
        Self { dir, target, log }
    }

    fn check(&self, expected_log: &str) {
        assert_eq!(std::fs::read(&self.target).unwrap(), b"REDIS0010 previous");
        assert_eq!(
            std::fs::metadata(&self.target).unwrap().mode() & 0o7777,
            0o640
        );
        let mut expected = vec!["dump.rdb".to_owned()];
        if !expected_log.is_empty() {
            expected.push("hooks.log".to_owned());
            assert_eq!(std::fs::read_to_string(&self.log).unwrap(), expected_log);
        }
        assert_eq!(dir_names(self.dir.path()), expected);
    }
}

#[tokio::test]
async fn failing_stop_command_leaves_the_target_untouched() {
    let rdb = small_rdb().await;
    let t = Untouched::new();
    let mut options = local_options(&t.target, Some(&t.log));
    options.stop_cmd = Some(format!(
        "echo stop >> '{}'; echo 'redis is busy' >&2; exit 3",
        t.log.display()
    ));
    let err = file_restore(options, stream(rdb)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::HookFailed { .. }), "{msg}");
    assert!(msg.contains("the stop command"), "{msg}");
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.contains("redis is busy"), "{msg}");
    t.check("stop\n");
}

#[tokio::test]
async fn failing_start_command_reports_the_replaced_file() {
    let rdb = small_rdb().await;
    let t = Untouched::new();
    let mut options = local_options(&t.target, Some(&t.log));
    options.start_cmd = Some("echo 'cannot start' >&2; false".to_owned());
    let err = file_restore(options, stream(rdb.clone()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::StartFailed { .. }), "{msg}");
    assert!(msg.contains("was replaced"), "{msg}");
    assert!(msg.contains("cannot start"), "{msg}");
    assert!(msg.contains("before-restore-"), "{msg}");
    assert_eq!(std::fs::read(&t.target).unwrap(), rdb);
}

#[tokio::test]
async fn stream_error_half_way_leaves_the_target_untouched() {
    let (_source, _stats, rdb) = sample_rdb().await;
    let t = Untouched::new();
    let limit = rdb.len() / 2;
    let reader = FailingReader {
        data: rdb,
        pos: 0,
        limit,
    };
    let err = file_restore(local_options(&t.target, Some(&t.log)), Box::new(reader))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::Stream { .. }), "{msg}");
    assert!(msg.contains("HMAC mismatch"), "{msg}");
    assert!(msg.contains("left untouched"), "{msg}");
    t.check("");
}

#[tokio::test]
async fn truncated_and_corrupted_rdbs_leave_the_target_untouched() {
    let rdb = small_rdb().await;
    let t = Untouched::new();

    let truncated = rdb[..rdb.len() - 12].to_vec();
    let err = file_restore(local_options(&t.target, Some(&t.log)), stream(truncated))
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Rdb { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    t.check("");

    let mut corrupted = rdb.clone();
    let n = corrupted.len();
    corrupted[n - 3] ^= 0x55; // inside the CRC-64
    let err = file_restore(local_options(&t.target, Some(&t.log)), stream(corrupted))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    t.check("");

    let mut garbage = b"NOTREDIS".to_vec();
    garbage.extend_from_slice(&rdb);
    let err = file_restore(local_options(&t.target, Some(&t.log)), stream(garbage))
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Rdb { .. }), "{err}");
    t.check("");
}

#[tokio::test]
async fn docker_mode_stops_copies_and_starts_the_container() {
    let rdb = small_rdb().await;
    let work = tempfile::tempdir().unwrap();
    let container_dir = work.path().join("container-data");
    std::fs::create_dir(&container_dir).unwrap();
    std::fs::write(container_dir.join("dump.rdb"), b"old container data").unwrap();
    let args_log = work.path().join("docker-args.log");
    let script = work.path().join("docker");
    // A fake docker: records its arguments; `cp` copies with NAME: mapped to container_dir.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >> '{log}'\n\
             map() {{ case \"$1\" in redis-prod:*) echo '{dir}'\"${{1#redis-prod:/data}}\";; *) echo \"$1\";; esac; }}\n\
             case \"$1\" in\n\
               cp) cp \"$(map \"$2\")\" \"$(map \"$3\")\" ;;\n\
               stop|start) echo \"$2\" ;;\n\
               *) echo \"unknown command $1\" >&2; exit 1 ;;\n\
             esac\n",
            log = args_log.display(),
            dir = container_dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let temp_dir = work.path().join("tmp");
    std::fs::create_dir(&temp_dir).unwrap();

    let options = FileRestoreOptions {
        docker_container: Some("redis-prod".to_owned()),
        docker_program: script.clone(),
        work_dir: Some(temp_dir.clone()),
        ..FileRestoreOptions::default()
    };
    let summary = file_restore(options.clone(), stream(rdb.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(container_dir.join("dump.rdb")).unwrap(), rdb);
    let calls = std::fs::read_to_string(&args_log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 4, "{calls}");
    assert_eq!(lines[0], "stop redis-prod");
    assert!(
        lines[1].starts_with("cp redis-prod:/data/dump.rdb "),
        "{calls}"
    );
    let tmp_arg = lines[2]
        .strip_prefix("cp ")
        .and_then(|r| r.strip_suffix(" redis-prod:/data/dump.rdb"))
        .unwrap_or_else(|| panic!("{calls}"));
    assert!(tmp_arg.contains(".restore-"), "{calls}");
    assert_eq!(lines[3], "start redis-prod");
    // The temporary file is gone; the container's previous file was kept locally, 0600, in
    // a private (0700) directory of its own.
    let names = dir_names(&temp_dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("redis-before-restore-"), "{names:?}");
    let private = temp_dir.join(&names[0]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o700);
    let kept = dir_names(&private);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("dump.rdb.before-restore-"));
    assert_eq!(mode(&private.join(&kept[0])), 0o600);
    assert_eq!(
        std::fs::read(private.join(&kept[0])).unwrap(),
        b"old container data"
    );
    assert!(summary
        .notes
        .join("\n")
        .contains("started container redis-prod"));

    // A corrupt stream never reaches docker.
    std::fs::remove_file(&args_log).unwrap();
    let err = file_restore(options.clone(), stream(rdb[..rdb.len() / 2].to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Rdb { .. }), "{err}");
    assert!(!args_log.exists());
    assert_eq!(dir_names(&temp_dir).len(), 1);

    // A failing docker command: its stderr is in the error, the temporary file is removed.
    let failing = FileRestoreOptions {
        docker_container: Some("other".to_owned()),
        ..options.clone()
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\necho 'Error response from daemon: No such container: other' >&2\nexit 1\n",
            args_log.display()
        ),
    )
    .unwrap();
    let err = file_restore(failing, stream(rdb)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("docker stop"), "{msg}");
    assert!(msg.contains("No such container"), "{msg}");
    assert_eq!(std::fs::read_to_string(&args_log).unwrap(), "stop other\n");
    assert_eq!(dir_names(&temp_dir).len(), 1);
}

#[tokio::test]
async fn aof_warning_names_the_aof() {
    let server = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let warning = aof_warning_for_dir(server.dir()).unwrap();
    assert!(warning.contains("appendonlydir"), "{warning}");
    assert!(warning.contains("BGREWRITEAOF"), "{warning}");
    assert!(
        warning.contains("loads the AOF instead of the restored RDB"),
        "{warning}"
    );

    // Through the server only.
    let mut client = client_of(&server).await;
    let warning = aof_warning(None, Some(&mut client)).await.unwrap();
    assert!(warning.contains("appendonly yes"), "{warning}");

    // Not for a server without AOF.
    let plain = RedisServer::start().unwrap();
    let mut client = client_of(&plain).await;
    assert_eq!(
        aof_warning(Some(&plain.rdb_path()), Some(&mut client)).await,
        None
    );

    // The file restore puts it in its notes.
    let rdb = small_rdb().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("appendonlydir")).unwrap();
    let summary = file_restore(
        local_options(&dir.path().join("dump.rdb"), None),
        stream(rdb),
    )
    .await
    .unwrap();
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.starts_with("WARNING") && n.contains("appendonlydir")),
        "{:?}",
        summary.notes
    );
}

// ------------------------------------------------------------------------------- online

async fn online(
    server: &RedisServer,
    replace: bool,
    check_only: bool,
    rdb: Vec<u8>,
) -> Result<RestoreSummary, RedisError> {
    RedisOnlineRestore::new(
        config_of(server),
        OnlineRestoreOptions {
            replace,
            check_only,
            ..OnlineRestoreOptions::default()
        },
    )
    .restore(stream(rdb))
    .await
    .map_err(downcast)
}

async fn dbsize(client: &mut RedisClient, db: u8) -> i64 {
    cmd(client, &["SELECT", &db.to_string()]).await;
    match cmd(client, &["DBSIZE"]).await {
        Resp::Integer(n) => n,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_restore_into_an_empty_server() {
    let (source, stats, rdb) = sample_rdb().await;
    let expected = redis_snapshot(&mut source.client().unwrap(), DBS).unwrap();
    let expected_functions = redis_functions(&mut source.client().unwrap()).unwrap();

    let target = RedisServer::start().unwrap();
    let check = online(&target, false, true, rdb.clone()).await.unwrap();
    let notes = check.notes.join("\n");
    assert!(notes.contains("would restore"), "{notes}");
    assert!(notes.contains("no key of the backup exists"), "{notes}");
    let mut c = client_of(&target).await;
    for db in [0, 1, 7] {
        assert_eq!(dbsize(&mut c, db).await, 0, "check_only wrote to db {db}");
    }

    let summary = online(&target, false, false, rdb.clone()).await.unwrap();
    let notes = summary.notes.join("\n");
    assert!(
        notes.contains(&format!(
            "restored {} keys in 3 database(s)",
            stats.total_keys()
        )),
        "{notes}"
    );
    assert!(
        notes.contains("0 already expired key(s) skipped"),
        "{notes}"
    );
    assert!(notes.contains("loaded 1 function library"), "{notes}");
    assert!(notes.contains("target Redis 7."), "{notes}");
    assert_eq!(summary.plain_bytes, rdb.len() as u64);

    let actual = redis_snapshot(&mut target.client().unwrap(), DBS).unwrap();
    assert_snapshots_match(&expected, &actual, TTL_TOLERANCE_MS);
    let functions = redis_functions(&mut target.client().unwrap()).unwrap();
    assert_eq!(functions, expected_functions);
    assert!(functions[0].contains(REDIS_SAMPLE_LIBRARY));

    // Again without replace: every key clashes, and the library too.
    let err = online(&target, false, true, rdb.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::KeysExist { .. }), "{msg}");
    assert!(msg.contains("and "), "{msg}");
    // Without the check, RESTORE itself refuses (BUSYKEY) and names the key.
    let err = online(&target, false, false, rdb.clone())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::RestoreRefused { .. }), "{msg}");
    assert!(
        msg.contains("BUSYKEY") || msg.contains("already exists"),
        "{msg}"
    );
    // With replace, everything is overwritten with the same data.
    online(&target, true, true, rdb.clone()).await.unwrap();
    online(&target, true, false, rdb).await.unwrap();
    let actual = redis_snapshot(&mut target.client().unwrap(), DBS).unwrap();
    assert_snapshots_match(&expected, &actual, TTL_TOLERANCE_MS);
}

#[tokio::test]
async fn online_restore_of_a_failing_stream_reports_the_stream_error() {
    let (_source, _stats, rdb) = sample_rdb().await;
    let target = RedisServer::start().unwrap();
    let limit = rdb.len() / 3;
    let err = RedisOnlineRestore::new(
        config_of(&target),
        OnlineRestoreOptions {
            check_only: true,
            ..OnlineRestoreOptions::default()
        },
    )
    .restore(Box::new(FailingReader {
        data: rdb,
        pos: 0,
        limit,
    }))
    .await
    .map_err(downcast)
    .unwrap_err();
    assert!(err.to_string().contains("HMAC mismatch"), "{err}");
    let mut c = client_of(&target).await;
    assert_eq!(dbsize(&mut c, 0).await, 0);
}

#[tokio::test]
async fn online_check_lists_clashing_keys_and_writes_nothing() {
    let rdb = small_rdb().await;
    let target = RedisServer::start().unwrap();
    let mut c = client_of(&target).await;
    cmd(&mut c, &["SELECT", "3"]).await;
    cmd(&mut c, &["SET", "h", "existing"]).await;
    cmd(&mut c, &["SELECT", "0"]).await;
    cmd(&mut c, &["SET", "unrelated", "1"]).await;

    let err = online(&target, false, true, rdb.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RedisError::KeysExist { total: 1, .. }),
        "{msg}"
    );
    assert!(msg.contains("db 3: \"h\""), "{msg}");
    assert!(msg.contains("--replace"), "{msg}");
    assert_eq!(dbsize(&mut c, 0).await, 1);
    assert_eq!(dbsize(&mut c, 3).await, 1);

    // With replace: the check passes and the key is overwritten.
    online(&target, true, true, rdb.clone()).await.unwrap();
    online(&target, true, false, rdb).await.unwrap();
    cmd(&mut c, &["SELECT", "3"]).await;
    assert_eq!(
        cmd(&mut c, &["HGET", "h", "f"]).await,
        Resp::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(dbsize(&mut c, 0).await, 3);
}

#[tokio::test]
async fn online_restore_skips_keys_that_already_expired() {
    let source = RedisServer::start().unwrap();
    let mut c = client_of(&source).await;
    cmd(&mut c, &["SET", "stays", "1"]).await;
    cmd(&mut c, &["SET", "goes", "2"]).await;
    cmd(&mut c, &["SET", "later", "3"]).await;
    let now_ms = match cmd(&mut c, &["TIME"]).await {
        Resp::Array(Some(t)) => {
            let s: i64 = t[0].as_text().unwrap().parse().unwrap();
            let us: i64 = t[1].as_text().unwrap().parse().unwrap();
            s * 1000 + us / 1000
        }
        other => panic!("{other:?}"),
    };
    cmd(&mut c, &["PEXPIREAT", "goes", &(now_ms + 1500).to_string()]).await;
    cmd(
        &mut c,
        &["PEXPIREAT", "later", &(now_ms + 3_600_000).to_string()],
    )
    .await;
    cmd(&mut c, &["SAVE"]).await;
    let rdb = std::fs::read(source.rdb_path()).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let target = RedisServer::start().unwrap();
    let check = online(&target, false, true, rdb.clone()).await.unwrap();
    assert!(
        check
            .notes
            .join("\n")
            .contains("1 already expired key(s) would be skipped"),
        "{:?}",
        check.notes
    );
    let summary = online(&target, false, false, rdb).await.unwrap();
    assert!(
        summary.notes.join("\n").contains("restored 2 keys"),
        "{:?}",
        summary.notes
    );
    assert!(summary
        .notes
        .join("\n")
        .contains("1 already expired key(s) skipped"));
    let mut t = client_of(&target).await;
    assert_eq!(cmd(&mut t, &["EXISTS", "goes"]).await, Resp::Integer(0));
    assert_eq!(
        cmd(&mut t, &["GET", "stays"]).await,
        Resp::Bulk(Some(b"1".to_vec()))
    );
    match cmd(&mut t, &["PTTL", "later"]).await {
        Resp::Integer(ms) => assert!(ms > 3_500_000 && ms <= 3_600_000, "{ms}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn online_restore_refuses_a_newer_rdb_version() {
    let mut rdb = small_rdb().await;
    assert_eq!(&rdb[..9], b"REDIS0010");
    rdb[5..9].copy_from_slice(b"0011");
    let n = rdb.len();
    let crc = backup_rdb::crc64(0, &rdb[..n - 8]);
    rdb[n - 8..].copy_from_slice(&crc.to_le_bytes());

    let target = RedisServer::start().unwrap();
    for check_only in [true, false] {
        let err = online(&target, false, check_only, rdb.clone())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RedisError::RdbVersionTooNew { .. }), "{msg}");
        assert!(msg.contains("RDB v11"), "{msg}");
        assert!(msg.contains("at most RDB v10"), "{msg}");
        assert!(msg.contains("Redis >= 7.2"), "{msg}");
    }
    let mut c = client_of(&target).await;
    assert_eq!(dbsize(&mut c, 0).await, 0);
}

#[tokio::test]
async fn online_restore_needs_restore_permission() {
    let rdb = small_rdb().await;
    let target = RedisServer::start_with(RedisOptions {
        acl_users: vec![
            (
                "reader".to_owned(),
                "s3cret-pw".to_owned(),
                "~* +@read +select +info +time +ping".to_owned(),
            ),
            (
                "restorer".to_owned(),
                "other-pw".to_owned(),
                // The rules the module documentation gives.
                "~* +restore +select +exists +function|load +function|list +info +time".to_owned(),
            ),
        ],
        ..RedisOptions::default()
    })
    .unwrap();
    let mut config = config_of(&target);
    config.username = Some("reader".to_owned());
    config.password = Some(zeroize::Zeroizing::new("s3cret-pw".to_owned()));
    let err = RedisOnlineRestore::new(config, OnlineRestoreOptions::default())
        .restore(stream(rdb.clone()))
        .await
        .map_err(downcast)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RedisError::Permission { .. }), "{msg}");
    assert!(msg.contains("RESTORE"), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");

    let mut config = config_of(&target);
    config.username = Some("restorer".to_owned());
    config.password = Some(zeroize::Zeroizing::new("other-pw".to_owned()));
    for check_only in [true, false] {
        RedisOnlineRestore::new(
            config.clone(),
            OnlineRestoreOptions {
                check_only,
                ..OnlineRestoreOptions::default()
            },
        )
        .restore(stream(rdb.clone()))
        .await
        .unwrap();
    }
}

// ------------------------------------------------------------------------ staged (SWAPDB)

async fn staged(
    server: &RedisServer,
    replace: bool,
    spare: SpareDb,
    stream: ByteStream,
) -> Result<RestoreSummary, RedisError> {
    RedisOnlineRestore::new(
        config_of(server),
        OnlineRestoreOptions {
            replace,
            staging: Staging::Spare(spare),
            ..OnlineRestoreOptions::default()
        },
    )
    .restore(stream)
    .await
    .map_err(downcast)
}

async fn get(client: &mut RedisClient, db: u8, key: &str) -> Resp {
    cmd(client, &["SELECT", &db.to_string()]).await;
    client.command(&[b"GET", key.as_bytes()]).await.unwrap()
}

#[tokio::test]
async fn a_staged_replace_swaps_each_database_in_whole_and_keeps_the_targets_other_keys() {
    // The backup: db 0 {a = "1", l}, db 3 {h (a hash)}.
    let rdb = small_rdb().await;
    let target = RedisServer::start().unwrap();
    let mut c = client_of(&target).await;
    cmd(&mut c, &["SET", "a", "old"]).await;
    cmd(&mut c, &["SET", "only-here", "t", "EX", "3600"]).await;
    cmd(&mut c, &["SELECT", "3"]).await;
    cmd(
        &mut c,
        &["SET", "h", "a string, replaced by the backup's hash"],
    )
    .await;
    cmd(&mut c, &["SELECT", "5"]).await;
    cmd(&mut c, &["SET", "elsewhere", "x"]).await;

    let dbs = [0u64, 3].into_iter().collect();
    let spare = choose_spare(&config_of(&target), &dbs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spare.db, 15, "the highest empty database not in the backup");
    // A second restore choosing at the same moment gets another one: 15 is claimed.
    let other = choose_spare(&config_of(&target), &dbs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.db, 14);
    assert_eq!(dbsize(&mut c, 14).await, 1, "only the claim");

    let summary = staged(&target, true, spare, stream(rdb)).await.unwrap();
    let notes = summary.notes.join("\n");
    assert!(notes.contains("all or nothing per database"), "{notes}");
    assert!(notes.contains("1 key(s) of the target"), "{notes}");

    assert_eq!(get(&mut c, 0, "a").await, Resp::Bulk(Some(b"1".to_vec())));
    assert_eq!(
        get(&mut c, 0, "only-here").await,
        Resp::Bulk(Some(b"t".to_vec()))
    );
    match cmd(&mut c, &["TTL", "only-here"]).await {
        Resp::Integer(ttl) => assert!(ttl > 3000, "the kept key keeps its TTL: {ttl}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dbsize(&mut c, 0).await, 3);
    cmd(&mut c, &["SELECT", "3"]).await;
    assert_eq!(
        cmd(&mut c, &["HGET", "h", "f"]).await,
        Resp::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(dbsize(&mut c, 5).await, 1, "a database not in the backup");
    assert_eq!(dbsize(&mut c, 15).await, 0, "the spare is emptied");
}

#[tokio::test]
async fn a_staged_restore_that_fails_half_way_leaves_the_database_unchanged() {
    // A backup whose first database is large enough to be cut in the middle.
    let source = RedisServer::start().unwrap();
    let mut s = client_of(&source).await;
    let value = "v".repeat(1024);
    for i in 0..2000 {
        cmd(&mut s, &["SET", &format!("k{i}"), &value]).await;
    }
    let rdb = save(&source).await;

    let target = RedisServer::start().unwrap();
    let mut c = client_of(&target).await;
    cmd(&mut c, &["SET", "k1", "old"]).await;
    cmd(&mut c, &["SET", "z", "keep"]).await;
    let limit = rdb.len() / 2;
    for replace in [true, false] {
        let cut = Box::new(FailingReader {
            data: rdb.clone(),
            pos: 0,
            limit,
        });
        let err = staged(&target, replace, SpareDb::new(15), cut)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, RedisError::StagedRestoreFailed { .. }),
            "{msg}"
        );
        assert!(msg.contains("HMAC mismatch"), "{msg}");
        assert!(msg.contains("database 0, which is unchanged"), "{msg}");
        assert!(msg.contains("No database was replaced"), "{msg}");
        assert!(msg.contains("emptied again"), "{msg}");
        assert_eq!(dbsize(&mut c, 0).await, 2);
        assert_eq!(
            get(&mut c, 0, "k1").await,
            Resp::Bulk(Some(b"old".to_vec()))
        );
        assert_eq!(dbsize(&mut c, 15).await, 0, "the spare is emptied");
    }
}

#[tokio::test]
async fn a_staged_restore_without_replace_refuses_keys_that_appeared_after_the_check() {
    let rdb = small_rdb().await;
    let target = RedisServer::start().unwrap();
    let mut c = client_of(&target).await;
    // "a" is in the backup: the check would have refused it; here it appears "after" it.
    cmd(&mut c, &["SET", "a", "arrived later"]).await;
    let err = staged(&target, false, SpareDb::new(15), stream(rdb))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("appeared in database 0 after the check"),
        "{msg}"
    );
    assert!(msg.contains("database 0, which is unchanged"), "{msg}");
    assert_eq!(dbsize(&mut c, 0).await, 1);
    assert_eq!(
        get(&mut c, 0, "a").await,
        Resp::Bulk(Some(b"arrived later".to_vec()))
    );
    assert_eq!(
        dbsize(&mut c, 3).await,
        0,
        "nothing reached database 3 either"
    );
    assert_eq!(dbsize(&mut c, 15).await, 0);
}

#[tokio::test]
async fn no_spare_database_is_chosen_where_the_server_does_not_allow_a_staged_restore() {
    // No COPY / SWAPDB for this user: said, with the ACL rule to add.
    let target = RedisServer::start_with(RedisOptions {
        acl_users: vec![(
            "restorer".to_owned(),
            "pw".to_owned(),
            "~* +restore +select +exists +function|load +function|list +info +time +dbsize \
             +scan"
                .to_owned(),
        )],
        ..RedisOptions::default()
    })
    .unwrap();
    let mut config = config_of(&target);
    config.username = Some("restorer".to_owned());
    config.password = Some(zeroize::Zeroizing::new("pw".to_owned()));
    let dbs = [0u64].into_iter().collect();
    let reason = choose_spare(&config, &dbs).await.unwrap().unwrap_err();
    assert!(reason.contains("may not run COPY"), "{reason}");
    assert!(reason.contains("+copy +swapdb"), "{reason}");

    // Every database in use (by the backup or by keys).
    let small = RedisServer::start_with(RedisOptions {
        config: vec![("databases".to_owned(), "2".to_owned())],
        ..RedisOptions::default()
    })
    .unwrap();
    let mut c = client_of(&small).await;
    cmd(&mut c, &["SELECT", "1"]).await;
    cmd(&mut c, &["SET", "busy", "1"]).await;
    let reason = choose_spare(&config_of(&small), &dbs)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        reason.contains("none of the server's 2 databases"),
        "{reason}"
    );
    // With database 1 free again, it is the spare.
    cmd(&mut c, &["DEL", "busy"]).await;
    let spare = choose_spare(&config_of(&small), &dbs)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spare.db, 1);

    // A spare claimed by another restore is refused and left alone, its claim too.
    let theirs = staged(&small, true, SpareDb::new(1), stream(small_rdb().await))
        .await
        .unwrap_err();
    assert!(
        theirs.to_string().contains("claimed by another restore"),
        "{theirs}"
    );
    cmd(&mut c, &["SELECT", "1"]).await;
    assert_eq!(
        cmd(&mut c, &["GET", "backup-restore:spare-claim"]).await,
        Resp::Bulk(Some(spare.token.clone().into_bytes()))
    );
    assert_eq!(dbsize(&mut c, 0).await, 0, "nothing was written");
}

// ------------------------------------------------------------------------------- dry run

#[tokio::test]
async fn rdb_check_counts_keys_per_database_and_type() {
    let (_source, stats, rdb) = sample_rdb().await;
    let mut check = RdbCheck::default();
    let summary = check.restore(stream(rdb.clone())).await.unwrap();
    let s = check.summary.unwrap();
    assert_eq!(summary.plain_bytes, rdb.len() as u64);
    assert_eq!(s.version, 10);
    assert!(s.checksum_verified);
    assert_eq!(s.functions, 1);
    assert_eq!(s.keys_with_expiry as usize, stats.keys_with_ttl);
    for (db, n) in &stats.keys_per_db {
        assert_eq!(s.keys_per_db[&u64::from(*db)] as usize, *n, "db {db}");
        let types: std::collections::BTreeMap<String, usize> = s.types_per_db[&u64::from(*db)]
            .iter()
            .map(|(t, n)| (t.name().to_owned(), *n as usize))
            .collect();
        assert_eq!(types, stats.types_per_db[db], "db {db}");
    }
    let notes = summary.notes.join("\n");
    assert!(
        notes.contains("RDB version 10 written by Redis 7.0"),
        "{notes}"
    );
    assert!(notes.contains("checksum verified"), "{notes}");
    assert!(notes.contains("db 7: "), "{notes}");

    let mut check = RdbCheck::default();
    let err = check
        .restore(stream(rdb[..rdb.len() - 1].to_vec()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}
