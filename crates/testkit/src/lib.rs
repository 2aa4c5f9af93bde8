//! Test support for the backup workspace: throwaway PostgreSQL clusters, sample data and table
//! checksums.
//!
//! Everything here runs real services: [`PgCluster::start`] runs `initdb` and `postgres` from
//! the newest `/usr/lib/postgresql/*/bin` in a temporary directory on a free port (as the
//! `postgres` user when the tests run as root) and stops and deletes it again on drop.
//! [`load_sample_data`] fills a database with a realistic booking-app schema, and
//! [`table_checksums`] / [`sequence_values`] fingerprint a database so that a restore can be
//! proved exact by comparing two maps.
//!
//! A missing PostgreSQL installation is a loud failure, never a silent skip: install it with
//! `apt-get install -y postgresql`.

mod checksum;
mod cluster;
mod sample;

pub use checksum::{sequence_values, table_checksums, TableChecksum};
pub use cluster::{find_pg_bin_dir, PgCluster, PgOptions};
pub use sample::{load_sample_data, SAMPLE_TABLES};
