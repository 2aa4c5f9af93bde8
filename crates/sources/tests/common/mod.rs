//! Helpers shared by the PostgreSQL integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use backup_core::{ByteStream, Source, SourceFacts};
use backup_sources::postgres::{DumpFormat, PgConnection, PostgresSource};
use backup_testkit::{
    load_sample_data, sequence_values, table_checksums, PgCluster, TableChecksum,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The database the sample data is loaded into.
pub const APP_DB: &str = "app";

/// A cluster with sample data (scale 1) in [`APP_DB`].
pub async fn cluster_with_sample() -> PgCluster {
    let cluster = PgCluster::start().await.unwrap();
    cluster.create_database(APP_DB).await.unwrap();
    load_sample_data(&cluster.connect(APP_DB).await.unwrap(), 1)
        .await
        .unwrap();
    cluster
}

/// Connection settings for `db`, read from the same variables the binaries read.
pub fn conn(cluster: &PgCluster, db: &str) -> PgConnection {
    let env = cluster.env(db);
    PgConnection::from_env_map(&|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .unwrap()
}

/// Dumps `db` completely into memory.
pub async fn dump(cluster: &PgCluster, db: &str, format: DumpFormat) -> (Vec<u8>, SourceFacts) {
    let mut source = PostgresSource::new(conn(cluster, db), format);
    let mut stream = source.open().await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let facts = source.finish().await.unwrap();
    (bytes, facts)
}

/// Table checksums and sequence values of `db`.
pub type Fingerprint = (
    BTreeMap<String, TableChecksum>,
    BTreeMap<String, Option<i64>>,
);

/// Fingerprint of `db`.
pub async fn fingerprint(cluster: &PgCluster, db: &str) -> Fingerprint {
    let client = cluster.connect(db).await.unwrap();
    (
        table_checksums(&client).await.unwrap(),
        sequence_values(&client).await.unwrap(),
    )
}

/// Number of tables outside the system schemas in `db`.
pub async fn table_count(cluster: &PgCluster, db: &str) -> i64 {
    let client = cluster.connect(db).await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A stream over `bytes`.
pub fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::new(io::Cursor::new(bytes))
}

/// A stream that yields `bytes[..fail_at]` and then fails, as a verifying reader does on a
/// hash or HMAC mismatch.
pub fn failing_stream(bytes: Vec<u8>, fail_at: usize) -> ByteStream {
    Box::new(FailAfter {
        data: bytes[..fail_at].to_vec(),
        pos: 0,
        then: Then::Fail,
    })
}

/// A stream that yields `bytes[..stall_at]` and then never returns anything.
pub fn stalling_stream(bytes: Vec<u8>, stall_at: usize) -> ByteStream {
    Box::new(FailAfter {
        data: bytes[..stall_at].to_vec(),
        pos: 0,
        then: Then::Stall,
    })
}

/// Text of the injected error.
pub const INJECTED: &str = "injected failure: SHA-256 mismatch";

enum Then {
    Fail,
    Stall,
}

struct FailAfter {
    data: Vec<u8>,
    pos: usize,
    then: Then,
}

impl AsyncRead for FailAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let remaining = this.data.len() - this.pos;
        if remaining > 0 {
            // Small reads, so the failure comes after psql got a good part of the data.
            let n = remaining.min(8192).min(buf.remaining());
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        match this.then {
            Then::Fail => Poll::Ready(Err(io::Error::other(INJECTED))),
            Then::Stall => Poll::Pending,
        }
    }
}

/// The plain dump cut at the statement boundary just before pg_dump's completion marker: every
/// statement is complete, only the marker is missing.
pub fn without_trailer(plain: &[u8]) -> Vec<u8> {
    let marker = b"\n--\n-- PostgreSQL database dump complete";
    let pos = plain
        .windows(marker.len())
        .rposition(|w| w == marker)
        .expect("plain dump has the marker");
    plain[..pos + 1].to_vec()
}

/// Database names on the cluster.
pub async fn databases(cluster: &PgCluster) -> Vec<String> {
    cluster.databases().await.unwrap()
}
