//! Several components in one run (database, Redis, configuration, logs), each with its own
//! result, duration and timeout: stages run one after the other, the components of a stage at
//! the same time. A component that is not configured is `skipped`, not failed; one that panics
//! or runs past its timeout is failed without taking the others down.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use backup_core::{CoreError, RunStatus};
use futures_util::future::join_all;
use futures_util::FutureExt;

use crate::job::BackupRun;

/// A component's work: a backup job, borrowed from the caller (its sources and destinations).
pub type ComponentWork<'a> =
    Pin<Box<dyn Future<Output = Result<BackupRun, CoreError>> + Send + 'a>>;

/// One component of a run.
pub struct Component<'a> {
    /// Its name in reports (`database`, `redis`, `config`, `logs`).
    pub name: String,
    /// What to do.
    pub plan: Plan<'a>,
}

/// Whether a component runs.
pub enum Plan<'a> {
    /// Run this work.
    Run(ComponentWork<'a>),
    /// Not configured: say why (`POSTGRES_DB is not set`).
    Skip(String),
}

impl<'a> Component<'a> {
    /// A component that runs `work`.
    pub fn run(
        name: impl Into<String>,
        work: impl Future<Output = Result<BackupRun, CoreError>> + Send + 'a,
    ) -> Self {
        Self {
            name: name.into(),
            plan: Plan::Run(Box::pin(work)),
        }
    }

    /// A component that is not configured.
    pub fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            plan: Plan::Skip(why.into()),
        }
    }
}

/// What became of a component.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the run says where it committed.
    Ran(BackupRun),
    /// It failed before committing anywhere (its source failed, it panicked).
    Failed(String),
    /// It ran past its timeout and was stopped (its uncommitted work abandoned).
    TimedOut(Duration),
    /// It was not configured.
    Skipped(String),
}

/// A component's result.
#[derive(Debug)]
pub struct ComponentResult {
    /// Its name.
    pub name: String,
    /// What became of it.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

impl ComponentResult {
    /// Its status; `None` when it was skipped.
    pub fn status(&self) -> Option<RunStatus> {
        match &self.outcome {
            Outcome::Ran(run) => Some(run.status()),
            Outcome::Failed(_) | Outcome::TimedOut(_) => Some(RunStatus::Failed),
            Outcome::Skipped(_) => None,
        }
    }

    /// `success`, `partial`, `failed` or `skipped`.
    pub fn status_name(&self) -> &'static str {
        match self.status() {
            Some(RunStatus::Success) => "success",
            Some(RunStatus::Partial) => "partial",
            Some(RunStatus::Failed) => "failed",
            None => "skipped",
        }
    }

    /// The error, one line, when it did not succeed.
    pub fn error(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ran(run) if run.status() != RunStatus::Success => {
                Some(run.failures().join("; "))
            }
            Outcome::Ran(_) | Outcome::Skipped(_) => None,
            Outcome::Failed(e) => Some(e.clone()),
            Outcome::TimedOut(after) => Some(format!(
                "stopped after the timeout of {} (BACKUP_TIMEOUT_PER_COMPONENT); a backup it \
                 had not committed is discarded",
                crate::run_config::format_duration(*after)
            )),
        }
    }

    /// The result as JSON: name, status, seconds, error, and the run's document when it ran.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "component": self.name,
            "status": self.status_name(),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "error": self.error(),
            "skipped_because": match &self.outcome {
                Outcome::Skipped(why) => Some(why.clone()),
                _ => None,
            },
            "run": match &self.outcome {
                Outcome::Ran(run) => run.to_json(),
                _ => serde_json::Value::Null,
            },
        })
    }
}

/// Runs `stages` in order, the components of each at the same time, each as a task of its own
/// (so they run on as many cores as the runtime has) and stopped after `timeout`. Results come
/// in the order the components were given. Dropping the returned future stops every
/// component still running.
pub async fn run_stages(
    stages: Vec<Vec<Component<'static>>>,
    timeout: Duration,
) -> Vec<ComponentResult> {
    let mut results = Vec::new();
    for stage in stages {
        results.extend(join_all(stage.into_iter().map(|c| run_one(c, timeout))).await);
    }
    results
}

/// Aborts the task when dropped (the run was stopped, or the component timed out).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_one(component: Component<'static>, timeout: Duration) -> ComponentResult {
    let started = Instant::now();
    let outcome = match component.plan {
        Plan::Skip(why) => Outcome::Skipped(why),
        Plan::Run(work) => {
            // A panic fails this component only (the task's, or one caught in it).
            let guarded = AssertUnwindSafe(work).catch_unwind();
            let mut task = AbortOnDrop(tokio::spawn(guarded));
            match tokio::time::timeout(timeout, &mut task.0).await {
                Err(_) => {
                    // Stop it, and wait until its work is dropped (its uncommitted writes
                    // aborted, its scratch resources released) before going on.
                    task.0.abort();
                    let _ = (&mut task.0).await;
                    Outcome::TimedOut(timeout)
                }
                Ok(Err(join)) => Outcome::Failed(format!(
                    "the {} backup {}",
                    component.name,
                    if join.is_panic() {
                        format!("panicked: {}", panic_message(join.into_panic().as_ref()))
                    } else {
                        "was cancelled".to_owned()
                    }
                )),
                Ok(Ok(Err(panic))) => Outcome::Failed(format!(
                    "the {} backup panicked: {}",
                    component.name,
                    panic_message(panic.as_ref())
                )),
                Ok(Ok(Ok(Err(e)))) => Outcome::Failed(e.to_string()),
                Ok(Ok(Ok(Ok(run)))) => Outcome::Ran(run),
            }
        }
    };
    let result = ComponentResult {
        name: component.name,
        outcome,
        elapsed: started.elapsed(),
    };
    match (result.status_name(), result.error()) {
        ("skipped", _) => tracing::info!("{}: skipped", result.name),
        (status, Some(error)) => tracing::error!("{}: {status}: {error}", result.name),
        (status, None) => tracing::info!("{}: {status}", result.name),
    }
    result
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// The run as a whole, as the old scripts' exit codes say it: every component that ran
/// succeeded (0), some did not (1), none did (2). `None` when every component was skipped
/// (nothing is configured: the caller's configuration error).
pub fn overall(results: &[ComponentResult]) -> Option<RunStatus> {
    let statuses: Vec<RunStatus> = results.iter().filter_map(ComponentResult::status).collect();
    if statuses.is_empty() {
        return None;
    }
    Some(if statuses.iter().all(|s| *s == RunStatus::Success) {
        RunStatus::Success
    } else if statuses.iter().all(|s| *s == RunStatus::Failed) {
        RunStatus::Failed
    } else {
        RunStatus::Partial
    })
}
