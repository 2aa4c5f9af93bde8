//! Configuration files and logs: a tar archive of directory trees as a backup stream
//! ([`FilesSource`]), `config/config_backup_...tar.gz.enc` and `logs/logs_backup_...tar.gz.enc`.
//!
//! The archive is written by the `tar` crate on a thread of its own into a bounded channel
//! (memory does not grow with the size of the trees). Mode, owner and mtime are kept;
//! symbolic links are stored as links, never followed; the encryption key file and the
//! keyring are never archived, even under a configured path; a file that grows or shrinks
//! while it is read (a live log) is stored consistently (exactly the size it had when opened)
//! and warned about; an unreadable file is a warning, not a failed backup; a configured path
//! that does not exist is an error.

mod archive;
mod restore;
mod retention;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::{BackupKind, BoxError, ByteStream, CoreError, Source, SourceFacts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use archive::{archive_name, ArchiveReport, Exclusions, Filter};
pub use restore::{check_then_extract, FilesCheck, FilesExtract, FilesRestoreOptions, Planned};
pub use retention::{apply_log_retention, prune_old_logs, LogPrune};

use crate::stream::{ChannelReader, ChannelWriter};

/// Chunks of [`WRITE_CHUNK`](crate::stream::WRITE_CHUNK) in flight between the tar writer and
/// the pipeline.
const CHUNKS_IN_FLIGHT: usize = 16;

/// The default log directory, as the old setup had it.
pub const DEFAULT_LOG_DIR: &str = "/var/log/randevubu";

/// Which files a [`FilesSource`] archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FilesKind {
    /// Configuration files (`config/config_backup_...`).
    Config,
    /// Log files (`logs/logs_backup_...`).
    Logs,
}

impl FilesKind {
    /// The backup kind.
    pub fn backup_kind(self) -> BackupKind {
        match self {
            Self::Config => BackupKind::CONFIG,
            Self::Logs => BackupKind::LOGS,
        }
    }

    /// The name prefix of its backups: `config` or `logs`, as the old setup named them.
    pub fn name_prefix(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Logs => "logs",
        }
    }
}

/// Which files are backed up, and how long local logs are kept (`[files]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The configuration paths (files or directories); empty: no config backup.
    pub config_paths: Vec<PathBuf>,
    /// Globs a configuration file must match to be archived (empty: every file).
    pub config_include: Vec<String>,
    /// Globs of configuration files and folders left out.
    pub config_exclude: Vec<String>,
    /// The log directory.
    pub log_dir: PathBuf,
    /// Local log files older than this many days are deleted after a successful log backup;
    /// `None`: never.
    pub log_retention_days: Option<u32>,
}

impl FilesConfig {
    /// The paths archived for `kind`.
    pub fn paths(&self, kind: FilesKind) -> Vec<PathBuf> {
        match kind {
            FilesKind::Config => self.config_paths.clone(),
            FilesKind::Logs => vec![self.log_dir.clone()],
        }
    }

    /// The include/exclude filter for `kind` (the globs apply to the configuration backup).
    ///
    /// # Errors
    /// A glob that does not parse (checked when the configuration is read).
    pub fn filter(&self, kind: FilesKind) -> Result<Filter, String> {
        match kind {
            FilesKind::Config => Filter::new(&self.config_include, &self.config_exclude),
            FilesKind::Logs => Ok(Filter::default()),
        }
    }

    /// A source for `kind` with these paths and globs.
    ///
    /// # Errors
    /// As [`filter`](Self::filter).
    pub fn source(&self, kind: FilesKind) -> Result<FilesSource, String> {
        Ok(FilesSource::new(kind, self.paths(kind)).with_filter(self.filter(kind)?))
    }
}

impl Component for FilesConfig {
    const SECTION: Section = Section {
        table: "files",
        about: "configuration files and logs",
        settings: &[
            Setting::new(
                "BACKUP_CONFIG_PATHS",
                "config_paths",
                "configuration files and directories to back up, separated by ':'",
            ),
            Setting::new(
                "BACKUP_CONFIG_INCLUDE",
                "config_include",
                "globs a configuration file must match to be archived, separated by ':' \
                 (e.g. /etc/**/*.conf)",
            ),
            Setting::new(
                "BACKUP_CONFIG_EXCLUDE",
                "config_exclude",
                "globs of configuration files and folders left out, separated by ':' \
                 (e.g. **/cache/**:**/*.bak)",
            ),
            Setting::new("BACKUP_LOG_DIR", "log_dir", "the log directory to back up")
                .default(DEFAULT_LOG_DIR),
            Setting::new(
                "BACKUP_LOG_RETENTION_DAYS",
                "log_retention_days",
                "after a log backup, delete local log files older than this (off unless set)",
            ),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let config_paths: Vec<PathBuf> = config
            .get("BACKUP_CONFIG_PATHS")
            .map(|paths| {
                paths
                    .split(':')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| PathBuf::from(p.trim()))
                    .collect()
            })
            .unwrap_or_default();
        let globs = |name: &str| -> Vec<String> {
            config
                .get(name)
                .map(|v| {
                    v.split(':')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (config_include, config_exclude) = (
            globs("BACKUP_CONFIG_INCLUDE"),
            globs("BACKUP_CONFIG_EXCLUDE"),
        );
        Filter::new(&config_include, &[])
            .map_err(|e| CoreError::Config(format!("BACKUP_CONFIG_INCLUDE: {e}")))?;
        Filter::new(&[], &config_exclude)
            .map_err(|e| CoreError::Config(format!("BACKUP_CONFIG_EXCLUDE: {e}")))?;
        for path in &config_paths {
            archive_name(path)
                .map_err(|e| CoreError::Config(format!("BACKUP_CONFIG_PATHS: {e}")))?;
        }
        let log_dir = config
            .path("BACKUP_LOG_DIR")
            .unwrap_or(DEFAULT_LOG_DIR.into());
        archive_name(&log_dir).map_err(|e| CoreError::Config(format!("BACKUP_LOG_DIR: {e}")))?;
        Ok(Self {
            config_paths,
            config_include,
            config_exclude,
            log_dir,
            log_retention_days: config.number("BACKUP_LOG_RETENTION_DAYS")?,
        })
    }
}

/// A tar archive of configured paths as a [`Source`].
pub struct FilesSource {
    kind: FilesKind,
    roots: Vec<PathBuf>,
    exclusions: Exclusions,
    filter: Filter,
    running: Option<JoinHandle<std::io::Result<ArchiveReport>>>,
}

impl FilesSource {
    /// A source archiving `roots` (files or directories, each with everything under it).
    pub fn new(kind: FilesKind, roots: Vec<PathBuf>) -> Self {
        Self {
            kind,
            roots,
            exclusions: Exclusions::default(),
            filter: Filter::default(),
            running: None,
        }
    }

    /// Archives only what `filter` lets through.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Never archives `path` (a file, or a directory and everything under it), even when it
    /// lies under a root: the encryption key file and the keyring directory.
    pub fn excluding(mut self, path: &Path) -> Self {
        self.exclusions.add(path);
        self
    }
}

#[async_trait]
impl Source for FilesSource {
    fn kind(&self) -> BackupKind {
        self.kind.backup_kind()
    }

    fn extension(&self) -> &'static str {
        "tar"
    }

    fn name_prefix(&self) -> Option<&str> {
        Some(self.kind.name_prefix())
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        if self.running.is_some() {
            return Err("FilesSource::open called again before finish".into());
        }
        if self.roots.is_empty() {
            return Err(match self.kind {
                FilesKind::Config => "no configuration paths to back up: set BACKUP_CONFIG_PATHS \
                                      (e.g. /etc/nginx:/app/config)"
                    .into(),
                FilesKind::Logs => "no log directory to back up: set BACKUP_LOG_DIR".into(),
            });
        }
        // A configured path that does not exist is a mistake, not an empty backup.
        for root in &self.roots {
            archive_name(root)?;
            if let Err(e) = std::fs::symlink_metadata(root) {
                return Err(format!(
                    "{} ({} backup): {e}; check the configured paths",
                    root.display(),
                    self.kind.name_prefix()
                )
                .into());
            }
        }
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let roots = self.roots.clone();
        let (exclusions, filter) = (self.exclusions.clone(), self.filter.clone());
        self.running = Some(tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter::new(tx);
            match archive::write_archive(&mut writer, &roots, &exclusions, &filter) {
                Ok(report) => Ok(report),
                Err(e) => {
                    let message = e.to_string();
                    writer.fail(std::io::Error::new(e.kind(), message));
                    Err(e)
                }
            }
        }));
        tracing::info!(
            "archiving {} for the {} backup",
            self.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.kind.name_prefix()
        );
        Ok(Box::new(ChannelReader::new(rx)))
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        let Some(task) = self.running.take() else {
            return Err("FilesSource::finish called without a successful open".into());
        };
        let report = task
            .await
            .map_err(|e| format!("the archive writer failed: {e}"))?
            .map_err(|e| format!("writing the archive failed: {e}"))?;
        for warning in &report.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            "archived {} files, {} directories and {} links ({} bytes of content){}",
            report.files,
            report.directories,
            report.links,
            report.content_bytes,
            if report.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warnings", report.warnings.len())
            }
        );
        let mut details = std::collections::BTreeMap::new();
        let paths: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        details.insert("paths".to_owned(), serde_json::json!(paths));
        details.insert("files".to_owned(), serde_json::json!(report.files));
        details.insert(
            "directories".to_owned(),
            serde_json::json!(report.directories),
        );
        details.insert("links".to_owned(), serde_json::json!(report.links));
        details.insert("filtered".to_owned(), serde_json::json!(report.filtered));
        details.insert(
            "content_bytes".to_owned(),
            serde_json::json!(report.content_bytes),
        );
        details.insert("warnings".to_owned(), serde_json::json!(report.warnings));
        let excluded: Vec<String> = report
            .excluded
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        details.insert("excluded".to_owned(), serde_json::json!(excluded));
        Ok(SourceFacts {
            source_type: "files".to_owned(),
            server_version: None,
            database: None,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> backup_core::Result<FilesConfig> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(&[FilesConfig::SECTION], env, None)?.component()
    }

    #[test]
    fn paths_are_colon_separated_and_the_log_dir_has_the_old_default() {
        let files = config(&[("BACKUP_CONFIG_PATHS", "/etc/nginx: /app/config::")]).unwrap();
        assert_eq!(
            files.paths(FilesKind::Config),
            vec![PathBuf::from("/etc/nginx"), PathBuf::from("/app/config")]
        );
        assert_eq!(
            files.paths(FilesKind::Logs),
            vec![PathBuf::from(DEFAULT_LOG_DIR)]
        );
        assert_eq!(files.log_retention_days, None);
        let err = config(&[("BACKUP_CONFIG_PATHS", "/etc/../root")]).unwrap_err();
        assert!(err.to_string().contains("BACKUP_CONFIG_PATHS"), "{err}");
        let err = config(&[("BACKUP_CONFIG_EXCLUDE", "**/cache/**:a[")]).unwrap_err();
        assert!(err.to_string().contains("BACKUP_CONFIG_EXCLUDE"), "{err}");
        let files = config(&[("BACKUP_CONFIG_INCLUDE", "**/*.conf: **/*.pem")]).unwrap();
        assert_eq!(files.config_include, vec!["**/*.conf", "**/*.pem"]);
        let err = config(&[("BACKUP_LOG_RETENTION_DAYS", "a week")]).unwrap_err();
        assert!(
            err.to_string().contains("BACKUP_LOG_RETENTION_DAYS"),
            "{err}"
        );
    }
}
