//! The orchestration's own configuration, and the list of every component's section.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::CoreError;
use backup_sources::files::FilesConfig;
use backup_sources::postgres::PostgresConfig;
use backup_sources::redis::RedisSettings;

/// Which runs a notification announces (`BACKUP_NOTIFY_ON`, `[notify] on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NotifyOn {
    /// Every run, successful or not (`all`).
    #[default]
    All,
    /// Only runs that did not fully succeed: partial and failed ones (`failure`).
    Failure,
}

impl NotifyOn {
    /// `all` or `failure`.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Failure => "failure",
        }
    }
}

impl fmt::Display for NotifyOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NotifyOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Self::All),
            "failure" => Ok(Self::Failure),
            _ => Err("must be all or failure".to_owned()),
        }
    }
}

/// Where and when results are announced (`[notify]`): the webhook `backup-all` posts each
/// run's result to, which runs it announces, and how hard it tries.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The webhook (`BACKUP_NOTIFICATION_URL`), an `http://` or `https://` URL; `None`: no
    /// notifications. Never printed, logged or put in an error, as it may hold a token.
    pub url: Option<String>,
    /// Which runs are announced (`BACKUP_NOTIFY_ON`).
    pub on: NotifyOn,
    /// How long one delivery attempt may take, connecting included
    /// (`BACKUP_NOTIFY_TIMEOUT`, whole seconds).
    pub timeout: Duration,
    /// Delivery attempts, at least 1 (`BACKUP_NOTIFY_TRIES`).
    pub tries: u32,
}

impl NotifyConfig {
    /// The default time one delivery attempt may take: 10 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default number of delivery attempts: 3.
    pub const DEFAULT_TRIES: u32 = 3;
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            url: None,
            on: NotifyOn::default(),
            timeout: Self::DEFAULT_TIMEOUT,
            tries: Self::DEFAULT_TRIES,
        }
    }
}

/// Without the URL (it may hold a token).
impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .field("tries", &self.tries)
            .finish()
    }
}

impl Component for NotifyConfig {
    const SECTION: Section = Section {
        table: "notify",
        about: "where and when results are announced",
        settings: &[
            Setting::new(
                "BACKUP_NOTIFICATION_URL",
                "url",
                "webhook backup-all posts each run's result to, as JSON with status, text \
                 (what Slack and Mattermost show) and components; may hold a token",
            )
            .redacted(),
            Setting::new(
                "BACKUP_NOTIFY_ON",
                "on",
                "all announces every run, failure only partial and failed runs",
            )
            .default("all"),
            Setting::new(
                "BACKUP_NOTIFY_TIMEOUT",
                "timeout_seconds",
                "seconds one delivery attempt may take, connecting included",
            )
            .default("10"),
            Setting::new(
                "BACKUP_NOTIFY_TRIES",
                "tries",
                "delivery attempts (at least 1), 1 s, 2 s, ... apart; retried when the \
                 webhook cannot be reached, does not answer in time or answers 5xx or 429",
            )
            .default("3"),
        ],
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let url = config
            .get("BACKUP_NOTIFICATION_URL")
            .map(|url| url.trim().to_owned());
        if let Some(url) = &url {
            check_url(url)?;
        }
        let on = config
            .parse::<NotifyOn>("BACKUP_NOTIFY_ON")?
            .unwrap_or_default();
        let seconds: u64 = config
            .number("BACKUP_NOTIFY_TIMEOUT")?
            .unwrap_or(Self::DEFAULT_TIMEOUT.as_secs());
        if seconds == 0 {
            return Err(CoreError::Config(
                "BACKUP_NOTIFY_TIMEOUT must be at least 1 (seconds)".into(),
            ));
        }
        let tries = config
            .number("BACKUP_NOTIFY_TRIES")?
            .unwrap_or(Self::DEFAULT_TRIES);
        if tries == 0 {
            return Err(CoreError::Config(
                "BACKUP_NOTIFY_TRIES must be at least 1".into(),
            ));
        }
        Ok(Self {
            url,
            on,
            timeout: Duration::from_secs(seconds),
            tries,
        })
    }
}

/// The webhook must be an absolute `http(s)://` URL with a host. The message never shows the
/// value: it may hold a token.
fn check_url(url: &str) -> backup_core::Result<()> {
    let invalid = |why: &str| {
        CoreError::Config(format!(
            "BACKUP_NOTIFICATION_URL {why} (its value is not shown: it may hold a token)"
        ))
    };
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(&format!("is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must start with https:// or http://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    Ok(())
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
        crate::run_config::RunConfig::SECTION,
        crate::security::SecurityConfig::SECTION,
        backup_sources::wal::WalConfig::SECTION,
    ]);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(env: &[(&str, &str)]) -> backup_core::Result<NotifyConfig> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(&sections(), env, None)?.component()
    }

    #[test]
    fn defaults_announce_every_run_with_three_tries_of_ten_seconds_and_no_url() {
        let config = notify(&[]).unwrap();
        assert_eq!(config, NotifyConfig::default());
        assert_eq!(config.url, None);
        assert_eq!(config.on, NotifyOn::All);
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.tries, 3);
    }

    #[test]
    fn environment_sets_url_on_timeout_and_tries() {
        let config = notify(&[
            (
                "BACKUP_NOTIFICATION_URL",
                " https://hooks.example/services/T0KEN ",
            ),
            ("BACKUP_NOTIFY_ON", "Failure"),
            ("BACKUP_NOTIFY_TIMEOUT", "30"),
            ("BACKUP_NOTIFY_TRIES", "1"),
        ])
        .unwrap();
        assert_eq!(
            config.url.as_deref(),
            Some("https://hooks.example/services/T0KEN")
        );
        assert_eq!(config.on, NotifyOn::Failure);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.tries, 1);
        assert!(!format!("{config:?}").contains("T0KEN"), "{config:?}");
    }

    #[test]
    fn the_config_file_sets_the_notify_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.toml");
        std::fs::write(
            &file,
            "[notify]\nurl = \"http://chat.internal:8065/hooks/x\"\non = \"failure\"\n\
             timeout_seconds = 5\ntries = 4\n",
        )
        .unwrap();
        let config: NotifyConfig = Config::load(&sections(), Vec::new(), Some(&file))
            .unwrap()
            .component()
            .unwrap();
        assert_eq!(
            config.url.as_deref(),
            Some("http://chat.internal:8065/hooks/x")
        );
        assert_eq!(config.on, NotifyOn::Failure);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.tries, 4);
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_variable() {
        for (name, value) in [
            ("BACKUP_NOTIFY_ON", "sometimes"),
            ("BACKUP_NOTIFY_TIMEOUT", "ten"),
            ("BACKUP_NOTIFY_TIMEOUT", "0"),
            ("BACKUP_NOTIFY_TIMEOUT", "-5"),
            ("BACKUP_NOTIFY_TRIES", "0"),
            ("BACKUP_NOTIFY_TRIES", "many"),
        ] {
            let error = notify(&[(name, value)]).unwrap_err();
            assert!(
                matches!(error, CoreError::Config(_)),
                "{name}={value}: {error:?}"
            );
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn a_bad_url_is_a_config_error_that_does_not_show_the_url() {
        for url in [
            "hooks.example/services/T0KEN",
            "ftp://hooks.example/services/T0KEN",
            "https://[T0KEN/services",
        ] {
            let error = notify(&[("BACKUP_NOTIFICATION_URL", url)]).unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, CoreError::Config(_)), "{url}: {error:?}");
            assert!(message.contains("BACKUP_NOTIFICATION_URL"), "{message}");
            assert!(!message.contains("T0KEN"), "{message}");
        }
    }
}
