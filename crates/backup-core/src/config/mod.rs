//! Typed configuration, one component at a time: command-line flags > environment variables >
//! TOML file > defaults.
//!
//! Each component of the tool owns its configuration: a typed value ([`PipelineConfig`],
//! [`LocalConfig`], [`S3Settings`], [`RetentionConfig`], [`RestoreConfig`] here; the sources
//! crate's `PostgresConfig` and `RedisSettings`, the orchestration crate's `NotifyConfig`)
//! that implements [`Component`]: its [`Section`] lists its [`Setting`]s, each with the
//! environment variable of the old scripts and a key in the component's TOML table, and
//! `from_config` builds the typed value from one [`Config`]. Core knows the layering, not the
//! names of any source's variables: a new component declares its section and is layered like
//! every other.
//!
//! ```toml
//! # /etc/backup/backup.toml (--config or BACKUP_CONFIG)
//! [local]
//! dir = "/var/backups/randevubu"
//!
//! [pipeline]
//! compression = "zstd"
//!
//! [postgres]
//! host = "db"
//! database = "randevubu"
//! ```
//!
//! Unknown tables and keys in the file are errors (a typo must not fall back to a default).
//! Secrets (passwords, URLs that may hold one) come from the environment only. The flat names
//! of earlier releases (`backup_local_dir = "..."`, the variable's name in lower case) still
//! work, with a deprecation warning naming the table form.
//!
//! ```
//! use backup_core::config::{Config, LocalConfig, PipelineConfig, SECTIONS};
//!
//! let env = [("BACKUP_LOCAL_DIR".to_owned(), "/var/backups".to_owned())];
//! let mut config = Config::load(SECTIONS, env, None)?;
//! config.set_flag("BACKUP_COMPRESSION", "--compression", "zstd")?;
//! let local: LocalConfig = config.component()?;
//! let pipeline: PipelineConfig = config.component()?;
//! assert_eq!(local.dir.as_deref(), Some(std::path::Path::new("/var/backups")));
//! assert_eq!(pipeline.compression.name(), "zstd");
//! # Ok::<(), backup_core::CoreError>(())
//! ```

mod components;
mod file;
pub use file::secrets_in_file;
mod s3;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use components::{
    CompressionAlgorithm, LocalConfig, PipelineConfig, RestoreConfig, RetentionConfig,
    DEFAULT_KEYRING, DEFAULT_KEY_FILE, DEFAULT_NAME_PREFIX, DEFAULT_RETENTION_DAYS,
};
pub use s3::S3Settings;

use crate::error::{CoreError, Result};

/// The variable that names the config file (as `--config` does).
pub const CONFIG_FILE_VARIABLE: &str = "BACKUP_CONFIG";

/// The sections of core's components, for [`Config::load`] (binaries add the sections of the
/// sources and of the orchestration).
pub const SECTIONS: &[Section] = &[
    LocalConfig::SECTION,
    S3Settings::SECTION,
    PipelineConfig::SECTION,
    RetentionConfig::SECTION,
    RestoreConfig::SECTION,
];

/// One setting of a component: its environment variable, its key in the component's TOML
/// table, what it means and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable, e.g. `BACKUP_LOCAL_DIR`.
    pub env: &'static str,
    /// A second variable read when the first is unset (`AWS_DEFAULT_REGION` for `AWS_REGION`).
    pub env_alias: Option<&'static str>,
    /// The key in the component's TOML table, e.g. `dir` in `[local]`.
    pub key: &'static str,
    /// One line for `--help`, `--print-config` and the README.
    pub help: &'static str,
    /// The default, parsed like any other value; `None` when the setting is unset by default
    /// (or its default depends on other settings, as `help` then says).
    pub default: Option<&'static str>,
    /// Read from the environment only, never from a config file (passwords).
    pub env_only: bool,
    /// Never printed (`--print-config` shows `<redacted>`).
    pub redact: bool,
}

impl Setting {
    /// A setting read from `env` or `key` in the component's table, unset by default.
    pub const fn new(env: &'static str, key: &'static str, help: &'static str) -> Self {
        Self {
            env,
            env_alias: None,
            key,
            help,
            default: None,
            env_only: false,
            redact: false,
        }
    }

    /// With a default value.
    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// A secret: environment only, never printed.
    pub const fn secret(mut self) -> Self {
        self.env_only = true;
        self.redact = true;
        self
    }

    /// Never printed, but allowed in the config file (a webhook URL with a token in it).
    pub const fn redacted(mut self) -> Self {
        self.redact = true;
        self
    }

    /// Also read from `env` when the main variable is unset.
    pub const fn alias(mut self, env: &'static str) -> Self {
        self.env_alias = Some(env);
        self
    }
}

/// A component's settings: its TOML table and its [`Setting`]s.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The TOML table, e.g. `postgres` for `[postgres]`.
    pub table: &'static str,
    /// What the component is, one line.
    pub about: &'static str,
    /// Its settings.
    pub settings: &'static [Setting],
    /// Builds the component from a [`Config`] and drops it: the check `--print-config` runs.
    pub check: fn(&Config) -> Result<()>,
}

/// A component with typed configuration.
pub trait Component: Sized {
    /// Its table and settings.
    const SECTION: Section;

    /// Builds the typed value from `config` (which has this component's section).
    ///
    /// # Errors
    /// [`CoreError::Config`] naming the setting and what to do.
    fn from_config(config: &Config) -> Result<Self>;
}

/// `C::from_config(config)`, dropped: for [`Section::check`].
pub fn check<C: Component>(config: &Config) -> Result<()> {
    C::from_config(config).map(drop)
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--local-dir`.
    Flag(String),
    /// An environment variable (the setting's, or its alias).
    Env(&'static str),
    /// The config file, at `key` (`[local] dir`, or a deprecated flat name).
    File {
        /// The file.
        path: PathBuf,
        /// Where in it.
        key: String,
    },
    /// The setting's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Env(name) => write!(f, "environment {name}"),
            Self::File { path, key } => write!(f, "{} {key}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: String,
    origin: Origin,
}

/// The layered configuration: flags over environment over config file over defaults, for the
/// settings of the [`Section`]s it was loaded with. Components read it with
/// [`Config::component`]. Its `Debug` output holds no values (they may be secret).
#[derive(Clone)]
pub struct Config {
    sections: Vec<Section>,
    flags: BTreeMap<&'static str, Entry>,
    env: BTreeMap<&'static str, Entry>,
    file: BTreeMap<&'static str, Entry>,
    file_path: Option<PathBuf>,
    warnings: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "sections",
                &self.sections.iter().map(|s| s.table).collect::<Vec<_>>(),
            )
            .field("flags", &self.flags.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("file", &self.file_path)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Loads the layers for `sections`: the environment `env` (usually [`std::env::vars`];
    /// only the sections' variables are kept, empty ones count as unset) and the config file
    /// `file`, else the one [`CONFIG_FILE_VARIABLE`] names, else none. Add flags with
    /// [`set_flag`](Self::set_flag).
    ///
    /// # Errors
    /// [`CoreError::Config`] for an unreadable or invalid file, an unknown table or key in
    /// it, or a secret in it; two sections with one table or variable (a programming error).
    pub fn load(
        sections: &[Section],
        env: impl IntoIterator<Item = (String, String)>,
        file: Option<&Path>,
    ) -> Result<Self> {
        check_sections(sections)?;
        let mut config = Self {
            sections: sections.to_vec(),
            flags: BTreeMap::new(),
            env: BTreeMap::new(),
            file: BTreeMap::new(),
            file_path: None,
            warnings: Vec::new(),
        };
        let mut file_from_env = None;
        for (name, value) in env {
            if value.is_empty() {
                continue;
            }
            if name == CONFIG_FILE_VARIABLE {
                file_from_env = Some(PathBuf::from(value));
                continue;
            }
            let Some(setting) = config.setting(&name) else {
                let alias = config
                    .settings()
                    .find(|s| s.env_alias == Some(name.as_str()));
                if let Some(setting) = alias {
                    let alias_name = setting.env_alias.unwrap_or(setting.env);
                    config.env.entry(setting.env).or_insert(Entry {
                        value,
                        origin: Origin::Env(alias_name),
                    });
                }
                continue;
            };
            let env_name = setting.env;
            config.env.insert(
                env_name,
                Entry {
                    value,
                    origin: Origin::Env(env_name),
                },
            );
        }
        let path = file.map(Path::to_path_buf).or(file_from_env);
        if let Some(path) = path {
            let parsed = file::read(&path, &config.sections)?;
            config.file = parsed.values;
            config.warnings = parsed.warnings;
            config.file_path = Some(path);
        }
        Ok(config)
    }

    /// Sets the value of the setting whose variable is `env` from the command-line flag
    /// `flag` (for `--print-config` and messages); it wins over every other layer. Empty
    /// values are ignored.
    ///
    /// # Errors
    /// [`CoreError::Config`] when no loaded section has that variable (a programming error).
    pub fn set_flag(&mut self, env: &str, flag: &str, value: impl Into<String>) -> Result<()> {
        let setting = self.setting(env).ok_or_else(|| unknown(env))?;
        let value = value.into();
        if !value.is_empty() {
            self.flags.insert(
                setting.env,
                Entry {
                    value,
                    origin: Origin::Flag(flag.to_owned()),
                },
            );
        }
        Ok(())
    }

    /// The value of the setting whose variable is `env`: flag, environment, file, default.
    /// `None` when it is unset (or not a setting of the loaded sections).
    pub fn get(&self, env: &str) -> Option<&str> {
        self.entry(env).map(|(value, _)| value)
    }

    /// Where the value of `env` comes from; `None` when it is unset.
    pub fn origin(&self, env: &str) -> Option<Origin> {
        self.entry(env).map(|(_, origin)| origin)
    }

    fn entry(&self, env: &str) -> Option<(&str, Origin)> {
        let setting = self.setting(env)?;
        [&self.flags, &self.env, &self.file]
            .into_iter()
            .find_map(|layer| layer.get(setting.env))
            .map(|e| (e.value.as_str(), e.origin.clone()))
            .or_else(|| setting.default.map(|d| (d, Origin::Default)))
    }

    /// A lookup by variable name over [`get`](Self::get), for constructors that take one.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name).map(str::to_owned)
    }

    /// `env` parsed as a `T`; `None` when unset.
    ///
    /// # Errors
    /// [`CoreError::Config`] naming the variable, the value and the parser's reason.
    pub fn parse<T>(&self, env: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(env)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|e| CoreError::Config(format!("{env}={value:?}: {e}")))
            })
            .transpose()
    }

    /// `env` as a whole number; `None` when unset.
    ///
    /// # Errors
    /// [`CoreError::Config`] when it is not one.
    pub fn number<T: FromStr>(&self, env: &str) -> Result<Option<T>> {
        self.get(env)
            .map(|value| {
                value.trim().parse().map_err(|_| {
                    CoreError::Config(format!("{env} must be a whole number, got {value:?}"))
                })
            })
            .transpose()
    }

    /// `env` as yes/no: `true`/`false`, `yes`/`no`, `1`/`0`, `on`/`off` (any case); `None`
    /// when unset.
    ///
    /// # Errors
    /// [`CoreError::Config`] for anything else.
    pub fn bool(&self, env: &str) -> Result<Option<bool>> {
        self.get(env)
            .map(|value| match value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(true),
                "false" | "no" | "0" | "off" => Ok(false),
                _ => Err(CoreError::Config(format!(
                    "{env} must be true or false, got {value:?}"
                ))),
            })
            .transpose()
    }

    /// `env` as a path; `None` when unset.
    pub fn path(&self, env: &str) -> Option<PathBuf> {
        self.get(env).map(PathBuf::from)
    }

    /// The typed configuration of component `C`. An error names, besides the variable, where
    /// a value that is not from the environment was set (flag or file).
    ///
    /// # Errors
    /// [`CoreError::Config`] from `C::from_config`.
    pub fn component<C: Component>(&self) -> Result<C> {
        C::from_config(self).map_err(|error| self.locate(&C::SECTION, error))
    }

    /// Adds to a configuration error where the values it names were set, when that is not
    /// the environment (whose names the messages already use).
    fn locate(&self, section: &Section, error: CoreError) -> CoreError {
        let CoreError::Config(message) = error else {
            return error;
        };
        let places: Vec<String> = section
            .settings
            .iter()
            .filter(|s| message.contains(s.env))
            .filter_map(|s| match self.origin(s.env)? {
                origin @ (Origin::Flag(_) | Origin::File { .. }) => {
                    Some(format!("{} is set by {origin}", s.env))
                }
                Origin::Env(_) | Origin::Default => None,
            })
            .collect();
        if places.is_empty() {
            CoreError::Config(message)
        } else {
            CoreError::Config(format!("{message} ({})", places.join("; ")))
        }
    }

    /// The config file that was read, if any.
    pub fn file_path(&self) -> Option<&Path> {
        self.file_path.as_deref()
    }

    /// The settings given by a flag or the environment that are not secret, as variables and
    /// values: what another process (PostgreSQL's `restore_command`) needs besides the config
    /// file to see the same configuration. Secrets (passwords) are never among them.
    pub fn non_secret_overrides(&self) -> Vec<(&'static str, String)> {
        self.sections
            .iter()
            .flat_map(|section| section.settings.iter())
            .filter(|setting| !setting.redact && !setting.env_only)
            .filter(|setting| {
                matches!(
                    self.origin(setting.env),
                    Some(Origin::Flag(_) | Origin::Env(_))
                )
            })
            .filter_map(|setting| Some((setting.env, self.get(setting.env)?.to_owned())))
            .collect()
    }

    /// Deprecation warnings from reading the file (flat names), for the log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The loaded sections.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Every section's check: one message per component whose configuration is invalid.
    pub fn problems(&self) -> Vec<String> {
        self.sections
            .iter()
            .filter_map(|section| {
                (section.check)(self)
                    .err()
                    .map(|e| format!("[{}]: {}", section.table, self.locate(section, e)))
            })
            .collect()
    }

    /// The effective configuration as TOML, each value commented with its variable and where
    /// it came from; secrets as `<redacted>`, unset settings commented out. What
    /// `--print-config` prints; a file written from it (minus secrets) configures the same.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# Effective configuration: flags > environment > config file > defaults.\n");
        match &self.file_path {
            Some(path) => out.push_str(&format!("# Config file: {}\n", path.display())),
            None => out.push_str(&format!(
                "# Config file: none (--config or {CONFIG_FILE_VARIABLE})\n"
            )),
        }
        for section in &self.sections {
            out.push_str(&format!("\n# {}\n[{}]\n", section.about, section.table));
            for setting in section.settings {
                let origin = self.origin(setting.env);
                let line = match (self.get(setting.env), &origin) {
                    (Some(_), _) if setting.redact => format!("# {} = <redacted>", setting.key),
                    (Some(value), _) => format!("{} = {}", setting.key, toml_string(value)),
                    (None, _) => format!("# {} =", setting.key),
                };
                let source = match origin {
                    Some(origin) => origin.to_string(),
                    None if setting.env_only => "unset; environment only".to_owned(),
                    None => "unset".to_owned(),
                };
                out.push_str(&format!("{line:<44} # {}: {source}\n", setting.env));
            }
        }
        out
    }

    fn settings(&self) -> impl Iterator<Item = &Setting> {
        self.sections.iter().flat_map(|s| s.settings.iter())
    }

    fn setting(&self, env: &str) -> Option<&Setting> {
        self.settings().find(|s| s.env == env)
    }
}

fn unknown(env: &str) -> CoreError {
    CoreError::Config(format!("{env} is not a setting of any loaded component"))
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Two sections with one table, or two settings with one variable or key, are a programming
/// error that would make values land in the wrong component.
fn check_sections(sections: &[Section]) -> Result<()> {
    let mut tables = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for section in sections {
        if !tables.insert(section.table) {
            return Err(CoreError::Config(format!(
                "two components use the table [{}]",
                section.table
            )));
        }
        let mut keys = std::collections::BTreeSet::new();
        for setting in section.settings {
            let fresh = names.insert(setting.env)
                && setting.env_alias.is_none_or(|alias| names.insert(alias))
                && keys.insert(setting.key);
            if !fresh {
                return Err(CoreError::Config(format!(
                    "setting {} ([{}] {}) is declared twice",
                    setting.env, section.table, setting.key
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
