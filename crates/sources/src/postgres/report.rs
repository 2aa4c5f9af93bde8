//! The recovery report of a database restore: what was restored (the backup, its time, the
//! tables and their rows, the roles), how long it took, and whether the restored database
//! matches what the backup's manifest recorded (its number of tables, and its row counts where
//! they were recorded).

use std::collections::BTreeMap;

use backup_core::FetchedBackup;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::connection::PgConnection;
use super::globals::GlobalsReport;
use super::rows::{compare_row_counts, row_counts};
use crate::error::SourceError;

/// What a restore brought back, and whether it matches the backup.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// The backup's object name.
    pub backup: String,
    /// When the backup started (UTC), from its manifest.
    pub backup_started_at: Option<DateTime<Utc>>,
    /// `host:port` of the server restored into.
    pub server: String,
    /// The database restored into.
    pub database: String,
    /// How long the restore took (roles, download, restore and this check), in seconds.
    pub seconds: f64,
    /// Rows of every table found after the restore, keyed `schema.table`.
    pub tables: BTreeMap<String, u64>,
    /// All of them.
    pub rows: u64,
    /// How many tables the database had at backup time (manifests of this version record it).
    pub recorded_tables: Option<u64>,
    /// Whether the manifest recorded every table's row count (taken in the dump's snapshot).
    pub row_counts_recorded: bool,
    /// Each difference from what the manifest recorded, one line each.
    pub differences: Vec<String>,
    /// `true`: the restored database matches everything the manifest recorded; `false`: see
    /// `differences`; `None`: the manifest recorded nothing to compare with (old or legacy
    /// backups).
    pub matches_backup: Option<bool>,
    /// The roles and tablespaces created or found (`--with-globals`).
    pub globals: Option<GlobalsReport>,
}

impl RecoveryReport {
    /// Counts the rows of every table of the database `restored` (connection to the database
    /// just restored into) and compares them with what the manifest of `fetched` recorded.
    ///
    /// # Errors
    /// When the database cannot be reached or read.
    pub async fn check(
        restored: &PgConnection,
        fetched: &FetchedBackup,
        seconds: f64,
        globals: Option<GlobalsReport>,
    ) -> Result<Self, SourceError> {
        let client = restored.connect().await?;
        let tables = row_counts(&client).await?;
        let manifest = fetched.manifest();
        let details = manifest.map(|m| &m.source.details);
        let recorded_rows: Option<BTreeMap<String, u64>> = details
            .and_then(|d| d.get("table_rows"))
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let recorded_tables = details
            .and_then(|d| d.get("user_tables"))
            .and_then(serde_json::Value::as_u64);
        let mut differences = match &recorded_rows {
            Some(recorded) => compare_row_counts(recorded, &tables),
            None => Vec::new(),
        };
        if let Some(recorded) = recorded_tables {
            if recorded != tables.len() as u64 {
                differences.push(format!(
                    "{} tables restored, {recorded} at backup time",
                    tables.len()
                ));
            }
        }
        let compared = recorded_rows.is_some() || recorded_tables.is_some();
        Ok(Self {
            backup: fetched.entry().key.clone(),
            backup_started_at: manifest.map(|m| m.started_at),
            server: restored.endpoint(),
            database: restored.dbname().to_owned(),
            seconds,
            rows: tables.values().sum(),
            tables,
            recorded_tables,
            row_counts_recorded: recorded_rows.is_some(),
            matches_backup: compared.then_some(differences.is_empty()),
            differences,
            globals,
        })
    }

    /// The report for people, one line per fact.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "restored {} into database {:?} on {} in {:.1} s",
            self.backup_started_at
                .map(|t| format!("the backup of {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_else(|| "the backup".to_owned()),
            self.database,
            self.server,
            self.seconds
        )];
        lines.push(format!(
            "{} tables, {} rows{}",
            self.tables.len(),
            self.rows,
            match self.tables.iter().max_by_key(|(_, rows)| **rows) {
                Some((table, rows)) if self.tables.len() > 1 => {
                    format!(" (largest: {table}, {rows} rows)")
                }
                _ => String::new(),
            }
        ));
        if let Some(globals) = &self.globals {
            lines.extend(globals.lines(false));
        }
        lines.push(match self.matches_backup {
            Some(true) if self.row_counts_recorded => {
                "matches the backup: every table and row count it recorded".to_owned()
            }
            Some(true) => "matches the backup: the number of tables it recorded (row counts \
                           were not recorded)"
                .to_owned(),
            Some(false) => format!("DOES NOT MATCH the backup: {}", self.differences.join("; ")),
            None => "the backup recorded nothing to compare with (made by an earlier version)"
                .to_owned(),
        });
        lines
    }
}
