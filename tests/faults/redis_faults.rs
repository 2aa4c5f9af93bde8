//! Redis dying under the tool: the server killed while `backup-redis` streams its snapshot,
//! the target killed in the middle of a real (writing) `restore-redis --online --in-place`, and
//! the restore's connection dropped during a staged (all-or-nothing) `--online --replace`.
//! Nothing half-made may pass for a backup, a half-done in-place restore must say so plainly,
//! and a staged one must leave the database as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use backup_testkit::RedisServer;

use crate::harness::{clean_command, files_under as files, stderr, write_key};

/// Keys of incompressible data, so that the snapshot takes a moment to stream.
const KEYS: usize = 64;
const KEY_BYTES: usize = 2 << 20;

fn fill(server: &RedisServer) {
    let mut conn = server.client().unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..KEYS {
        let value: Vec<u8> = (0..KEY_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        redis::cmd("SET")
            .arg(format!("key:{i:04}"))
            .arg(value)
            .query::<()>(&mut conn)
            .unwrap();
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    backups: PathBuf,
    env: BTreeMap<String, String>,
}

fn setup(server: &RedisServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let key_file = dir.path().join("encryption.key");
    write_key(&key_file, "correct horse battery staple\n");
    let mut env: BTreeMap<String, String> = server.env().into_iter().collect();
    env.insert("BACKUP_LOCAL_DIR".into(), backups.display().to_string());
    env.insert(
        "BACKUP_ENCRYPTION_KEY_FILE".into(),
        key_file.display().to_string(),
    );
    Setup {
        _dir: dir,
        backups,
        env,
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the tool hung after Redis died");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

#[test]
fn redis_killed_while_backup_redis_streams_leaves_nothing_and_the_next_backup_works() {
    let mut server = RedisServer::start().unwrap();
    fill(&server);
    let s = setup(&server);
    let mut child = clean_command("backup-redis", &s.env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the backup is writing its object.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files(&s.backups).iter().any(|f| f.contains(".tmp-")) {
        assert!(
            Instant::now() < deadline,
            "the backup never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().unwrap();
    let out = wait_exit(&mut child, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", server.port())),
        "the message names the server: {err}"
    );
    assert!(
        files(&s.backups).is_empty(),
        "left behind: {:?}",
        files(&s.backups)
    );
    // Back up again, restarted (it loads nothing: it was killed before any save).
    server.restart().unwrap();
    fill(&server);
    let out = clean_command("backup-redis", &s.env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = clean_command("restore-redis", &s.env)
        .args(["--latest", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Starts `restore-redis --latest --online ARGS` into `target` and returns once the writing
/// pass has put at least ten keys into database `db` of it.
fn restore_until_written(
    s: &Setup,
    target: &RedisServer,
    args: &[&str],
    db: u8,
) -> (Child, redis::Connection) {
    let mut env = s.env.clone();
    env.insert("REDIS_TARGET_URL".into(), target.url());
    let mut child = clean_command("restore-redis", &env)
        .args(["--latest", "--online"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = target.client().unwrap();
    redis::cmd("SELECT").arg(db).query::<()>(&mut conn).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap_or(0);
        if size >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the restore never wrote");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, conn)
}

#[test]
fn a_target_killed_during_an_in_place_online_restore_ends_in_a_plain_error_saying_it_is_not_atomic()
{
    let source = RedisServer::start().unwrap();
    fill(&source);
    let s = setup(&source);
    let out = clean_command("backup-redis", &s.env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut target = RedisServer::start().unwrap();
    let (mut child, _conn) = restore_until_written(&s, &target, &["--in-place"], 0);
    target.kill().unwrap();
    let out = wait_exit(&mut child, Duration::from_secs(60));
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", target.port())),
        "the message names the target: {err}"
    );
    assert!(
        err.contains("not atomic"),
        "a half-done online restore says so: {err}"
    );
}

/// The default online restore stages each database in a spare one (here 15) and swaps it in:
/// a connection dropped half-way leaves the target's database exactly as it was.
#[test]
fn a_connection_dropped_during_a_staged_replace_leaves_the_database_as_it_was() {
    let source = RedisServer::start().unwrap();
    fill(&source);
    let s = setup(&source);
    let out = clean_command("backup-redis", &s.env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let target = RedisServer::start().unwrap();
    let mut conn = target.client().unwrap();
    for (key, value) in [("key:0001", "the target's own"), ("mine", "kept")] {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let (mut child, mut spare) = restore_until_written(&s, &target, &["--replace"], 15);
    // Drop the restore's connection (every client but this one), the server stays up.
    redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query::<i64>(&mut spare)
        .unwrap();
    let out = wait_exit(&mut child, Duration::from_secs(60));
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("database 0, which is unchanged"),
        "says the database is unchanged: {err}"
    );
    assert!(err.contains("emptied again"), "{err}");

    let mut conn = target.client().unwrap();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 2, "database 0 holds exactly what it held");
    let own: String = redis::cmd("GET").arg("key:0001").query(&mut conn).unwrap();
    assert_eq!(own, "the target's own");
    redis::cmd("SELECT").arg(15).query::<()>(&mut conn).unwrap();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 0, "the spare database is empty again");

    // The same restore, uninterrupted: database 0 becomes the backup's keys plus "mine".
    let mut env = s.env.clone();
    env.insert("REDIS_TARGET_URL".into(), target.url());
    let out = clean_command("restore-redis", &env)
        .args(["--latest", "--online", "--replace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut conn = target.client().unwrap();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, KEYS as i64 + 1);
    let mine: String = redis::cmd("GET").arg("mine").query(&mut conn).unwrap();
    assert_eq!(mine, "kept");
}
