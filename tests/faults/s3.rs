//! S3 faults, end to end: `backup-database` writing to the testkit's S3 server only (a real
//! throwaway PostgreSQL as the source), driven into `kill -9` at many moments (including
//! between the object's `CompleteMultipartUpload` and the manifest's `PutObject`), a
//! `CompleteMultipartUpload` that fails or answers `200` with an error body, throttled parts
//! and a stalled connection. Each case asserts that nothing listed as complete is damaged,
//! nothing without its manifest passes for an old script's backup, no multipart upload is left
//! behind for good, and the backup ends (with exit 2 and a message when it failed), never hangs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use backup_testkit::{S3RequestRecord, S3Server};

use crate::harness::{
    assert_exit, assert_success, clean_command, stderr, stdout, World, SOURCE_DB,
};

const BUCKET: &str = "backups";

/// A throwaway PostgreSQL as the source and the testkit's S3 server as the only destination.
struct S3World {
    w: World,
    s3: S3Server,
}

impl S3World {
    /// Sample data at `scale` (8: a 12 MB dump, three 5 MiB parts uncompressed).
    async fn new(scale: u32) -> Self {
        let w = World::new(scale).await;
        let s3 = S3Server::start().await.unwrap();
        s3.create_bucket(BUCKET).await.unwrap();
        Self { w, s3 }
    }

    /// The environment: the world's without `BACKUP_LOCAL_DIR`, plus the S3 server's, and
    /// uncompressed 5 MiB parts so that a dump is a multipart upload of a few parts.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.w.env();
        env.remove("BACKUP_LOCAL_DIR");
        env.extend(self.s3.env(BUCKET));
        env.insert("BACKUP_COMPRESSION".into(), "none".into());
        env.insert("BACKUP_S3_PART_SIZE".into(), "5MiB".into());
        env
    }

    fn command(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = clean_command(name, &self.env());
        cmd.args(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a binary to its end off the runtime's threads (the S3 server needs them).
    async fn run(&self, name: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(name, args, extra);
        tokio::task::spawn_blocking(move || cmd.output().expect("run binary"))
            .await
            .unwrap()
    }

    fn spawn_backup(&self, extra: &[(&str, &str)]) -> Child {
        self.command("backup-database", &[], extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backup-database")
    }

    /// Every object key in the bucket.
    async fn objects(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .client()
                .list_objects_v2()
                .bucket(BUCKET)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return keys,
            }
        }
    }

    /// The multipart uploads in progress: `key (upload id)`.
    async fn pending_uploads(&self) -> Vec<String> {
        self.s3
            .pending_uploads(BUCKET)
            .await
            .into_iter()
            .map(|(key, id)| format!("{key} ({id})"))
            .collect()
    }

    /// `restore-database --list --json`: (name, status) of every backup.
    async fn listed(&self) -> Vec<(String, String)> {
        let out = self
            .run("restore-database", &["--list", "--json"], &[])
            .await;
        assert_success(&out, "--list");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.iter()
            .map(|row| {
                (
                    row["name"].as_str().unwrap().to_owned(),
                    row["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Nothing lost, nothing half-visible: every listed backup is complete or in progress,
    /// every complete one not seen before passes a dry run, and every object in the bucket
    /// has its manifest or its claim (an object with neither, older than the oldest manifest,
    /// would pass for an old script's backup). Returns the complete backups.
    async fn assert_coherent(&self, when: &str, checked: &mut BTreeSet<String>) -> Vec<String> {
        let mut complete = Vec::new();
        for (name, status) in self.listed().await {
            assert!(
                ["complete", "in progress"].contains(&status.as_str()),
                "{when}: {name} is listed as {status}"
            );
            if status == "complete" {
                complete.push(name.clone());
                if checked.insert(name.clone()) {
                    let out = self
                        .run("restore-database", &["--file", &name, "--dry-run"], &[])
                        .await;
                    assert_success(&out, &format!("{when}: dry run of {name}"));
                    assert!(stdout(&out).contains("dry run OK"), "{}", stdout(&out));
                }
            }
        }
        let objects: BTreeSet<String> = self.objects().await.into_iter().collect();
        for key in &objects {
            let ok = key.ends_with(".claim")
                || key.ends_with(".manifest.json")
                || objects.contains(&format!("{key}.manifest.json"))
                || objects.contains(&format!("{key}.claim"));
            assert!(ok, "{when}: {key} has neither manifest nor claim");
        }
        complete
    }

    /// Waits until the server has received a request matching `wanted`.
    async fn wait_for_request(&self, what: &str, wanted: impl Fn(&S3RequestRecord) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.s3.requests().iter().any(&wanted) {
            assert!(Instant::now() < deadline, "no {what} within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Waits for `child`, at most `limit`: a child still running then is killed and the test
/// fails (a hang, not an error).
async fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .unwrap()
                .unwrap();
            return (out, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?} (a hang); stderr:\n{}",
                stderr(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kill -9` and reap.
async fn kill_9(mut child: Child) {
    child.kill().expect("kill -9");
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
}

/// The file name of the object key a backup printed (`database/NAME`), as `--list` names it.
fn file_name(printed: &str) -> String {
    printed
        .trim()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn is(record: &S3RequestRecord, operation: &str, key_suffix: &str) -> bool {
    record.operation == operation && record.key().is_some_and(|key| key.ends_with(key_suffix))
}

/// A moment to kill a backup at: a request the server holds (delayed) when the kill comes.
struct Moment {
    what: &'static str,
    operation: &'static str,
    key_suffix: &'static str,
    /// Kill at the `nth` such request (1-based).
    nth: usize,
}

// The in-process S3 server needs runtime threads of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_s3_killed_at_any_moment_leaves_nothing_half_visible() {
    let t = S3World::new(8).await;
    let mut checked = BTreeSet::new();
    // Before the first request, and while the server holds each request of a backup: the
    // claim, the start of the upload, the first and the last part, the completion, the
    // manifest (the object is complete by then: the moment between object and manifest),
    // and the removal of the claim (after the commit).
    let hold = Duration::from_millis(400);
    let moments = [
        Moment {
            what: "the claim",
            operation: "PutObject",
            key_suffix: ".claim",
            nth: 1,
        },
        Moment {
            what: "CreateMultipartUpload",
            operation: "CreateMultipartUpload",
            key_suffix: "",
            nth: 1,
        },
        Moment {
            what: "the first part",
            operation: "UploadPart",
            key_suffix: "",
            nth: 1,
        },
        Moment {
            what: "the third part",
            operation: "UploadPart",
            key_suffix: "",
            nth: 3,
        },
        Moment {
            what: "CompleteMultipartUpload",
            operation: "CompleteMultipartUpload",
            key_suffix: "",
            nth: 1,
        },
        Moment {
            what: "the manifest, after the object's completion",
            operation: "PutObject",
            key_suffix: ".manifest.json",
            nth: 1,
        },
        Moment {
            what: "the claim's removal, after the commit",
            operation: "DeleteObject",
            key_suffix: ".claim",
            nth: 1,
        },
    ];
    for early in [0u64, 150, 400] {
        let child = t.spawn_backup(&[]);
        tokio::time::sleep(Duration::from_millis(early)).await;
        kill_9(child).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.assert_coherent(&format!("after a kill at {early} ms"), &mut checked)
            .await;
    }
    for moment in &moments {
        let when = format!("after a kill during {}", moment.what);
        t.s3.clear_requests();
        t.s3.delay(moment.operation, moment.key_suffix, hold);
        let child = t.spawn_backup(&[]);
        t.wait_for_request(moment.what, |r| {
            is(r, moment.operation, moment.key_suffix) && r.fault == Some("delayed")
        })
        .await;
        if moment.nth > 1 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while t
                .s3
                .requests()
                .iter()
                .filter(|r| is(r, moment.operation, moment.key_suffix))
                .count()
                < moment.nth
            {
                assert!(Instant::now() < deadline, "{when}: too few requests");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if moment.operation == "PutObject" && moment.key_suffix == ".manifest.json" {
            // The object is committed, its manifest not yet: the window the kill is for.
            let objects = t.objects().await;
            let manifest =
                t.s3.requests()
                    .into_iter()
                    .find(|r| is(r, "PutObject", ".manifest.json"))
                    .and_then(|r| r.key())
                    .unwrap();
            let object = manifest.trim_end_matches(".manifest.json");
            assert!(objects.iter().any(|k| k == object), "{when}: {objects:?}");
            assert!(!objects.contains(&manifest), "{when}: {objects:?}");
        }
        kill_9(child).await;
        // Let the held request finish on the server (or be dropped with its connection).
        tokio::time::sleep(hold + Duration::from_millis(100)).await;
        t.s3.clear_faults();
        t.assert_coherent(&when, &mut checked).await;
        if moment.key_suffix == ".manifest.json" {
            let listed = t.listed().await;
            assert!(
                listed.iter().any(|(_, status)| status == "in progress"),
                "{when}: the object without manifest is in progress: {listed:?}"
            );
        }
    }

    // Killed uploads stay pending (a write in progress is never touched) until they are a
    // day old; then backup-prune aborts them. The next backup works meanwhile.
    let pending = t.pending_uploads().await;
    assert!(!pending.is_empty(), "kills during the parts leave uploads");
    let out = t.run("backup-database", &[], &[]).await;
    assert_success(&out, "the backup after the kills");
    let key = file_name(&stdout(&out));
    let complete = t
        .assert_coherent("after the next backup", &mut checked)
        .await;
    assert!(
        complete.contains(&key),
        "{key} not listed as complete: {complete:?}"
    );
    assert_eq!(
        t.pending_uploads().await,
        pending,
        "the next backup leaves them"
    );
    let out = t.run("backup-prune", &[], &[]).await;
    assert_success(&out, "backup-prune");
    assert_eq!(
        t.pending_uploads().await,
        pending,
        "too young to be removed"
    );
    t.s3.backdate_multipart_uploads(Duration::from_secs(25 * 3600));
    let out = t.run("backup-prune", &[], &[]).await;
    assert_success(&out, "backup-prune a day later");
    assert!(
        t.pending_uploads().await.is_empty(),
        "{:?}\n{}",
        t.pending_uploads().await,
        stdout(&out)
    );
    let after = t.assert_coherent("after backup-prune", &mut checked).await;
    assert_eq!(after, complete, "prune kept every complete backup");
}

/// Assertions after a backup that failed on S3: exit 2 naming the failure, nothing listed
/// as complete, no object without its manifest, no upload left.
async fn assert_failed_cleanly(t: &S3World, out: &Output, what: &str, message: &str) {
    assert_exit(out, 2, what);
    let err = stderr(out);
    assert!(err.contains(message), "{what}: {err}");
    let mut checked = BTreeSet::new();
    let complete = t.assert_coherent(what, &mut checked).await;
    assert!(complete.is_empty(), "{what}: {complete:?}");
    let objects = t.objects().await;
    assert!(
        objects.iter().all(|k| k.ends_with(".claim")),
        "{what}: {objects:?}"
    );
    assert!(
        t.pending_uploads().await.is_empty(),
        "{what}: {:?}",
        t.pending_uploads().await
    );
}

// The in-process S3 server needs runtime threads of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_multipart_upload_answered_500_fails_the_backup_and_aborts_the_upload() {
    let t = S3World::new(8).await;
    t.s3.fail_complete_with(500);
    let out = t.run("backup-database", &[], &[]).await;
    assert_failed_cleanly(&t, &out, "Complete answered 500", "CompleteMultipartUpload").await;
    assert!(
        t.s3.requests_of("CompleteMultipartUpload").len() > 1,
        "retried"
    );
    assert!(!t.s3.requests_of("AbortMultipartUpload").is_empty());
    // Nothing is left that keeps the next backup from working.
    t.s3.clear_faults();
    let out = t.run("backup-database", &[], &[]).await;
    assert_success(&out, "the backup after");
}

// The in-process S3 server needs runtime threads of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_multipart_upload_answered_200_with_an_error_body_is_a_failure_unless_committed()
{
    let t = S3World::new(8).await;
    // Not carried out (as S3 does): a failure, the upload aborted, nothing visible.
    t.s3.complete_with_200_error(usize::MAX, false);
    let out = t.run("backup-database", &[], &[]).await;
    assert_failed_cleanly(
        &t,
        &out,
        "Complete answered 200 + error",
        "HTTP 200 InternalError",
    )
    .await;
    // Retried first (by the SDK), and asked whether it landed after all before aborting.
    assert!(t.s3.requests_of("CompleteMultipartUpload").len() > 1);
    assert!(!t.s3.requests_of("ListParts").is_empty());
    assert!(!t.s3.requests_of("AbortMultipartUpload").is_empty());

    // Carried out, only the reply says otherwise: recognised as committed (the upload is
    // gone and an object of the size written is there), so the backup is complete.
    t.s3.clear_faults();
    t.s3.clear_requests();
    t.s3.complete_with_200_error(1, true);
    let out = t.run("backup-database", &[], &[]).await;
    assert_success(&out, "Complete carried out, answered 200 + error");
    let key = file_name(&stdout(&out));
    assert!(
        stderr(&out).contains("CompleteMultipartUpload reported an error"),
        "{}",
        stderr(&out)
    );
    let completes = t.s3.requests_of("CompleteMultipartUpload");
    assert_eq!(
        completes[0].fault,
        Some("200 with an error body, carried out")
    );
    let mut checked = BTreeSet::new();
    let complete = t
        .assert_coherent("after the committed upload", &mut checked)
        .await;
    assert_eq!(complete, [key]);
    assert!(t.pending_uploads().await.is_empty());
}

// The in-process S3 server needs runtime threads of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_parts_answered_503_slow_down_are_retried_and_the_backup_restores() {
    let t = S3World::new(8).await;
    t.s3.slow_down_upload_parts(3);
    let out = t.run("backup-database", &[], &[]).await;
    assert_success(&out, "backup with throttled parts");
    let slowed =
        t.s3.requests_of("UploadPart")
            .iter()
            .filter(|r| r.fault == Some("503 SlowDown"))
            .count();
    assert_eq!(slowed, 3);
    let mut checked = BTreeSet::new();
    let complete = t
        .assert_coherent("after the throttled backup", &mut checked)
        .await;
    assert_eq!(complete.len(), 1);
    let out = t
        .run(
            "restore-database",
            &["--latest", "--target-db", "restored", "--create"],
            &[],
        )
        .await;
    assert_success(&out, "restore of the throttled backup");
    assert_eq!(
        t.w.checksums(SOURCE_DB).await,
        t.w.checksums("restored").await
    );
}

// The in-process S3 server needs runtime threads of its own while a binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_s3_connection_ends_the_backup_with_an_error_not_a_hang() {
    let t = S3World::new(8).await;
    let timeout = [("BACKUP_S3_TIMEOUT_SECONDS", "2")];
    let limit = Duration::from_secs(120);
    // The completion of the object, then the manifest's PutObject, never answered.
    for (operation, key_suffix) in [
        ("CompleteMultipartUpload", ""),
        ("PutObject", ".manifest.json"),
    ] {
        let what = format!("{operation} stalled");
        t.s3.clear_faults();
        t.s3.stall(operation, key_suffix);
        let child = t.spawn_backup(&timeout);
        let (out, took) = wait_bounded(child, limit, &what).await;
        assert!(
            t.s3.requests()
                .iter()
                .any(|r| is(r, operation, key_suffix) && r.fault == Some("stalled")),
            "{what}: nothing was stalled"
        );
        assert_failed_cleanly(&t, &out, &what, "BACKUP_S3_TIMEOUT_SECONDS=2").await;
        eprintln!("{what}: failed after {took:?}");
    }
}
