//! The error type of `backup-rdb`.

/// Why an RDB stream or payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdbError {
    /// Reading the underlying stream failed.
    #[error("reading the RDB stream failed at byte {offset}: {source}")]
    Io {
        /// Bytes consumed before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The stream does not start with `REDIS` and a four-digit version.
    #[error("not an RDB file: it starts with {found:?} instead of REDIS0nnn")]
    BadMagic {
        /// The first bytes, escaped.
        found: String,
    },
    /// The RDB version is newer than this parser understands.
    #[error(
        "RDB version {version} is newer than this tool understands (at most {max}); upgrade the \
         backup tool"
    )]
    UnsupportedVersion {
        /// The file's version.
        version: u16,
        /// The newest supported version.
        max: u16,
    },
    /// The stream ended before the RDB's end marker and checksum.
    #[error("the RDB stream is truncated: it ended at byte {offset} while reading {context}")]
    Truncated {
        /// Bytes consumed.
        offset: u64,
        /// What was being read.
        context: String,
    },
    /// A structure inside the file is invalid.
    #[error("corrupt RDB at byte {offset}: {detail}")]
    Corrupt {
        /// Offset of the structure.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// An opcode or value type this parser does not know.
    #[error(
        "unsupported RDB {what} {byte} at byte {offset} (RDB version {version}); the file may \
         come from a newer Redis or a module this tool cannot read"
    )]
    Unsupported {
        /// `opcode` or `value type`.
        what: &'static str,
        /// The byte.
        byte: u8,
        /// Where.
        offset: u64,
        /// The file's RDB version.
        version: u16,
    },
    /// The trailing CRC-64 does not match the content.
    #[error(
        "RDB checksum mismatch: the file records {recorded:016x}, its content hashes to \
         {computed:016x} (corrupted)"
    )]
    ChecksumMismatch {
        /// The checksum at the end of the file.
        recorded: u64,
        /// The checksum computed over the content.
        computed: u64,
    },
    /// Data follows the end of the RDB.
    #[error("{extra} unexpected byte(s) after the end of the RDB")]
    TrailingData {
        /// How many (at least).
        extra: u64,
    },
    /// Reading the RDB would take more memory than [`crate::ParseOptions::memory_budget`]
    /// allows: the declared size of something (a key, an LZF string, a listpack) is larger
    /// than the parser may hold.
    #[error(
        "reading {what} at byte {offset} would hold {needed} bytes in memory, more than the \
         parser's budget of {budget} bytes; a genuine RDB with such a value needs a larger \
         budget (BACKUP_REDIS_PARSE_MEMORY_MB, or ParseOptions::memory_budget when embedding)"
    )]
    OverBudget {
        /// What was being read.
        what: String,
        /// The memory it needed, in bytes (the parser's buffer included).
        needed: u64,
        /// The budget.
        budget: u64,
        /// Where.
        offset: u64,
    },
    /// Something declares a size beyond the fixed limit for its kind (a stream ID is 16 bytes,
    /// an AUX field at most [`crate::MAX_AUX_BYTES`], a key at most [`crate::MAX_BULK_BYTES`]).
    #[error(
        "corrupt or hostile RDB at byte {offset}: {what} declares {size} bytes, more than the \
         {limit} bytes Redis writes for it"
    )]
    OverLimit {
        /// What was being read.
        what: String,
        /// The declared size.
        size: u64,
        /// The limit for that kind of field.
        limit: u64,
        /// Where.
        offset: u64,
    },
    /// A single value is larger than the configured limit.
    #[error("a value of {size} bytes at byte {offset} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
        /// Where.
        offset: u64,
    },
}
