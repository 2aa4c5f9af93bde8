//! Loads the testkit's sample booking database into an existing, empty PostgreSQL database.
//!
//! The benchmark (`scripts/bench.sh`) uses it to fill its own throwaway server with data of a
//! chosen size; it works against any server. It connects (tokio-postgres, through
//! [`PgConnection`]) with the same variables and rules as the binaries: `DATABASE_URL`, or
//! `POSTGRES_HOST` (default `localhost`), `POSTGRES_PORT` (`5432`), `POSTGRES_USER`
//! (`postgres`), `POSTGRES_PASSWORD` and `POSTGRES_DB` (`postgres`). The password is taken from
//! the environment only and never printed.
//!
//! Run: `cargo run --release --example load_sample_data -- --scale 10 [--database NAME]`.
//! Scale 1 is roughly 1.5 MB of plain `pg_dump` output; size grows linearly with the scale.

use std::time::Instant;

use anyhow::{bail, Context};
use backup::sources::postgres::PgConnection;

const USAGE: &str = "\
usage: load_sample_data [--scale N] [--database NAME]

Creates the sample booking schema (schemas public and reporting) in an empty database and fills
it with deterministic, realistic data; scale 1 is roughly 1.5 MB of plain pg_dump output.

  --scale N          size multiplier, at least 1 (default 1)
  --database NAME    database to load into (default: POSTGRES_DB, or DATABASE_URL's)

Connection: DATABASE_URL, or POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and
POSTGRES_DB (defaults localhost, 5432, postgres, none, postgres).";

/// What the command line asked for.
struct Args {
    scale: u32,
    database: Option<String>,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        scale: 1,
        database: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| argv.next())
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--scale" => {
                let v = value("--scale")?;
                args.scale = v
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .with_context(|| format!("--scale takes a whole number >= 1, got {v:?}"))?;
            }
            "--database" => args.database = Some(value("--database")?),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    // The binaries' own connection settings (and their rules for DATABASE_URL and defaults).
    let mut connection = PgConnection::from_env().context("reading the connection settings")?;
    if let Some(db) = &args.database {
        connection = connection.with_dbname(db);
    }
    let target = format!(
        "database {:?} on {} as {}",
        connection.dbname(),
        connection.endpoint(),
        connection.user()
    );
    let client = connection
        .connect()
        .await
        .with_context(|| format!("connecting to {target}"))?;

    let started = Instant::now();
    backup_testkit::load_sample_data(&client, args.scale)
        .await
        .with_context(|| format!("loading sample data (scale {}) into {target}", args.scale))?;
    let elapsed = started.elapsed();

    // Row estimates are exact here: the loader ends with ANALYZE.
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.reltuples::bigint,
                    pg_total_relation_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname IN ('public', 'reporting')
             ORDER BY 1",
            &[],
        )
        .await
        .context("listing the loaded tables")?;
    let db_size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .context("reading the database size")?
        .get(0);
    println!(
        "loaded sample data at scale {} into {target} in {:.1}s; database size {:.1} MiB",
        args.scale,
        elapsed.as_secs_f64(),
        mib(db_size)
    );
    println!("  {:<28} {:>12} {:>12}", "table", "rows", "MiB on disk");
    for row in &rows {
        let (name, count, bytes): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        println!("  {name:<28} {count:>12} {:>12.1}", mib(bytes));
    }
    Ok(())
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
