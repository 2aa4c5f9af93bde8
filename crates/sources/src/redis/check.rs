//! Dry run: parse the whole RDB and count keys per database and type.

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};
use backup_rdb::{ParseOptions, RdbSummary};

use crate::redis::error::RedisError;

/// A [`RestoreTarget`] that parses the RDB completely (every value walked, the trailing
/// CRC-64 checked) and writes nothing. Its notes give the RDB version, the `redis-ver` that
/// wrote it, the checksum status, and the keys per database and type, and the function
/// libraries.
#[derive(Debug, Default)]
pub struct RdbCheck {
    /// What was found, after a successful run.
    pub summary: Option<RdbSummary>,
    /// The parser's memory budget ([`ParseOptions::memory_budget`]; `None`: 64 MiB).
    pub parse_memory: Option<u64>,
}

#[async_trait]
impl RestoreTarget for RdbCheck {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let options = ParseOptions {
            memory_budget: self.parse_memory,
            ..ParseOptions::default()
        };
        let summary = RdbSummary::read_with(stream, options)
            .await
            .map_err(|source| RedisError::Rdb {
                context: "the backup is not a valid RDB file".to_owned(),
                source,
            })?;
        let notes = summary_notes(&summary);
        let bytes = summary.bytes;
        self.summary = Some(summary);
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes,
        })
    }
}

/// Notes describing an RDB: version, checksum, keys per database and type, functions.
pub(crate) fn summary_notes(s: &RdbSummary) -> Vec<String> {
    let mut notes = vec![format!(
        "RDB version {}{}, checksum {}",
        s.version,
        s.aux
            .get("redis-ver")
            .map(|v| format!(" written by Redis {v}"))
            .unwrap_or_default(),
        if s.checksum_verified {
            "verified"
        } else {
            "absent (written with rdbchecksum no)"
        }
    )];
    notes.push(format!(
        "{} keys in {} database(s), {} with an expiry; {} function librar{}",
        s.keys(),
        s.keys_per_db.len() + usize::from(s.keys_in_other_dbs > 0),
        s.keys_with_expiry,
        s.functions,
        if s.functions == 1 { "y" } else { "ies" }
    ));
    for (db, keys) in &s.keys_per_db {
        let types = s
            .types_per_db
            .get(db)
            .map(|t| {
                t.iter()
                    .map(|(ty, n)| format!("{} {n}", ty.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        notes.push(format!("db {db}: {keys} keys ({types})"));
    }
    if s.keys_in_other_dbs > 0 {
        notes.push(format!(
            "{} keys in databases beyond the first {} listed",
            s.keys_in_other_dbs,
            backup_rdb::SUMMARY_DATABASES
        ));
    }
    if s.module_aux > 0 {
        notes.push(format!("{} module aux record(s)", s.module_aux));
    }
    notes
}
