//! A tiny harness: a throwaway PostgreSQL with sample data, a scratch backup directory, a key
//! file, and the built binaries with an environment that points at them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use backup_testkit::{load_sample_data, table_checksums, PgCluster, TableChecksum};
use tempfile::TempDir;

/// Source database name used by every test.
pub const SOURCE_DB: &str = "randevubu";

/// Path of a binary of the `backup-cli` package, built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-HASH -> target/<profile>/NAME
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// One test's world.
pub struct World {
    pub pg: PgCluster,
    pub dir: TempDir,
    pub backups: PathBuf,
    pub key_file: PathBuf,
}

impl World {
    /// A cluster with `SOURCE_DB` holding sample data at `scale`, an empty backup directory and
    /// a 0600 key file.
    pub async fn new(scale: u32) -> Self {
        let pg = PgCluster::start().await.expect("start PostgreSQL");
        pg.create_database(SOURCE_DB)
            .await
            .expect("create source db");
        let client = pg.connect(SOURCE_DB).await.expect("connect");
        load_sample_data(&client, scale).await.expect("sample data");
        let dir = tempfile::tempdir().expect("tempdir");
        let backups = dir.path().join("backups");
        let key_file = dir.path().join("encryption.key");
        write_key(&key_file, "correct horse battery staple\n");
        Self {
            pg,
            dir,
            backups,
            key_file,
        }
    }

    /// Environment for the binaries: connection, destination, key. Nothing inherited from the
    /// developer's shell that could point elsewhere.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.pg.env(SOURCE_DB).into_iter().collect();
        env.insert(
            "BACKUP_LOCAL_DIR".into(),
            self.backups.display().to_string(),
        );
        env.insert(
            "BACKUP_ENCRYPTION_KEY_FILE".into(),
            self.key_file.display().to_string(),
        );
        env
    }

    /// A command for binary `name` with the world's environment and nothing inherited from
    /// the developer's shell that could point elsewhere.
    pub fn command(&self, name: &str) -> std::process::Command {
        clean_command(name, &self.env())
    }

    /// Runs a binary with `args` and the world's environment plus `extra`.
    pub fn run(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(name);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd.output().expect("run binary")
    }

    /// `backup-database`, asserting success; returns the object key it printed.
    pub fn backup(&self, args: &[&str]) -> String {
        let out = self.run("backup-database", args, &[]);
        assert_success(&out, "backup-database");
        stdout(&out).trim().to_owned()
    }

    /// Checksums of every table of `db`.
    pub async fn checksums(&self, db: &str) -> BTreeMap<String, TableChecksum> {
        let client = self.pg.connect(db).await.expect("connect");
        table_checksums(&client).await.expect("checksums")
    }

    /// Names of the cluster's databases.
    pub async fn databases(&self) -> Vec<String> {
        let client = self.pg.connect("postgres").await.expect("connect");
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
                &[],
            )
            .await
            .expect("list databases");
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Path of an object in the backup directory.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.backups.join(key)
    }

    /// Files in the backup directory (relative paths), sorted; temp files included.
    pub fn files(&self) -> Vec<String> {
        files_under(&self.backups)
    }
}

/// Files under `root` (relative paths), sorted; nothing when it does not exist.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A command for binary `name` with `env` and none of the developer's settings
/// (`BACKUP_*`, `POSTGRES_*`, `PG*`, `REDIS_*`, `AWS_*`, `DATABASE_URL`) inherited.
pub fn clean_command(name: &str, env: &BTreeMap<String, String>) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin(name));
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKUP_")
            || k.starts_with("POSTGRES_")
            || k.starts_with("PG")
            || k.starts_with("REDIS_")
            || k.starts_with("AWS_")
            || k == "DATABASE_URL"
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// Writes a key file with mode 0600.
pub fn write_key(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Runs a shell pipeline with `bash -o pipefail -c`, asserting success.
pub fn sh(script: &str, env: &BTreeMap<String, String>) -> Output {
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .envs(env)
        .output()
        .expect("run bash");
    assert_success(&out, script);
    out
}
