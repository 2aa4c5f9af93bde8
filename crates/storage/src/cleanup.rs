//! Clean-up work started from `Drop` (aborting a dropped S3 upload), and waiting for it.
//!
//! `Drop` cannot await, so a dropped writer spawns its clean-up on the runtime. A program that
//! is about to exit (for example after Ctrl-C) calls [`wait_for_cleanups`] so that those tasks
//! finish before the runtime goes away.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Decrements the count when the task ends, however it ends.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spawns `work` on `runtime`, counted until it ends.
pub(crate) fn spawn<F>(runtime: &tokio::runtime::Handle, work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let guard = Running;
    runtime.spawn(async move {
        let _guard = guard;
        work.await;
    });
}

/// Waits until every clean-up spawned by a dropped writer has finished, or `timeout` passed.
/// Returns how many were still running at the end (0 when all finished).
pub async fn wait_for_cleanups(timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let running = RUNNING.load(Ordering::SeqCst);
        if running == 0 || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
