//! `RESTORE` payloads: the value encoding, the RDB version (2 bytes, little endian) and a
//! CRC-64 (8 bytes, little endian) of everything before it, as `DUMP` produces.

use crate::crc64::crc64;
use crate::error::RdbError;

/// Builds a `RESTORE` payload from a captured [`crate::Entry::payload`] (type byte + value)
/// and the RDB version it was read from.
pub fn restore_payload(value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 10);
    out.extend_from_slice(value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// [`restore_payload`] in place: appends the trailer to a captured value (whose
/// [`crate::Entry::payload`] has room reserved for it) instead of copying the value.
pub fn into_restore_payload(mut value: Vec<u8>, rdb_version: u16) -> Vec<u8> {
    value.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(0, &value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

/// The RDB version recorded in a payload's trailer.
pub fn payload_rdb_version(payload: &[u8]) -> Option<u16> {
    let n = payload.len();
    (n >= 10).then(|| u16::from_le_bytes([payload[n - 10], payload[n - 9]]))
}

/// Checks a payload's trailer (length and CRC-64), as `RESTORE` does.
///
/// # Errors
/// [`RdbError::Corrupt`] when too short or the checksum does not match.
pub fn verify_restore_payload(payload: &[u8]) -> Result<(), RdbError> {
    let n = payload.len();
    if n < 10 {
        return Err(RdbError::Corrupt {
            offset: 0,
            detail: format!("a DUMP payload of {n} bytes is too short"),
        });
    }
    let mut recorded = [0u8; 8];
    recorded.copy_from_slice(&payload[n - 8..]);
    let recorded = u64::from_le_bytes(recorded);
    let computed = crc64(0, &payload[..n - 8]);
    if recorded != computed {
        return Err(RdbError::ChecksumMismatch { recorded, computed });
    }
    Ok(())
}
