//! The dependency and container vulnerability scanners of `security-scan`: each command line of
//! `[security] scanners` is run (split like a POSIX shell would, never through a shell), and
//! the JSON it prints is turned into [`Finding`]s, one per vulnerable package.
//!
//! Understood: `trivy … --format json`, `grype … -o json`, `cargo audit --json` and
//! `npm audit --json` (npm 7 or later). Which one a command line runs comes from its program's
//! file name ([`ScannerKind::of`]); any other program is run, but its output is not interpreted.
//!
//! Scanner output is read with care: at most [`MAX_SCANNER_OUTPUT`] bytes, parsed into typed
//! structures that skip every field not used (nothing is pre-allocated from counts the output
//! claims), with serde_json's nesting limit. Something wrong with a scanner is a finding, never
//! an error or a crash.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{Finding, Severity, Vulnerability};

/// The most bytes of a scanner's stdout that are read (and parsed); more is a finding, not a
/// crash.
pub const MAX_SCANNER_OUTPUT: usize = 64 * 1024 * 1024;

/// How much of a scanner's stderr is kept for messages: the end, where the error usually is.
const STDERR_TAIL: usize = 2 * 1024;

/// How long to wait for a killed scanner to be gone.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The longest title or description quoted in a finding, in characters.
const MAX_TITLE: usize = 160;

/// Which scanner a command line runs, from its program name (the file name of the first word):
/// trivy, grype, cargo (with `audit` as its next word: cargo-audit), npm (with `audit`), or
/// Other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScannerKind {
    /// Aqua Security's `trivy` (`trivy image NAME --format json`).
    Trivy,
    /// Anchore's `grype` (`grype NAME -o json`).
    Grype,
    /// RustSec's `cargo audit --json` (also `cargo-audit audit --json`).
    CargoAudit,
    /// `npm audit --json`, npm 7 or later (`auditReportVersion` 2).
    NpmAudit,
    /// Any other program: it is run, but its output cannot be interpreted.
    Other,
}

impl ScannerKind {
    /// The kind of scanner `command` (a split command line) runs. The program is recognised by
    /// its file name (`/usr/local/bin/trivy` is trivy); `cargo` must be followed by `audit`
    /// (after an optional `+toolchain`), `npm` by `audit`. An empty command is
    /// [`ScannerKind::Other`].
    pub fn of(command: &[String]) -> Self {
        let Some(first) = command.first() else {
            return Self::Other;
        };
        let rest = command.get(1..).unwrap_or_default();
        match program_name(first) {
            "trivy" => Self::Trivy,
            "grype" => Self::Grype,
            "cargo-audit" => Self::CargoAudit,
            "cargo" => {
                let next = rest.iter().find(|word| !word.starts_with('+'));
                if next.is_some_and(|word| word == "audit") {
                    Self::CargoAudit
                } else {
                    Self::Other
                }
            }
            "npm" if rest.first().is_some_and(|word| word == "audit") => Self::NpmAudit,
            _ => Self::Other,
        }
    }

    /// `trivy`, `grype`, `cargo-audit`, `npm-audit` or `other`: the findings' check is
    /// `scanner.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trivy => "trivy",
            Self::Grype => "grype",
            Self::CargoAudit => "cargo-audit",
            Self::NpmAudit => "npm-audit",
            Self::Other => "other",
        }
    }

    /// The check of this scanner's findings: `scanner.trivy`.
    fn check(self) -> String {
        format!("scanner.{}", self.name())
    }

    /// How the command line must ask for JSON.
    fn json_usage(self) -> &'static str {
        match self {
            Self::Trivy => "`trivy image NAME --format json`",
            Self::Grype => "`grype NAME -o json`",
            Self::CargoAudit => "`cargo audit --json`",
            Self::NpmAudit => "`npm audit --json` (npm 7 or later)",
            Self::Other => "trivy, grype, cargo audit or npm audit with JSON output",
        }
    }

    /// How to install the scanner.
    fn install_advice(self) -> &'static str {
        match self {
            Self::Trivy => {
                "install trivy from Aqua Security's packages (the apt or rpm repository, or the \
                 release binary: https://trivy.dev), or remove it from [security] scanners"
            }
            Self::Grype => {
                "install grype from Anchore's packages (the release .deb/.rpm or binary: \
                 https://github.com/anchore/grype#installation), or remove it from [security] \
                 scanners"
            }
            Self::CargoAudit => {
                "install it with `cargo install cargo-audit --locked` (as the user running \
                 security-scan), or remove it from [security] scanners"
            }
            Self::NpmAudit => {
                "npm comes with Node.js: install Node.js (e.g. the distribution's nodejs and npm \
                 packages), or remove it from [security] scanners"
            }
            Self::Other => {
                "install it, correct the program name (or give its absolute path) in [security] \
                 scanners, or remove it"
            }
        }
    }
}

/// The file name of a command's first word: `trivy` for `/usr/local/bin/trivy`.
fn program_name(word: &str) -> &str {
    Path::new(word)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(word)
}

/// Parses a scanner's JSON output into one finding per vulnerability (check
/// `scanner.<kind name>`, state Fail, severity from the scanner's own rating via
/// [`Severity::parse_lenient`], `what` naming the advisory id, package, installed version and
/// target, `fix` = "upgrade PACKAGE to FIXED" or "no fixed version yet: ..." advice,
/// `vulnerability` filled). With no vulnerability: one [`Finding::pass`] saying how many
/// packages/targets were scanned if the output says so. Errors (not JSON, not the expected
/// shape) are `Err(String)` describing what was wrong.
///
/// Per scanner:
/// - trivy: every entry of every result's `Vulnerabilities`; also its `Secrets` and failed
///   `Misconfigurations` (as failures without a `vulnerability`), so that a pass means nothing
///   was found at all. The pre-0.20 output (a bare array of results) is read too.
/// - grype: every entry of `matches`; several fixed versions (one per release line) are joined
///   with `or`; an empty description is taken from a related record (NVD's, for a
///   distribution's advisory).
/// - cargo audit: it rates nothing, so the severity comes from the advisory's CVSS 3 base
///   score, computed from its vector (9.0 or more critical, 7.0 or more high, 4.0 or more
///   medium, below that low); an advisory without a usable CVSS 3 vector (none, or a CVSS 4.0
///   one, whose score needs the specification's lookup tables) counts as high. Its
///   `warnings` (unmaintained, unsound, yanked, notices) follow as low failures without a
///   `vulnerability`, after the pass when there is no vulnerability.
/// - npm audit: one finding per advisory object in a package's `via`; a package that is only
///   vulnerable through others (`via` names packages) gives one finding carrying the first
///   advisory reached through them. npm does not say the installed version: the package's
///   vulnerable `range` stands for it.
///
/// Output that claims vulnerabilities but lists none (cargo audit's `found`, npm's
/// `metadata.vulnerabilities.total`) is an error, not a pass.
pub fn parse_output(kind: ScannerKind, json: &[u8]) -> Result<Vec<Finding>, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "empty output (expected the JSON report of {})",
            kind.json_usage()
        ));
    }
    match kind {
        ScannerKind::Trivy => trivy::parse(json),
        ScannerKind::Grype => grype::parse(json),
        ScannerKind::CargoAudit => cargo_audit::parse(json),
        ScannerKind::NpmAudit => npm_audit::parse(json),
        ScannerKind::Other => Err(format!(
            "the output of this program cannot be interpreted: only {} is understood",
            ScannerKind::Other.json_usage()
        )),
    }
}

/// Deserializes `json`, describing a failure for people.
fn decode<'a, T: Deserialize<'a>>(kind: ScannerKind, json: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Eof => format!(
                "truncated JSON ({error}): the output of {} ended early",
                kind.name()
            ),
            Category::Syntax => format!(
                "not JSON ({error}); the output starts with {:?} (expected the JSON report of {})",
                preview(json),
                kind.json_usage()
            ),
            Category::Data | Category::Io => {
                format!("not the JSON report of {} ({error})", kind.json_usage())
            }
        }
    })
}

/// The first characters of some output, for an error message.
fn preview(bytes: &[u8]) -> String {
    let head = bytes.get(..bytes.len().min(240)).unwrap_or(bytes);
    let text: String = String::from_utf8_lossy(head)
        .trim_start()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    short(&text, 60)
}

/// `text` on one line, at most `max` characters (`…` when cut).
fn short(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", line.get(..cut).unwrap_or(line)),
        None => line.to_owned(),
    }
}

/// `1 target`, `3 targets`: `n` and the word for one or for many.
fn count_of(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The advice when no fixed version exists; `why` says more when the scanner does.
fn no_fix_advice(package: &str, why: Option<&str>) -> String {
    let why = why.map(|why| format!(" ({why})")).unwrap_or_default();
    format!(
        "no fixed version yet{why}: follow the advisory for a fix; until there is one, remove or \
         replace {package} if the vulnerable code is reachable, or accept the risk and ignore \
         this advisory in the scanner's configuration"
    )
}

/// A failed finding for one vulnerable package.
fn vulnerability_finding(
    kind: ScannerKind,
    severity: Severity,
    vulnerability: Vulnerability,
    title: Option<&str>,
    fix: String,
) -> Finding {
    let installed = if vulnerability.installed.is_empty() {
        "(version unknown)"
    } else {
        vulnerability.installed.as_str()
    };
    let mut what = format!(
        "{} in {} {installed}",
        vulnerability.id, vulnerability.package
    );
    if let Some(target) = vulnerability.target.as_deref().filter(|t| !t.is_empty()) {
        let _ = write!(what, " ({target})");
    }
    if let Some(title) = title.map(|t| short(t, MAX_TITLE)).filter(|t| !t.is_empty()) {
        let _ = write!(what, ": {title}");
    }
    let mut finding = Finding::fail(kind.check(), severity, what, fix);
    finding.vulnerability = Some(vulnerability);
    finding
}

/// A non-empty string, or None.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// `trivy … --format json`.
mod trivy {
    use super::*;

    #[derive(Deserialize)]
    struct Report {
        #[serde(rename = "SchemaVersion")]
        schema_version: Option<IgnoredAny>,
        #[serde(rename = "ArtifactName")]
        artifact_name: Option<String>,
        #[serde(rename = "Results")]
        results: Option<Vec<Target>>,
    }

    #[derive(Deserialize)]
    struct Target {
        #[serde(rename = "Target", default)]
        target: Option<String>,
        #[serde(rename = "Vulnerabilities")]
        vulnerabilities: Option<Vec<Vuln>>,
        #[serde(rename = "Secrets")]
        secrets: Option<Vec<Secret>>,
        #[serde(rename = "Misconfigurations")]
        misconfigurations: Option<Vec<Misconfiguration>>,
        /// Listed with `--list-all-pkgs`: only counted.
        #[serde(rename = "Packages")]
        packages: Option<Vec<IgnoredAny>>,
    }

    #[derive(Deserialize)]
    struct Vuln {
        #[serde(rename = "VulnerabilityID")]
        id: String,
        #[serde(rename = "PkgName")]
        package: String,
        #[serde(rename = "InstalledVersion")]
        installed: Option<String>,
        #[serde(rename = "FixedVersion")]
        fixed: Option<String>,
        #[serde(rename = "Status")]
        status: Option<String>,
        #[serde(rename = "Severity")]
        severity: Option<String>,
        #[serde(rename = "Title")]
        title: Option<String>,
        #[serde(rename = "Description")]
        description: Option<String>,
    }

    #[derive(Deserialize)]
    struct Secret {
        #[serde(rename = "RuleID")]
        rule: Option<String>,
        #[serde(rename = "Title")]
        title: Option<String>,
        #[serde(rename = "Severity")]
        severity: Option<String>,
        #[serde(rename = "StartLine")]
        line: Option<serde_json::Number>,
    }

    #[derive(Deserialize)]
    struct Misconfiguration {
        #[serde(rename = "ID")]
        id: Option<String>,
        #[serde(rename = "Title")]
        title: Option<String>,
        #[serde(rename = "Message")]
        message: Option<String>,
        #[serde(rename = "Resolution")]
        resolution: Option<String>,
        #[serde(rename = "Severity")]
        severity: Option<String>,
        #[serde(rename = "Status")]
        status: Option<String>,
    }

    /// Why trivy has no fixed version, from its `Status`.
    fn why_no_fix(status: Option<&str>) -> Option<&'static str> {
        match status? {
            "will_not_fix" => Some("the vendor will not fix it"),
            "fix_deferred" => Some("the vendor deferred the fix"),
            "end_of_life" => {
                Some("the distribution release is end of life: move to a supported one")
            }
            "under_investigation" => Some("the vendor is investigating"),
            _ => None,
        }
    }

    pub(super) fn parse(json: &[u8]) -> Result<Vec<Finding>, String> {
        let kind = ScannerKind::Trivy;
        let starts_array = json
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[');
        let (artifact, targets) = if starts_array {
            (None, decode::<Vec<Target>>(kind, json)?)
        } else {
            let report: Report = decode(kind, json)?;
            if report.schema_version.is_none() && report.results.is_none() {
                return Err(format!(
                    "not the JSON report of {}: it has neither `SchemaVersion` nor `Results`",
                    kind.json_usage()
                ));
            }
            (
                non_empty(report.artifact_name),
                report.results.unwrap_or_default(),
            )
        };

        let target_count = u64::try_from(targets.len()).unwrap_or(u64::MAX);
        let mut findings = Vec::new();
        let mut packages: Option<u64> = None;
        for target in targets {
            if let Some(listed) = &target.packages {
                let listed = u64::try_from(listed.len()).unwrap_or(u64::MAX);
                packages = Some(packages.unwrap_or(0).saturating_add(listed));
            }
            let target_name = non_empty(target.target).or_else(|| artifact.clone());
            for vuln in target.vulnerabilities.into_iter().flatten() {
                let fixed = non_empty(vuln.fixed);
                let fix = match &fixed {
                    Some(fixed) => format!("upgrade {} to {fixed}", vuln.package),
                    None => no_fix_advice(&vuln.package, why_no_fix(vuln.status.as_deref())),
                };
                let severity =
                    Severity::parse_lenient(vuln.severity.as_deref().unwrap_or("unknown"));
                let title = non_empty(vuln.title).or(non_empty(vuln.description));
                let vulnerability = Vulnerability {
                    id: vuln.id,
                    package: vuln.package,
                    installed: vuln.installed.unwrap_or_default(),
                    fixed,
                    target: target_name.clone(),
                };
                findings.push(vulnerability_finding(
                    kind,
                    severity,
                    vulnerability,
                    title.as_deref(),
                    fix,
                ));
            }
            let place = target_name.as_deref().unwrap_or("the scanned artifact");
            for secret in target.secrets.into_iter().flatten() {
                let rule = non_empty(secret.rule).unwrap_or_else(|| "secret".to_owned());
                let title = non_empty(secret.title).map(|t| format!(" ({})", short(&t, MAX_TITLE)));
                let line = secret
                    .line
                    .map(|l| format!(" line {l}"))
                    .unwrap_or_default();
                findings.push(Finding::fail(
                    kind.check(),
                    Severity::parse_lenient(secret.severity.as_deref().unwrap_or("high")),
                    format!("secret {rule}{} in {place}{line}", title.unwrap_or_default()),
                    "remove the secret from the image (and its history), and rotate it: it must be \
                     considered leaked",
                ));
            }
            for misconfiguration in target.misconfigurations.into_iter().flatten() {
                if misconfiguration.status.as_deref() != Some("FAIL") {
                    continue;
                }
                let id =
                    non_empty(misconfiguration.id).unwrap_or_else(|| "misconfiguration".to_owned());
                let mut what = format!("{id} in {place}");
                for text in [misconfiguration.title, misconfiguration.message]
                    .into_iter()
                    .flatten()
                {
                    let _ = write!(what, ": {}", short(&text, MAX_TITLE));
                }
                findings.push(Finding::fail(
                    kind.check(),
                    Severity::parse_lenient(
                        misconfiguration.severity.as_deref().unwrap_or("unknown"),
                    ),
                    what,
                    non_empty(misconfiguration.resolution).unwrap_or_else(|| {
                        "correct the configuration as the check describes".to_owned()
                    }),
                ));
            }
        }
        if findings.is_empty() {
            let subject = artifact.as_deref().unwrap_or("the scanned artifact");
            let mut scanned = count_of(target_count, "target", "targets");
            if let Some(packages) = packages {
                let _ = write!(scanned, ", {}", count_of(packages, "package", "packages"));
            }
            findings.push(Finding::pass(
                kind.check(),
                format!("trivy: no vulnerability in {subject} ({scanned} scanned)"),
            ));
        }
        Ok(findings)
    }
}

/// `grype … -o json`.
mod grype {
    use super::*;

    #[derive(Deserialize)]
    struct Report {
        matches: Vec<Match>,
        source: Option<Source>,
    }

    #[derive(Deserialize)]
    struct Match {
        vulnerability: Vuln,
        /// The same vulnerability in other records (NVD's, for a distribution's advisory):
        /// their description stands in for an empty one.
        #[serde(rename = "relatedVulnerabilities", default)]
        related: Option<Vec<Related>>,
        artifact: Artifact,
    }

    #[derive(Deserialize)]
    struct Related {
        description: Option<String>,
    }

    #[derive(Deserialize)]
    struct Vuln {
        id: String,
        severity: Option<String>,
        description: Option<String>,
        fix: Option<Fix>,
    }

    #[derive(Deserialize)]
    struct Fix {
        #[serde(default)]
        versions: Vec<String>,
        state: Option<String>,
    }

    #[derive(Deserialize)]
    struct Artifact {
        name: String,
        version: Option<String>,
    }

    #[derive(Deserialize)]
    struct Source {
        /// A path (`directory`, `file`) or an image (an object with `userInput`).
        #[serde(default, deserialize_with = "target_name")]
        target: Option<String>,
    }

    /// The name of what grype scanned: the string itself, or an image's `userInput` (the rest
    /// of the image object, layers and base64 manifest, is skipped without being kept).
    fn target_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        struct TargetVisitor;

        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = Option<String>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a path or an object with `userInput`")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Some(value.to_owned()))
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut name = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "userInput" && name.is_none() {
                        name = map.next_value::<Option<String>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(name)
            }
        }

        deserializer.deserialize_any(TargetVisitor)
    }

    pub(super) fn parse(json: &[u8]) -> Result<Vec<Finding>, String> {
        let kind = ScannerKind::Grype;
        let report: Report = decode(kind, json)?;
        let target = non_empty(report.source.and_then(|source| source.target));
        let mut findings = Vec::with_capacity(report.matches.len().max(1));
        for found in report.matches {
            let vuln = found.vulnerability;
            let package = found.artifact.name;
            let (versions, state) = match vuln.fix {
                Some(fix) => (fix.versions, fix.state),
                None => (Vec::new(), None),
            };
            let versions: Vec<String> = versions
                .into_iter()
                .filter(|v| !v.trim().is_empty())
                .collect();
            let fixed = (!versions.is_empty()).then(|| versions.join(" or "));
            let fix = match &fixed {
                Some(fixed) => format!("upgrade {package} to {fixed}"),
                None => {
                    let why = match state.as_deref() {
                        Some("wont-fix") => Some("the vendor will not fix it"),
                        _ => None,
                    };
                    no_fix_advice(&package, why)
                }
            };
            let severity = Severity::parse_lenient(vuln.severity.as_deref().unwrap_or("unknown"));
            // A distribution's record (wolfi, Red Hat, Debian…) often has no description of
            // its own: NVD's related record has.
            let description = non_empty(vuln.description).or_else(|| {
                found
                    .related
                    .into_iter()
                    .flatten()
                    .find_map(|related| non_empty(related.description))
            });
            let vulnerability = Vulnerability {
                id: vuln.id,
                package,
                installed: found.artifact.version.unwrap_or_default(),
                fixed,
                target: target.clone(),
            };
            findings.push(vulnerability_finding(
                kind,
                severity,
                vulnerability,
                description.as_deref(),
                fix,
            ));
        }
        if findings.is_empty() {
            let subject = target.as_deref().unwrap_or("the scanned source");
            findings.push(Finding::pass(
                kind.check(),
                format!("grype: no vulnerability found in {subject}"),
            ));
        }
        Ok(findings)
    }
}

/// `cargo audit --json`.
mod cargo_audit {
    use super::*;

    /// What cargo audit checks.
    const LOCKFILE: &str = "Cargo.lock";

    #[derive(Deserialize)]
    struct Report {
        lockfile: Option<Lockfile>,
        vulnerabilities: Vulnerabilities,
        #[serde(default)]
        warnings: Option<BTreeMap<String, Vec<Warning>>>,
    }

    #[derive(Deserialize)]
    struct Lockfile {
        #[serde(rename = "dependency-count")]
        dependency_count: Option<serde_json::Number>,
    }

    /// `found` and `list` are required (cargo audit always writes them): they tell this shape
    /// from npm's `vulnerabilities`, a map of package names.
    #[derive(Deserialize)]
    struct Vulnerabilities {
        found: bool,
        list: Vec<Listed>,
    }

    #[derive(Deserialize)]
    struct Listed {
        advisory: Advisory,
        versions: Option<Versions>,
        package: Package,
    }

    #[derive(Deserialize)]
    struct Advisory {
        id: String,
        title: Option<String>,
        /// A CVSS vector string (`CVSS:3.1/AV:N/…`); anything else is kept to be ignored.
        cvss: Option<serde_json::Value>,
        informational: Option<serde_json::Value>,
    }

    #[derive(Deserialize)]
    struct Versions {
        #[serde(default)]
        patched: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: Option<String>,
    }

    #[derive(Deserialize)]
    struct Warning {
        kind: Option<String>,
        package: Package,
        advisory: Option<Advisory>,
        versions: Option<Versions>,
    }

    /// The severity of an advisory: from its CVSS 3 base score, high without one.
    fn severity(advisory: &Advisory) -> Severity {
        let score = match &advisory.cvss {
            Some(serde_json::Value::String(vector)) => cvss3_base_score(vector),
            _ => None,
        };
        match score {
            Some(score) if score >= 9.0 => Severity::Critical,
            Some(score) if score >= 7.0 => Severity::High,
            Some(score) if score >= 4.0 => Severity::Medium,
            Some(_) => Severity::Low,
            None => Severity::High,
        }
    }

    /// The patched requirements, as cargo audit writes them (`>=0.23.5 OR >=0.22.4, <0.23.0`).
    fn patched(versions: Option<Versions>) -> Option<String> {
        let patched: Vec<String> = versions
            .map(|v| v.patched)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !v.trim().is_empty())
            .collect();
        (!patched.is_empty()).then(|| patched.join(" OR "))
    }

    pub(super) fn parse(json: &[u8]) -> Result<Vec<Finding>, String> {
        let kind = ScannerKind::CargoAudit;
        let report: Report = decode(kind, json)?;
        if report.vulnerabilities.found && report.vulnerabilities.list.is_empty() {
            return Err(
                "cargo audit says vulnerabilities were found but lists none (`found` is true, \
                 `list` is empty)"
                    .to_owned(),
            );
        }
        let mut findings = Vec::new();
        for listed in report.vulnerabilities.list {
            let severity = severity(&listed.advisory);
            let package = listed.package.name;
            let fixed = patched(listed.versions);
            let fix = match &fixed {
                Some(fixed) => format!("upgrade {package} to {fixed}"),
                None => no_fix_advice(&package, None),
            };
            let title = listed.advisory.title;
            let vulnerability = Vulnerability {
                id: listed.advisory.id,
                package,
                installed: listed.package.version.unwrap_or_default(),
                fixed,
                target: Some(LOCKFILE.to_owned()),
            };
            findings.push(vulnerability_finding(
                kind,
                severity,
                vulnerability,
                title.as_deref(),
                fix,
            ));
        }
        if findings.is_empty() {
            let scanned = report
                .lockfile
                .and_then(|l| l.dependency_count)
                .and_then(|n| n.as_u64())
                .map(|n| {
                    format!(
                        "{} in {LOCKFILE}",
                        count_of(n, "dependency", "dependencies")
                    )
                })
                .unwrap_or_else(|| LOCKFILE.to_owned());
            findings.push(Finding::pass(
                kind.check(),
                format!("cargo-audit: no vulnerability in {scanned}"),
            ));
        }
        for (list_kind, warnings) in report.warnings.unwrap_or_default() {
            for warning in warnings {
                findings.push(warning_finding(kind, &list_kind, warning));
            }
        }
        Ok(findings)
    }

    /// A warning (unmaintained, unsound, yanked, notice): a low failure.
    fn warning_finding(kind: ScannerKind, list_kind: &str, warning: Warning) -> Finding {
        let warning_kind = non_empty(warning.kind)
            .or_else(|| {
                warning
                    .advisory
                    .as_ref()
                    .and_then(|a| a.informational.as_ref())
                    .and_then(|i| i.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| list_kind.to_owned());
        let package = warning.package.name;
        let version =
            non_empty(warning.package.version).unwrap_or_else(|| "(version unknown)".to_owned());
        let mut what = match &warning.advisory {
            Some(advisory) => format!("{} ({warning_kind}): {package} {version}", advisory.id),
            None => format!("{package} {version} is {warning_kind}"),
        };
        if let Some(title) = warning.advisory.as_ref().and_then(|a| a.title.as_deref()) {
            let _ = write!(what, ": {}", short(title, MAX_TITLE));
        }
        let fix = match (warning_kind.as_str(), patched(warning.versions)) {
            ("yanked", _) => format!("`cargo update -p {package}` to a version that is not yanked"),
            (_, Some(fixed)) => format!("upgrade {package} to {fixed}"),
            ("unmaintained", None) => {
                format!("replace {package} with a maintained alternative (see the advisory)")
            }
            (_, None) => format!("read the advisory and decide whether to replace {package}"),
        };
        Finding::fail(
            kind.check(),
            Severity::Low,
            format!("{what} [{LOCKFILE}]"),
            fix,
        )
    }
}

/// The CVSS 3.0/3.1 base score of a vector string (`CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H`
/// is 7.5), by the formulas of the CVSS 3.1 specification (section 7.1). None when the vector
/// is not CVSS 3 or a base metric is missing, repeated or unknown; temporal and environmental
/// metrics are ignored.
fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.trim().split('/');
    let version = parts.next()?;
    if version != "CVSS:3.0" && version != "CVSS:3.1" {
        return None;
    }
    let mut metrics: BTreeMap<&str, &str> = BTreeMap::new();
    for part in parts {
        let (name, value) = part.split_once(':')?;
        if metrics.insert(name, value).is_some() {
            return None;
        }
    }
    let metric = |name: &str| metrics.get(name).copied();
    let changed = match metric("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let attack_vector = match metric("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let attack_complexity = match metric("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let privileges = match (metric("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let interaction = match metric("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let impact_of = |name: &str| match metric(name)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let (c, i, a): (f64, f64, f64) = (impact_of("C")?, impact_of("I")?, impact_of("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * attack_vector * attack_complexity * privileges * interaction;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let sum = if changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Some(round_up(sum.min(10.0)))
}

/// CVSS 3.1's Roundup: the smallest number with one decimal equal to or above `value`, robust
/// to floating point error (specification, appendix A).
fn round_up(value: f64) -> f64 {
    // The values are between 0 and 10: the conversions are exact.
    let scaled = (value * 100_000.0).round() as i64;
    if scaled % 10_000 == 0 {
        scaled as f64 / 100_000.0
    } else {
        ((scaled / 10_000) as f64 + 1.0) / 10.0
    }
}

/// `npm audit --json`, npm 7 or later.
mod npm_audit {
    use super::*;

    /// Read first, to tell an error report or the old format from the report itself.
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "auditReportVersion")]
        version: Option<serde_json::Number>,
        error: Option<NpmError>,
        /// npm's message when the registry refused the audit (e.g. `405 Method Not Allowed -
        /// POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk`), beside an
        /// `error` whose parts are empty.
        message: Option<String>,
        advisories: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    struct NpmError {
        code: Option<String>,
        summary: Option<String>,
        detail: Option<String>,
    }

    #[derive(Deserialize)]
    struct Report {
        vulnerabilities: BTreeMap<String, Entry>,
        metadata: Option<Metadata>,
    }

    #[derive(Deserialize)]
    struct Entry {
        name: Option<String>,
        severity: Option<String>,
        #[serde(default)]
        via: Vec<Via>,
        range: Option<String>,
        #[serde(default)]
        nodes: Vec<String>,
        #[serde(rename = "fixAvailable")]
        fix_available: Option<FixAvailable>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Via {
        /// Vulnerable through this other package of the report.
        Package(String),
        /// An advisory about this package.
        Advisory(ViaAdvisory),
    }

    #[derive(Deserialize)]
    struct ViaAdvisory {
        source: Option<serde_json::Number>,
        title: Option<String>,
        url: Option<String>,
        severity: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FixAvailable {
        Known(bool),
        Upgrade {
            name: String,
            version: String,
            #[serde(rename = "isSemVerMajor", default)]
            semver_major: bool,
        },
    }

    #[derive(Deserialize)]
    struct Metadata {
        vulnerabilities: Option<Total>,
        dependencies: Option<Total>,
    }

    #[derive(Deserialize)]
    struct Total {
        total: Option<serde_json::Number>,
    }

    /// The advisory id: the GHSA id at the end of the url, or npm's source number.
    fn advisory_id(advisory: &ViaAdvisory) -> Option<String> {
        let from_url = advisory
            .url
            .as_deref()
            .and_then(|url| url.trim_end_matches('/').rsplit('/').next())
            .filter(|last| last.starts_with("GHSA-"))
            .map(str::to_owned);
        from_url
            .or_else(|| advisory.source.as_ref().map(ToString::to_string))
            .or_else(|| non_empty(advisory.url.clone()))
    }

    /// The advisories reached from `start` through the packages its `via` names (breadth
    /// first, each package once: cycles end).
    fn advisories_through(report: &BTreeMap<String, Entry>, start: &Entry) -> Vec<String> {
        let mut ids = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::new();
        for via in &start.via {
            if let Via::Package(name) = via {
                queue.push_back(name);
            }
        }
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name) {
                continue;
            }
            let Some(entry) = report.get(name) else {
                continue;
            };
            for via in &entry.via {
                match via {
                    Via::Package(next) => queue.push_back(next),
                    Via::Advisory(advisory) => {
                        if let Some(id) = advisory_id(advisory) {
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                    }
                }
            }
        }
        ids
    }

    pub(super) fn parse(json: &[u8]) -> Result<Vec<Finding>, String> {
        let kind = ScannerKind::NpmAudit;
        let probe: Probe = decode(kind, json)?;
        if let Some(error) = probe.error {
            let mut message = "npm audit reported an error".to_owned();
            for part in [error.code, error.summary, error.detail, probe.message]
                .into_iter()
                .flatten()
                .filter(|part| !part.trim().is_empty())
            {
                let _ = write!(message, ": {}", short(&part, MAX_TITLE));
            }
            return Err(message);
        }
        match probe.version.as_ref().map(|v| v.as_u64()) {
            None if probe.advisories.is_some() => {
                return Err(
                    "the report of npm 6 or older (`advisories`, no `auditReportVersion`) is not \
                     understood: run `npm audit --json` with npm 7 or later"
                        .to_owned(),
                )
            }
            None => {
                return Err(format!(
                    "not the JSON report of {}: no `auditReportVersion`",
                    kind.json_usage()
                ))
            }
            Some(Some(version)) if version >= 2 => {}
            Some(_) => {
                return Err(format!(
                    "npm audit report version {} is not understood (expected 2: npm 7 or later)",
                    probe.version.map(|v| v.to_string()).unwrap_or_default()
                ))
            }
        }
        let report: Report = decode(kind, json)?;
        let claimed = report
            .metadata
            .as_ref()
            .and_then(|m| m.vulnerabilities.as_ref())
            .and_then(|v| v.total.as_ref())
            .map(|total| total.as_f64().unwrap_or(0.0));
        if report.vulnerabilities.is_empty() && claimed.is_some_and(|total| total > 0.0) {
            return Err(
                "npm audit counts vulnerabilities (`metadata.vulnerabilities.total`) but lists none"
                    .to_owned(),
            );
        }

        let mut findings = Vec::new();
        for (key, entry) in &report.vulnerabilities {
            let package = entry
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| key.clone());
            let installed = entry.range.clone().unwrap_or_default();
            let target = (!entry.nodes.is_empty()).then(|| entry.nodes.join(", "));
            let (fixed, fix) = match &entry.fix_available {
                Some(FixAvailable::Upgrade { name, version, semver_major }) => {
                    let fixed = (*name == package).then(|| version.clone());
                    let mut fix = format!("upgrade {name} to {version}");
                    if *name != package {
                        let _ = write!(fix, " (it brings a fixed {package})");
                    }
                    if *semver_major {
                        fix.push_str(": a semver-major change (`npm audit fix --force`), test it");
                    }
                    (fixed, fix)
                }
                Some(FixAvailable::Known(true)) => (
                    None,
                    format!("run `npm audit fix`: a fixed {package} is within the allowed version ranges"),
                ),
                Some(FixAvailable::Known(false)) | None => (None, no_fix_advice(&package, None)),
            };
            let entry_severity = entry.severity.as_deref().unwrap_or("unknown");
            let mut direct = 0;
            for via in &entry.via {
                let Via::Advisory(advisory) = via else {
                    continue;
                };
                direct += 1;
                let id =
                    advisory_id(advisory).unwrap_or_else(|| format!("npm advisory for {package}"));
                let severity =
                    Severity::parse_lenient(advisory.severity.as_deref().unwrap_or(entry_severity));
                let vulnerability = Vulnerability {
                    id,
                    package: package.clone(),
                    installed: installed.clone(),
                    fixed: fixed.clone(),
                    target: target.clone(),
                };
                findings.push(vulnerability_finding(
                    kind,
                    severity,
                    vulnerability,
                    advisory.title.as_deref(),
                    fix.clone(),
                ));
            }
            if direct == 0 {
                let through: Vec<&str> = entry
                    .via
                    .iter()
                    .filter_map(|via| match via {
                        Via::Package(name) => Some(name.as_str()),
                        Via::Advisory(_) => None,
                    })
                    .collect();
                let ids = advisories_through(&report.vulnerabilities, entry);
                let id = ids
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("npm advisory via {}", through.join(", ")));
                let mut title = format!("vulnerable through {}", through.join(", "));
                if !ids.is_empty() {
                    let _ = write!(title, " ({})", ids.join(", "));
                }
                let vulnerability = Vulnerability {
                    id,
                    package: package.clone(),
                    installed: installed.clone(),
                    fixed,
                    target,
                };
                let severity = Severity::parse_lenient(entry_severity);
                findings.push(vulnerability_finding(
                    kind,
                    severity,
                    vulnerability,
                    Some(&title),
                    fix,
                ));
            }
        }
        if findings.is_empty() {
            let dependencies = report
                .metadata
                .and_then(|m| m.dependencies)
                .and_then(|d| d.total)
                .and_then(|n| n.as_u64());
            let what = match dependencies {
                Some(n) => format!(
                    "npm-audit: no vulnerability in {}",
                    count_of(n, "dependency", "dependencies")
                ),
                None => "npm-audit: no vulnerability found".to_owned(),
            };
            findings.push(Finding::pass(kind.check(), what));
        }
        Ok(findings)
    }
}

/// Runs one configured scanner command line (split with the `shell_words` crate; never through
/// a shell), with `timeout`, stdin null, stdout captured up to [`MAX_SCANNER_OUTPUT`] bytes
/// (read incrementally; if more arrives the scanner is killed and that is reported) and the
/// last ~2 KiB of stderr kept for messages. Returns findings, never an error:
/// - a command line that does not split or is empty: a medium failure of `scanner.config`;
/// - a program that is not installed: a high failure of `scanner.<name>` saying how to install
///   it (also `cargo audit` when cargo says it has no `audit` command);
/// - a timeout: a high failure (the scanner is killed, and waited for);
/// - output that parses ([`parse_output`]): its findings, whatever the exit code (`npm audit`,
///   `grype --fail-on` and `cargo audit` exit non-zero when they find vulnerabilities);
/// - output that does not parse: a high failure, with the exit code and the end of stderr when
///   the exit code is not 0, with the parse error when it is;
/// - a program of no known kind ([`ScannerKind::Other`]): an unknown finding when it exits 0
///   (its output cannot be interpreted), a high failure otherwise.
///
/// The messages name the program, never its arguments (they may hold credentials). The
/// scanner runs in a process group of its own, and the whole group is killed on a timeout or
/// too much output (`cargo audit` is `cargo` running `cargo-audit`).
pub async fn run_scanner(command_line: &str, timeout: Duration) -> Vec<Finding> {
    run_scanner_capped(command_line, timeout, MAX_SCANNER_OUTPUT).await
}

/// What became of a scanner's stdout.
enum Captured {
    /// All of it (at most the cap).
    Complete(Vec<u8>),
    /// More than the cap: reading stopped.
    TooLarge,
    /// Reading failed.
    Failed(io::Error),
}

/// [`run_scanner`] with the cap on stdout as a parameter (for tests).
async fn run_scanner_capped(command_line: &str, timeout: Duration, cap: usize) -> Vec<Finding> {
    let words = match shell_words::split(command_line) {
        Ok(words) if !words.is_empty() => words,
        Ok(_) => return vec![config_failure("a scanner command line is empty".to_owned())],
        Err(error) => {
            let program = command_line.split_whitespace().next().unwrap_or_default();
            return vec![config_failure(format!(
                "the scanner command line starting with {program:?} cannot be split into words: \
                 {error}"
            ))];
        }
    };
    let kind = ScannerKind::of(&words);
    let check = kind.check();
    let (program_path, args) = match words.split_first() {
        Some(split) => split,
        None => return vec![config_failure("a scanner command line is empty".to_owned())],
    };
    let program = program_name(program_path).to_owned();
    let label = match kind {
        ScannerKind::Other => program.clone(),
        _ => kind.name().to_owned(),
    };

    let mut command = Command::new(program_path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return vec![not_installed(kind, &check, &program)];
        }
        Err(error) => {
            return vec![Finding::fail(
                check,
                Severity::High,
                format!("the configured scanner `{program}` could not be started: {error}"),
                "check that the program is executable by the user running security-scan",
            )];
        }
    };
    // The scanner leads a process group of its own: its pid is the group's id.
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let run = async {
        let capture = async {
            let captured = read_capped(stdout, cap).await;
            if matches!(captured, Captured::TooLarge) {
                kill_group(group);
            }
            captured
        };
        let (captured, stderr_tail) = tokio::join!(capture, read_tail(stderr, STDERR_TAIL));
        let status = child.wait().await;
        (captured, stderr_tail, status)
    };
    let outcome = tokio::time::timeout(timeout, run).await;
    let Ok((captured, stderr_tail, status)) = outcome else {
        kill_group(group);
        let _ = child.start_kill();
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        return vec![Finding::fail(
            check,
            Severity::High,
            format!(
                "scanner {label} timed out after {} and was killed",
                humantime::format_duration(timeout)
            ),
            "find out why it is slow (running it by hand as the same user; a first run downloads \
             the vulnerability database), or allow it more time",
        )];
    };
    let stderr_text = tail_text(&stderr_tail);

    let stdout = match captured {
        Captured::Complete(bytes) => bytes,
        Captured::TooLarge => {
            return vec![Finding::fail(
                check,
                Severity::High,
                format!(
                    "scanner {label} wrote more than {cap} bytes of output; it was stopped and \
                     killed, and its output was not read"
                ),
                "narrow what it scans (one image or lock file per command line) or check that \
                 the command line is the intended one",
            )];
        }
        Captured::Failed(error) => {
            return vec![Finding::fail(
                check,
                Severity::High,
                format!("the output of scanner {label} could not be read: {error}"),
                "run the command by hand as the same user to see what happens",
            )];
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            return vec![Finding::fail(
                check,
                Severity::High,
                format!("could not wait for scanner {label} to finish: {error}"),
                "run the command by hand as the same user to see what happens",
            )];
        }
    };

    if kind == ScannerKind::Other {
        return if status.success() {
            vec![Finding::unknown(
                check,
                format!(
                    "scanner {label} ran (exit 0), but its output cannot be interpreted: only {} \
                     is understood",
                    ScannerKind::Other.json_usage()
                ),
            )]
        } else {
            vec![scanner_failed(&check, &label, status, &stderr_text, None)]
        };
    }
    match parse_output(kind, &stdout) {
        Ok(findings) => findings,
        Err(parse_error) if status.success() => vec![Finding::fail(
            check,
            Severity::High,
            format!("scanner {label} (exit 0) wrote output that could not be read: {parse_error}"),
            format!(
                "make the command line ask for JSON: {}, with nothing else on stdout",
                kind.json_usage()
            ),
        )],
        Err(_) if kind == ScannerKind::CargoAudit && stderr_text.contains("no such command") => {
            vec![not_installed(kind, &check, "cargo-audit")]
        }
        Err(parse_error) => {
            let unparsed = stdout
                .iter()
                .any(|b| !b.is_ascii_whitespace())
                .then_some(parse_error);
            vec![scanner_failed(
                &check,
                &label,
                status,
                &stderr_text,
                unparsed,
            )]
        }
    }
}

/// A scanner command line that cannot be run.
fn config_failure(what: String) -> Finding {
    Finding::fail(
        "scanner.config",
        Severity::Medium,
        what,
        "correct the command line in [security] scanners (one command per entry, words split \
         like a POSIX shell does: quote words with spaces)",
    )
}

/// The configured scanner is not installed.
fn not_installed(kind: ScannerKind, check: &str, program: &str) -> Finding {
    Finding::fail(
        check,
        Severity::High,
        format!("the configured scanner `{program}` is not installed (not found)"),
        kind.install_advice(),
    )
}

/// A scanner that exited non-zero without output to read.
fn scanner_failed(
    check: &str,
    label: &str,
    status: ExitStatus,
    stderr_text: &str,
    parse_error: Option<String>,
) -> Finding {
    let stderr_text = if stderr_text.is_empty() {
        "no error output"
    } else {
        stderr_text
    };
    let mut what = format!(
        "scanner {label} failed ({}): {stderr_text}",
        describe_status(status)
    );
    if let Some(parse_error) = parse_error {
        let _ = write!(what, " (its output could not be read: {parse_error})");
    }
    Finding::fail(
        check,
        Severity::High,
        what,
        "run the command by hand as the same user to see why it fails (is its vulnerability \
         database reachable and up to date? is the image or project there?)",
    )
}

/// `exit 3`, `killed by signal 9`.
fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Kills the scanner's process group (ignoring a group that is already gone).
fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Reads `reader` to its end, or until more than `cap` bytes have come.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> Captured {
    let Some(reader) = reader else {
        return Captured::Complete(Vec::new());
    };
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    match reader.take(limit).read_to_end(&mut bytes).await {
        Ok(_) if bytes.len() > cap => Captured::TooLarge,
        Ok(_) => Captured::Complete(bytes),
        Err(error) => Captured::Failed(error),
    }
}

/// Reads `reader` to its end, keeping the last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>, keep: usize) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut tail = Vec::new();
    let mut cut = false;
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if tail.len() > 2 * keep {
                    tail.drain(..tail.len() - keep);
                    cut = true;
                }
            }
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
        cut = true;
    }
    (tail, cut)
}

/// The kept end of stderr as text: trimmed, `…` in front when its beginning was cut.
fn tail_text((tail, cut): &(Vec<u8>, bool)) -> String {
    let text = String::from_utf8_lossy(tail);
    // A cut may split a character: drop what is left of it.
    let text = text.trim_start_matches('\u{fffd}').trim();
    if *cut && !text.is_empty() {
        format!("…{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::*;
    use crate::security::CheckState;

    const TRIVY: &[u8] = include_bytes!("../../tests/fixtures/scanners/trivy.json");
    const TRIVY_CLEAN: &[u8] = include_bytes!("../../tests/fixtures/scanners/trivy-clean.json");
    const GRYPE: &[u8] = include_bytes!("../../tests/fixtures/scanners/grype.json");
    const GRYPE_CLEAN: &[u8] = include_bytes!("../../tests/fixtures/scanners/grype-clean.json");
    const CARGO_AUDIT: &[u8] = include_bytes!("../../tests/fixtures/scanners/cargo-audit.json");
    const CARGO_AUDIT_CLEAN: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/cargo-audit-clean.json");
    const NPM_AUDIT: &[u8] = include_bytes!("../../tests/fixtures/scanners/npm-audit.json");
    const NPM_AUDIT_CLEAN: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/npm-audit-clean.json");

    const KINDS: [ScannerKind; 4] = [
        ScannerKind::Trivy,
        ScannerKind::Grype,
        ScannerKind::CargoAudit,
        ScannerKind::NpmAudit,
    ];

    /// Every sample with its kind.
    fn samples() -> [(ScannerKind, &'static str, &'static [u8]); 8] {
        [
            (ScannerKind::Trivy, "trivy.json", TRIVY),
            (ScannerKind::Trivy, "trivy-clean.json", TRIVY_CLEAN),
            (ScannerKind::Grype, "grype.json", GRYPE),
            (ScannerKind::Grype, "grype-clean.json", GRYPE_CLEAN),
            (ScannerKind::CargoAudit, "cargo-audit.json", CARGO_AUDIT),
            (
                ScannerKind::CargoAudit,
                "cargo-audit-clean.json",
                CARGO_AUDIT_CLEAN,
            ),
            (ScannerKind::NpmAudit, "npm-audit.json", NPM_AUDIT),
            (
                ScannerKind::NpmAudit,
                "npm-audit-clean.json",
                NPM_AUDIT_CLEAN,
            ),
        ]
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// (id, package, installed, fixed, severity) of each finding, all of them failed
    /// vulnerability findings of `check`.
    fn summary(
        findings: &[Finding],
        check: &str,
    ) -> Vec<(String, String, String, Option<String>, Severity)> {
        findings
            .iter()
            .map(|f| {
                assert_eq!(f.check, check, "{f:?}");
                assert_eq!(f.state, CheckState::Fail, "{f:?}");
                let v = f.vulnerability.as_ref().expect("a vulnerability");
                assert!(f.what.contains(&v.id), "{f:?}");
                assert!(f.what.contains(&v.package), "{f:?}");
                assert!(f.what.contains(&v.installed), "{f:?}");
                if let Some(target) = &v.target {
                    assert!(f.what.contains(target.as_str()), "{f:?}");
                }
                let fix = f.fix.as_deref().expect("a fix");
                match &v.fixed {
                    Some(fixed) => assert!(fix.contains(fixed.as_str()), "{f:?}"),
                    None => assert!(
                        fix.starts_with("no fixed version yet")
                            || fix.contains("upgrade")
                            || fix.contains("npm audit fix"),
                        "{f:?}"
                    ),
                }
                (
                    v.id.clone(),
                    v.package.clone(),
                    v.installed.clone(),
                    v.fixed.clone(),
                    f.severity,
                )
            })
            .collect()
    }

    fn row(
        id: &str,
        package: &str,
        installed: &str,
        fixed: Option<&str>,
        severity: Severity,
    ) -> (String, String, String, Option<String>, Severity) {
        (
            id.to_owned(),
            package.to_owned(),
            installed.to_owned(),
            fixed.map(str::to_owned),
            severity,
        )
    }

    fn single_pass(findings: &[Finding], check: &str) -> String {
        assert_eq!(findings.len(), 1, "{findings:?}");
        let finding = &findings[0];
        assert_eq!(finding.check, check);
        assert_eq!(finding.state, CheckState::Pass);
        assert_eq!(finding.severity, Severity::Info);
        assert!(finding.vulnerability.is_none());
        finding.what.clone()
    }

    // ---- ScannerKind ----

    #[test]
    fn kind_comes_from_the_program_file_name() {
        let cases = [
            ("trivy image alpine:3.20 --format json", ScannerKind::Trivy),
            (
                "/usr/local/bin/trivy fs --format json .",
                ScannerKind::Trivy,
            ),
            ("grype alpine:3.20 -o json", ScannerKind::Grype),
            ("/opt/anchore/grype dir:/srv -o json", ScannerKind::Grype),
            ("cargo audit --json", ScannerKind::CargoAudit),
            (
                "/home/b/.cargo/bin/cargo audit --json",
                ScannerKind::CargoAudit,
            ),
            ("cargo +stable audit --json", ScannerKind::CargoAudit),
            ("cargo-audit audit --json", ScannerKind::CargoAudit),
            ("cargo build", ScannerKind::Other),
            ("cargo", ScannerKind::Other),
            ("npm audit --json", ScannerKind::NpmAudit),
            (
                "/usr/bin/npm audit --json --omit=dev",
                ScannerKind::NpmAudit,
            ),
            ("npm install", ScannerKind::Other),
            ("npm", ScannerKind::Other),
            ("sh -c trivy", ScannerKind::Other),
            ("trivy-wrapper image x", ScannerKind::Other),
            ("snyk test --json", ScannerKind::Other),
        ];
        for (line, kind) in cases {
            assert_eq!(ScannerKind::of(&words(line)), kind, "{line}");
        }
        assert_eq!(ScannerKind::of(&[]), ScannerKind::Other);
        assert_eq!(ScannerKind::of(&[String::new()]), ScannerKind::Other);
        let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["trivy", "grype", "cargo-audit", "npm-audit"]);
        assert_eq!(ScannerKind::Other.name(), "other");
    }

    // ---- the samples ----

    #[test]
    fn trivy_sample_gives_one_finding_per_vulnerability() {
        let findings = parse_output(ScannerKind::Trivy, TRIVY).unwrap();
        assert_eq!(
            summary(&findings, "scanner.trivy"),
            [
                row(
                    "CVE-2024-2961",
                    "libc6",
                    "2.36-9+deb12u4",
                    Some("2.36-9+deb12u7"),
                    Severity::High
                ),
                row(
                    "CVE-2023-45853",
                    "zlib1g",
                    "1:1.2.13.dfsg-1",
                    None,
                    Severity::Critical
                ),
                row(
                    "CVE-2023-50495",
                    "libtinfo6",
                    "6.4-4",
                    None,
                    Severity::Medium
                ),
                row(
                    "CVE-2023-26964",
                    "h2",
                    "0.3.15",
                    Some("0.3.17"),
                    Severity::High
                ),
            ]
        );
        let os = "registry.example.com/backup/backup-tool:1.4.2 (debian 12.5)";
        let targets: Vec<Option<&str>> = findings
            .iter()
            .map(|f| f.vulnerability.as_ref().unwrap().target.as_deref())
            .collect();
        assert_eq!(
            targets,
            [
                Some(os),
                Some(os),
                Some(os),
                Some("usr/local/bin/backup-tool")
            ]
        );
        assert_eq!(
            findings[0].what,
            format!(
                "CVE-2024-2961 in libc6 2.36-9+deb12u4 ({os}): glibc: Out of bounds write in \
                 iconv may lead to remote code execution"
            )
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("upgrade libc6 to 2.36-9+deb12u7")
        );
        let wont_fix = findings[1].fix.as_deref().unwrap();
        assert!(
            wont_fix.starts_with("no fixed version yet (the vendor will not fix it)"),
            "{wont_fix}"
        );
        assert!(wont_fix.contains("zlib1g"), "{wont_fix}");
        assert!(findings[2]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet:"));
    }

    #[test]
    fn trivy_clean_sample_is_a_pass_counting_targets_and_packages() {
        let findings = parse_output(ScannerKind::Trivy, TRIVY_CLEAN).unwrap();
        let what = single_pass(&findings, "scanner.trivy");
        assert_eq!(
            what,
            "trivy: no vulnerability in alpine:3.20.3 (1 target, 14 packages scanned)"
        );
        // Without package lists, only the targets.
        let findings = parse_output(
            ScannerKind::Trivy,
            br#"{"SchemaVersion":2,"ArtifactName":"x:1","Results":[{"Target":"a"},{"Target":"b","Vulnerabilities":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.trivy"),
            "trivy: no vulnerability in x:1 (2 targets scanned)"
        );
        // Nothing to scan at all (trivy leaves `Results` out).
        let findings = parse_output(
            ScannerKind::Trivy,
            br#"{"SchemaVersion":2,"ArtifactName":"x:1"}"#,
        )
        .unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.trivy"),
            "trivy: no vulnerability in x:1 (0 targets scanned)"
        );
    }

    #[test]
    fn trivy_secrets_misconfigurations_and_the_old_array_format() {
        let json = br#"{"SchemaVersion":2,"ArtifactName":"app:1","Results":[
            {"Target":"/app/.env","Class":"secret","Secrets":[{"RuleID":"aws-secret-access-key",
              "Category":"AWS","Severity":"CRITICAL","Title":"AWS Secret Access Key","StartLine":3,
              "EndLine":3,"Match":"AWS_SECRET_ACCESS_KEY=****************"}]},
            {"Target":"Dockerfile","Class":"config","Type":"dockerfile","Misconfigurations":[
              {"Type":"Dockerfile Security Check","ID":"DS002","AVDID":"AVD-DS-0002",
               "Title":"Image user should not be 'root'","Message":"Specify at least 1 USER command",
               "Resolution":"Add 'USER <non root user name>' line to the Dockerfile",
               "Severity":"HIGH","Status":"FAIL"},
              {"ID":"DS001","Title":"':latest' tag used","Severity":"MEDIUM","Status":"PASS"}]}]}"#;
        let findings = parse_output(ScannerKind::Trivy, json).unwrap();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Critical);
        assert_eq!(
            findings[0].what,
            "secret aws-secret-access-key (AWS Secret Access Key) in /app/.env line 3"
        );
        assert!(!findings[0].what.contains("****"));
        assert_eq!(findings[1].severity, Severity::High);
        assert!(
            findings[1]
                .what
                .starts_with("DS002 in Dockerfile: Image user"),
            "{}",
            findings[1].what
        );
        assert_eq!(
            findings[1].fix.as_deref(),
            Some("Add 'USER <non root user name>' line to the Dockerfile")
        );
        assert!(findings
            .iter()
            .all(|f| f.vulnerability.is_none() && f.state == CheckState::Fail));

        // trivy before 0.20: a bare array of results.
        let old = br#"[{"Target":"alpine:3.10 (alpine 3.10.2)","Type":"alpine","Vulnerabilities":[
            {"VulnerabilityID":"CVE-2019-14697","PkgName":"musl","InstalledVersion":"1.1.22-r2",
             "FixedVersion":"1.1.22-r3","Severity":"HIGH"}]}]"#;
        let findings = parse_output(ScannerKind::Trivy, old).unwrap();
        assert_eq!(
            summary(&findings, "scanner.trivy"),
            [row(
                "CVE-2019-14697",
                "musl",
                "1.1.22-r2",
                Some("1.1.22-r3"),
                Severity::High
            )]
        );
    }

    #[test]
    fn grype_sample_gives_one_finding_per_match() {
        let findings = parse_output(ScannerKind::Grype, GRYPE).unwrap();
        assert_eq!(
            summary(&findings, "scanner.grype"),
            [
                row(
                    "CVE-2024-5535",
                    "libssl3",
                    "3.1.4-r5",
                    Some("3.1.6-r0"),
                    Severity::Critical
                ),
                row(
                    "CVE-2024-4603",
                    "libcrypto3",
                    "3.1.4-r5",
                    Some("3.1.5-r0"),
                    Severity::Medium
                ),
                row(
                    "CVE-2024-24790",
                    "stdlib",
                    "go1.18.2",
                    Some("1.21.11 or 1.22.4"),
                    Severity::Critical
                ),
                row(
                    "CVE-2023-42363",
                    "busybox",
                    "1.36.1-r15",
                    None,
                    Severity::Medium
                ),
                // grype's `Unknown` severity.
                row(
                    "CVE-2024-2511",
                    "libcrypto3",
                    "3.1.4-r5",
                    Some("3.1.4-r6"),
                    Severity::Low
                ),
            ]
        );
        for finding in &findings {
            let target = finding.vulnerability.as_ref().unwrap().target.as_deref();
            assert_eq!(target, Some("postgres:16.2-alpine3.19"));
        }
        assert_eq!(
            findings[2].fix.as_deref(),
            Some("upgrade stdlib to 1.21.11 or 1.22.4")
        );
        assert!(
            findings[2].what.contains(": The various Is methods"),
            "{}",
            findings[2].what
        );
        assert!(findings[3]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet:"));
    }

    #[test]
    fn grype_clean_sample_is_a_pass_naming_the_target() {
        let findings = parse_output(ScannerKind::Grype, GRYPE_CLEAN).unwrap();
        let what = single_pass(&findings, "scanner.grype");
        assert_eq!(what, "grype: no vulnerability found in /srv/backup-tool");
        let findings = parse_output(ScannerKind::Grype, br#"{"matches":[]}"#).unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.grype"),
            "grype: no vulnerability found in the scanned source"
        );
    }

    #[test]
    fn cargo_audit_sample_rates_by_cvss_and_keeps_warnings_low() {
        let findings = parse_output(ScannerKind::CargoAudit, CARGO_AUDIT).unwrap();
        assert_eq!(findings.len(), 5, "{findings:?}");
        assert_eq!(
            summary(&findings[..3], "scanner.cargo-audit"),
            [
                // No CVSS vector: high.
                row(
                    "RUSTSEC-2024-0003",
                    "h2",
                    "0.3.22",
                    Some("^0.3.24 OR >=0.4.2"),
                    Severity::High
                ),
                // CVSS 7.5.
                row(
                    "RUSTSEC-2024-0336",
                    "rustls",
                    "0.21.10",
                    Some(">=0.23.5 OR >=0.22.4, <0.23.0 OR >=0.21.11, <0.22.0"),
                    Severity::High
                ),
                // CVSS 5.9, and no patched version.
                row("RUSTSEC-2023-0071", "rsa", "0.9.6", None, Severity::Medium),
            ]
        );
        assert_eq!(
            findings[0].what,
            "RUSTSEC-2024-0003 in h2 0.3.22 (Cargo.lock): Resource exhaustion vulnerability in h2 \
             may lead to Denial of Service (DoS)"
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("upgrade h2 to ^0.3.24 OR >=0.4.2")
        );
        assert!(findings[2]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet:"));

        let warnings = &findings[3..];
        assert!(warnings.iter().all(|f| f.state == CheckState::Fail
            && f.severity == Severity::Low
            && f.vulnerability.is_none()));
        assert_eq!(
            warnings[0].what,
            "RUSTSEC-2021-0139 (unmaintained): ansi_term 0.12.1: ansi_term is Unmaintained [Cargo.lock]"
        );
        assert!(warnings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("maintained alternative"));
        assert_eq!(
            warnings[1].what,
            "futures-util 0.3.27 is yanked [Cargo.lock]"
        );
        assert!(warnings[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("cargo update -p futures-util"));
    }

    #[test]
    fn cargo_audit_clean_sample_is_a_pass_counting_dependencies() {
        let findings = parse_output(ScannerKind::CargoAudit, CARGO_AUDIT_CLEAN).unwrap();
        let what = single_pass(&findings, "scanner.cargo-audit");
        assert_eq!(
            what,
            "cargo-audit: no vulnerability in 187 dependencies in Cargo.lock"
        );
    }

    #[test]
    fn npm_audit_sample_gives_one_finding_per_advisory() {
        let findings = parse_output(ScannerKind::NpmAudit, NPM_AUDIT).unwrap();
        assert_eq!(
            summary(&findings, "scanner.npm-audit"),
            [
                row(
                    "GHSA-xvch-5gv4-984h",
                    "minimist",
                    "<=0.2.3",
                    None,
                    Severity::Critical
                ),
                row(
                    "GHSA-vh95-rmgr-6w4m",
                    "minimist",
                    "<=0.2.3",
                    None,
                    Severity::Medium
                ),
                // Only vulnerable through minimist: its first advisory.
                row(
                    "GHSA-xvch-5gv4-984h",
                    "mkdirp",
                    "0.4.1 - 0.5.1",
                    Some("0.5.6"),
                    Severity::Critical
                ),
                row(
                    "GHSA-p8p7-x288-28g6",
                    "request",
                    "*",
                    None,
                    Severity::Medium
                ),
                row(
                    "GHSA-c2qf-rxjj-qqgw",
                    "semver",
                    "7.0.0 - 7.5.1",
                    None,
                    Severity::Medium
                ),
            ]
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("upgrade mkdirp to 0.5.6 (it brings a fixed minimist)")
        );
        assert_eq!(
            findings[2].what,
            "GHSA-xvch-5gv4-984h in mkdirp 0.4.1 - 0.5.1 (node_modules/mkdirp): vulnerable through \
             minimist (GHSA-xvch-5gv4-984h, GHSA-vh95-rmgr-6w4m)"
        );
        assert_eq!(findings[2].fix.as_deref(), Some("upgrade mkdirp to 0.5.6"));
        assert!(findings[3]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet:"));
        assert!(findings[4]
            .fix
            .as_deref()
            .unwrap()
            .contains("npm audit fix"));
        assert_eq!(
            findings[4].what,
            "GHSA-c2qf-rxjj-qqgw in semver 7.0.0 - 7.5.1 (node_modules/semver): semver vulnerable \
             to Regular Expression Denial of Service"
        );
    }

    #[test]
    fn npm_audit_clean_sample_is_a_pass_counting_dependencies() {
        let findings = parse_output(ScannerKind::NpmAudit, NPM_AUDIT_CLEAN).unwrap();
        let what = single_pass(&findings, "scanner.npm-audit");
        assert_eq!(what, "npm-audit: no vulnerability in 120 dependencies");
    }

    #[test]
    fn npm_audit_ids_fall_back_to_the_source_number_and_cycles_end() {
        let json = br#"{"auditReportVersion":2,"vulnerabilities":{
            "a":{"name":"a","severity":"high","via":[{"source":1234567,"name":"a","title":"Bad a",
                 "url":"https://npmjs.com/advisories/1234567","severity":"high","range":"<2.0.0"}],
                 "range":"<2.0.0","nodes":["node_modules/a"],
                 "fixAvailable":{"name":"a","version":"2.0.0","isSemVerMajor":true}},
            "b":{"name":"b","severity":"high","via":["c"],"range":"*","nodes":[],"fixAvailable":false},
            "c":{"name":"c","severity":"high","via":["b"],"range":"*","nodes":[],"fixAvailable":false}},
            "metadata":{"vulnerabilities":{"total":3},"dependencies":{"total":1}}}"#;
        let findings = parse_output(ScannerKind::NpmAudit, json).unwrap();
        assert_eq!(findings.len(), 3, "{findings:?}");
        let a = findings[0].vulnerability.as_ref().unwrap();
        assert_eq!(a.id, "1234567");
        assert_eq!(a.fixed.as_deref(), Some("2.0.0"));
        assert!(findings[0].fix.as_deref().unwrap().contains("semver-major"));
        // b and c only point at each other: no advisory, but no endless loop either.
        assert_eq!(
            findings[1].vulnerability.as_ref().unwrap().id,
            "npm advisory via c"
        );
        assert_eq!(
            findings[2].vulnerability.as_ref().unwrap().id,
            "npm advisory via b"
        );
        assert!(findings.iter().all(|f| f.severity == Severity::High));
    }

    #[test]
    fn cvss3_base_scores_match_the_specification() {
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Some(9.8)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", Some(7.5)),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", Some(5.9)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", Some(6.1)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", Some(10.0)),
            ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", Some(7.8)),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:N/A:N", Some(5.0)),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", Some(1.6)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", Some(0.0)),
            // Temporal metrics are ignored.
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H/E:U/RL:O",
                Some(7.5),
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                None,
            ),
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", None),
            ("CVSS:3.1/AV:N/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None),
            ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None),
            ("CVSS:3.1/garbage", None),
            ("", None),
        ];
        for (vector, score) in cases {
            assert_eq!(cvss3_base_score(vector), score, "{vector}");
        }
    }

    // ---- recorded outputs of the real scanners (see tests/fixtures/scanners/README.md) ----

    const TRIVY_DEBIAN: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/trivy-recorded-debian-buster.json");
    const TRIVY_CARGO_LOCK: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/trivy-recorded-cargo-lock-clean.json");
    const TRIVY_DOCKERFILE: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/trivy-recorded-dockerfile-misconfig.json");
    const GRYPE_CHAINGUARD: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/grype-recorded-chainguard-ruby.json");
    const GRYPE_KEYCLOAK: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/grype-recorded-keycloak.json");
    const GRYPE_BUSYBOX: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/grype-recorded-busybox-clean.json");
    const CARGO_AUDIT_2021: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/cargo-audit-recorded-2021.json");
    const CARGO_AUDIT_CVSS: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/cargo-audit-recorded-2026-cvss.json");
    const CARGO_AUDIT_RECORDED_CLEAN: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/cargo-audit-recorded-clean.json");
    const NPM_NYC_MKDIRP: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/npm-audit-recorded-nyc-mkdirp.json");
    const NPM_VERCEL: &[u8] =
        include_bytes!("../../tests/fixtures/scanners/npm-audit-recorded-vercel.json");

    /// Every recorded output with its kind.
    fn recorded() -> [(ScannerKind, &'static str, &'static [u8]); 11] {
        [
            (ScannerKind::Trivy, "trivy debian-buster", TRIVY_DEBIAN),
            (ScannerKind::Trivy, "trivy Cargo.lock", TRIVY_CARGO_LOCK),
            (ScannerKind::Trivy, "trivy Dockerfile", TRIVY_DOCKERFILE),
            (ScannerKind::Grype, "grype chainguard", GRYPE_CHAINGUARD),
            (ScannerKind::Grype, "grype keycloak", GRYPE_KEYCLOAK),
            (ScannerKind::Grype, "grype busybox", GRYPE_BUSYBOX),
            (
                ScannerKind::CargoAudit,
                "cargo audit 2021",
                CARGO_AUDIT_2021,
            ),
            (
                ScannerKind::CargoAudit,
                "cargo audit cvss",
                CARGO_AUDIT_CVSS,
            ),
            (
                ScannerKind::CargoAudit,
                "cargo audit clean",
                CARGO_AUDIT_RECORDED_CLEAN,
            ),
            (ScannerKind::NpmAudit, "npm nyc/mkdirp", NPM_NYC_MKDIRP),
            (ScannerKind::NpmAudit, "npm vercel", NPM_VERCEL),
        ]
    }

    #[test]
    fn trivy_recorded_debian_image_with_an_unfixed_vulnerability() {
        // trivy's integration golden: `FixedVersion` absent (Status "affected") for bash.
        let findings = parse_output(ScannerKind::Trivy, TRIVY_DEBIAN).unwrap();
        assert_eq!(
            summary(&findings, "scanner.trivy"),
            [
                row("CVE-2019-18276", "bash", "5.0-4", None, Severity::Low),
                row(
                    "CVE-2019-18224",
                    "libidn2-0",
                    "2.0.5-1",
                    Some("2.0.5-1+deb10u1"),
                    Severity::Critical
                ),
            ]
        );
        let target = "testdata/fixtures/images/debian-buster.tar.gz (debian 10.1)";
        for finding in &findings {
            let vulnerability = finding.vulnerability.as_ref().unwrap();
            assert_eq!(vulnerability.target.as_deref(), Some(target));
        }
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet: follow the advisory"));
        assert_eq!(
            findings[1].what,
            format!(
                "CVE-2019-18224 in libidn2-0 2.0.5-1 ({target}): libidn2: heap-based buffer \
                 overflow in idn2_to_ascii_4i in lib/lookup.c"
            )
        );
        assert_eq!(
            findings[1].fix.as_deref(),
            Some("upgrade libidn2-0 to 2.0.5-1+deb10u1")
        );
    }

    #[test]
    fn trivy_recorded_lockfile_scan_and_dockerfile_misconfiguration() {
        // `--list-all-pkgs` of a Cargo.lock without vulnerabilities: the packages are counted.
        let findings = parse_output(ScannerKind::Trivy, TRIVY_CARGO_LOCK).unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.trivy"),
            "trivy: no vulnerability in testdata/fixtures/repo/cargo (1 target, 7 packages \
             scanned)"
        );
        // A failed misconfiguration check (`MisconfSummary` beside it is skipped).
        let findings = parse_output(ScannerKind::Trivy, TRIVY_DOCKERFILE).unwrap();
        let what = only_failure(&findings, "scanner.trivy", Severity::High);
        assert_eq!(
            what,
            "DS-0002 in Dockerfile: Image user should not be 'root': Specify at least 1 USER \
             command in Dockerfile with non-root user as argument"
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("Add 'USER <non root user name>' line to the Dockerfile")
        );
        assert!(findings[0].vulnerability.is_none());
    }

    #[test]
    fn grype_recorded_image_with_unknown_fix_state_and_related_descriptions() {
        // grype 0.61.1 on cgr.dev/chainguard/ruby:latest-3.0.
        let findings = parse_output(ScannerKind::Grype, GRYPE_CHAINGUARD).unwrap();
        assert_eq!(
            summary(&findings, "scanner.grype"),
            [
                row(
                    "CVE-2023-28755",
                    "ruby-3.0",
                    "3.0.4-r1",
                    Some("3.0.6-r0"),
                    Severity::High
                ),
                // `fix`: no versions, state "unknown".
                row("CVE-2023-28755", "uri", "0.10.1", None, Severity::High),
                row(
                    "GHSA-hv5j-3h9f-99c2",
                    "uri",
                    "0.10.1",
                    Some("0.10.2"),
                    Severity::High
                ),
            ]
        );
        for finding in &findings {
            let target = finding.vulnerability.as_ref().unwrap().target.as_deref();
            assert_eq!(target, Some("cgr.dev/chainguard/ruby:latest-3.0"));
        }
        // The wolfi record has an empty description: NVD's related record gives it.
        assert!(
            findings[0].what.starts_with(
                "CVE-2023-28755 in ruby-3.0 3.0.4-r1 (cgr.dev/chainguard/ruby:latest-3.0): A \
                 ReDoS issue was discovered in the URI component"
            ),
            "{}",
            findings[0].what
        );
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("upgrade ruby-3.0 to 3.0.6-r0")
        );
        assert!(findings[1]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("no fixed version yet: follow the advisory"));
        assert!(
            findings[2]
                .what
                .ends_with(": Ruby URI component ReDoS issue"),
            "{}",
            findings[2].what
        );
    }

    #[test]
    fn grype_recorded_wont_fix_matches_and_clean_image() {
        // grype 0.66.0 on keycloak 21.0.2: Red Hat will not fix CVE-2020-12413.
        let findings = parse_output(ScannerKind::Grype, GRYPE_KEYCLOAK).unwrap();
        let packages = [
            "nspr",
            "nss",
            "nss-softokn",
            "nss-softokn-freebl",
            "nss-sysinit",
            "nss-util",
        ];
        let expected: Vec<_> = packages
            .iter()
            .map(|package| {
                let installed = if *package == "nspr" {
                    "4.34.0-17.el9_1"
                } else {
                    "3.79.0-17.el9_1"
                };
                row("CVE-2020-12413", package, installed, None, Severity::Low)
            })
            .collect();
        assert_eq!(summary(&findings, "scanner.grype"), expected);
        let image = "docker.io/keycloak/keycloak:21.0.2@sha256:\
                     347a0d748d05a050dc64b92de2246d2240db6eb38afbc17c3c08d0acb0db1b50";
        for finding in &findings {
            let fix = finding.fix.as_deref().unwrap();
            assert!(
                fix.starts_with("no fixed version yet (the vendor will not fix it)"),
                "{fix}"
            );
            let target = finding.vulnerability.as_ref().unwrap().target.as_deref();
            assert_eq!(target, Some(image));
            assert!(
                finding.what.contains("): A flaw was found in Mozilla nss."),
                "{}",
                finding.what
            );
        }

        // An image without a match (its base64 manifest and config are skipped).
        let findings = parse_output(ScannerKind::Grype, GRYPE_BUSYBOX).unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.grype"),
            "grype: no vulnerability found in busybox:latest"
        );
    }

    #[test]
    fn cargo_audit_recorded_2021_report_without_cvss_and_with_warnings() {
        // cargo audit of May 2021: every `cvss` is null (high), several patched ranges.
        let findings = parse_output(ScannerKind::CargoAudit, CARGO_AUDIT_2021).unwrap();
        assert_eq!(findings.len(), 13, "{findings:?}");
        assert_eq!(
            summary(&findings[..4], "scanner.cargo-audit"),
            [
                row(
                    "RUSTSEC-2020-0091",
                    "arc-swap",
                    "0.4.7",
                    Some(">=1.1.0 OR >=0.4.8"),
                    Severity::High
                ),
                row(
                    "RUSTSEC-2021-0020",
                    "hyper",
                    "0.13.9",
                    Some(">=0.14.3 OR >=0.13.10, <0.14.0 OR >=0.12.36, <0.13.0"),
                    Severity::High
                ),
                row(
                    "RUSTSEC-2021-0003",
                    "smallvec",
                    "0.6.13",
                    Some(">=0.6.14, <1.0.0 OR >=1.6.1"),
                    Severity::High
                ),
                row(
                    "RUSTSEC-2021-0003",
                    "smallvec",
                    "1.5.0",
                    Some(">=0.6.14, <1.0.0 OR >=1.6.1"),
                    Severity::High
                ),
            ]
        );
        assert_eq!(
            findings[1].what,
            "RUSTSEC-2021-0020 in hyper 0.13.9 (Cargo.lock): Multiple Transfer-Encoding headers \
             misinterprets request payload"
        );
        // Then the warnings, as low failures: three unmaintained crates, six yanked versions.
        let warnings: Vec<&str> = findings[4..].iter().map(|f| f.what.as_str()).collect();
        assert_eq!(
            warnings,
            [
                "RUSTSEC-2021-0064 (unmaintained): cpuid-bool 0.1.2: `cpuid-bool` has been \
                 renamed to `cpufeatures` [Cargo.lock]",
                "RUSTSEC-2020-0016 (unmaintained): net2 0.2.35: `net2` crate has been deprecated; \
                 use `socket2` instead [Cargo.lock]",
                "RUSTSEC-2020-0056 (unmaintained): stdweb 0.4.20: stdweb is unmaintained \
                 [Cargo.lock]",
                "arc-swap 0.4.7 is yanked [Cargo.lock]",
                "bytecount 0.6.1 is yanked [Cargo.lock]",
                "miow 0.2.1 is yanked [Cargo.lock]",
                "net2 0.2.35 is yanked [Cargo.lock]",
                "pin-project-lite 0.1.11 is yanked [Cargo.lock]",
                "pin-project-lite 0.2.0 is yanked [Cargo.lock]",
            ]
        );
        assert!(findings[4..].iter().all(|f| f.state == CheckState::Fail
            && f.severity == Severity::Low
            && f.vulnerability.is_none()));
        assert_eq!(
            findings[12].fix.as_deref(),
            Some("`cargo update -p pin-project-lite` to a version that is not yanked")
        );

        let findings = parse_output(ScannerKind::CargoAudit, CARGO_AUDIT_RECORDED_CLEAN).unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.cargo-audit"),
            "cargo-audit: no vulnerability in 1 dependency in Cargo.lock"
        );
    }

    #[test]
    fn cargo_audit_recorded_2026_report_rates_by_cvss_vector() {
        // CVSS 3.1 vectors are scored; null and CVSS 4.0 ones count as high.
        let findings = parse_output(ScannerKind::CargoAudit, CARGO_AUDIT_CVSS).unwrap();
        let aws = |id: &str, fixed: &str, severity| {
            row(id, "aws-lc-sys", "0.36.0", Some(fixed), severity)
        };
        let webpki = |id: &str, fixed: &str| {
            row(id, "rustls-webpki", "0.103.9", Some(fixed), Severity::High)
        };
        assert_eq!(
            summary(&findings, "scanner.cargo-audit"),
            [
                // AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N: 7.5.
                aws("RUSTSEC-2026-0047", ">=0.38.0", Severity::High),
                aws("RUSTSEC-2026-0046", ">=0.38.0", Severity::High),
                // cvss null.
                aws("RUSTSEC-2026-0044", ">=0.39.0", Severity::High),
                // AC:H, I:H only: 5.9.
                aws("RUSTSEC-2026-0045", ">=0.38.0", Severity::Medium),
                // AC:H, C:H and I:H: 7.4.
                aws("RUSTSEC-2026-0048", ">=0.39.0", Severity::High),
                // CVSS:4.0/…: not scored.
                row(
                    "RUSTSEC-2026-0141",
                    "lettre",
                    "0.11.19",
                    Some(">=0.11.22"),
                    Severity::High
                ),
                webpki("RUSTSEC-2026-0049", ">=0.103.10"),
                webpki(
                    "RUSTSEC-2026-0104",
                    ">=0.103.13, <0.104.0-alpha.1 OR >=0.104.0-alpha.7"
                ),
                webpki(
                    "RUSTSEC-2026-0099",
                    ">=0.103.12, <0.104.0-alpha.1 OR >=0.104.0-alpha.6"
                ),
                webpki(
                    "RUSTSEC-2026-0098",
                    ">=0.103.12, <0.104.0-alpha.1 OR >=0.104.0-alpha.6"
                ),
            ]
        );
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N", Some(7.5)),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:N", Some(5.9)),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", Some(7.4)),
            (
                "CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:N/VC:H/VI:H/VA:N/SC:L/SI:L/SA:N",
                None,
            ),
        ] {
            assert_eq!(cvss3_base_score(vector), score, "{vector}");
        }
        assert_eq!(
            findings[5].what,
            "RUSTSEC-2026-0141 in lettre 0.11.19 (Cargo.lock): TLS hostname verification \
             disabled when using Boring TLS backend"
        );
        // `warnings` is an empty object: nothing follows the vulnerabilities.
        assert_eq!(findings.len(), 10);
    }

    #[test]
    fn npm_audit_recorded_report_of_npm_7_with_npm_advisory_numbers() {
        // npm's own snapshot (arborist's AuditReport, as `npm audit --json` prints it) of a
        // tree with old nyc and mkdirp, from the registry's answer of 2020: advisory urls are
        // npmjs.com/advisories/N, so the ids are npm's source numbers.
        let findings = parse_output(ScannerKind::NpmAudit, NPM_NYC_MKDIRP).unwrap();
        let rows = summary(&findings, "scanner.npm-audit");
        let brief: Vec<(&str, &str, Severity)> = rows
            .iter()
            .map(|(id, package, _, _, severity)| (id.as_str(), package.as_str(), *severity))
            .collect();
        use Severity::{Critical, High, Low, Medium};
        assert_eq!(
            brief,
            [
                // One finding per advisory of handlebars, rated by each advisory; the package
                // also named in its `via` (optimist) adds none.
                ("1164", "handlebars", High),
                ("1300", "handlebars", Medium),
                ("1316", "handlebars", High),
                ("1324", "handlebars", High),
                ("1325", "handlebars", High),
                ("755", "handlebars", Critical),
                ("1490", "kind-of", Low),
                ("1065", "lodash", High),
                ("782", "lodash", High),
                ("1084", "mem", Low),
                ("1179", "minimist", Low),
                ("1013", "mixin-deep", High),
                // Only vulnerable through other packages: the first advisory reached.
                ("1179", "mkdirp", Low),
                ("1179", "nyc", Low),
                ("1179", "optimist", Low),
                ("1084", "os-locale", Low),
                ("1012", "set-value", High),
                ("1012", "union-value", High),
                ("1084", "yargs", Low),
            ]
        );
        // `fixAvailable: true`.
        assert_eq!(rows[0].2, "<=4.7.3");
        assert_eq!(rows[0].3, None);
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("run `npm audit fix`: a fixed handlebars is within the allowed version ranges")
        );
        // `fixAvailable` naming the package itself, or another one.
        assert_eq!(
            rows[13],
            row(
                "1179",
                "nyc",
                "6.2.0-alpha - 13.1.0",
                Some("15.1.0"),
                Severity::Low
            )
        );
        assert_eq!(
            findings[13].what,
            "1179 in nyc 6.2.0-alpha - 13.1.0 (node_modules/nyc): vulnerable through mkdirp, \
             yargs (1179, 1084)"
        );
        assert_eq!(
            findings[12].fix.as_deref(),
            Some(
                "upgrade nyc to 15.1.0 (it brings a fixed mkdirp): a semver-major change (`npm \
                 audit fix --force`), test it"
            )
        );
        assert_eq!(
            findings[12]
                .vulnerability
                .as_ref()
                .unwrap()
                .target
                .as_deref(),
            Some("node_modules/mkdirp, node_modules/nyc/node_modules/mkdirp")
        );
    }

    #[test]
    fn npm_audit_recorded_report_with_github_advisories() {
        // A report of npm 9/10 (GHSA urls, cvss objects, fixes only through `vercel`).
        let findings = parse_output(ScannerKind::NpmAudit, NPM_VERCEL).unwrap();
        assert_eq!(
            summary(&findings, "scanner.npm-audit"),
            [
                row(
                    "GHSA-gxpj-cx7g-858c",
                    "@vercel/fun",
                    "<=1.1.0",
                    None,
                    Severity::Medium
                ),
                row(
                    "GHSA-3787-6prv-h9w3",
                    "@vercel/node",
                    "2.14.0 || >=3.0.2",
                    None,
                    Severity::Low
                ),
                row(
                    "GHSA-gxpj-cx7g-858c",
                    "debug",
                    "4.0.0 - 4.3.0",
                    None,
                    Severity::Medium
                ),
                row(
                    "GHSA-c2qf-rxjj-qqgw",
                    "semver",
                    "7.0.0 - 7.5.1",
                    None,
                    Severity::Medium
                ),
                row(
                    "GHSA-3787-6prv-h9w3",
                    "undici",
                    "<=5.28.2",
                    None,
                    Severity::Low
                ),
                row(
                    "GHSA-gxpj-cx7g-858c",
                    "vercel",
                    "28.12.3 || 29.0.1 - 29.0.3 || >=32.0.2",
                    Some("32.3.0"),
                    Severity::Medium
                ),
            ]
        );
        assert_eq!(
            findings[4].what,
            "GHSA-3787-6prv-h9w3 in undici <=5.28.2 (node_modules/undici): Undici \
             proxy-authorization header not cleared on cross-origin redirect in fetch"
        );
        assert_eq!(
            findings[4].fix.as_deref(),
            Some(
                "upgrade vercel to 32.3.0 (it brings a fixed undici): a semver-major change \
                 (`npm audit fix --force`), test it"
            )
        );
        assert_eq!(
            findings[5].what,
            "GHSA-gxpj-cx7g-858c in vercel 28.12.3 || 29.0.1 - 29.0.3 || >=32.0.2 \
             (node_modules/vercel): vulnerable through @vercel/fun, @vercel/node \
             (GHSA-gxpj-cx7g-858c, GHSA-c2qf-rxjj-qqgw, GHSA-3787-6prv-h9w3)"
        );
    }

    #[test]
    fn recorded_outputs_are_refused_as_other_scanners_and_never_panic_when_cut() {
        for (kind, name, sample) in recorded() {
            assert!(parse_output(kind, sample).is_ok(), "{name}");
            for other in KINDS.into_iter().filter(|k| *k != kind) {
                assert!(
                    parse_output(other, sample).is_err(),
                    "{name} read as {other:?}"
                );
            }
            // Anything short of the closing brace is cut short.
            let end = sample.iter().rposition(|b| *b == b'}').unwrap();
            for cut in (1..=end).step_by(97) {
                let error = parse_output(kind, &sample[..cut]).unwrap_err();
                assert!(!error.is_empty(), "{name} cut at {cut}");
            }
        }
    }

    // ---- what is not a report ----

    #[test]
    fn garbage_truncated_and_wrong_shapes_are_errors() {
        for kind in KINDS {
            for (input, expected) in [
                (&b""[..], "empty output"),
                (b"  \n", "empty output"),
                (b"Total: 3 (HIGH: 2, CRITICAL: 1)\n", "not JSON"),
                (b"\x00\xff\xfe garbage", "not JSON"),
                (b"{\"matches\": [", "truncated JSON"),
                (b"null", "not the JSON report"),
                (b"42", "not the JSON report"),
                (b"\"text\"", "not the JSON report"),
                (b"{}", "not the JSON report"),
            ] {
                let error = parse_output(kind, input).unwrap_err();
                assert!(error.contains(expected), "{kind:?} {input:?}: {error}");
            }
        }
        let error = parse_output(ScannerKind::Trivy, b"Total: 3 (HIGH: 2)").unwrap_err();
        assert!(
            error.contains("starts with \"Total: 3 (HIGH: 2)\""),
            "{error}"
        );
        assert!(error.contains("--format json"), "{error}");

        // Every sample is the wrong shape for every other scanner.
        for (kind, name, sample) in samples() {
            for other in KINDS.into_iter().filter(|k| *k != kind) {
                assert!(
                    parse_output(other, sample).is_err(),
                    "{name} read as {other:?}"
                );
            }
            // Cut short anywhere: an error, never a panic.
            for cut in [1, sample.len() / 3, sample.len() / 2, sample.len() - 3] {
                let error = parse_output(kind, &sample[..cut]).unwrap_err();
                assert!(!error.is_empty());
            }
            assert!(parse_output(ScannerKind::Other, sample)
                .unwrap_err()
                .contains("cannot be interpreted"));
        }

        // Fields of the wrong type.
        let error = parse_output(
            ScannerKind::Grype,
            br#"{"matches":[{"vulnerability":{"id":7},"artifact":{"name":"x"}}]}"#,
        )
        .unwrap_err();
        assert!(error.contains("invalid type"), "{error}");
        let error =
            parse_output(ScannerKind::Grype, br#"{"matches":[]} {"matches":[]}"#).unwrap_err();
        assert!(error.contains("trailing characters"), "{error}");
        let error =
            parse_output(ScannerKind::Trivy, br#"{"SchemaVersion":2,"Results":{}}"#).unwrap_err();
        assert!(error.contains("not the JSON report of `trivy"), "{error}");
    }

    #[test]
    fn claimed_but_unlisted_vulnerabilities_are_errors() {
        let error = parse_output(
            ScannerKind::CargoAudit,
            br#"{"vulnerabilities":{"found":true,"count":2,"list":[]}}"#,
        )
        .unwrap_err();
        assert!(error.contains("lists none"), "{error}");
        let error = parse_output(
            ScannerKind::NpmAudit,
            br#"{"auditReportVersion":2,"vulnerabilities":{},"metadata":{"vulnerabilities":{"total":2}}}"#,
        )
        .unwrap_err();
        assert!(error.contains("lists none"), "{error}");
    }

    #[test]
    fn a_recorded_npm_error_names_what_the_registry_said() {
        // Recorded here with npm 10.8.2 against a registry mirror without the audit endpoint.
        let recorded = include_bytes!("../../tests/fixtures/scanners/npm-audit-error-405.json");
        let error = parse_output(ScannerKind::NpmAudit, recorded).unwrap_err();
        assert_eq!(
            error,
            "npm audit reported an error: 405 Method Not Allowed - POST \
             https://registry.npmjs.org/-/npm/v1/security/advisories/bulk"
        );
    }

    #[test]
    fn npm_error_reports_and_the_old_format_are_explained() {
        let error = parse_output(
            ScannerKind::NpmAudit,
            br#"{"error":{"code":"ENOLOCK","summary":"This command requires an existing lockfile.","detail":"Try creating one first with: npm i --package-lock-only"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            error,
            "npm audit reported an error: ENOLOCK: This command requires an existing lockfile.: \
             Try creating one first with: npm i --package-lock-only"
        );
        let error = parse_output(
            ScannerKind::NpmAudit,
            br#"{"actions":[],"advisories":{"1179":{"id":1179}},"muted":[],"metadata":{"vulnerabilities":{"low":1},"dependencies":12,"totalDependencies":12}}"#,
        )
        .unwrap_err();
        assert!(error.contains("npm 6 or older"), "{error}");
        let error = parse_output(
            ScannerKind::NpmAudit,
            br#"{"auditReportVersion":1,"vulnerabilities":{}}"#,
        )
        .unwrap_err();
        assert!(error.contains("version 1 is not understood"), "{error}");
    }

    // ---- hostile input ----

    #[test]
    fn deep_nesting_is_refused_or_skipped_without_recursion() {
        // 1 KB of nesting where a report is expected: refused (a type error at the first level
        // that cannot be a list, serde_json's recursion limit of 128, or, in a field that is
        // not used, the end of the input).
        let deep_array = vec![b'['; 1024];
        let mut deep_object = Vec::new();
        while deep_object.len() < 1024 {
            deep_object.extend_from_slice(br#"{"a":"#);
        }
        for input in [&deep_array, &deep_object] {
            let mut closed = input.clone();
            closed.extend(std::iter::repeat_n(b']', 1024));
            for input in [input, &closed] {
                for kind in KINDS {
                    let error = parse_output(kind, input).unwrap_err();
                    assert!(
                        [
                            "recursion limit",
                            "invalid type",
                            "not the JSON report",
                            "not JSON",
                            "truncated JSON",
                        ]
                        .iter()
                        .any(|e| error.contains(e)),
                        "{kind:?}: {error}"
                    );
                }
            }
        }
        // Nesting inside a value that is kept (cargo audit's cvss): the recursion limit.
        let mut json =
            br#"{"vulnerabilities":{"found":true,"list":[{"advisory":{"id":"x","cvss":"#.to_vec();
        json.extend(std::iter::repeat_n(b'[', 1000));
        json.extend(std::iter::repeat_n(b']', 1000));
        json.extend_from_slice(br#"},"package":{"name":"x","version":"1"}}]}}"#);
        let error = parse_output(ScannerKind::CargoAudit, &json).unwrap_err();
        assert!(error.contains("recursion limit exceeded"), "{error}");

        // Nesting inside a field that is not used is skipped without recursion (serde_json
        // keeps one byte per level on the heap): no stack overflow even 100 000 levels deep.
        let mut json = br#"{"matches":[],"unused":"#.to_vec();
        json.extend(std::iter::repeat_n(b'[', 100_000));
        json.extend(std::iter::repeat_n(b']', 100_000));
        json.push(b'}');
        let findings = parse_output(ScannerKind::Grype, &json).unwrap();
        single_pass(&findings, "scanner.grype");
        json.truncate(json.len() - 1000);
        let error = parse_output(ScannerKind::Grype, &json).unwrap_err();
        assert!(error.contains("truncated JSON"), "{error}");
    }

    #[test]
    fn huge_claimed_counts_allocate_nothing() {
        // Counts are never used to size anything: a 1 KB input claiming 2^64 - 1 entries is
        // parsed at once, as small as it is.
        let started = Instant::now();
        let json = br#"{"lockfile":{"dependency-count":18446744073709551615},
            "vulnerabilities":{"found":false,"count":18446744073709551615,"list":[]},"warnings":{}}"#;
        let findings = parse_output(ScannerKind::CargoAudit, json).unwrap();
        assert_eq!(
            single_pass(&findings, "scanner.cargo-audit"),
            "cargo-audit: no vulnerability in 18446744073709551615 dependencies in Cargo.lock"
        );
        // Beyond u64 (a float) or negative: no count, still a pass.
        for count in ["1e300", "-5", "184467440737095516150"] {
            let json = format!(
                r#"{{"lockfile":{{"dependency-count":{count}}},"vulnerabilities":{{"found":false,"count":{count},"list":[]}}}}"#
            );
            let findings = parse_output(ScannerKind::CargoAudit, json.as_bytes()).unwrap();
            assert_eq!(
                single_pass(&findings, "scanner.cargo-audit"),
                "cargo-audit: no vulnerability in Cargo.lock"
            );
        }
        let json = br#"{"auditReportVersion":2,"vulnerabilities":{},
            "metadata":{"vulnerabilities":{"total":0},"dependencies":{"total":18446744073709551615}}}"#;
        let findings = parse_output(ScannerKind::NpmAudit, json).unwrap();
        assert!(single_pass(&findings, "scanner.npm-audit").contains("18446744073709551615"));
        let json = br#"{"auditReportVersion":2,"vulnerabilities":{},"metadata":{"vulnerabilities":{"total":1e308}}}"#;
        assert!(parse_output(ScannerKind::NpmAudit, json).is_err());
        let json = br#"{"auditReportVersion":18446744073709551615,"vulnerabilities":{}}"#;
        assert!(parse_output(ScannerKind::NpmAudit, json).is_ok());
        // Only whether trivy's SchemaVersion is there matters, not its value.
        let json = br#"{"SchemaVersion":1e999,"Results":[]}"#;
        assert!(parse_output(ScannerKind::Trivy, json).is_ok());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// xorshift64: a small deterministic PRNG for the mutation loop.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn mutated_samples_never_panic() {
        const SIGNIFICANT: &[u8] = b"{}[]\":,0123456789-+.eE \\ntrufalsn\x00\xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0usize;
        let mut refused = 0usize;
        for (kind, name, sample) in samples() {
            for iteration in 0..2000 {
                let mut data = sample.to_vec();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(data.len());
                    match rng.below(6) {
                        // Flip bits of a byte.
                        0 => data[at] ^= 1 << rng.below(8),
                        // Replace a byte with a JSON-significant one.
                        1 => data[at] = SIGNIFICANT[rng.below(SIGNIFICANT.len())],
                        // Insert one.
                        2 => data.insert(at, SIGNIFICANT[rng.below(SIGNIFICANT.len())]),
                        // Delete a run of bytes.
                        3 => {
                            let end = (at + 1 + rng.below(64)).min(data.len());
                            data.drain(at..end);
                        }
                        // Duplicate a run of bytes.
                        4 => {
                            let end = (at + 1 + rng.below(256)).min(data.len());
                            let run = data[at..end].to_vec();
                            data.splice(at..at, run);
                        }
                        // Cut the end off.
                        _ => data.truncate(at),
                    }
                    if data.is_empty() {
                        data.push(b'{');
                    }
                }
                let kind = if iteration % 10 == 0 {
                    KINDS[rng.below(KINDS.len())]
                } else {
                    kind
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| parse_output(kind, &data)));
                match outcome {
                    Ok(Ok(_)) => parsed += 1,
                    Ok(Err(error)) => {
                        assert!(!error.is_empty());
                        refused += 1;
                    }
                    Err(_) => panic!(
                        "parse_output panicked on mutation {iteration} of {name}: {:?}",
                        String::from_utf8_lossy(&data)
                    ),
                }
            }
        }
        assert_eq!(parsed + refused, 8 * 2000);
        // The mutations are neither all harmless nor all fatal.
        assert!(
            parsed > 100 && refused > 100,
            "parsed {parsed}, refused {refused}"
        );
    }

    // ---- running scanners ----

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scanners");

    /// An executable script `name` in `dir`. Written by a child process, so that no file
    /// descriptor of it open for writing can leak into a child forked by a concurrent test
    /// (which would make executing it fail with ETXTBSY).
    fn fake_scanner(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"printf '%s\n' "$2" > "$1" && chmod 755 "$1""#)
            .arg("sh")
            .arg(&path)
            .arg(format!("#!/bin/sh\n{body}"))
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    fn line(program: &Path, args: &str) -> String {
        format!("{} {args}", shell_words::quote(&program.to_string_lossy()))
    }

    fn only_failure(findings: &[Finding], check: &str, severity: Severity) -> String {
        assert_eq!(findings.len(), 1, "{findings:?}");
        let finding = &findings[0];
        assert_eq!(finding.check, check, "{finding:?}");
        assert_eq!(finding.state, CheckState::Fail, "{finding:?}");
        assert_eq!(finding.severity, severity, "{finding:?}");
        assert!(finding.fix.is_some());
        finding.what.clone()
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn bad_command_lines_are_configuration_failures() {
        for command_line in ["", "   ", "trivy image 'unclosed", "grype \"dir:/srv"] {
            let findings = run_scanner(command_line, TIMEOUT).await;
            let what = only_failure(&findings, "scanner.config", Severity::Medium);
            assert!(what.contains("scanner command line"), "{what}");
            assert!(
                !what.contains("unclosed") && !what.contains("/srv"),
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn missing_programs_are_high_failures_with_install_advice() {
        let findings = run_scanner("definitely-not-installed-scanner-xyz image foo", TIMEOUT).await;
        let what = only_failure(&findings, "scanner.other", Severity::High);
        assert!(
            what.contains("`definitely-not-installed-scanner-xyz` is not installed"),
            "{what}"
        );

        let dir = tempfile::tempdir().unwrap();
        for (program, check, advice) in [
            ("trivy", "scanner.trivy", "Aqua Security"),
            ("grype", "scanner.grype", "Anchore"),
            (
                "cargo",
                "scanner.cargo-audit",
                "cargo install cargo-audit --locked",
            ),
            ("npm", "scanner.npm-audit", "Node.js"),
        ] {
            let missing = dir.path().join("no-such-dir").join(program);
            let findings = run_scanner(&line(&missing, "audit --json"), TIMEOUT).await;
            let what = only_failure(&findings, check, Severity::High);
            assert!(
                what.contains(&format!("`{program}` is not installed")),
                "{what}"
            );
            let fix = findings[0].fix.as_deref().unwrap();
            assert!(fix.contains(advice), "{fix}");
        }

        // cargo without the audit subcommand.
        let cargo = fake_scanner(
            dir.path(),
            "cargo",
            "echo 'error: no such command: `audit`' >&2\nexit 101",
        );
        let findings = run_scanner(&line(&cargo, "audit --json"), TIMEOUT).await;
        let what = only_failure(&findings, "scanner.cargo-audit", Severity::High);
        assert!(what.contains("`cargo-audit` is not installed"), "{what}");
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("cargo install cargo-audit --locked"));
    }

    #[tokio::test]
    async fn a_failing_scanner_is_a_high_failure_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let trivy = fake_scanner(
            dir.path(),
            "trivy",
            "echo 'this is not json'\necho 'FATAL image scan error: unable to find the specified image \"x\"' >&2\nexit 2",
        );
        let findings = run_scanner(&line(&trivy, "image x --password hunter2"), TIMEOUT).await;
        let what = only_failure(&findings, "scanner.trivy", Severity::High);
        assert!(
            what.starts_with("scanner trivy failed (exit 2): FATAL image scan error"),
            "{what}"
        );
        assert!(
            what.contains("its output could not be read: not JSON"),
            "{what}"
        );
        assert!(!what.contains("hunter2"), "{what}");

        // Long stderr: only its end is kept.
        let noisy = fake_scanner(
            dir.path(),
            "grype",
            "i=0\nwhile [ $i -lt 300 ]; do echo \"progress line $i of a noisy scanner\" >&2; i=$((i+1)); done\necho 'LAST: database is stale' >&2\nexit 1",
        );
        let findings = run_scanner(&line(&noisy, "x -o json"), TIMEOUT).await;
        let what = only_failure(&findings, "scanner.grype", Severity::High);
        assert!(
            what.starts_with("scanner grype failed (exit 1): …"),
            "{what}"
        );
        assert!(what.ends_with("LAST: database is stale"), "{what}");
        assert!(what.len() < STDERR_TAIL + 200, "{}", what.len());
        assert!(!what.contains("line 0 "), "{what}");

        // Exit 0 but no JSON: the parse error.
        let table = fake_scanner(
            dir.path(),
            "npm",
            "echo '# npm audit report'\necho 'found 0 vulnerabilities'",
        );
        let findings = run_scanner(&line(&table, "audit"), TIMEOUT).await;
        let what = only_failure(&findings, "scanner.npm-audit", Severity::High);
        assert!(
            what.contains("(exit 0) wrote output that could not be read: not JSON"),
            "{what}"
        );
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("npm audit --json"));
    }

    #[tokio::test]
    async fn parsable_output_is_used_whatever_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let trivy = fake_scanner(
            dir.path(),
            "trivy",
            &format!("cat '{FIXTURES}/trivy.json'\nexit 0"),
        );
        let findings = run_scanner(
            &line(&trivy, "image backup-tool:1.4.2 --format json"),
            TIMEOUT,
        )
        .await;
        assert_eq!(findings, parse_output(ScannerKind::Trivy, TRIVY).unwrap());
        assert_eq!(findings.len(), 4);

        // npm audit exits 1 when it finds vulnerabilities.
        let npm = fake_scanner(
            dir.path(),
            "npm",
            &format!("cat '{FIXTURES}/npm-audit.json'\nexit 1"),
        );
        let findings = run_scanner(&line(&npm, "audit --json"), TIMEOUT).await;
        assert_eq!(
            findings,
            parse_output(ScannerKind::NpmAudit, NPM_AUDIT).unwrap()
        );
        assert_eq!(findings.len(), 5);

        // cargo audit too, and stderr chatter does not matter.
        let cargo = fake_scanner(
            dir.path(),
            "cargo",
            &format!("echo '    Fetching advisory database' >&2\ncat '{FIXTURES}/cargo-audit-clean.json'\nexit 0"),
        );
        let findings = run_scanner(&line(&cargo, "audit --json"), TIMEOUT).await;
        assert_eq!(
            single_pass(&findings, "scanner.cargo-audit"),
            "cargo-audit: no vulnerability in 187 dependencies in Cargo.lock"
        );
    }

    #[tokio::test]
    async fn other_programs_are_run_but_not_interpreted() {
        let findings = run_scanner("sh -c 'echo {}'", TIMEOUT).await;
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].check, "scanner.other");
        assert_eq!(findings[0].state, CheckState::Unknown);
        assert!(findings[0]
            .what
            .starts_with("scanner sh ran (exit 0), but its output cannot be interpreted"));

        let findings = run_scanner("sh -c 'echo boom >&2; exit 3'", TIMEOUT).await;
        let what = only_failure(&findings, "scanner.other", Severity::High);
        assert_eq!(what, "scanner sh failed (exit 3): boom");
    }

    #[tokio::test]
    async fn a_slow_scanner_times_out_and_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        let trivy = fake_scanner(
            dir.path(),
            "trivy",
            &format!("sleep 30 &\necho $! > '{}'\nwait", pid_file.display()),
        );
        let started = Instant::now();
        let findings = run_scanner(&line(&trivy, "image x"), Duration::from_secs(1)).await;
        let elapsed = started.elapsed();
        let what = only_failure(&findings, "scanner.trivy", Severity::High);
        assert_eq!(what, "scanner trivy timed out after 1s and was killed");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

        // The script's own child (the sleep) is gone too: the whole group was killed.
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for whoever inherited it.
            let gone = stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            if gone {
                break;
            }
            assert!(Instant::now() < deadline, "sleep {pid} still runs: {stat}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn too_much_output_stops_and_kills_the_scanner() {
        let dir = tempfile::tempdir().unwrap();
        let trivy = fake_scanner(dir.path(), "trivy", "yes '{\"SchemaVersion\": 2}'");
        let started = Instant::now();
        let findings = run_scanner_capped(&line(&trivy, "image x"), TIMEOUT, 64 * 1024).await;
        let what = only_failure(&findings, "scanner.trivy", Severity::High);
        assert!(
            what.starts_with("scanner trivy wrote more than 65536 bytes of output"),
            "{what}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));

        // Exactly at the cap is fine.
        let sample = std::fs::metadata(format!("{FIXTURES}/trivy-clean.json"))
            .unwrap()
            .len();
        let cat = fake_scanner(
            dir.path(),
            "trivy",
            &format!("cat '{FIXTURES}/trivy-clean.json'"),
        );
        let cap = usize::try_from(sample).unwrap();
        let findings = run_scanner_capped(&line(&cat, "image x"), TIMEOUT, cap).await;
        assert_eq!(
            findings,
            parse_output(ScannerKind::Trivy, TRIVY_CLEAN).unwrap()
        );
        let findings = run_scanner_capped(&line(&cat, "image x"), TIMEOUT, cap - 1).await;
        only_failure(&findings, "scanner.trivy", Severity::High);
    }
}
