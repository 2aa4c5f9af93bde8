//! PostgreSQL's WAL file names and where each is stored.
//!
//! ```text
//! 000000010000000000000003                  a segment (timeline 1, log 0, segment 3)
//! 000000010000000000000003.partial          the last, partial segment of a timeline
//! 00000002.history                          the history of timeline 2
//! 000000010000000000000003.00000028.backup  a base backup's label (its start offset)
//! ```
//! are stored as `wal/{timeline}/{name}[.gz|.zst][.enc]` beside their manifests, where
//! `{timeline}` is the eight hex digits of the file's own timeline.

use backup_core::{BackupKind, Compression};

use crate::error::SourceError;

/// What a WAL file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalFileType {
    /// A whole segment.
    Segment,
    /// The partial last segment of a timeline, archived at promotion.
    Partial,
    /// A timeline's history file.
    History,
    /// A base backup's label (`.backup`).
    BackupLabel,
}

/// A validated WAL file name (the `%f` of `archive_command` and `restore_command`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalFileName {
    name: String,
    file_type: WalFileType,
    timeline: u32,
}

/// Hex digits of a segment name.
const SEGMENT_LEN: usize = 24;

fn is_upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

impl WalFileName {
    /// Parses `name`, which must be exactly one of PostgreSQL's WAL file names (upper-case hex,
    /// see the module), with no directory.
    ///
    /// # Errors
    /// [`SourceError::Config`] naming what is expected.
    pub fn parse(name: &str) -> Result<Self, SourceError> {
        let bad = || {
            SourceError::Wal(format!(
                "{name:?} is not a WAL file name: expected 24 upper-case hex digits (a segment, \
                 e.g. 000000010000000000000003), optionally followed by .partial or \
                 .XXXXXXXX.backup, or 8 hex digits and .history"
            ))
        };
        let (file_type, stem) = if let Some(stem) = name.strip_suffix(".history") {
            if stem.len() != 8 {
                return Err(bad());
            }
            (WalFileType::History, stem)
        } else if let Some(stem) = name.strip_suffix(".partial") {
            (WalFileType::Partial, stem)
        } else if let Some(rest) = name.strip_suffix(".backup") {
            let (stem, offset) = rest.split_once('.').ok_or_else(bad)?;
            if offset.len() != 8 || !is_upper_hex(offset) {
                return Err(bad());
            }
            (WalFileType::BackupLabel, stem)
        } else {
            (WalFileType::Segment, name)
        };
        if file_type != WalFileType::History && stem.len() != SEGMENT_LEN {
            return Err(bad());
        }
        if !is_upper_hex(stem) {
            return Err(bad());
        }
        let timeline = u32::from_str_radix(&stem[..8], 16).map_err(|_| bad())?;
        if timeline == 0 {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            file_type,
            timeline,
        })
    }

    /// The segment `number` (log * segments per log + seg) of `timeline` for segments of
    /// `segment_size` bytes.
    pub fn segment(timeline: u32, number: u64, segment_size: u64) -> Self {
        let per_log = segments_per_log(segment_size);
        Self {
            name: format!(
                "{timeline:08X}{:08X}{:08X}",
                number / per_log,
                number % per_log
            ),
            file_type: WalFileType::Segment,
            timeline,
        }
    }

    /// The history file of `timeline`.
    pub fn history(timeline: u32) -> Self {
        Self {
            name: format!("{timeline:08X}.history"),
            file_type: WalFileType::History,
            timeline,
        }
    }

    /// The name, as PostgreSQL writes it.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What kind of WAL file it is.
    pub fn file_type(&self) -> WalFileType {
        self.file_type
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// The segment number (log * segments per log + seg) for segments of `segment_size`
    /// bytes; `None` for history files. A label or partial file gives its segment's number.
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        if self.file_type == WalFileType::History {
            return None;
        }
        let log = u64::from_str_radix(&self.name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&self.name[16..24], 16).ok()?;
        Some(log * segments_per_log(segment_size) + seg)
    }

    /// The folder of the archive holding this file's timeline: `wal/0000000A/`.
    pub fn folder(&self) -> String {
        timeline_folder(self.timeline)
    }

    /// The object key it is stored under with `compression` and, when `encrypted`, `.enc`.
    pub fn object_key(&self, compression: Compression, encrypted: bool) -> String {
        let mut key = format!("{}{}", self.folder(), self.name);
        if let Some(suffix) = compression.suffix() {
            key.push('.');
            key.push_str(suffix);
        }
        if encrypted {
            key.push_str(".enc");
        }
        key
    }

    /// The WAL file an object key of the archive holds, and how it was stored; `None` for any
    /// other key (a manifest, a claim, a foreign file).
    pub fn from_object_key(key: &str) -> Option<(Self, Compression, bool)> {
        let rest = key.strip_prefix(&BackupKind::WAL.prefix())?;
        let (folder, file) = rest.split_once('/')?;
        let (file, encrypted) = match file.strip_suffix(".enc") {
            Some(file) => (file, true),
            None => (file, false),
        };
        let (file, compression) = if let Some(file) = file.strip_suffix(".gz") {
            (file, Compression::gzip())
        } else if let Some(file) = file.strip_suffix(".zst") {
            (file, Compression::zstd())
        } else {
            (file, Compression::None)
        };
        let name = Self::parse(file).ok()?;
        (name.folder() == format!("{}{folder}/", BackupKind::WAL.prefix())).then_some((
            name,
            compression,
            encrypted,
        ))
    }
}

impl std::fmt::Display for WalFileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The archive's folder for `timeline`: `wal/0000000A/`.
pub fn timeline_folder(timeline: u32) -> String {
    format!("{}{timeline:08X}/", BackupKind::WAL.prefix())
}

/// Segments per "log" (the middle eight hex digits) for segments of `segment_size` bytes.
pub fn segments_per_log(segment_size: u64) -> u64 {
    (0x1_0000_0000 / segment_size.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_wal_file_name_parses_and_nothing_else_does() {
        let seg = WalFileName::parse("0000000A00000001000000FF").unwrap();
        assert_eq!(seg.file_type(), WalFileType::Segment);
        assert_eq!(seg.timeline(), 10);
        assert_eq!(seg.segment_number(16 << 20), Some(256 + 255));
        assert_eq!(
            WalFileName::parse("00000002.history").unwrap().file_type(),
            WalFileType::History
        );
        assert_eq!(
            WalFileName::parse("000000010000000000000003.00000028.backup")
                .unwrap()
                .file_type(),
            WalFileType::BackupLabel
        );
        assert_eq!(
            WalFileName::parse("000000010000000000000003.partial")
                .unwrap()
                .file_type(),
            WalFileType::Partial
        );
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000030",
            "000000010000000000000003a",
            "00000001000000000000000g",
            "000000000000000000000003",
            "../0000010000000000000003",
            "pg_wal/000000010000000000000003",
            "0000001.history",
            "000000010000000000000003.0028.backup",
            "000000010000000000000003.backup",
            "000000010000000000000003.partial.partial",
            "RECOVERYHISTORY",
            "00000001.history/..",
        ] {
            assert!(WalFileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn object_keys_round_trip_and_the_next_segment_crosses_a_log() {
        let seg = WalFileName::parse("0000000200000000000000FF").unwrap();
        let key = seg.object_key(Compression::zstd(), true);
        assert_eq!(key, "wal/00000002/0000000200000000000000FF.zst.enc");
        assert_eq!(
            WalFileName::from_object_key(&key),
            Some((seg.clone(), Compression::zstd(), true))
        );
        let hist = WalFileName::history(3);
        assert_eq!(
            hist.object_key(Compression::None, false),
            "wal/00000003/00000003.history"
        );
        assert_eq!(
            WalFileName::from_object_key("wal/00000003/00000003.history.manifest.json"),
            None
        );
        // A file under another timeline's folder is not this archive's.
        assert_eq!(
            WalFileName::from_object_key("wal/00000001/0000000200000000000000FF.gz"),
            None
        );
        let number = seg.segment_number(16 << 20).unwrap();
        assert_eq!(
            WalFileName::segment(2, number + 1, 16 << 20).as_str(),
            "000000020000000100000000"
        );
        // 1 GiB segments: four per log.
        assert_eq!(
            WalFileName::segment(1, 5, 1 << 30).as_str(),
            "000000010000000100000001"
        );
    }
}
