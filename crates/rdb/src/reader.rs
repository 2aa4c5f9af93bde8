//! The streaming RDB parser. (Skeleton: the API is fixed, the implementation is being written.)

use std::collections::BTreeMap;

use tokio::io::AsyncRead;

use crate::error::RdbError;

/// What [`RdbReader`] keeps of each value.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Keep each key's raw value encoding (type byte + value bytes, exactly as in the file) in
    /// [`Entry::payload`], ready for [`crate::restore_payload`]. Off: values are walked and
    /// validated but not kept.
    pub capture_payload: bool,
    /// Refuse any single value (string, blob encoding) larger than this many bytes; `None` for
    /// no limit.
    pub max_value_bytes: Option<u64>,
}

/// The logical type of a value, as `TYPE` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueType {
    /// `string`
    String,
    /// `list`
    List,
    /// `set`
    Set,
    /// `zset`
    SortedSet,
    /// `hash`
    Hash,
    /// `stream`
    Stream,
    /// A module type.
    Module,
}

impl ValueType {
    /// The name `TYPE` prints (`string`, `list`, `set`, `zset`, `hash`, `stream`, `module`).
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::List => "list",
            Self::Set => "set",
            Self::SortedSet => "zset",
            Self::Hash => "hash",
            Self::Stream => "stream",
            Self::Module => "module",
        }
    }
}

/// One key of the RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The logical database (from the last `SELECTDB`).
    pub db: u64,
    /// The key, binary.
    pub key: Vec<u8>,
    /// Absolute expiry in Unix milliseconds, if the key has one.
    pub expire_at_ms: Option<i64>,
    /// The logical type.
    pub value_type: ValueType,
    /// The RDB type byte (encoding), e.g. 0 for a string, 18 for a quicklist of listpacks.
    pub rdb_type: u8,
    /// Number of elements (1 for a string; list items, set members, zset members, hash
    /// fields, stream entries; 0 for module values).
    pub elements: u64,
    /// With [`ParseOptions::capture_payload`]: the type byte followed by the value's bytes
    /// exactly as stored, i.e. a `DUMP` payload without its version and checksum trailer.
    pub payload: Option<Vec<u8>>,
}

/// One item of an RDB stream, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// An `AUX` field (`redis-ver`, `redis-bits`, `ctime`, `used-mem`, `aof-base`, ...).
    Aux {
        /// Field name.
        key: Vec<u8>,
        /// Field value (integers as their decimal text).
        value: Vec<u8>,
    },
    /// A `SELECTDB`: following keys belong to this database.
    SelectDb(u64),
    /// A `RESIZEDB` hint for the current database.
    ResizeDb {
        /// Keys in the database.
        db_size: u64,
        /// Keys with an expiry.
        expires_size: u64,
    },
    /// A key and its value.
    Entry(Entry),
    /// A function library (`FUNCTION2` opcode): the code as given to `FUNCTION LOAD`.
    Function {
        /// The library's source code, starting with `#!<engine> name=<library>`.
        code: Vec<u8>,
    },
    /// Module aux data (skipped, but walked and validated).
    ModuleAux {
        /// The 64-bit module type id.
        module_id: u64,
        /// The module type name decoded from the id (9 characters).
        name: String,
    },
}

/// A pull parser over an RDB stream.
pub struct RdbReader<R> {
    reader: R,
    options: ParseOptions,
}

impl<R: AsyncRead + Unpin> RdbReader<R> {
    /// A parser reading `reader` from its first byte (`REDIS0nnn`).
    pub fn new(reader: R, options: ParseOptions) -> Self {
        Self { reader, options }
    }

    /// The next item; `Ok(None)` once the `EOF` opcode was read, the trailing CRC-64 matched
    /// (or is zero: checksums disabled on the server) and the stream ended.
    ///
    /// # Errors
    /// On any read error, truncation, corruption, checksum mismatch or unsupported content.
    pub async fn next(&mut self) -> Result<Option<Item>, RdbError> {
        let _ = (&mut self.reader, &self.options);
        Err(RdbError::Corrupt {
            offset: 0,
            detail: "parser not implemented yet".to_owned(),
        })
    }

    /// The file's RDB version, once the header was read.
    pub fn version(&self) -> Option<u16> {
        None
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        0
    }

    /// Whether the trailing checksum was present and verified (false when the file's checksum
    /// is zero, i.e. written with `rdbchecksum no`). Meaningful after `next` returned `None`.
    pub fn checksum_verified(&self) -> bool {
        false
    }

    /// Gives the underlying reader back.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// Counts of a whole RDB, from [`RdbSummary::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdbSummary {
    /// The RDB version.
    pub version: u16,
    /// `AUX` fields, lossily decoded (`redis-ver`, `ctime`, ...).
    pub aux: BTreeMap<String, String>,
    /// Keys per logical database (databases with no keys are absent).
    pub keys_per_db: BTreeMap<u64, u64>,
    /// Keys per database and type.
    pub types_per_db: BTreeMap<u64, BTreeMap<ValueType, u64>>,
    /// Keys with an expiry.
    pub keys_with_expiry: u64,
    /// Function libraries.
    pub functions: u64,
    /// Module aux records.
    pub module_aux: u64,
    /// Whether the trailing checksum was verified (false when it is zero).
    pub checksum_verified: bool,
    /// Bytes in the file.
    pub bytes: u64,
}

impl RdbSummary {
    /// Parses a whole stream and counts what it holds.
    ///
    /// # Errors
    /// As [`RdbReader::next`].
    pub async fn read<R: AsyncRead + Unpin>(reader: R) -> Result<Self, RdbError> {
        let mut parser = RdbReader::new(reader, ParseOptions::default());
        let mut summary = Self::default();
        let mut db = 0;
        while let Some(item) = parser.next().await? {
            match item {
                Item::Aux { key, value } => {
                    summary.aux.insert(
                        String::from_utf8_lossy(&key).into_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
                Item::SelectDb(n) => db = n,
                Item::ResizeDb { .. } => {}
                Item::Entry(e) => {
                    *summary.keys_per_db.entry(db).or_default() += 1;
                    *summary
                        .types_per_db
                        .entry(db)
                        .or_default()
                        .entry(e.value_type)
                        .or_default() += 1;
                    if e.expire_at_ms.is_some() {
                        summary.keys_with_expiry += 1;
                    }
                }
                Item::Function { .. } => summary.functions += 1,
                Item::ModuleAux { .. } => summary.module_aux += 1,
            }
        }
        summary.version = parser.version().unwrap_or(0);
        summary.checksum_verified = parser.checksum_verified();
        summary.bytes = parser.bytes_read();
        Ok(summary)
    }
}
