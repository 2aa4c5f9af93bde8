//! One WAL file as a backup [`Source`]: read from disk, hashed first (the archive compares
//! the hash with what it holds under the same name), streamed through the pipeline with its
//! content checked against that hash again, so that a file that changes while it is pushed
//! is never stored.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::{
    BackupKind, BoxError, ByteStream, HashingReader, Source, SourceFacts, StreamDigest,
    VerifyingReader,
};
use tokio::io::{AsyncReadExt, BufReader};

use super::names::{WalFileName, WalFileType};
use crate::error::SourceError;

/// `source.type` of a WAL file's manifest.
pub const WAL_SOURCE_TYPE: &str = "postgresql-wal";

/// The manifest's `source` field holding the SHA-256 of the plain file.
pub const PLAIN_SHA256: &str = "plain_sha256";

/// What the first page of a segment says about the cluster that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The cluster's system identifier (`pg_controldata`'s "Database system identifier").
    pub system_identifier: u64,
    /// The server's `wal_segment_size`.
    pub segment_size: u32,
    /// The timeline of the segment's first page.
    pub timeline: u32,
}

/// `XLP_LONG_HEADER`: the first page of a segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// Bytes per read of a WAL file: each read of a `tokio::fs::File` is a trip to a blocking
/// thread, and 8 KiB reads made a 16 MiB segment cost thousands of them.
const READ_BUFFER: usize = 1024 * 1024;

impl SegmentHeader {
    /// Reads the long page header at the start of a segment (`XLogLongPageHeaderData`, little
    /// endian); `None` when `bytes` does not start with one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let info = u16_at(2)?;
        if info & XLP_LONG_HEADER == 0 {
            return None;
        }
        let segment_size = u32_at(32)?;
        let block_size = u32_at(36)?;
        let sane = segment_size.is_power_of_two()
            && (1 << 20..=1 << 30).contains(&segment_size)
            && block_size.is_power_of_two()
            && (1024..=32768).contains(&block_size);
        sane.then_some(Self {
            system_identifier: u64_at(24)?,
            segment_size,
            timeline: u32_at(4)?,
        })
    }
}

/// A WAL file to archive (see the module).
#[derive(Debug)]
pub struct WalFileSource {
    path: PathBuf,
    name: WalFileName,
    digest: StreamDigest,
    header: Option<SegmentHeader>,
}

impl WalFileSource {
    /// Reads `path` (PostgreSQL's `%p`) once to hash it; `name` is its WAL file name (`%f`).
    ///
    /// # Errors
    /// [`SourceError::Io`] when it cannot be read; [`SourceError::Wal`] when a segment does
    /// not start with a segment's header or its size is not the one the header names (not a
    /// WAL segment, or a truncated copy).
    pub async fn prepare(path: &Path, name: WalFileName) -> Result<Self, SourceError> {
        let io = |source: std::io::Error| SourceError::Io {
            what: format!("reading {}", path.display()),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut hashing = HashingReader::new(BufReader::with_capacity(READ_BUFFER, file));
        let mut first = Vec::with_capacity(64);
        (&mut hashing)
            .take(64)
            .read_to_end(&mut first)
            .await
            .map_err(io)?;
        tokio::io::copy(&mut hashing, &mut tokio::io::sink())
            .await
            .map_err(io)?;
        let digest = hashing.digest();
        let header = match name.file_type() {
            WalFileType::Segment | WalFileType::Partial => {
                let header = SegmentHeader::parse(&first).ok_or_else(|| {
                    SourceError::Wal(format!(
                        "{} does not start with a WAL segment header: not a WAL segment of \
                         PostgreSQL, refusing to archive it as {name}",
                        path.display()
                    ))
                })?;
                if name.file_type() == WalFileType::Segment
                    && digest.size != u64::from(header.segment_size)
                {
                    return Err(SourceError::Wal(format!(
                        "{} has {} bytes, but its header says segments have {}: a truncated or \
                         partial copy, refusing to archive it as {name}",
                        path.display(),
                        digest.size,
                        header.segment_size
                    )));
                }
                Some(header)
            }
            WalFileType::History | WalFileType::BackupLabel => None,
        };
        Ok(Self {
            path: path.to_owned(),
            name,
            digest,
            header,
        })
    }

    /// The file's WAL name.
    pub fn name(&self) -> &WalFileName {
        &self.name
    }

    /// Size and SHA-256 of the plain file.
    pub fn digest(&self) -> &StreamDigest {
        &self.digest
    }

    /// The segment header, for segments.
    pub fn header(&self) -> Option<SegmentHeader> {
        self.header
    }
}

#[async_trait]
impl Source for WalFileSource {
    fn kind(&self) -> BackupKind {
        BackupKind::WAL
    }

    fn extension(&self) -> &'static str {
        "wal"
    }

    async fn open(&mut self) -> Result<ByteStream, BoxError> {
        let file = tokio::fs::File::open(&self.path).await?;
        // The bytes must be the ones hashed: a file changed since is never stored.
        Ok(Box::new(VerifyingReader::new(
            BufReader::with_capacity(READ_BUFFER, file),
            Some(self.digest.clone()),
        )))
    }

    async fn finish(&mut self) -> Result<SourceFacts, BoxError> {
        let mut details = std::collections::BTreeMap::new();
        details.insert("wal_file".to_owned(), self.name.as_str().into());
        details.insert(PLAIN_SHA256.to_owned(), self.digest.sha256.clone().into());
        details.insert("timeline".to_owned(), self.name.timeline().into());
        if let Some(header) = self.header {
            details.insert(
                "system_identifier".to_owned(),
                header.system_identifier.to_string().into(),
            );
            details.insert("wal_segment_size".to_owned(), header.segment_size.into());
        }
        Ok(SourceFacts {
            source_type: WAL_SOURCE_TYPE.to_owned(),
            server_version: None,
            database: None,
            details,
        })
    }
}

/// The plain SHA-256 a WAL file's manifest records ([`PLAIN_SHA256`]).
pub fn recorded_plain_sha256(facts: &SourceFacts) -> Option<&str> {
    facts.details.get(PLAIN_SHA256).and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(segment_size: u32) -> Vec<u8> {
        let mut page = vec![0u8; 64];
        page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
        page[4..8].copy_from_slice(&3u32.to_le_bytes());
        page[24..32].copy_from_slice(&7_123_456_789u64.to_le_bytes());
        page[32..36].copy_from_slice(&segment_size.to_le_bytes());
        page[36..40].copy_from_slice(&8192u32.to_le_bytes());
        page
    }

    #[test]
    fn the_long_header_names_the_cluster_and_the_segment_size() {
        assert_eq!(
            SegmentHeader::parse(&header(16 << 20)),
            Some(SegmentHeader {
                system_identifier: 7_123_456_789,
                segment_size: 16 << 20,
                timeline: 3
            })
        );
        assert_eq!(SegmentHeader::parse(&header(12345)), None);
        assert_eq!(SegmentHeader::parse(&header(16 << 20)[..30]), None);
        assert_eq!(SegmentHeader::parse(&[0u8; 64]), None);
        assert_eq!(SegmentHeader::parse(&[]), None);
    }

    #[tokio::test]
    async fn a_segment_of_the_wrong_size_or_without_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000030000000000000001").unwrap();
        let path = dir.path().join(name.as_str());
        let mut bytes = header(1 << 20);
        bytes.resize(1 << 20, 7);
        std::fs::write(&path, &bytes).unwrap();
        let source = WalFileSource::prepare(&path, name.clone()).await.unwrap();
        assert_eq!(source.digest().size, 1 << 20);
        assert_eq!(source.header().unwrap().segment_size, 1 << 20);

        std::fs::write(&path, &bytes[..1000]).unwrap();
        let e = WalFileSource::prepare(&path, name.clone())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let e = WalFileSource::prepare(&path, name).await.unwrap_err();
        assert!(e.to_string().contains("not a WAL segment"), "{e}");
    }

    #[tokio::test]
    async fn a_file_changed_after_hashing_fails_its_stream() {
        let dir = tempfile::tempdir().unwrap();
        let name = WalFileName::history(2);
        let path = dir.path().join(name.as_str());
        std::fs::write(&path, b"1\t0/3000000\tno recovery target specified\n").unwrap();
        let mut source = WalFileSource::prepare(&path, name).await.unwrap();
        std::fs::write(&path, b"1\t0/4000000\tno recovery target specified\n").unwrap();
        let mut stream = source.open().await.unwrap();
        let mut out = Vec::new();
        assert!(stream.read_to_end(&mut out).await.is_err());
    }
}
