//! Log sequence numbers (`0/3000028`): positions in the WAL.

use std::fmt;
use std::str::FromStr;

use crate::error::SourceError;

/// A position in the WAL, as PostgreSQL prints it (`X/Y`, two hex halves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The number of the segment holding this position, for segments of `segment_size` bytes.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size.max(1)
    }

    /// The number of the segment holding the last byte before this position: the last
    /// segment a backup that stopped here needs (a stop exactly at a segment boundary needs
    /// nothing of the next segment).
    pub fn segment_before(self, segment_size: u64) -> u64 {
        self.0.saturating_sub(1) / segment_size.max(1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SourceError::Wal(format!(
                "{s:?} is not a WAL position: expected two hex numbers separated by a slash, \
                 as PostgreSQL prints them (0/3000028)"
            ))
        };
        let (high, low) = s.trim().split_once('/').ok_or_else(bad)?;
        let valid = |part: &str| !part.is_empty() && part.len() <= 8;
        if !valid(high) || !valid(low) {
            return Err(bad());
        }
        let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Self(high << 32 | low))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_print_and_name_their_segments() {
        let lsn: Lsn = "1/3000028".parse().unwrap();
        assert_eq!(lsn.0, (1 << 32) | 0x300_0028);
        assert_eq!(lsn.to_string(), "1/3000028");
        assert_eq!(lsn.segment(16 << 20), 256 + 3);
        let boundary: Lsn = "0/4000000".parse().unwrap();
        assert_eq!(boundary.segment(16 << 20), 4);
        assert_eq!(boundary.segment_before(16 << 20), 3);
        for bad in ["", "0", "0/", "/1", "x/1", "123456789/0", "0/1/2"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }
}
