//! The components of one run: stages in order, components of a stage at the same time, each
//! with its own result; timeouts, panics and skipped components; the run's overall status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{BackupKind, BackupOptions, CoreError, Destination, Destinations, MemorySource};
use backup_orchestrate::{
    back_up, overall, run_stages, BackupJob, BackupRun, Component, Outcome, RunStatus,
};
use backup_storage::MemorySink;
use bytes::Bytes;

fn destinations() -> Destinations {
    Destinations::new(vec![Destination::new(
        "memory",
        Box::new(MemorySink::new()),
    )])
}

/// A real (small) backup job into `destinations`.
async fn backup(destinations: &Destinations, kind: BackupKind) -> Result<BackupRun, CoreError> {
    let mut source = MemorySource::new(kind, "bin", Bytes::from_static(b"data"));
    let job = BackupJob {
        options: BackupOptions::default(),
        publish_latest: None,
    };
    back_up(&mut source, destinations, &job, None).await
}

/// [`backup`] as a task-ready future owning its destinations.
fn job(
    destinations: &Arc<Destinations>,
    kind: BackupKind,
) -> impl std::future::Future<Output = Result<BackupRun, CoreError>> + Send + 'static {
    let destinations = Arc::clone(destinations);
    async move { backup(&destinations, kind).await }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn components_of_a_stage_run_at_the_same_time_and_stages_in_order() {
    let dests = Arc::new(destinations());
    // Each of the first two waits for the other to have started: run one after the other,
    // they would both time out.
    let both = Arc::new(tokio::sync::Barrier::new(2));
    let order = Arc::new(Mutex::new(Vec::new()));
    let component = |name: &'static str| {
        let (both, order, dests) = (Arc::clone(&both), Arc::clone(&order), Arc::clone(&dests));
        Component::run(name, async move {
            both.wait().await;
            order.lock().unwrap().push(name);
            backup(&dests, BackupKind::DATABASE).await
        })
    };
    let later = {
        let order = Arc::clone(&order);
        let dests = Arc::clone(&dests);
        Component::run("config", async move {
            order.lock().unwrap().push("config");
            backup(&dests, BackupKind::CONFIG).await
        })
    };
    let results = run_stages(
        vec![vec![component("database"), component("redis")], vec![later]],
        Duration::from_secs(10),
    )
    .await;
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["database", "redis", "config"]);
    for r in &results {
        assert_eq!(
            r.status(),
            Some(RunStatus::Success),
            "{}: {:?}",
            r.name,
            r.error()
        );
    }
    assert_eq!(order.lock().unwrap().last(), Some(&"config"));
    assert_eq!(overall(&results), Some(RunStatus::Success));
    let doc = results[0].to_json();
    assert_eq!(doc["status"], "success");
    assert!(doc["run"]["object"]
        .as_str()
        .unwrap()
        .starts_with("database/"));
}

#[tokio::test]
async fn a_timeout_a_failure_or_a_panic_fails_one_component_only() {
    let dests = Arc::new(destinations());
    let results = run_stages(
        vec![vec![
            Component::run("database", job(&dests, BackupKind::DATABASE)),
            Component::run("redis", async {
                std::future::pending::<()>().await;
                unreachable!()
            }),
            Component::run("config", async {
                Err(CoreError::Config("no such path /etc/app".into()))
            }),
            Component::run("logs", async { panic!("log rotation raced us") }),
            Component::skip("wal", "BACKUP_WAL is not set"),
        ]],
        Duration::from_millis(200),
    )
    .await;
    let status: Vec<&str> = results.iter().map(|r| r.status_name()).collect();
    assert_eq!(status, ["success", "failed", "failed", "failed", "skipped"]);
    assert!(matches!(results[1].outcome, Outcome::TimedOut(_)));
    assert!(results[1].error().unwrap().contains("timeout"));
    assert!(results[2].error().unwrap().contains("/etc/app"));
    assert!(
        results[3]
            .error()
            .unwrap()
            .contains("log rotation raced us"),
        "{:?}",
        results[3].error()
    );
    assert_eq!(
        results[4].to_json()["skipped_because"],
        "BACKUP_WAL is not set"
    );
    assert_eq!(overall(&results), Some(RunStatus::Partial));
}

#[tokio::test]
async fn the_overall_status_counts_what_ran() {
    let failing = || Component::run("x", async { Err(CoreError::Config("down".into())) });
    let results = run_stages(
        vec![vec![failing(), failing(), Component::skip("y", "off")]],
        LONG,
    )
    .await;
    assert_eq!(overall(&results), Some(RunStatus::Failed));
    let results = run_stages(vec![vec![Component::skip("y", "off")]], LONG).await;
    assert_eq!(
        overall(&results),
        None,
        "nothing configured is not a success"
    );
    let dests = Arc::new(destinations());
    let results = run_stages(
        vec![vec![
            Component::run("a", job(&dests, BackupKind::DATABASE)),
            Component::skip("b", "off"),
        ]],
        LONG,
    )
    .await;
    assert_eq!(overall(&results), Some(RunStatus::Success));
}
