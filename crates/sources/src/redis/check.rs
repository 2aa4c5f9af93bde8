//! Dry run: parse the whole RDB and count keys per database and type.

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};
use backup_rdb::RdbSummary;

use crate::redis::error::RedisError;

/// A [`RestoreTarget`] that parses the RDB completely (every value walked, the trailing
/// CRC-64 checked) and writes nothing. Its notes give the RDB version, the `redis-ver` that
/// wrote it, the checksum status, and the keys per database and type, and the function
/// libraries.
#[derive(Debug, Default)]
pub struct RdbCheck {
    /// What was found, after a successful run.
    pub summary: Option<RdbSummary>,
}

#[async_trait]
impl RestoreTarget for RdbCheck {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let summary = RdbSummary::read(stream)
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
    let total: u64 = s.keys_per_db.values().sum();
    notes.push(format!(
        "{total} keys in {} database(s), {} with an expiry; {} function librar{}",
        s.keys_per_db.len(),
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
    if s.module_aux > 0 {
        notes.push(format!("{} module aux record(s)", s.module_aux));
    }
    notes
}
