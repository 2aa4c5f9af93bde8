//! `backup-status`: the newest run report, judged (fresh success, partial, failed, stale,
//! missing), and its figures for Prometheus' node_exporter textfile collector.

use std::fmt::Write as _;
use std::time::Duration;

use backup_core::layout::REPORTS_FOLDER;
use backup_core::retention::list_dated;
use backup_core::Destinations;
use chrono::{DateTime, Utc};

use crate::report::{RunReport, REPORT_SIZE_LIMIT};

/// The default `--max-age`: a nightly run plus two hours of slack.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(26 * 3600);

/// The newest report found, and where.
#[derive(Debug, Clone)]
pub struct Found {
    /// The destination it was read from.
    pub destination: String,
    /// Its key.
    pub key: String,
    /// The report.
    pub report: RunReport,
    /// When the newest successful run ended (this one, or one of the
    /// [`SUCCESS_LOOKBACK`] before it).
    pub last_success_at: Option<DateTime<Utc>>,
}

/// How many older reports are read to find the last successful run.
pub const SUCCESS_LOOKBACK: usize = 60;

/// Reads the newest report from the first destination that can be listed (in order: local,
/// then S3). `Ok(None)` when that destination has no report; the errors of destinations that
/// could not be read are returned beside it.
pub async fn newest_report(destinations: &Destinations) -> (Option<Found>, Vec<String>) {
    let mut errors = Vec::new();
    for destination in destinations.iter() {
        let sink = destination.sink();
        let dated = match list_dated(sink, REPORTS_FOLDER).await {
            Ok(dated) => dated,
            Err(e) => {
                errors.push(format!("{}: {e}", destination.name()));
                continue;
            }
        };
        // Newest first; a report that cannot be read or parsed is passed over, and said so.
        let mut found: Option<Found> = None;
        for entry in dated
            .iter()
            .rev()
            .filter(|d| d.key.ends_with(".json"))
            .take(SUCCESS_LOOKBACK + 1)
        {
            let parsed = match sink.get_bytes(&entry.key, REPORT_SIZE_LIMIT).await {
                Ok(bytes) => serde_json::from_slice::<RunReport>(&bytes).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let report = match parsed {
                Ok(report) => report,
                Err(e) => {
                    errors.push(format!(
                        "{}: {} cannot be read: {e}",
                        destination.name(),
                        entry.key
                    ));
                    continue;
                }
            };
            let success = (report.status == "success").then_some(report.finished_at);
            match &mut found {
                None => {
                    found = Some(Found {
                        destination: destination.name().to_owned(),
                        key: entry.key.clone(),
                        report,
                        last_success_at: success,
                    })
                }
                Some(newest) => newest.last_success_at = success,
            }
            if found.as_ref().is_some_and(|f| f.last_success_at.is_some()) {
                break;
            }
        }
        if found.is_some() {
            return (found, errors);
        }
        return (None, errors);
    }
    (None, errors)
}

/// What `backup-status` concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// 0 fresh success, 1 partial, 2 failed, stale or missing.
    pub exit_code: u8,
    /// `ok`, `partial`, `failed`, `stale` or `missing`.
    pub state: &'static str,
    /// One line saying why.
    pub message: String,
}

/// Judges `report` at `now`: a run older than `max_age` (by its end) is stale whatever its
/// status.
pub fn judge(report: Option<&RunReport>, now: DateTime<Utc>, max_age: Duration) -> Verdict {
    let Some(report) = report else {
        return Verdict {
            exit_code: 2,
            state: "missing",
            message: "no backup-all run report found: has backup-all run yet?".to_owned(),
        };
    };
    let age = (now - report.finished_at).to_std().unwrap_or_default();
    let ago = crate::run_config::format_duration(age);
    if age > max_age {
        return Verdict {
            exit_code: 2,
            state: "stale",
            message: format!(
                "the newest run ({}, {}) ended {ago} ago, longer than {}: backups are not \
                 running",
                report.run_id,
                report.status,
                crate::run_config::format_duration(max_age)
            ),
        };
    }
    let (exit_code, state) = match report.status.as_str() {
        "success" => (0, "ok"),
        "partial" => (1, "partial"),
        _ => (2, "failed"),
    };
    let failed: Vec<String> = report
        .components
        .iter()
        .filter(|c| c.status == "failed" || c.status == "partial")
        .map(|c| match &c.error {
            Some(e) => format!("{} {}: {e}", c.component, c.status),
            None => format!("{} {}", c.component, c.status),
        })
        .collect();
    let mut message = format!(
        "the newest run ({}) ended {ago} ago: {}",
        report.run_id, report.status
    );
    if !failed.is_empty() {
        message.push_str(&format!(" ({})", failed.join("; ")));
    }
    Verdict {
        exit_code,
        state,
        message,
    }
}

/// The figures in node_exporter's textfile format: the verdict, the newest run's end, exit
/// code and duration, the last success, and each component's status, bytes and duration.
pub fn prometheus(found: Option<&Found>, verdict: &Verdict, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "backup_status_exit_code",
        "backup-status's verdict: 0 fresh success, 1 partial, 2 failed, stale or missing.",
        "gauge",
        &[(String::new(), f64::from(verdict.exit_code))],
    );
    metric(
        "backup_status_checked_timestamp_seconds",
        "When backup-status last looked.",
        "gauge",
        &[(String::new(), now.timestamp() as f64)],
    );
    let Some(found) = found else {
        return out;
    };
    let report = &found.report;
    if let Some(at) = found.last_success_at {
        metric(
            "backup_last_success_timestamp_seconds",
            "When the newest successful backup-all run ended.",
            "gauge",
            &[(String::new(), at.timestamp() as f64)],
        );
    }
    metric(
        "backup_last_run_timestamp_seconds",
        "When the newest backup-all run ended.",
        "gauge",
        &[(String::new(), report.finished_at.timestamp() as f64)],
    );
    metric(
        "backup_last_run_exit_code",
        "Exit code of the newest backup-all run (0 success, 1 partial, 2 failure, 3 error).",
        "gauge",
        &[(String::new(), f64::from(report.exit_code))],
    );
    metric(
        "backup_last_run_duration_seconds",
        "Duration of the newest backup-all run.",
        "gauge",
        &[(String::new(), report.duration_seconds)],
    );
    let label = |c: &str| format!("{{component=\"{}\"}}", c.replace(['\\', '"', '\n'], "_"));
    let per = |f: &dyn Fn(&crate::report::ComponentReport) -> Option<f64>| {
        report
            .components
            .iter()
            .filter_map(|c| f(c).map(|v| (label(&c.component), v)))
            .collect::<Vec<_>>()
    };
    metric(
        "backup_component_success",
        "1 when the component succeeded in the newest run, 0 when it failed or was partial \
         (skipped components are left out).",
        "gauge",
        &per(&|c| match c.status.as_str() {
            "skipped" => None,
            "success" => Some(1.0),
            _ => Some(0.0),
        }),
    );
    metric(
        "backup_component_raw_bytes",
        "Bytes read from the source in the newest run.",
        "gauge",
        &per(&|c| c.raw_bytes.map(|b| b as f64)),
    );
    metric(
        "backup_component_stored_bytes",
        "Bytes stored (compressed, encrypted) in the newest run.",
        "gauge",
        &per(&|c| c.stored_bytes.map(|b| b as f64)),
    );
    metric(
        "backup_component_duration_seconds",
        "Duration of the component in the newest run.",
        "gauge",
        &per(&|c| (c.status != "skipped").then_some(c.elapsed_seconds)),
    );
    out
}
