//! The log of a long run (`backup-all`): every line goes to stderr (above the progress bars on
//! a terminal, plain under cron) and into a copy kept in memory, which the run stores as its
//! run log. Log lines never hold secrets, so neither does the copy.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use backup_core::ProgressFn;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::common::CommonArgs;

/// The most of a run's log kept in memory (later lines are counted, not kept).
pub const RUN_LOG_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped_lines: u64,
}

/// The run's log lines, and its progress bars.
#[derive(Clone)]
pub struct RunLog {
    captured: Arc<Mutex<Captured>>,
    bars: MultiProgress,
    show_progress: bool,
}

impl RunLog {
    /// Starts logging to stderr and to the in-memory copy, at the level `common` asks for.
    pub fn init(common: &CommonArgs) -> Self {
        let show_progress = !common.quiet && std::io::stderr().is_terminal();
        let bars = MultiProgress::with_draw_target(if show_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let log = Self {
            captured: Arc::default(),
            bars,
            show_progress,
        };
        let stderr = tracing_subscriber::fmt::layer()
            .with_writer(Stderr(log.bars.clone()))
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(common.log_filter());
        // The copy keeps info lines even under --quiet: it is the record of the run.
        let copy = tracing_subscriber::fmt::layer()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_target(false)
            .with_filter(tracing_subscriber::EnvFilter::new(if common.verbose > 0 {
                "debug"
            } else {
                "info"
            }));
        // A second initialisation (tests calling twice) is harmless: keep the first.
        let _ = tracing_subscriber::registry()
            .with(stderr)
            .with(copy)
            .try_init();
        log
    }

    /// The lines logged so far.
    pub fn contents(&self) -> Vec<u8> {
        let captured = self
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut bytes = captured.bytes.clone();
        if captured.dropped_lines > 0 {
            let note = format!(
                "[{} more lines not kept: the run log is limited to {} MiB]\n",
                captured.dropped_lines,
                RUN_LOG_LIMIT / (1024 * 1024)
            );
            bytes.extend_from_slice(note.as_bytes());
        }
        bytes
    }

    /// A spinner for component `name` (bytes read from its source) on a terminal; `None`
    /// under cron.
    pub fn progress(&self, name: &str) -> Option<ProgressFn> {
        if !self.show_progress {
            return None;
        }
        let bar = self.bars.add(
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:10} {bytes:>10} {bytes_per_sec:>12} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        );
        bar.set_message(name.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(Arc::new(move |n| bar.inc(n)))
    }

    /// Removes the progress bars.
    pub fn clear_progress(&self) {
        let _ = self.bars.clear();
    }
}

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut captured = self
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if captured.bytes.len() + buf.len() <= RUN_LOG_LIMIT {
            captured.bytes.extend_from_slice(buf);
        } else {
            captured.dropped_lines += 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// stderr, with the progress bars lifted out of the way of each line.
#[derive(Clone)]
struct Stderr(MultiProgress);

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
