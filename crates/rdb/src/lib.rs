//! Redis RDB files: a streaming parser and validator, CRC-64 (Jones, as Redis uses) and
//! `RESTORE` payloads.
//!
//! [`RdbReader`] pulls an RDB stream from any [`tokio::io::AsyncRead`] and yields one
//! [`Item`] at a time (auxiliary fields, database selectors, keys with their expiry and value,
//! functions, module aux data). Memory use is bounded by the largest single value, never by
//! the size of the file. The trailing CRC-64 is checked before [`RdbReader::next`] returns
//! `Ok(None)`, so a caller that saw `None` knows the whole file was intact.
//!
//! Every type and encoding Redis 7 writes is understood: strings (raw, integer, LZF),
//! lists (quicklist of ziplists / listpacks, linked list, ziplist), sets (hashtable, intset,
//! listpack), sorted sets (skiplist, ziplist, listpack), hashes (hashtable, zipmap, ziplist,
//! listpack, and the 7.4 field-expiry encodings), streams (listpacks v1-v3 with consumer
//! groups and pending entries), modules (v2 self-describing values), functions and module
//! aux fields. Anything else is a clean [`RdbError`], never a panic.

mod crc64;
mod error;
mod payload;
mod reader;

pub use crc64::{crc64, Crc64};
pub use error::RdbError;
pub use payload::{payload_rdb_version, restore_payload, verify_restore_payload};
pub use reader::{Entry, Item, ParseOptions, RdbReader, RdbSummary, ValueType};

/// The highest RDB format version this crate reads (Redis 7.4 / 8.x write 12).
pub const MAX_RDB_VERSION: u16 = 12;

/// The RDB format version each Redis release writes, newest first: `(major, minor, version)`.
/// Used to tell whether a server can load (or `RESTORE`) a payload of a given RDB version.
pub const REDIS_RDB_VERSIONS: &[(u32, u32, u16)] = &[
    (7, 4, 12),
    (7, 2, 11),
    (7, 0, 10),
    (6, 2, 9),
    (6, 0, 9),
    (5, 0, 9),
    (4, 0, 8),
    (3, 2, 7),
];

/// The RDB version a Redis server of `redis_version` (e.g. `7.0.15`) writes and accepts at
/// most; `None` when the version string cannot be parsed. Versions newer than the table's
/// newest entry map to the newest known RDB version.
pub fn rdb_version_for_server(redis_version: &str) -> Option<u16> {
    let mut parts = redis_version.trim().split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().unwrap_or("0").parse().ok()?;
    REDIS_RDB_VERSIONS
        .iter()
        .find(|(ma, mi, _)| (major, minor) >= (*ma, *mi))
        .map(|(_, _, v)| *v)
}
