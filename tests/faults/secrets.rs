//! Child processes get only the secrets they need: `pg_dump`, `pg_dumpall` and `psql` their
//! `PGPASSWORD`, nothing of Redis's or the cloud's, whatever the tool itself was given.

use std::path::Path;

use crate::harness::{assert_success, stdout, World};

/// A `PG_BIN_DIR` whose `pg_dump`, `pg_dumpall`, `psql` and `pg_restore` record their environment in
/// `DIR/env.NAME.PID` and then run the real tool.
fn recording_bin_dir(w: &World) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = w.dir.path().join("pg-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["pg_dump", "pg_dumpall", "psql", "pg_restore"] {
        let real = w.pg.bin_dir().join(tool);
        let script = format!(
            "#!/bin/sh\nenv > \"{dir}/env.{tool}.$$\"\nexec \"{real}\" \"$@\"\n",
            dir = dir.display(),
            real = real.display()
        );
        let path = dir.join(tool);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// The recorded environments: (tool, contents).
fn recorded(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("env.") {
            let tool = rest.split('.').next().unwrap().to_owned();
            out.push((tool, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_and_psql_inherit_no_secret_but_their_own_password() {
    let w = World::new(1).await;
    let bin_dir = recording_bin_dir(&w);
    let secrets = [
        ("REDIS_PASSWORD", "redis-secret-value-1"),
        ("REDIS_URL", "redis://:redis-secret-value-2@localhost:1"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-value-3"),
        ("AWS_SESSION_TOKEN", "aws-secret-value-4"),
        ("SOME_APP_API_TOKEN", "app-secret-value-5"),
    ];
    let mut extra: Vec<(&str, &str)> = secrets.to_vec();
    let bin = bin_dir.display().to_string();
    extra.push(("PG_BIN_DIR", &bin));

    let out = w.run("backup-database", &[], &extra);
    assert_success(&out, "backup-database");
    let out = w.run(
        "restore-database",
        &["--latest", "--target-db", "copy", "--create"],
        &extra,
    );
    assert_success(&out, "restore-database");
    let out = w.run("backup-database", &["--format", "custom"], &extra);
    assert_success(&out, "backup-database --format custom");
    let custom = stdout(&out).trim().to_owned();
    let out = w.run(
        "restore-database",
        &["--file", &custom, "--target-db", "copy2", "--create"],
        &extra,
    );
    assert_success(&out, "restore of a custom archive");

    let envs = recorded(&bin_dir);
    for tool in ["pg_dump", "pg_dumpall", "psql", "pg_restore"] {
        assert!(
            envs.iter().any(|(t, _)| t == tool),
            "{tool} never ran through the recording PG_BIN_DIR"
        );
    }
    let password_line = format!("PGPASSWORD={}", w.pg.password());
    for (tool, env) in &envs {
        for (name, value) in &secrets {
            assert!(!env.contains(value), "{tool} inherited {name}:\n{env}");
        }
        assert!(
            !env.contains("POSTGRES_PASSWORD="),
            "{tool} inherited POSTGRES_PASSWORD"
        );
        // pg_dump, pg_dumpall and psql connect and get their password; pg_restore (archive
        // to SQL) and the --version probe connect nowhere and get none.
        let connects = ["pg_dump", "pg_dumpall", "psql"].contains(&tool.as_str())
            && env.contains("PGDATABASE=");
        assert_eq!(
            env.contains(&password_line),
            connects,
            "{tool}: PGPASSWORD present = {}",
            env.contains(&password_line)
        );
    }
}
