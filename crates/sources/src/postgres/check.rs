//! The dry run: check a dump stream to its end without touching any database.

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};

use super::apply::{apply_dump, SqlTarget};
use super::tools::PgTools;
use crate::error::SourceError;

/// A [`RestoreTarget`] for `--dry-run`: reads the (verified) stream to its end and checks that
/// it is a complete dump, touching no database.
///
/// A plain dump must end with pg_dump's completion marker. A custom archive is converted to SQL
/// by `pg_restore --file=-` (which reads every block, so truncation and corruption show), whose
/// exit status and output's completion marker are checked. Nothing connects to a server.
#[derive(Debug, Clone, Default)]
pub struct PgDumpCheck {
    tools: Option<PgTools>,
}

impl PgDumpCheck {
    /// A check that finds `pg_restore` when it needs one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses these tools instead of discovering them.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = Some(tools);
        self
    }

    async fn run(&mut self, stream: ByteStream) -> Result<RestoreSummary, SourceError> {
        let applied = apply_dump(stream, SqlTarget::Discard, self.tools.as_ref()).await?;
        let mut notes = vec!["dry run: no database was touched".to_owned()];
        notes.extend(applied.notes());
        Ok(RestoreSummary {
            plain_bytes: applied.input_bytes,
            notes,
        })
    }
}

#[async_trait]
impl RestoreTarget for PgDumpCheck {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        Ok(self.run(stream).await?)
    }
}
