//! Test support for the backup workspace: throwaway PostgreSQL clusters, an in-process S3
//! server, sample data and table checksums.
//!
//! Everything here runs real services: [`PgCluster::start`] runs `initdb` and `postgres` from
//! the newest `/usr/lib/postgresql/*/bin` in a temporary directory on a free port (as the
//! `postgres` user when the tests run as root) and stops and deletes it again on drop.
//! [`load_sample_data`] fills a database with a realistic booking-app schema, and
//! [`table_checksums`] / [`sequence_values`] fingerprint a database so that a restore can be
//! proved exact by comparing two maps.
//!
//! [`S3Server`] runs an S3 server (s3s + s3s-fs) on `127.0.0.1` inside the test process, with
//! real SigV4 authentication, a request log and fault injection.
//!
//! A missing PostgreSQL installation is a loud failure, never a silent skip: install it with
//! `apt-get install -y postgresql`.

mod checksum;
mod cluster;
mod disk;
pub mod hostile_rdb;
mod redis;
mod redis_sample;
mod s3;
mod sample;

pub use checksum::{sequence_values, table_checksums, TableChecksum};
pub use cluster::{find_pg_bin_dir, PgCluster, PgOptions};
pub use disk::{fill_filesystem, fs_size_bytes, fs_used_bytes, stop_process};
pub use redis::{read_resp_command, RedisOptions, RedisServer};
pub use redis_sample::{
    assert_snapshots_match, diff_snapshots, escape, load_redis_sample, redis_functions,
    redis_snapshot, KeySnapshot, SampleStats, FAR_FUTURE_MS, REDIS_SAMPLE_DBS,
    REDIS_SAMPLE_EMPTY_DB, REDIS_SAMPLE_LIBRARY,
};
pub use s3::{S3RequestRecord, S3Server};
pub use sample::{load_sample_data, SAMPLE_TABLES};
