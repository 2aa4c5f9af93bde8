//! A TOML config file of tables configures the binaries end to end, layered under the
//! environment and the flags, and `--print-config` says where each value came from.

use std::collections::BTreeMap;

use crate::harness::*;

#[tokio::test]
async fn a_config_file_of_tables_configures_backup_and_restore() {
    let w = World::new(1).await;
    let pg: BTreeMap<String, String> = w.pg.env(SOURCE_DB).into_iter().collect();
    let file = w.dir.path().join("backup.toml");
    std::fs::write(
        &file,
        format!(
            "[local]\ndir = {:?}\n\n[pipeline]\nkey_file = {:?}\ncompression = \"zstd\"\n\n\
             [postgres]\nhost = {:?}\nport = {}\nuser = {:?}\ndatabase = {:?}\n",
            w.backups.display().to_string(),
            w.key_file.display().to_string(),
            pg["POSTGRES_HOST"],
            pg["POSTGRES_PORT"],
            pg["POSTGRES_USER"],
            SOURCE_DB,
        ),
    )
    .unwrap();
    // Only the password (environment only) and the file's name come from the environment.
    let mut env = BTreeMap::new();
    env.insert(
        "POSTGRES_PASSWORD".to_owned(),
        pg["POSTGRES_PASSWORD"].clone(),
    );
    env.insert("BACKUP_CONFIG".to_owned(), file.display().to_string());
    let run = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = clean_command(name, &env);
        cmd.envs(extra.iter().copied()).args(args);
        cmd.output().unwrap()
    };

    let out = run("backup-database", &[], &[]);
    assert_success(&out, "backup from the file");
    let from_file = stdout(&out).trim().to_owned();
    assert!(from_file.ends_with(".sql.zst.enc"), "{from_file}");
    assert!(w.object_path(&from_file).is_file());

    // The environment beats the file, a flag beats both.
    let out = run("backup-database", &[], &[("BACKUP_COMPRESSION", "none")]);
    assert_success(&out, "backup, compression from the environment");
    assert!(
        stdout(&out).trim().ends_with(".sql.enc"),
        "{}",
        stdout(&out)
    );
    let out = run(
        "backup-database",
        &["--compression", "gzip"],
        &[("BACKUP_COMPRESSION", "none")],
    );
    assert_success(&out, "backup, compression from the flag");
    assert!(
        stdout(&out).trim().ends_with(".sql.gz.enc"),
        "{}",
        stdout(&out)
    );

    let name = from_file.rsplit('/').next().unwrap();
    let out = run(
        "restore-database",
        &["--file", name, "--target-db", "restored", "--create"],
        &[],
    );
    assert_success(&out, "restore from the file's settings");
    assert_eq!(w.checksums(SOURCE_DB).await, w.checksums("restored").await);

    // --print-config: each value with its origin, the password redacted, exit 0.
    let out = run(
        "backup-database",
        &["--print-config", "--compression", "gzip"],
        &[],
    );
    assert_success(&out, "--print-config");
    let text = stdout(&out);
    for expected in [
        format!("host = {:?}", pg["POSTGRES_HOST"]),
        "[postgres] host".to_owned(),
        "compression = \"gzip\"".to_owned(),
        "BACKUP_COMPRESSION: flag --compression".to_owned(),
        "# password = <redacted>".to_owned(),
        "POSTGRES_PASSWORD: environment POSTGRES_PASSWORD".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains(&pg["POSTGRES_PASSWORD"]), "{text}");
    // Printing runs nothing: still three backups.
    let objects = w
        .files()
        .into_iter()
        .filter(|f| !f.ends_with(".manifest.json"))
        .count();
    assert_eq!(objects, 3, "{:?}", w.files());
}

#[tokio::test]
async fn flat_names_of_old_config_files_still_work_with_a_warning() {
    let w = World::new(1).await;
    let file = w.dir.path().join("old.toml");
    std::fs::write(&file, "backup_compression = \"zstd\"\n").unwrap();
    let out = w.run(
        "backup-database",
        &["--config", file.to_str().unwrap()],
        &[],
    );
    assert_success(&out, "backup with a flat config file");
    assert!(
        stdout(&out).trim().ends_with(".sql.zst.enc"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("deprecated") && err.contains("under [pipeline]"),
        "{err}"
    );
}
