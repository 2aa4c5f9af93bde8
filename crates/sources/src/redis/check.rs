//! Dry run: parse the whole RDB and count keys per database and type. (Skeleton.)

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};
use backup_rdb::RdbSummary;

/// A [`RestoreTarget`] that parses the RDB completely and writes nothing.
#[derive(Debug, Default)]
pub struct RdbCheck {
    /// What was found, after a successful run.
    pub summary: Option<RdbSummary>,
}

#[async_trait]
impl RestoreTarget for RdbCheck {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let summary = RdbSummary::read(stream).await?;
        let notes = vec![format!(
            "RDB version {}, {} keys",
            summary.version,
            summary.keys_per_db.values().sum::<u64>()
        )];
        let bytes = summary.bytes;
        self.summary = Some(summary);
        Ok(RestoreSummary {
            plain_bytes: bytes,
            notes,
        })
    }
}
