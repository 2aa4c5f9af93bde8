//! Reading the TOML config file into the file layer.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Entry, Origin, Section, Setting, CONFIG_FILE_VARIABLE};
use crate::error::{CoreError, Result};

pub(super) struct Parsed {
    pub values: BTreeMap<&'static str, Entry>,
    pub warnings: Vec<String>,
}

/// Reads `path`: one table per component (`[postgres] host = "db"`), or the deprecated flat
/// names (`postgres_host = "db"`, with a warning). Unknown tables or keys and secrets are
/// errors; a value set both ways takes the table's.
pub(super) fn read(path: &Path, sections: &[Section]) -> Result<Parsed> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CoreError::Config(format!("cannot read config file {shown}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| CoreError::Config(format!("config file {shown} is not valid TOML: {e}")))?;
    let mut values = BTreeMap::new();
    let mut flat = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            let section = sections.iter().find(|s| s.table == name).ok_or_else(|| {
                CoreError::Config(format!(
                    "config file {shown}: unknown table [{name}] (known: {})",
                    sections
                        .iter()
                        .map(|s| format!("[{}]", s.table))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            for (key, value) in inner {
                let setting = section
                    .settings
                    .iter()
                    .find(|s| s.key == key)
                    .ok_or_else(|| {
                        CoreError::Config(format!(
                            "config file {shown}: unknown key {key:?} in [{name}] (known: {})",
                            section
                                .settings
                                .iter()
                                .filter(|s| !s.env_only)
                                .map(|s| s.key)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                let place = format!("[{name}] {key}");
                let value = scalar(path, &place, setting, value)?;
                if value.is_empty() {
                    continue;
                }
                values.insert(
                    setting.env,
                    Entry {
                        value,
                        origin: Origin::File {
                            path: path.to_path_buf(),
                            key: place,
                        },
                    },
                );
            }
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let found = sections.iter().find_map(|section| {
            section
                .settings
                .iter()
                .find(|s| s.env == upper)
                .map(|s| (section, s))
        });
        let Some((section, setting)) = found.filter(|_| upper != CONFIG_FILE_VARIABLE) else {
            return Err(CoreError::Config(format!(
                "config file {shown}: unknown setting {name:?}; settings go in tables: {}",
                sections
                    .iter()
                    .map(|s| format!("[{}]", s.table))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let value = scalar(path, &name, setting, value)?;
        warnings.push(format!(
            "config file {shown}: the flat name `{name}` is deprecated; write `{} = ...` under \
             [{}]",
            setting.key, section.table
        ));
        if value.is_empty() {
            continue;
        }
        flat.insert(
            setting.env,
            Entry {
                value,
                origin: Origin::File {
                    path: path.to_path_buf(),
                    key: name,
                },
            },
        );
    }
    for (env, entry) in flat {
        values.entry(env).or_insert(entry);
    }
    Ok(Parsed { values, warnings })
}

/// A string, number or boolean as text; secrets and other types are errors (never echoing
/// the value of a secret).
fn scalar(path: &Path, place: &str, setting: &Setting, value: toml::Value) -> Result<String> {
    let shown = path.display();
    if setting.env_only {
        return Err(CoreError::Config(format!(
            "config file {shown}: {place} is a secret; set {} in the environment instead",
            setting.env
        )));
    }
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(CoreError::Config(format!(
            "config file {shown}: {place} must be a string, number or boolean, got {}",
            other.type_str()
        ))),
    }
}

/// The places in the config file `path` that hold a secret (a setting that may only come from
/// the environment, such as `[postgres] password`, or a flat `postgres_password`), as
/// `[table] key` or the flat name; never their values. For audits: loading refuses such a
/// file. A file that cannot be read or parsed holds none that can be named.
pub fn secrets_in_file(path: &Path, sections: &[Section]) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            let Some(section) = sections.iter().find(|s| s.table == name) else {
                continue;
            };
            for key in inner.keys() {
                if section
                    .settings
                    .iter()
                    .any(|s| s.key == key.as_str() && s.env_only)
                {
                    found.push(format!("[{name}] {key}"));
                }
            }
        } else {
            let upper = name.to_ascii_uppercase();
            let secret = sections
                .iter()
                .flat_map(|s| s.settings.iter())
                .any(|s| s.env == upper && s.env_only);
            if secret {
                found.push(name);
            }
        }
    }
    found
}
