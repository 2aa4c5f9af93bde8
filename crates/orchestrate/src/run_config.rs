//! How `backup-all` runs (`[run]`): timeouts, verification, the drill, retention, the lock and
//! the disk-space warning.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::{CoreError, LocalConfig};

/// The default timeout of one component.
pub const DEFAULT_COMPONENT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// The name of the lock file in the local backup directory.
pub const LOCK_FILE_NAME: &str = ".backup-all.lock";

/// What is checked of each backup just written, on every destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum VerifyMode {
    /// Re-read each stored object and compare its size and SHA-256 with its manifest.
    #[default]
    Hash,
    /// Also decrypt, decompress and parse it (pg_dump's completion marker, the RDB's CRC-64,
    /// the tar's end).
    Full,
    /// Check nothing after writing.
    None,
}

impl VerifyMode {
    /// `hash`, `full` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::Full => "full",
            Self::None => "none",
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VerifyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "hash" => Ok(Self::Hash),
            "full" => Ok(Self::Full),
            "none" => Ok(Self::None),
            _ => Err("use hash, full or none".to_owned()),
        }
    }
}

/// How `backup-all` runs (`[run]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// How long one component may take before it is stopped.
    pub component_timeout: Duration,
    /// What is checked of each backup after it is written.
    pub verify: VerifyMode,
    /// Whether the database backup is restored into a scratch database and compared.
    pub drill: bool,
    /// Whether retention runs after the backups.
    pub prune: bool,
    /// The lock file; `None`: see [`lock_path`](Self::lock_path).
    pub lock_file: Option<PathBuf>,
    /// Used-space percentage of the backup and log disks above which the run warns.
    pub disk_warn_percent: u8,
    /// Components left out of the run even when configured (reported as skipped).
    pub skip: Vec<String>,
}

/// The components of a run, in order.
pub const COMPONENTS: [&str; 5] = ["database", "redis", "config", "logs", "base"];

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            component_timeout: DEFAULT_COMPONENT_TIMEOUT,
            verify: VerifyMode::Hash,
            drill: false,
            prune: true,
            lock_file: None,
            disk_warn_percent: 85,
            skip: Vec::new(),
        }
    }
}

impl RunConfig {
    /// The lock file: [`lock_file`](Self::lock_file), else `.backup-all.lock` in the local
    /// backup directory, else `backup-all.lock` in `$RUNTIME_DIRECTORY` (systemd's
    /// `RuntimeDirectory=`), `$XDG_RUNTIME_DIR`, or `/run/lock`. `/run/lock` is shared (mode
    /// 1777 on Debian): a file another user planted there is never followed (no symbolic
    /// links) and at worst makes the run fail with exit 3 naming the lock file, so set
    /// `BACKUP_LOCK_FILE` or run from the systemd unit (`RuntimeDirectory=`) on shared
    /// machines.
    pub fn lock_path(&self, local: &LocalConfig) -> PathBuf {
        if let Some(path) = &self.lock_file {
            return path.clone();
        }
        if let Some(dir) = &local.dir {
            return dir.join(LOCK_FILE_NAME);
        }
        let runtime = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .find(|dir| dir.is_absolute());
        runtime
            .unwrap_or_else(|| Path::new("/run/lock").to_path_buf())
            .join("backup-all.lock")
    }
}

/// `2h`, `90m`, `3600s`, `1h 30m` or a number of seconds.
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("{e}; use e.g. 2h, 90m, 1h30m or a number of seconds"))
}

/// A duration as `backup-all` prints it: `2h`, `1h 30m`, `45s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

impl Component for RunConfig {
    const SECTION: Section = Section {
        table: "run",
        about: "how backup-all runs: timeouts, verification, drill, retention, lock",
        settings: &[
            Setting::new(
                "BACKUP_TIMEOUT_PER_COMPONENT",
                "timeout_per_component",
                "how long one component (database, redis, config, logs) may take: 2h, 90m, \
                 or seconds",
            )
            .default("2h"),
            Setting::new(
                "BACKUP_VERIFY",
                "verify",
                "check of each backup just written, on every destination: hash (size and \
                 SHA-256 against the manifest), full (also decrypt, decompress, parse) or none",
            )
            .default("hash"),
            Setting::new(
                "BACKUP_DRILL",
                "drill",
                "restore the database backup into a scratch database and compare row counts",
            )
            .default("false"),
            Setting::new(
                "BACKUP_PRUNE",
                "prune",
                "apply the retention policy after the backups",
            )
            .default("true"),
            Setting::new(
                "BACKUP_LOCK_FILE",
                "lock_file",
                "lock file that keeps two runs apart (default: .backup-all.lock in the local \
                 backup directory, else $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR or /run/lock)",
            ),
            Setting::new(
                "BACKUP_DISK_WARN_PERCENT",
                "disk_warn_percent",
                "warn when the backup or log disk is more than this percent full",
            )
            .default("85"),
            Setting::new(
                "BACKUP_SKIP_COMPONENTS",
                "skip",
                "components left out of the run, comma-separated: database, redis, config, logs, base",
            ),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let defaults = Self::default();
        let component_timeout = match config.get("BACKUP_TIMEOUT_PER_COMPONENT") {
            None => defaults.component_timeout,
            Some(value) => parse_duration(value).map_err(|e| {
                CoreError::Config(format!("BACKUP_TIMEOUT_PER_COMPONENT={value:?}: {e}"))
            })?,
        };
        if component_timeout.is_zero() {
            return Err(CoreError::Config(
                "BACKUP_TIMEOUT_PER_COMPONENT must be more than 0".to_owned(),
            ));
        }
        let disk_warn_percent = config
            .number::<u8>("BACKUP_DISK_WARN_PERCENT")?
            .unwrap_or(defaults.disk_warn_percent);
        if !(1..=100).contains(&disk_warn_percent) {
            return Err(CoreError::Config(format!(
                "BACKUP_DISK_WARN_PERCENT must be 1 to 100, got {disk_warn_percent}"
            )));
        }
        let skip: Vec<String> = config
            .get("BACKUP_SKIP_COMPONENTS")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(unknown) = skip.iter().find(|c| !COMPONENTS.contains(&c.as_str())) {
            return Err(CoreError::Config(format!(
                "BACKUP_SKIP_COMPONENTS: unknown component {unknown:?}; use {}",
                COMPONENTS.join(", ")
            )));
        }
        Ok(Self {
            skip,
            component_timeout,
            verify: config.parse("BACKUP_VERIFY")?.unwrap_or_default(),
            drill: config.bool("BACKUP_DRILL")?.unwrap_or(false),
            prune: config.bool("BACKUP_PRUNE")?.unwrap_or(true),
            lock_file: config.path("BACKUP_LOCK_FILE"),
            disk_warn_percent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> Config {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let sections = [RunConfig::SECTION, LocalConfig::SECTION];
        match Config::load(&sections, env, None) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_are_two_hours_hash_no_drill_prune() {
        let run: RunConfig = config(&[]).component().unwrap();
        assert_eq!(run, RunConfig::default());
        assert_eq!(run.component_timeout, Duration::from_secs(7200));
    }

    #[test]
    fn durations_in_units_or_seconds() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
    }

    #[test]
    fn settings_are_read_and_bad_values_name_the_variable() {
        let run: RunConfig = config(&[
            ("BACKUP_TIMEOUT_PER_COMPONENT", "30m"),
            ("BACKUP_VERIFY", "full"),
            ("BACKUP_DRILL", "yes"),
            ("BACKUP_PRUNE", "false"),
            ("BACKUP_DISK_WARN_PERCENT", "90"),
            ("BACKUP_SKIP_COMPONENTS", "Logs, config"),
        ])
        .component()
        .unwrap();
        assert_eq!(run.component_timeout, Duration::from_secs(1800));
        assert_eq!(run.verify, VerifyMode::Full);
        assert!(run.drill && !run.prune);
        assert_eq!(run.disk_warn_percent, 90);
        assert_eq!(run.skip, ["logs", "config"]);
        for (env, value) in [
            ("BACKUP_TIMEOUT_PER_COMPONENT", "soon"),
            ("BACKUP_TIMEOUT_PER_COMPONENT", "0"),
            ("BACKUP_VERIFY", "sha1"),
            ("BACKUP_DISK_WARN_PERCENT", "150"),
            ("BACKUP_SKIP_COMPONENTS", "redis,mysql"),
        ] {
            let error = config(&[(env, value)])
                .component::<RunConfig>()
                .unwrap_err()
                .to_string();
            assert!(error.contains(env), "{error}");
        }
    }

    #[test]
    fn lock_lives_in_the_local_directory_unless_set() {
        let run = RunConfig::default();
        let local = LocalConfig {
            dir: Some(PathBuf::from("/var/backups/x")),
        };
        assert_eq!(
            run.lock_path(&local),
            Path::new("/var/backups/x/.backup-all.lock")
        );
        let set = RunConfig {
            lock_file: Some(PathBuf::from("/run/b.lock")),
            ..run
        };
        assert_eq!(set.lock_path(&local), Path::new("/run/b.lock"));
        let without = RunConfig::default().lock_path(&LocalConfig::default());
        assert!(without.ends_with("backup-all.lock") && !without.starts_with("/tmp"));
    }
}
