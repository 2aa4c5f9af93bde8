//! What a restore command shows: the listing of a [`Catalog`] (a table or JSON), object names
//! made safe for a terminal, sizes for people, and how a backup was checked.

use std::fmt::Write as _;
use std::path::Path;

use backup_storage::LocalSink;

use crate::catalog::{entry_for_key, BackupStatus};
use crate::destinations::{Catalog, Destination, Destinations, Listed};
use crate::error::{CoreError, Result};
use crate::layout::BackupKind;

impl Catalog {
    /// One JSON object per backup, oldest first: name, key, time, size, status (and detail),
    /// key id, compression, encryption and the destinations holding it.
    pub fn to_json(&self, destinations: &Destinations) -> serde_json::Value {
        let rows = self
            .listed
            .iter()
            .map(|l| {
                let e = &l.entry;
                serde_json::json!({
                    "name": e.file_name(),
                    "key": e.key,
                    "time": e.timestamp().to_rfc3339(),
                    "size": e.size,
                    "status": e.status.to_string(),
                    "detail": match &e.status {
                        BackupStatus::Damaged(d) => Some(d.clone()),
                        _ => None,
                    },
                    "key_id": e.key_id(),
                    "compression": e.name.compression.name(),
                    "encrypted": e.name.encrypted,
                    "locations": destinations.holder_names(l),
                })
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// A table for people, oldest first (names escaped with [`printable`]), or one line
    /// saying there are no backups and where they were looked for.
    pub fn table(&self, destinations: &Destinations) -> String {
        if self.listed.is_empty() {
            let places: Vec<String> = destinations.iter().map(|d| d.sink().describe()).collect();
            return format!("no {} backups in {}\n", self.kind, places.join(" or "));
        }
        let mut out = format!(
            "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  LOCATION\n",
            "NAME", "TIME (UTC)", "SIZE", "STATUS", "KEY ID"
        );
        for l in &self.listed {
            let e = &l.entry;
            let _ = writeln!(
                out,
                "{:<48}  {:<19}  {:>10}  {:<8}  {:<16}  {}",
                printable(e.file_name()),
                e.timestamp().format("%Y-%m-%d %H:%M:%S"),
                human_bytes(e.size),
                e.status,
                e.key_id().unwrap_or("-"),
                destinations.holder_names(l).join(",")
            );
        }
        out
    }
}

impl Destinations {
    /// A backup file on disk (`--file PATH`), read with its manifest from its own directory:
    /// one destination called `file` and a catalog of that one backup, chosen by
    /// `Selection::Name` of the file name.
    ///
    /// # Errors
    /// [`CoreError::Config`] for a path without a file name or an unusable directory; the
    /// catalog's errors for an object it cannot describe.
    pub async fn for_file(path: &Path, kind: BackupKind) -> Result<(Self, Catalog, String)> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CoreError::Config(format!("--file {path:?} has no file name")))?;
        let sink = LocalSink::new(dir).map_err(|e| CoreError::Config(e.to_string()))?;
        let entry = entry_for_key(&sink, kind, &name).await?;
        let catalog = Catalog {
            kind,
            listed: vec![Listed {
                entry,
                holders: vec![0],
            }],
        };
        let destinations = Self::new(vec![Destination::new("file", Box::new(sink))]);
        Ok((destinations, catalog, name))
    }
}

impl BackupStatus {
    /// How a backup with this status was checked, for a verdict line: only a backup with a
    /// signed manifest is "verified".
    pub fn checked_as(&self) -> &'static str {
        match self {
            Self::Complete => "backup verified",
            _ => "backup read to its end (NOT authenticated: it has no manifest)",
        }
    }

    /// What to add after the size in a verdict line.
    pub fn note(&self) -> &'static str {
        match self {
            Self::Legacy => ", legacy backup without manifest",
            Self::Incomplete => ", incomplete backup without manifest",
            _ => "",
        }
    }
}

/// `name` with control characters escaped (`\n`, `\u{1b}`): an object name is chosen by
/// whoever wrote the object, and must not move the cursor or recolour the terminal.
pub fn printable(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A byte count for people, in binary units: `512 B`, `1.40 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped_for_the_terminal() {
        assert_eq!(
            printable("x_backup_20240101_000000.sql\u{1b}[2J\n"),
            "x_backup_20240101_000000.sql\\u{1b}[2J\\n"
        );
        assert_eq!(printable("Yılmaz_backup.sql"), "Yılmaz_backup.sql");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1_468_006), "1.40 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.00 EiB");
    }
}
