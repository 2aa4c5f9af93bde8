//! Per-table fingerprints, to prove that a restored database equals the original.

use std::collections::BTreeMap;

use anyhow::Context;

/// Row count and content hash of one table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableChecksum {
    /// Number of rows.
    pub rows: i64,
    /// `md5` over the `md5` of every row's text form, in sorted order: independent of the
    /// physical row order, sensitive to any change of any value.
    pub md5: String,
}

/// Session settings that fix the text form of values (time zone, date style, ...), so that two
/// databases compare equal whatever their server defaults.
const STABLE_OUTPUT: &str = "SET LOCAL TimeZone = 'UTC'; \
     SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; \
     SET LOCAL extra_float_digits = 1; \
     SET LOCAL bytea_output = 'hex'; \
     SET LOCAL max_parallel_workers_per_gather = 0;";

/// Runs `body` inside a read-only repeatable-read transaction with [`STABLE_OUTPUT`], so all
/// tables are read from one snapshot; the session is left as it was.
async fn in_snapshot<T>(
    client: &tokio_postgres::Client,
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {STABLE_OUTPUT}"
        ))
        .await
        .context("starting the checksum transaction")?;
    let result = body.await;
    let end = client
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    let value = result?;
    end.context("ending the checksum transaction")?;
    Ok(value)
}

/// Row count and content hash of every ordinary table in every non-system schema, keyed by
/// `schema.table` (unquoted).
///
/// Comparing the maps of two databases proves one is an exact copy of the other. Sequences are
/// not tables; see [`sequence_values`].
///
/// # Errors
/// When a query fails.
pub async fn table_checksums(
    client: &tokio_postgres::Client,
) -> anyhow::Result<BTreeMap<String, TableChecksum>> {
    in_snapshot(client, async {
        let tables = client
            .query(
                "SELECT n.nspname, c.relname, \
                        quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' \
                   AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .context("listing tables")?;
        let mut sums = BTreeMap::new();
        for table in tables {
            let schema: String = table.get(0);
            let name: String = table.get(1);
            let quoted: String = table.get(2);
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), \
                                md5(coalesce(string_agg(h, '' ORDER BY h COLLATE \"C\"), '')) \
                         FROM (SELECT md5(t::text) AS h FROM {quoted} t) AS rows"
                    ),
                    &[],
                )
                .await
                .with_context(|| format!("checksumming {quoted}"))?;
            sums.insert(
                format!("{schema}.{name}"),
                TableChecksum {
                    rows: row.get(0),
                    md5: row.get(1),
                },
            );
        }
        Ok(sums)
    })
    .await
}

/// The current value of every sequence in every non-system schema, keyed by `schema.sequence`;
/// `None` for a sequence never used (or not readable).
///
/// # Errors
/// When the query fails.
pub async fn sequence_values(
    client: &tokio_postgres::Client,
) -> anyhow::Result<BTreeMap<String, Option<i64>>> {
    in_snapshot(client, async {
        let rows = client
            .query(
                "SELECT schemaname, sequencename, last_value FROM pg_sequences \
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .context("listing sequences")?;
        Ok(rows
            .iter()
            .map(|r| {
                let schema: String = r.get(0);
                let name: String = r.get(1);
                (format!("{schema}.{name}"), r.get::<_, Option<i64>>(2))
            })
            .collect())
    })
    .await
}
