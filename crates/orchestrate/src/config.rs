//! The orchestration's own configuration, and the list of every component's section.

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_sources::files::FilesConfig;
use backup_sources::postgres::PostgresConfig;
use backup_sources::redis::RedisSettings;

/// Where results are announced (`[notify]`). Read into the configuration model (and shown by
/// `--print-config`); the notifications themselves come with `backup-all`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The webhook (`BACKUP_NOTIFICATION_URL`); never printed, as it may hold a token.
    pub url: Option<String>,
}

impl Component for NotifyConfig {
    const SECTION: Section = Section {
        table: "notify",
        about: "where results are announced",
        settings: &[Setting::new(
            "BACKUP_NOTIFICATION_URL",
            "url",
            "webhook notified of results (used by a coming release)",
        )
        .redacted()],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        Ok(Self {
            url: config.get("BACKUP_NOTIFICATION_URL").map(str::to_owned),
        })
    }
}

/// Every component's section, for [`Config::load`]: one config file and one environment
/// configure every binary, and each checks the whole file (a typo in `[redis]` is reported by
/// `backup-database` too).
pub fn sections() -> Vec<Section> {
    let mut all = backup_core::config::SECTIONS.to_vec();
    all.extend([
        PostgresConfig::SECTION,
        RedisSettings::SECTION,
        FilesConfig::SECTION,
        NotifyConfig::SECTION,
    ]);
    all
}
