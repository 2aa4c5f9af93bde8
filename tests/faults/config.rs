//! Configuration mistakes around the backup directory: a mistyped path, a dangling link, a
//! linked kind folder. Read-only commands never create anything, and a mistake is exit 3 with
//! what to fix, never "no backups" or a backup nobody will find.

use crate::harness::{assert_exit, stderr, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_backup_directory_is_exit_3_and_is_not_created() {
    let w = World::new(1).await;
    let typo = w.dir.path().join("bakcups");
    let typo_text = typo.display().to_string();
    let env = [("BACKUP_LOCAL_DIR", typo_text.as_str())];
    for (binary, args) in [
        ("restore-database", &["--list"][..]),
        ("restore-database", &["--latest", "--dry-run"][..]),
        ("restore-redis", &["--list"][..]),
        ("backup-prune", &["--dry-run"][..]),
    ] {
        let out = w.run(binary, args, &env);
        assert_exit(
            &out,
            3,
            &format!("{binary} {args:?} with a mistyped directory"),
        );
        assert!(
            stderr(&out).contains("BACKUP_LOCAL_DIR"),
            "{}",
            stderr(&out)
        );
        assert!(!typo.exists(), "{binary} {args:?} created {typo_text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_fails_before_writing_leaves_no_directory() {
    let w = World::new(1).await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    assert!(!w.backups.exists());
    let out = w.run("backup-database", &[], &[("POSTGRES_PORT", &closed_port)]);
    assert_exit(&out, 2, "backup against a closed port");
    assert!(
        !w.backups.exists(),
        "a failed backup created {}",
        w.backups.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_link_or_a_linked_kind_folder_is_exit_3() {
    let w = World::new(1).await;
    let dangling = w.dir.path().join("dangling");
    std::os::unix::fs::symlink(w.dir.path().join("nowhere"), &dangling).unwrap();
    let dangling_text = dangling.display().to_string();
    let out = w.run(
        "backup-database",
        &[],
        &[("BACKUP_LOCAL_DIR", &dangling_text)],
    );
    assert_exit(&out, 3, "backup into a dangling link");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // BACKUP_LOCAL_DIR/database is a link: writes would go through it, listing would not.
    let elsewhere = w.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&w.backups).unwrap();
    std::os::unix::fs::symlink(&elsewhere, w.backups.join("database")).unwrap();
    let out = w.run("backup-database", &[], &[]);
    assert_exit(&out, 3, "backup with a linked database folder");
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    let out = w.run("restore-database", &["--list"], &[]);
    assert_exit(&out, 3, "--list with a linked database folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_s3_credentials_are_exit_3_with_one_line_saying_what_to_set() {
    let w = World::new(1).await;
    let out = w.run(
        "restore-database",
        &["--list"],
        &[
            ("BACKUP_LOCAL_DIR", ""),
            ("BACKUP_S3_BUCKET", "backups"),
            ("BACKUP_S3_ENDPOINT", "http://127.0.0.1:9"),
            ("BACKUP_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
        ],
    );
    assert_exit(&out, 3, "--list without S3 credentials");
    let text = stderr(&out);
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
    assert!(
        !text.contains(" { ") && !text.contains("DispatchFailure("),
        "an SDK Debug dump reached the user:\n{text}"
    );
    let error_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{text}");
}
