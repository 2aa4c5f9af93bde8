//! `security-scan`: the weekly audit of the backup set-up. Each check gives [`Finding`]s with a
//! [`Severity`], what was found and how to fix it; the [`ScanReport`] is printed as a table or
//! JSON, stored under `reports/security/` on every destination, and announced when anything is
//! high or critical.
//!
//! The checks: the key file and the keyring ([`local`]), local backup and log directories,
//! the process, how exposed the backups are to these credentials, freshness of the backups and
//! the newest run, the S3 bucket's posture ([`bucket`]), and the dependency and container
//! scanners named in the configuration ([`scanners`]).

pub mod bucket;
pub mod local;
mod scan;
pub mod scanners;

pub use scan::{scan, ScanInputs, ScanReport, SecurityConfig, FRESHNESS, SECURITY_REPORTS_FOLDER};

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing wrong: a passed check, or a fact worth showing.
    Info,
    /// Worth fixing when convenient.
    Low,
    /// Fix soon.
    Medium,
    /// Fix now: exit 1, webhook told.
    High,
    /// Backups are at risk: exit 2, webhook told.
    Critical,
}

impl Severity {
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses a scanner's severity word (any case; `moderate` is `medium`, `negligible` and
    /// `unknown` are `low`).
    pub fn parse_lenient(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Self::Critical,
            "high" => Self::High,
            "medium" | "moderate" => Self::Medium,
            "info" | "informational" | "none" => Self::Info,
            _ => Self::Low,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a check could look at what it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Checked: fine.
    Pass,
    /// Checked: something is wrong (see the severity).
    Fail,
    /// Could not be checked (the endpoint does not support it, permission missing): never a
    /// failure, but said.
    Unknown,
}

/// A vulnerable package a scanner found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The advisory: `CVE-2024-1234`, `GHSA-...`, `RUSTSEC-2024-0001`.
    pub id: String,
    /// The package.
    pub package: String,
    /// The version installed.
    pub installed: String,
    /// The first version with the fix, when there is one.
    pub fixed: Option<String>,
    /// What was scanned (an image, a lock file), when the scanner says.
    pub target: Option<String>,
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check, dotted: `key_file.mode`, `s3.versioning`, `scanner.trivy`.
    pub check: String,
    /// Passed, failed or unknown.
    pub state: CheckState,
    /// How bad (`info` for a passed check).
    pub severity: Severity,
    /// What was found, for people.
    pub what: String,
    /// How to fix it (failed checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The vulnerable package (scanner findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<Vulnerability>,
}

impl Finding {
    /// A passed check.
    pub fn pass(check: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            state: CheckState::Pass,
            severity: Severity::Info,
            what: what.into(),
            fix: None,
            vulnerability: None,
        }
    }

    /// A failed check.
    pub fn fail(
        check: impl Into<String>,
        severity: Severity,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check: check.into(),
            state: CheckState::Fail,
            severity,
            what: what.into(),
            fix: Some(fix.into()),
            vulnerability: None,
        }
    }

    /// A check that could not be made.
    pub fn unknown(check: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            state: CheckState::Unknown,
            severity: Severity::Info,
            what: what.into(),
            fix: None,
            vulnerability: None,
        }
    }

    /// Whether this finding is a failure of `severity` or worse.
    pub fn is_at_least(&self, severity: Severity) -> bool {
        self.state == CheckState::Fail && self.severity >= severity
    }
}
