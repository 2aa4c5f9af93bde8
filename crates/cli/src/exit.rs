//! Exit codes shared by every binary, and the error type that carries them.

use std::process::ExitCode;

use clap::Parser;

/// The scripts' exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything succeeded.
    Success = 0,
    /// 1: some components failed, others succeeded.
    Partial = 1,
    /// 2: the operation failed.
    Failure = 2,
    /// 3: usage or configuration error, or an unexpected error.
    Usage = 3,
    /// 126: `backup-wal fetch` failed for another reason than "not in the archive":
    /// PostgreSQL takes a `restore_command` status above 125 as fatal and stops the recovery,
    /// where any other status would end it there and promote the server.
    StopRecovery = 126,
}

impl From<backup_core::RunStatus> for ExitStatus {
    fn from(status: backup_core::RunStatus) -> Self {
        match status {
            backup_core::RunStatus::Success => Self::Success,
            backup_core::RunStatus::Partial => Self::Partial,
            backup_core::RunStatus::Failed => Self::Failure,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// An error together with the exit status it maps to.
#[derive(Debug)]
pub struct CliError {
    /// The exit status.
    pub status: ExitStatus,
    /// What went wrong, with its cause chain.
    pub error: anyhow::Error,
}

impl CliError {
    /// A configuration or usage error (exit 3).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: ExitStatus::Usage,
            error: error.into(),
        }
    }

    /// A failure of the operation itself (exit 2), unless its cause is a configuration
    /// problem found on the way (a storage configuration error such as missing S3
    /// credentials), which is exit 3 like any other configuration error.
    pub fn failure(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        let status = if is_configuration(&error) {
            ExitStatus::Usage
        } else {
            ExitStatus::Failure
        };
        Self { status, error }
    }
}

/// Whether `error` comes from a configuration problem of a destination.
fn is_configuration(error: &anyhow::Error) -> bool {
    use backup_storage::StorageError;
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StorageError>(),
            Some(StorageError::Config(_))
        ) || matches!(
            cause.downcast_ref::<backup_core::CoreError>(),
            Some(backup_core::CoreError::Storage(StorageError::Config(_)))
        )
    })
}

/// Parses arguments like `Parser::parse`, but exits 3 (not clap's 2) on a usage error, since 2
/// means "the backup failed" to the cron jobs and monitors that call these binaries.
pub fn parse_args<T: Parser>() -> T {
    parse_args_from(std::env::args_os())
}

/// [`parse_args`] over `args` (the first one is the program's name).
pub fn parse_args_from<T: Parser>(args: impl IntoIterator<Item = std::ffi::OsString>) -> T {
    match T::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            let status = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitStatus::Success,
                _ => ExitStatus::Usage,
            };
            // Printing can only fail if stderr/stdout are gone; the exit code still tells.
            let _ = e.print();
            std::process::exit(status as i32);
        }
    }
}

/// Runs `work` on a new Tokio runtime until it finishes or SIGINT/SIGTERM arrives. On a
/// signal the work is dropped, which aborts uncommitted writes (temp files are removed), kills
/// child processes (`pg_dump`, `psql`: the restore transaction rolls back), and the result is
/// a failure (exit 2) saying so.
pub fn run_interruptible<F>(work: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitStatus, CliError>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(CliError::usage(e))),
    };
    let result = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return work.await;
        };
        let signal_name = tokio::select! {
            result = work => {
                finish_cleanups().await;
                return result;
            }
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        // The work future is dropped by now; let what its drop started (aborting an S3
        // multipart upload) finish before the runtime goes away.
        finish_cleanups().await;
        Err(CliError::failure(anyhow::anyhow!(
            "interrupted by {signal_name}: stopped; the work in progress was abandoned (an \
             unfinished backup or restore is never committed)"
        )))
    });
    // Dropping the runtime waits for blocking cleanup (temp-file removal) to finish.
    drop(runtime);
    finish(result)
}

/// Waits (at most 30 s) for clean-ups started by dropped writers.
async fn finish_cleanups() {
    let left = backup_storage::wait_for_cleanups(std::time::Duration::from_secs(30)).await;
    if left > 0 {
        tracing::warn!(
            "{left} clean-up(s) of interrupted uploads did not finish; \
             backup-prune removes what they leave"
        );
    }
}

/// Prints `result`'s error (with its causes) to stderr and returns the exit code.
pub fn finish(result: Result<ExitStatus, CliError>) -> ExitCode {
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {}", describe(&e.error));
            e.status.into()
        }
    }
}

/// The error and its causes on one line, each cause once: library errors often repeat their
/// cause's message in their own, so a cause already contained in the text is not added again.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("restore failed: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("psql exited 3")]
    struct Inner;

    #[test]
    fn describe_lists_each_cause_once() {
        let e = anyhow::Error::new(Outer(Inner));
        assert_eq!(describe(&e), "restore failed: psql exited 3");
        let e = anyhow::Error::new(Inner).context("backing up");
        assert_eq!(describe(&e), "backing up: psql exited 3");
    }
}
