//! Object keys: what every [`Sink`](crate::Sink) accepts.
//!
//! A key is a `/`-separated relative path such as
//! `database/randevubu_backup_20240115_020000.sql.gz.enc`. The rules are strict enough that a
//! key is always a safe relative file path under a [`LocalSink`](crate::LocalSink) root, and the
//! same everywhere, so an object written to one sink can be copied to any other.
//!
//! Names starting with [`TEMP_PREFIX`] are reserved for temporary files of writes in progress:
//! no key segment may use it, so a temporary file can never be mistaken for (or overwrite) an
//! object.

use crate::error::{Result, StorageError};

/// The longest accepted key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 1024;

/// Prefix of the names of temporary files; reserved, no key segment may start with it.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Checks that `key` is an acceptable object key.
///
/// A key is non-empty, at most 1024 bytes, relative (no leading `/`), has no empty
/// segment (`a//b`, trailing `/`), no `.` or `..` segment, no NUL or `\` character, and no
/// segment starting with `.tmp-` (reserved for temporary files of writes in progress).
pub fn validate_key(key: &str) -> Result<()> {
    let invalid = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("the key is empty");
    }
    check_common(key)?;
    for segment in key.split('/') {
        if segment.is_empty() {
            return invalid("empty path segment (leading, trailing or doubled '/')");
        }
        check_segment(key, segment)?;
    }
    Ok(())
}

/// Checks a [`Sink::list`](crate::Sink::list) prefix, more loosely than a key: it may be empty,
/// end with `/` or end in a partial segment, but it must not start with `/`, contain a `..`
/// segment, NUL or `\`, or an empty, `.` or reserved segment before its last `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    check_common(prefix)?;
    let invalid = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: prefix.to_owned(),
            reason,
        })
    };
    let (folders, last) = match prefix.rfind('/') {
        Some(slash) => (&prefix[..slash], &prefix[slash + 1..]),
        None => ("", prefix),
    };
    if last == ".." {
        return invalid("'..' path segment");
    }
    if prefix.contains('/') {
        for segment in folders.split('/') {
            if segment.is_empty() {
                return invalid("empty path segment (leading or doubled '/')");
            }
            check_segment(prefix, segment)?;
        }
    }
    Ok(())
}

/// The checks shared by keys and prefixes: length, leading `/`, forbidden characters.
fn check_common(key: &str) -> Result<()> {
    let invalid = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.len() > MAX_KEY_LEN {
        return invalid("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return invalid("absolute path (leading '/'); keys are relative");
    }
    if key.contains('\0') {
        return invalid("contains a NUL character");
    }
    if key.contains('\\') {
        return invalid("contains a backslash; use '/' to separate folders");
    }
    Ok(())
}

/// The checks on one non-empty segment of a key.
fn check_segment(key: &str, segment: &str) -> Result<()> {
    let invalid = |reason: &'static str| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if segment == "." || segment == ".." {
        return invalid("'.' or '..' path segment");
    }
    if segment.starts_with(TEMP_PREFIX) {
        return invalid(
            "a path segment starts with '.tmp-', which is reserved for temporary files",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "database/randevubu_backup_20240115_020000.sql.gz.enc",
            "redis/latest/redis_backup_20240115_020000.rdb.gz",
            "x",
            ".hidden",
            "..dots",
            "a/.b/c..",
            "ünïcødé dir/file with spaces ✓.txt",
            ".tmp",
            "tmp-x/.tmpfoo",
        ] {
            assert!(validate_key(key).is_ok(), "{key:?} should be accepted");
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn rejects_unsafe_or_malformed_keys() {
        for key in [
            "",
            "/abs",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "/",
            "a\\b",
            "a\0b",
            ".tmp-x",
            "a/.tmp-b.0123456789abcdef",
        ] {
            match validate_key(key) {
                Err(StorageError::InvalidKey { key: rejected, .. }) => assert_eq!(rejected, key),
                other => panic!("{key:?} should be rejected, got {other:?}"),
            }
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn prefixes_may_be_empty_partial_or_end_with_slash() {
        for prefix in ["", "database/", "database/rand", "a/b/", "a/.", "x"] {
            assert!(
                validate_prefix(prefix).is_ok(),
                "{prefix:?} should be accepted"
            );
        }
    }

    #[test]
    fn prefixes_must_not_escape_or_be_absolute() {
        for prefix in [
            "..", "../", "../x", "a/../", "/abs", "/", "a//", "a\\", "./a",
        ] {
            assert!(
                validate_prefix(prefix).is_err(),
                "{prefix:?} should be rejected"
            );
        }
    }
}
