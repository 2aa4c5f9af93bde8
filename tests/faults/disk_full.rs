//! A disk fills up under a restore: the directory of the private copy a restore verifies
//! before restoring (`BACKUP_RESTORE_TMP`), and the directory of the `dump.rdb` a Redis file
//! restore replaces. The tool fails (exit 2) saying so, leaves nothing in the directory, and
//! the target is untouched.
//!
//! A real `ENOSPC` needs a small file system: each binary runs under
//! `unshare --mount --map-root-user` (a private mount namespace, as root or wherever user
//! namespaces are enabled) in a shell that mounts a tmpfs of the wanted size, copies the
//! directory's initial contents in, runs the binary, and copies out what it left. The mount
//! vanishes with that shell. When the namespace or the mount is not possible the test fails
//! and says why; it never skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use backup_testkit::{
    fill_filesystem, fs_used_bytes, load_redis_sample, stop_process, RedisOptions, RedisServer,
};
use tempfile::TempDir;

use crate::harness::{
    assert_exit, assert_success, clean_command, stderr, stdout, write_key, World, SOURCE_DB,
};

/// Runs in the private mount namespace: `$1` tmpfs size, `$2` mount point, `$3` directory
/// whose contents are copied into `$2/in` first, `$4` directory that receives what is left in
/// `$2/in` afterwards (and a `mounted` marker next to it), `$5` `hold` to start the command
/// stopped (a shell that stops itself, then execs it) or `run`, then the command.
const IN_TMPFS: &str = r#"
set -e
mount -t tmpfs -o "size=$1" tmpfs "$2"
touch "$4/../mounted"
mkdir "$2/in"
cp -a "$3/." "$2/in/"
after="$4"
tmpfs="$2"
hold="$5"
shift 5
set +e
if [ "$hold" = hold ]; then
    sh -c 'kill -STOP $$ && exec "$@"' held "$@"
else
    "$@"
fi
rc=$?
cp -a "$tmpfs/in/." "$after/"
exit $rc
"#;

/// A tmpfs for one run: where it is mounted (in the namespace only), what goes in first, and
/// what was left afterwards.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["mnt", "seed", "after"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        Self { dir }
    }

    /// The mount point; the binary's directory is `in` below it.
    fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// The directory the binary works in (inside the tmpfs).
    fn work_dir(&self) -> PathBuf {
        self.mount_point().join("in")
    }

    /// Copied into [`work_dir`](Self::work_dir) before the binary starts.
    fn seed(&self) -> PathBuf {
        self.dir.path().join("seed")
    }

    /// What the binary left in [`work_dir`](Self::work_dir), copied out after it ended.
    fn after(&self) -> PathBuf {
        self.dir.path().join("after")
    }

    /// Names left in the work directory, sorted.
    fn left(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.after())
            .expect("read the copy of the directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Starts `base` (a harness command: binary, arguments, clean environment) in a private
    /// mount namespace with a tmpfs of `size` (`mount -o size=`) on the mount point; with
    /// `hold`, the binary starts stopped (`SIGSTOP`) and waits for a `SIGCONT`.
    fn spawn(&self, base: &Command, size: &str, hold: bool) -> Child {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--map-root-user",
            "--",
            "sh",
            "-c",
            IN_TMPFS,
            "sh",
            size,
        ])
        .arg(self.mount_point())
        .arg(self.seed())
        .arg(self.after())
        .arg(if hold { "hold" } else { "run" })
        .arg(base.get_program())
        .args(base.get_args());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `unshare` (util-linux), needed to mount a small tmpfs: {e}")
            })
    }

    /// Waits for a run of [`spawn`](Self::spawn), failing loudly when the namespace or the
    /// mount could not be made.
    fn finish(&self, child: Child) -> Output {
        let out = child.wait_with_output().expect("wait");
        assert!(
            self.dir.path().join("mounted").exists(),
            "could not mount a tmpfs in a private mount namespace (`unshare --mount \
             --map-root-user`, then `mount -t tmpfs`): run the tests as root or enable \
             unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
             user.max_user_namespaces > 0)\nexit {:?}\nstderr:\n{}",
            out.status.code(),
            stderr(&out)
        );
        out
    }

    fn run(&self, base: &Command, size: &str) -> Output {
        let child = self.spawn(base, size, false);
        self.finish(child)
    }
}

/// Adds `rows` rows of 16 KiB of random bytes (which compress badly) to the source database.
async fn add_noise(w: &World, rows: u32) {
    let client = w.pg.connect(SOURCE_DB).await.expect("connect");
    client
        .batch_execute(&format!(
            "CREATE TABLE public.noise (id int PRIMARY KEY, b bytea);
             INSERT INTO public.noise SELECT g, \
                 (SELECT decode(string_agg(md5(random()::text || g::text || i::text), ''), 'hex') \
                  FROM generate_series(1, 1024) i) \
             FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("noise table");
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state == "T")
        })
        .unwrap_or(false)
}

/// Lets the tool, started held by [`Tmpfs::spawn`] (the shell's child, stopped), run in
/// short steps (`SIGCONT`, `SIGSTOP`), until the tmpfs seen at `mount` (through
/// `/proc/SHELL/root`) has bytes in use while it is stopped: the private copy has begun.
/// Then fills the tmpfs and lets the tool go on. Returns the bytes taken, or `None` when the
/// tool ended first.
fn fill_once_written(shell: u32, mount: &Path, size: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let tool = loop {
        assert!(Instant::now() < deadline, "the held tool never showed up");
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        let held = children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|&pid| is_stopped(pid));
        if let Some(pid) = held {
            break pid;
        }
        std::thread::yield_now();
    };
    loop {
        if Instant::now() > deadline {
            // Never leave it stopped: the test would hang instead of failing.
            let _ = stop_process(tool, false);
            return None;
        }
        if fs_used_bytes(mount).ok()? > 0 {
            break;
        }
        stop_process(tool, false).ok()?;
        std::thread::yield_now();
        stop_process(tool, true).ok()?;
        // Wait for the stop to take effect (a write in progress finishes first).
        while !is_stopped(tool) {
            if !Path::new(&format!("/proc/{tool}")).exists() {
                return None;
            }
            std::thread::yield_now();
        }
    }
    let filled = fill_filesystem(&mount.join("filler"), size);
    stop_process(tool, false).ok()?;
    Some(filled.expect("fill the tmpfs"))
}

/// Asserts the message says the restore's temporary directory has no room, naming it and
/// the setting that moves it.
fn assert_says_no_room(out: &Output, dir: &Path, what: &str) {
    let err = stderr(out);
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("BACKUP_RESTORE_TMP"),
        "{what}: the message does not name {} and BACKUP_RESTORE_TMP:\n{err}",
        dir.display()
    );
}

/// After a failed restore: nothing left in `BACKUP_RESTORE_TMP`, no target database.
async fn assert_nothing_left_and_no_target(tmpfs: &Tmpfs, w: &World) {
    assert_eq!(
        tmpfs.left(),
        Vec::<String>::new(),
        "left in BACKUP_RESTORE_TMP"
    );
    assert!(
        !w.pg.database_exists("restored").await.unwrap(),
        "the target database was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_temporary_directory_is_too_small_fails_before_touching_the_target() {
    let w = World::new(1).await;
    add_noise(&w, 100).await;
    let key = w.backup(&[]);
    let stored = std::fs::metadata(w.object_path(&key)).unwrap().len();
    assert!(
        stored > 1 << 20,
        "the backup should not fit in 1 MiB: {stored} bytes"
    );

    let tmpfs = Tmpfs::new();
    let mut base = w.command("restore-database");
    base.args(["--latest", "--target-db", "restored", "--create"])
        .env("BACKUP_RESTORE_TMP", tmpfs.work_dir());
    let out = tmpfs.run(&base, "1m");
    assert_exit(&out, 2, "restore with a 1 MiB BACKUP_RESTORE_TMP");
    assert_says_no_room(
        &out,
        &tmpfs.work_dir(),
        "restore with a 1 MiB BACKUP_RESTORE_TMP",
    );
    assert!(
        stderr(&out).contains("bytes free"),
        "the message does not say how much room there is:\n{}",
        stderr(&out)
    );
    assert_nothing_left_and_no_target(&tmpfs, &w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_temporary_directory_fills_up_during_the_download_fails_cleanly() {
    let w = World::new(1).await;
    add_noise(&w, 600).await;
    let key = w.backup(&[]);
    let stored = std::fs::metadata(w.object_path(&key)).unwrap().len();

    // Room for the free-space check (the backup plus 64 MiB), which passes. The tool starts
    // stopped and runs in short steps; as soon as the private copy has written its first
    // bytes, everything left on the tmpfs is taken by another file and the tool continues:
    // its next write finds the disk full, as when something else fills it during a download.
    let tmpfs = Tmpfs::new();
    let size_kib = (stored + (65 << 20)) / 1024;
    let mut base = w.command("restore-database");
    base.args(["--latest", "--target-db", "restored", "--create"])
        .env("BACKUP_RESTORE_TMP", tmpfs.work_dir());
    let child = tmpfs.spawn(&base, &format!("{size_kib}k"), true);
    let shell = child.id();
    let mount_in_ns = PathBuf::from(format!("/proc/{shell}/root"))
        .join(tmpfs.mount_point().strip_prefix("/").unwrap());
    let filler = std::thread::spawn(move || {
        fill_once_written(shell, &mount_in_ns, (size_kib + 1024) * 1024)
    });
    let out = tmpfs.finish(child);
    let filled = filler.join().expect("filler thread");
    assert!(
        filled.is_some(),
        "the private copy never started writing, or finished before the disk could be filled; \
         restore exit {:?}:\n{}",
        out.status.code(),
        stderr(&out)
    );
    assert_exit(&out, 2, "restore whose BACKUP_RESTORE_TMP filled up");
    assert!(
        stderr(&out).contains("No space left on device"),
        "the message does not say the disk is full:\n{}",
        stderr(&out)
    );
    assert_says_no_room(
        &out,
        &tmpfs.work_dir(),
        "restore whose BACKUP_RESTORE_TMP filled up",
    );
    assert_nothing_left_and_no_target(&tmpfs, &w).await;
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
}

#[test]
fn a_redis_file_restore_onto_a_full_disk_keeps_the_old_dump_and_leaves_no_temp_file() {
    let redis = RedisServer::start_with(RedisOptions {
        password: Some("s3cret-redis-pw".into()),
        ..RedisOptions::default()
    })
    .expect("start redis-server");
    let mut conn = redis.client().expect("connect");
    load_redis_sample(&mut conn, 1).expect("sample data");
    let _: () = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
    let old = std::fs::read(redis.rdb_path()).expect("the server's dump.rdb");
    // The backup differs from the file it would replace.
    let _: () = redis::cmd("SET")
        .arg("restored-marker")
        .arg("x".repeat(4096))
        .query(&mut conn)
        .expect("SET");

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("encryption.key");
    write_key(&key_file, "correct horse battery staple\n");
    let mut env: BTreeMap<String, String> = redis.env().into_iter().collect();
    env.insert(
        "BACKUP_LOCAL_DIR".into(),
        dir.path().join("backups").display().to_string(),
    );
    env.insert(
        "BACKUP_ENCRYPTION_KEY_FILE".into(),
        key_file.display().to_string(),
    );
    let out = clean_command("backup-redis", &env)
        .output()
        .expect("backup-redis");
    assert_success(&out, "backup-redis");

    // The directory holds the old dump.rdb and room for about half of another.
    let tmpfs = Tmpfs::new();
    std::fs::write(tmpfs.seed().join("dump.rdb"), &old).unwrap();
    let size_kib = (old.len() + old.len() / 2) / 1024 + 8;
    let target = tmpfs.work_dir().join("dump.rdb");
    let mut base = clean_command("restore-redis", &env);
    base.arg("--latest").arg("--rdb-path").arg(&target);
    let out = tmpfs.run(&base, &format!("{size_kib}k"));
    assert_exit(&out, 2, "restore-redis onto a full disk");
    let err = stderr(&out);
    assert!(
        err.contains("No space left on device")
            && err.contains(&tmpfs.work_dir().display().to_string()),
        "the message does not say that the disk of {} is full:\n{err}",
        tmpfs.work_dir().display()
    );
    assert_eq!(
        tmpfs.left(),
        vec!["dump.rdb".to_owned()],
        "a temporary or kept file was left next to dump.rdb"
    );
    assert!(
        std::fs::read(tmpfs.after().join("dump.rdb")).unwrap() == old,
        "the existing dump.rdb changed"
    );
}
