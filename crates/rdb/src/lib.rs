//! Redis RDB files: a streaming parser and validator, CRC-64 (Jones, as Redis uses) and
//! `RESTORE` payloads.
//!
//! [`RdbReader`] pulls an RDB stream from any [`tokio::io::AsyncRead`] and yields one
//! [`Item`] at a time (auxiliary fields, database selectors, keys with their expiry and value,
//! functions, module aux data). Memory use is bounded by a budget
//! ([`ParseOptions::budget`], 64 MiB by default), never by the size of the file or by what it
//! declares: hostile input ends in a clean [`RdbError`] naming what did not fit. The trailing CRC-64 is checked before [`RdbReader::next`] returns
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
mod intset;
mod listpack;
mod lzf;
mod parse;
mod payload;
mod reader;
mod stream;
mod ziplist;
mod zipmap;

pub use crc64::{crc64, Crc64};
pub use error::RdbError;
pub use payload::{
    into_restore_payload, payload_rdb_version, restore_payload, verify_restore_payload,
};
pub use reader::{
    Entry, Item, ParseOptions, RdbReader, RdbSummary, ValueType, DEFAULT_MEMORY_BUDGET,
    MAX_AUX_BYTES, MAX_BULK_BYTES, SUMMARY_AUX_FIELDS, SUMMARY_DATABASES,
};

/// The highest RDB format version this crate reads (Redis 7.4 up to 8.4 write 12; 8.6 writes
/// 13, whose new stream encoding this crate does not know yet, so such files are refused with
/// [`RdbError::UnsupportedVersion`]).
pub const MAX_RDB_VERSION: u16 = 12;

/// The RDB format version each Redis release writes, newest first: `(major, minor, version)`.
/// Used to tell whether a server can load (or `RESTORE`) a payload of a given RDB version.
///
/// Checked against `RDB_VERSION` in `src/rdb.h` of the Redis release tags (3.2: 7, 4.0: 8,
/// 5.0 to 6.2: 9, 7.0: 10, 7.2: 11, 7.4: 12, 8.0 milestones: 12); 8.0 to 8.4 still write 12
/// and 8.6 writes 13 (Redis's own librdb version table).
pub const REDIS_RDB_VERSIONS: &[(u32, u32, u16)] = &[
    (8, 6, 13),
    (7, 4, 12),
    (7, 2, 11),
    (7, 0, 10),
    (6, 2, 9),
    (6, 0, 9),
    (5, 0, 9),
    (4, 0, 8),
    (3, 2, 7),
    (2, 6, 6),
    (2, 4, 5),
];

/// The RDB version a Redis server of `redis_version` (e.g. `7.0.15`) writes and accepts at
/// most; `None` when the version string cannot be parsed. Versions newer than the table's
/// newest entry map to the newest known RDB version.
pub fn rdb_version_for_server(redis_version: &str) -> Option<u16> {
    // Leading digits of each part, so that `7.4-rc1` or `8.0-m01` parse too.
    fn number(part: &str) -> Option<u32> {
        let end = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        part.get(..end)?.parse().ok()
    }
    let mut parts = redis_version.trim().split('.');
    let major = number(parts.next()?)?;
    let minor = parts.next().map_or(Some(0), number)?;
    REDIS_RDB_VERSIONS
        .iter()
        .find(|(ma, mi, _)| (major, minor) >= (*ma, *mi))
        .map(|(_, _, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(rdb_version_for_server("7.0.15"), Some(10));
        assert_eq!(rdb_version_for_server("7.2.4"), Some(11));
        assert_eq!(rdb_version_for_server("7.4.1"), Some(12));
        assert_eq!(rdb_version_for_server("7.4-rc1"), Some(12));
        assert_eq!(rdb_version_for_server("8.0-m01"), Some(12));
        assert_eq!(rdb_version_for_server("8.2.1"), Some(12));
        assert_eq!(rdb_version_for_server("8.6.0"), Some(13));
        assert_eq!(rdb_version_for_server("6.2.14"), Some(9));
        assert_eq!(rdb_version_for_server("5.0.0"), Some(9));
        assert_eq!(rdb_version_for_server("4.0.14"), Some(8));
        assert_eq!(rdb_version_for_server("3.2.12"), Some(7));
        assert_eq!(rdb_version_for_server("3.0.7"), Some(6));
        assert_eq!(rdb_version_for_server("2.4.0"), Some(5));
        assert_eq!(rdb_version_for_server("1.2"), None);
        assert_eq!(rdb_version_for_server("banana"), None);
        assert_eq!(rdb_version_for_server(" 7 "), Some(10));
    }
}
