//! Hostile RDB input against the real binaries, with their peak memory measured: a small
//! file (a `.rdb.gz` backup, or the snapshot a Redis master sends after `SYNC`) must not make
//! the RDB parser allocate what the file merely declares (LZF strings expand up to 88 times,
//! gzip multiplies again, raw lengths and counts cost nothing to write).
//!
//! Two ways in: `restore-redis --file NAME --dry-run` of an old-style backup (a plain
//! `.rdb.gz` without a manifest, as the old shell script stored them), and `backup-redis`
//! against a fake master on `127.0.0.1` that answers the replication handshake and streams the
//! file after `SYNC`. The files come from [`backup_testkit::hostile_rdb`], generated as they
//! are written (nothing is stored in the repository). Every binary runs under
//! `/usr/bin/time -f %M` and its peak RSS must stay under [`MAX_PEAK_RSS_KIB`], whether the
//! input is refused (exit 2) or valid (exit 0).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_testkit::hostile_rdb::{self, Generated};
use tempfile::TempDir;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{clean_command, files_under, stderr, stdout, write_key};

/// The most a binary may hold at its peak, in KiB (160 MiB): the parser's default memory
/// budget (64 MiB, when values are not captured) plus the runtime (the unoptimised test build
/// of `backup-tool`, its threads and allocator) and the pipeline's buffers (gzip, encryption,
/// the parser's tee). Without the budget these inputs cost from hundreds of MiB to GiBs.
const MAX_PEAK_RSS_KIB: u64 = 160 * 1024;

/// How long one binary may run before `timeout` kills it (a hung parser is a failure too).
const RUN_TIMEOUT_SECS: u32 = 120;

/// What "refused quickly" means: the declared size alone is enough to refuse the input, so
/// nothing close to the whole file may be read.
const QUICK: Duration = Duration::from_secs(10);

/// The old shell script's name for a Redis backup: no manifest, plain gzip.
const LEGACY_NAME: &str = "redis_backup_20260101_000000.rdb.gz";

/// The end mark of a diskless (`$EOF:`) transfer.
const MARK: &[u8; 40] = b"h0st1le0h0st1le0h0st1le0h0st1le0h0st1le0";

const MIB: u64 = 1 << 20;

/// A binary's result, with its peak resident set size and how long it took.
struct Measured {
    out: Output,
    peak_rss_kib: u64,
    elapsed: Duration,
}

impl Measured {
    fn describe(&self) -> String {
        let err = stderr(&self.out);
        let tail: String = {
            let lines: Vec<&str> = err.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "exit {:?}, peak RSS {} KiB ({:.1} MiB), {:.2} s\nstdout (start):\n{}\nstderr (end):\n{}",
            self.out.status.code(),
            self.peak_rss_kib,
            self.peak_rss_kib as f64 / 1024.0,
            self.elapsed.as_secs_f64(),
            stdout(&self.out).chars().take(2000).collect::<String>(),
            tail,
        )
    }
}

/// Runs binary `name` with `args` and exactly `env` (see [`clean_command`]) as
/// `/usr/bin/time -f %M -o FILE timeout RUN_TIMEOUT_SECS BINARY ARGS...`, and reads its peak
/// RSS from FILE (GNU time reports the largest RSS of the process tree it waited for, so the
/// `timeout` in between changes nothing). Panics when `/usr/bin/time` cannot be run.
fn run_measured(name: &str, env: &BTreeMap<String, String>, args: &[&str]) -> Measured {
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "/usr/bin/time (GNU time) is needed to measure peak RSS; scripts/setup.sh installs it \
         (apt-get install time)"
    );
    let target = clean_command(name, env);
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("/usr/bin/time");
    for (k, v) in target.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg("timeout")
        .arg("-k")
        .arg("5")
        .arg(RUN_TIMEOUT_SECS.to_string())
        .arg(target.get_program())
        .args(args)
        .stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().expect("run /usr/bin/time");
    let elapsed = start.elapsed();
    // "Command exited with non-zero status N" may come first; the format's line is the last.
    let report = std::fs::read_to_string(rss_file.path()).unwrap();
    let peak_rss_kib = report
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time's report {report:?}"));
    assert_ne!(
        out.status.code(),
        Some(124),
        "{name} ran longer than {RUN_TIMEOUT_SECS} s (killed by timeout)"
    );
    Measured {
        out,
        peak_rss_kib,
        elapsed,
    }
}

/// What a run must end with.
enum Expect {
    /// Exit 2, with each of these words in stderr (compared case-insensitively).
    Refused(&'static [&'static str]),
    /// Exit 0.
    Accepted,
}

/// Asserts the exit code, the words of stderr and the peak RSS of `m`, all reported together.
fn check(what: &str, m: &Measured, expect: &Expect) {
    eprintln!("{what}: {}", m.describe());
    let mut problems = Vec::new();
    match expect {
        Expect::Refused(words) => {
            if m.out.status.code() != Some(2) {
                problems.push("expected exit 2 (refused)".to_owned());
            }
            let err = stderr(&m.out).to_lowercase();
            for word in *words {
                if !err.contains(&word.to_lowercase()) {
                    problems.push(format!("expected {word:?} in stderr"));
                }
            }
        }
        Expect::Accepted => {
            if m.out.status.code() != Some(0) {
                problems.push("expected exit 0 (accepted)".to_owned());
            }
        }
    }
    if m.peak_rss_kib >= MAX_PEAK_RSS_KIB {
        problems.push(format!(
            "peak RSS {} KiB is not under {MAX_PEAK_RSS_KIB} KiB",
            m.peak_rss_kib
        ));
    }
    assert!(
        problems.is_empty(),
        "{what}: {}\n{}",
        problems.join("; "),
        m.describe()
    );
}

/// A scratch backup directory and key file.
struct Scratch {
    /// Removed when the test ends.
    _dir: TempDir,
    backups: PathBuf,
    key_file: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("backups");
        let key_file = dir.path().join("encryption.key");
        write_key(&key_file, "correct horse battery staple\n");
        Self {
            _dir: dir,
            backups,
            key_file,
        }
    }

    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "BACKUP_LOCAL_DIR".to_owned(),
                self.backups.display().to_string(),
            ),
            (
                "BACKUP_ENCRYPTION_KEY_FILE".to_owned(),
                self.key_file.display().to_string(),
            ),
        ])
    }

    /// Files under the backup directory, relative, sorted.
    fn files(&self) -> Vec<String> {
        files_under(&self.backups)
    }

    /// Streams `rdb` through `gzip -1` into the backup directory as an old-style backup.
    fn store_legacy(&self, what: &str, rdb: Generated) {
        let start = Instant::now();
        let len = rdb.len_hint();
        let dir = self.backups.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LEGACY_NAME);
        let file = std::fs::File::create(&path).unwrap();
        let mut gzip = Command::new("gzip")
            .args(["-1", "-c"])
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .expect("run gzip");
        let mut stdin = gzip.stdin.take().unwrap();
        assert_eq!(rdb.write_to(&mut stdin).unwrap(), len);
        stdin.flush().unwrap();
        drop(stdin);
        assert!(gzip.wait().unwrap().success(), "gzip failed");
        eprintln!(
            "{what}: {len} bytes of RDB, {} bytes gzipped, in {:.2} s",
            std::fs::metadata(&path).unwrap().len(),
            start.elapsed().as_secs_f64()
        );
    }

    /// `restore-redis --file LEGACY_NAME --dry-run`, measured.
    fn dry_run(&self) -> Measured {
        run_measured(
            "restore-redis",
            &self.env(),
            &["--file", LEGACY_NAME, "--dry-run"],
        )
    }
}

/// `restore-redis --dry-run` of `rdb` stored as an old-style `.rdb.gz`.
fn dry_run_of(what: &str, rdb: Generated, expect: &Expect) {
    let s = Scratch::new();
    s.store_legacy(what, rdb);
    let m = s.dry_run();
    check(what, &m, expect);
    if matches!(expect, Expect::Accepted) {
        assert!(
            stdout(&m.out).contains("dry run OK"),
            "{what}: {}",
            m.describe()
        );
    }
}

// ------------------------------------------------------------------------ the fake master

/// One client of the fake master: `INFO` says Redis 7.0.99, `SYNC` gets the RDB (once, as a
/// diskless transfer: `$EOF:<mark>`, the file in pieces, the mark), anything else `+OK`.
async fn serve(socket: TcpStream, rdb: Arc<Mutex<Option<Generated>>>) {
    let mut reader = BufReader::new(socket);
    while let Some(args) = backup_testkit::read_resp_command(&mut reader).await {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let socket = reader.get_mut();
        match name.as_str() {
            "INFO" => {
                let body = "# Server\r\nredis_version:7.0.99\r\n";
                let reply = format!("${}\r\n{body}\r\n", body.len());
                if socket.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
            "SYNC" | "PSYNC" => {
                let taken = rdb.lock().unwrap().take();
                let Some(mut file) = taken else {
                    let _ = socket.write_all(b"-ERR one SYNC only\r\n").await;
                    return;
                };
                let mut header = b"$EOF:".to_vec();
                header.extend_from_slice(MARK);
                header.extend_from_slice(b"\r\n");
                if socket.write_all(&header).await.is_err() {
                    return;
                }
                // The client may give up early (that is the point): stop at the first error.
                let mut piece = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut file, &mut piece).unwrap();
                    if n == 0 {
                        break;
                    }
                    if socket.write_all(&piece[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = socket.write_all(MARK).await;
                let _ = socket.shutdown().await;
                return;
            }
            _ => {
                if socket.write_all(b"+OK\r\n").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A fake master on a free port of 127.0.0.1 that sends `rdb` after `SYNC`; its port.
async fn fake_master(rdb: Generated) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rdb = Arc::new(Mutex::new(Some(rdb)));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, Arc::clone(&rdb)));
        }
    });
    port
}

/// `backup-redis` (replication, local destination) against a fake master sending `rdb`.
async fn backup_of(what: &str, rdb: Generated, expect: &Expect) {
    let s = Scratch::new();
    let port = fake_master(rdb).await;
    let mut env = s.env();
    env.insert("REDIS_HOST".into(), "127.0.0.1".into());
    env.insert("REDIS_PORT".into(), port.to_string());
    env.insert("BACKUP_REDIS_METHOD".into(), "replication".into());
    let m = tokio::task::spawn_blocking(move || run_measured("backup-redis", &env, &[]))
        .await
        .unwrap();
    check(what, &m, expect);
    let files = s.files();
    match expect {
        Expect::Refused(_) => assert!(files.is_empty(), "{what}: stored {files:?}"),
        Expect::Accepted => {
            let key = stdout(&m.out).trim().to_owned();
            assert!(
                key.starts_with("redis/redis_backup_") && files.contains(&key),
                "{what}: printed {key:?}, stored {files:?}"
            );
        }
    }
}

// ------------------------------------------------------------------- restore-redis --dry-run

#[test]
fn dry_run_of_a_100_mib_lzf_key_is_refused_over_the_memory_budget() {
    let what = "restore-redis --dry-run, lzf_key(100 MiB)";
    dry_run_of(
        what,
        hostile_rdb::lzf_key(100 * MIB),
        &Expect::Refused(&["budget"]),
    );
}

#[test]
fn dry_run_of_a_600_mb_raw_aux_value_is_refused_quickly_by_the_aux_cap() {
    let what = "restore-redis --dry-run, raw_aux_value(600 MB)";
    let s = Scratch::new();
    s.store_legacy(what, hostile_rdb::raw_aux_value(600_000_000));
    let m = s.dry_run();
    check(what, &m, &Expect::Refused(&["AUX"]));
    assert!(
        m.elapsed < QUICK,
        "{what}: refused, but only after {:.1} s",
        m.elapsed.as_secs_f64()
    );
}

#[test]
fn dry_run_of_a_32_mib_lzf_aux_name_is_refused_by_the_aux_cap() {
    let what = "restore-redis --dry-run, lzf_aux_name(32 MiB)";
    dry_run_of(
        what,
        hostile_rdb::lzf_aux_name(32 * MIB),
        &Expect::Refused(&["AUX"]),
    );
}

#[test]
fn dry_run_of_a_100_mib_stream_listpack_is_refused_over_the_memory_budget() {
    let what = "restore-redis --dry-run, stream_listpack(100 MiB)";
    dry_run_of(
        what,
        hostile_rdb::stream_listpack(100 * MIB),
        &Expect::Refused(&["budget"]),
    );
}

#[test]
fn dry_run_of_a_valid_1_gib_lzf_value_passes_in_bounded_memory() {
    let what = "restore-redis --dry-run, lzf_value(1 GiB)";
    dry_run_of(what, hostile_rdb::lzf_value(1 << 30), &Expect::Accepted);
}

#[test]
fn dry_run_of_a_valid_200_mb_pel_passes_in_bounded_memory() {
    let what = "restore-redis --dry-run, pel(8 000 000)";
    dry_run_of(what, hostile_rdb::pel(8_000_000), &Expect::Accepted);
}

#[test]
fn dry_run_of_100_000_databases_passes_in_bounded_memory() {
    let what = "restore-redis --dry-run, many_selectdb(100 000)";
    dry_run_of(what, hostile_rdb::many_selectdb(100_000), &Expect::Accepted);
}

// ------------------------------------------------------------- backup-redis from a master

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_100_mib_lzf_key_is_refused_over_the_memory_budget_and_stores_nothing() {
    let what = "backup-redis, lzf_key(100 MiB)";
    backup_of(
        what,
        hostile_rdb::lzf_key(100 * MIB),
        &Expect::Refused(&["budget"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_100_mib_stream_listpack_is_refused_over_the_memory_budget_and_stores_nothing()
{
    let what = "backup-redis, stream_listpack(100 MiB)";
    backup_of(
        what,
        hostile_rdb::stream_listpack(100 * MIB),
        &Expect::Refused(&["budget"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_valid_1_gib_lzf_value_succeeds_in_bounded_memory() {
    let what = "backup-redis, lzf_value(1 GiB)";
    backup_of(what, hostile_rdb::lzf_value(1 << 30), &Expect::Accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_valid_200_mb_pel_succeeds_in_bounded_memory() {
    let what = "backup-redis, pel(8 000 000)";
    backup_of(what, hostile_rdb::pel(8_000_000), &Expect::Accepted).await;
}

// ------------------------------------------------------------------ a large key, restored online

/// `restore-redis --online` of a backup holding a 100 MiB value: `RESTORE` needs the value
/// whole, but it is held once (the parser hands over its buffer, the `DUMP` trailer is appended
/// in place, the command is written to the socket from there). It used to be held four times
/// (the parser's buffer, the captured copy, the payload, the pipeline's write buffer): a
/// 100 MB key made the restore peak at 420 MB.
#[test]
fn an_online_restore_of_a_100_mib_key_holds_the_value_once() {
    use backup_testkit::RedisServer;
    const SIZE: usize = 100 << 20;
    // The value, the parser's buffer around it (at most 32 MiB read past it) and the runtime.
    const MAX_ONLINE_RSS_KIB: u64 = (SIZE as u64 >> 10) + 80 * 1024;
    let source = RedisServer::start().unwrap();
    // Incompressible (xorshift), so that neither Redis's LZF nor gzip shrinks it.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let value: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    {
        let mut conn = source.client().unwrap();
        redis::cmd("SET")
            .arg("big")
            .arg(&value)
            .query::<()>(&mut conn)
            .unwrap();
        redis::cmd("SET")
            .arg("small")
            .arg("v")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let s = Scratch::new();
    let mut env = s.env();
    env.extend(source.env());
    let out = clean_command("backup-redis", &env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "backup-redis: {}", stderr(&out));

    let target = RedisServer::start().unwrap();
    env.insert("REDIS_TARGET_URL".to_owned(), target.url());
    let m = run_measured("restore-redis", &env, &["--latest", "--online"]);
    eprintln!("online restore of a 100 MiB key: {}", m.describe());
    assert_eq!(m.out.status.code(), Some(0), "{}", m.describe());
    let mut conn = target.client().unwrap();
    let restored: Vec<u8> = redis::cmd("GET").arg("big").query(&mut conn).unwrap();
    assert!(restored == value, "the restored value differs");
    let small: String = redis::cmd("GET").arg("small").query(&mut conn).unwrap();
    assert_eq!(small, "v");
    assert!(
        m.peak_rss_kib < MAX_ONLINE_RSS_KIB,
        "peak RSS {} KiB, not under {MAX_ONLINE_RSS_KIB} KiB",
        m.peak_rss_kib
    );
}
