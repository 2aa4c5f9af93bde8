//! Row counts of every table, for the restore drill: taken in the very snapshot `pg_dump`
//! dumps (the source exports it and gives it to `pg_dump --snapshot`), and again in the
//! database the backup was restored into; the two must be equal.

use std::collections::BTreeMap;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::connection::PgConnection;
use super::restore::quote_ident;
use crate::error::SourceError;

/// The tables whose rows a dump holds: ordinary and partitioned tables outside the system
/// schemas, not owned by an extension.
pub(crate) const TABLES: &str = "\
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

/// The row count of every table of the database `client` is connected to, keyed
/// `schema.table`, in the client's current snapshot.
///
/// # Errors
/// [`SourceError::Query`] when a query fails.
pub async fn row_counts(client: &Client) -> Result<BTreeMap<String, u64>, SourceError> {
    let tables = client
        .query(TABLES, &[])
        .await
        .map_err(|e| SourceError::query("listing the tables", e))?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let sql = format!(
            "SELECT count(*) FROM ONLY {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        );
        let count: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| SourceError::query(format!("counting the rows of {schema}.{table}"), e))?
            .get(0);
        counts.insert(
            format!("{schema}.{table}"),
            u64::try_from(count).unwrap_or(0),
        );
    }
    Ok(counts)
}

/// The differences between the counts a backup recorded and those found after restoring it,
/// one line each; empty when they agree.
pub fn compare_row_counts(
    recorded: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut differences = Vec::new();
    for (table, expected) in recorded {
        match found.get(table) {
            None => differences.push(format!("{table}: missing after the restore")),
            Some(n) if n != expected => differences.push(format!(
                "{table}: {n} rows restored, {expected} recorded at backup time"
            )),
            Some(_) => {}
        }
    }
    for table in found.keys().filter(|t| !recorded.contains_key(*t)) {
        differences.push(format!(
            "{table}: restored, but not recorded at backup time"
        ));
    }
    differences
}

/// A snapshot exported for `pg_dump --snapshot`, with the row counts taken in it. The
/// exporting transaction stays open (so `pg_dump` can import the snapshot) until
/// [`finish`](Self::finish).
pub(crate) struct CountedSnapshot {
    /// The snapshot's id, for `pg_dump --snapshot`.
    pub id: String,
    release: Option<oneshot::Sender<()>>,
    counts: JoinHandle<Result<BTreeMap<String, u64>, SourceError>>,
}

impl CountedSnapshot {
    /// Opens a repeatable-read transaction, exports its snapshot, and counts every table's
    /// rows in it in the background.
    pub async fn export(conn: &PgConnection) -> Result<Self, SourceError> {
        let client = conn.connect().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| SourceError::query("opening the snapshot transaction", e))?;
        let id: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| SourceError::query("exporting the snapshot", e))?
            .get(0);
        let (release, released) = oneshot::channel::<()>();
        let counts = tokio::spawn(async move {
            let counts = row_counts(&client).await;
            // Keep the snapshot until pg_dump is done with it (or the source is dropped).
            let _ = released.await;
            let _ = client.batch_execute("COMMIT").await;
            counts
        });
        Ok(Self {
            id,
            release: Some(release),
            counts,
        })
    }

    /// Ends the transaction and returns the counts.
    pub async fn finish(mut self) -> Result<BTreeMap<String, u64>, SourceError> {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        match (&mut self.counts).await {
            Ok(counts) => counts,
            Err(e) => Err(SourceError::Usage(if e.is_panic() {
                "the row count task panicked"
            } else {
                "the row count task was cancelled"
            })),
        }
    }
}

impl Drop for CountedSnapshot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_table_and_both_counts() {
        let recorded = BTreeMap::from([
            ("public.a".to_owned(), 3),
            ("public.b".to_owned(), 5),
            ("public.gone".to_owned(), 1),
        ]);
        let found = BTreeMap::from([
            ("public.a".to_owned(), 3),
            ("public.b".to_owned(), 4),
            ("public.new".to_owned(), 0),
        ]);
        assert_eq!(
            compare_row_counts(&recorded, &found),
            [
                "public.b: 4 rows restored, 5 recorded at backup time",
                "public.gone: missing after the restore",
                "public.new: restored, but not recorded at backup time",
            ]
        );
        assert!(compare_row_counts(&recorded, &recorded).is_empty());
    }
}
