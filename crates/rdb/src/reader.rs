//! The streaming RDB parser: the public types and the async driver. The driver keeps one
//! buffer, fills it asynchronously, and lets the synchronous parser in `parse.rs` decode whole
//! units (an opcode, or a key and its value) from it; when a unit does not fit, the buffer
//! grows (geometrically, only as data actually arrives) and the unit is parsed again.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::crc64::Crc64;
use crate::error::RdbError;
use crate::parse::{
    base_elements, element_fields, is_stream, value_type, Field, FieldOut, PErr, Parser, Unit,
};
use crate::MAX_RDB_VERSION;

/// The buffer's initial (and resting) size.
const INITIAL_BUF: usize = 256 * 1024;

/// What [`RdbReader`] keeps of each value.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Keep each key's raw value encoding (type byte + value bytes, exactly as in the file) in
    /// [`Entry::payload`], ready for [`crate::restore_payload`]. Off: values are walked and
    /// validated but not kept.
    pub capture_payload: bool,
    /// Refuse any value larger than this many bytes; `None` for no limit. With
    /// `capture_payload` the whole value is held in memory, so the limit applies to it; without,
    /// values are walked a field at a time (large raw strings skipped as they stream) and the
    /// limit applies to each string and compact encoding (listpack, ziplist, ...) inside them.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    Done,
    Failed,
}

/// A pull parser over an RDB stream.
pub struct RdbReader<R> {
    reader: R,
    options: ParseOptions,
    /// `buf[pos..end]` holds bytes read but not consumed; `buf.len()` is the capacity in use.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// `buf[..crc_pos]` is already in `crc`.
    crc_pos: usize,
    crc: Crc64,
    /// File offset of `buf[pos]`.
    offset: u64,
    /// The underlying reader reported end of stream.
    eof: bool,
    state: State,
    version: Option<u16>,
    db: u64,
    expire: Option<i64>,
    checksum_verified: bool,
    /// A key whose value is being walked a field at a time.
    walking: Option<Walk>,
}

/// Progress through a value walked a field at a time.
struct Walk {
    entry: Entry,
    t: u8,
    /// Elements (or nodes) still to walk.
    remaining: u64,
    /// Nodes of a stream, for its tail.
    count: u64,
    /// Index into the element's fields.
    step: usize,
    /// A quicklist 2 node's container.
    container: u64,
    /// Whether a stream's tail was parsed.
    tail_done: bool,
}

impl<R: AsyncRead + Unpin> RdbReader<R> {
    /// A parser reading `reader` from its first byte (`REDIS0nnn`).
    pub fn new(reader: R, options: ParseOptions) -> Self {
        Self {
            reader,
            options,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            crc_pos: 0,
            crc: Crc64::new(),
            offset: 0,
            eof: false,
            state: State::Header,
            version: None,
            db: 0,
            expire: None,
            checksum_verified: false,
            walking: None,
        }
    }

    /// The next item; `Ok(None)` once the `EOF` opcode was read, the trailing CRC-64 matched
    /// (or is zero: checksums disabled on the server) and the stream ended.
    ///
    /// # Errors
    /// On any read error, truncation, corruption, checksum mismatch or unsupported content.
    /// After an error the parser is unusable: further calls fail too.
    pub async fn next(&mut self) -> Result<Option<Item>, RdbError> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => {
                return Err(RdbError::Corrupt {
                    offset: self.offset,
                    detail: "the parser already failed on an earlier error".to_owned(),
                })
            }
            State::Header | State::Body => {}
        }
        let result = self.next_inner().await;
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    async fn next_inner(&mut self) -> Result<Option<Item>, RdbError> {
        if self.state == State::Header {
            self.read_header().await?;
            self.state = State::Body;
        }
        let version = self.version.unwrap_or(0);
        loop {
            if self.walking.is_some() {
                if let Some(entry) = self.walk_step(version).await? {
                    return Ok(Some(Item::Entry(entry)));
                }
                continue;
            }
            let parsed = {
                let window = self.buf.get(self.pos..self.end).unwrap_or_default();
                let mut parser = Parser::new(window, self.offset, version, &self.options);
                parser.unit().map(|unit| (unit, parser.consumed()))
            };
            match parsed {
                Ok((unit, used)) => {
                    self.consume(used);
                    match unit {
                        Unit::Skip => {}
                        Unit::Expire(at) => self.expire = Some(at),
                        Unit::Select(db) => {
                            self.db = db;
                            return Ok(Some(Item::SelectDb(db)));
                        }
                        Unit::Item(Item::Entry(mut entry)) => {
                            entry.db = self.db;
                            entry.expire_at_ms = self.expire.take();
                            return Ok(Some(Item::Entry(entry)));
                        }
                        Unit::Item(item) => return Ok(Some(item)),
                        Unit::Begin { key, t, count } => {
                            self.walking = Some(Walk {
                                entry: Entry {
                                    db: self.db,
                                    key,
                                    expire_at_ms: self.expire.take(),
                                    value_type: value_type(t).unwrap_or(ValueType::Module),
                                    rdb_type: t,
                                    elements: base_elements(t, count),
                                    payload: None,
                                },
                                t,
                                remaining: count,
                                count,
                                step: 0,
                                container: 0,
                                tail_done: false,
                            });
                        }
                        Unit::Eof => {
                            self.finish(version).await?;
                            self.state = State::Done;
                            return Ok(None);
                        }
                    }
                }
                Err(PErr::Fail(e)) => return Err(e),
                Err(PErr::More { need, what }) => {
                    // Ask for at least twice what the failed attempt saw, so that a large value
                    // is re-parsed a logarithmic number of times however the reader chunks data.
                    let have = self.end - self.pos;
                    let want = need.max(have.saturating_mul(2));
                    if !self.fill(need, want).await? {
                        return Err(RdbError::Truncated {
                            offset: self.offset + (self.end - self.pos) as u64,
                            context: what.to_owned(),
                        });
                    }
                }
            }
        }
    }

    /// Parses the next field of the value being walked; returns the entry once it is
    /// complete.
    async fn walk_step(&mut self, version: u16) -> Result<Option<Entry>, RdbError> {
        let Some(walk) = self.walking.as_mut() else {
            return Ok(None);
        };
        let field = if walk.remaining > 0 {
            element_fields(walk.t)
                .get(walk.step)
                .copied()
                .unwrap_or(Field::Len("a value"))
        } else if is_stream(walk.t) && !walk.tail_done {
            Field::StreamTail {
                t: walk.t,
                nodes: walk.count,
            }
        } else {
            return Ok(self.walking.take().map(|w| w.entry));
        };
        let mut container = walk.container;
        let out = loop {
            let parsed = {
                let window = self.buf.get(self.pos..self.end).unwrap_or_default();
                let mut parser = Parser::new(window, self.offset, version, &self.options);
                parser
                    .field(field, &mut container)
                    .map(|out| (out, parser.consumed()))
            };
            match parsed {
                Ok((out, used)) => {
                    self.consume(used);
                    break out;
                }
                Err(PErr::Fail(e)) => return Err(e),
                Err(PErr::More { need, what }) => {
                    let have = self.end - self.pos;
                    let want = need.max(have.saturating_mul(2));
                    if !self.fill(need, want).await? {
                        return Err(RdbError::Truncated {
                            offset: self.offset + (self.end - self.pos) as u64,
                            context: what.to_owned(),
                        });
                    }
                }
            }
        };
        let added = match out {
            FieldOut::Done { elements } => elements,
            FieldOut::SkipRaw { bytes, elements } => {
                self.skip_in_place(bytes).await?;
                elements
            }
        };
        let Some(walk) = self.walking.as_mut() else {
            return Ok(None);
        };
        walk.container = container;
        walk.entry.elements = walk.entry.elements.saturating_add(added);
        if walk.remaining > 0 {
            walk.step += 1;
            if walk.step >= element_fields(walk.t).len() {
                walk.step = 0;
                walk.remaining -= 1;
            }
        } else {
            walk.tail_done = true;
        }
        Ok(None)
    }

    /// Consumes `n` bytes as they arrive (feeding the CRC), without buffering them.
    async fn skip_in_place(&mut self, mut n: u64) -> Result<(), RdbError> {
        loop {
            let available = (self.end - self.pos) as u64;
            let take = available.min(n);
            self.consume(usize::try_from(take).unwrap_or(usize::MAX));
            n -= take;
            if n == 0 {
                return Ok(());
            }
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(INITIAL_BUF);
            if !self.fill(1, want).await? {
                return Err(RdbError::Truncated {
                    offset: self.offset,
                    context: "a large string".to_owned(),
                });
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Feeds consumed bytes to the CRC.
    fn update_crc(&mut self) {
        if let Some(bytes) = self.buf.get(self.crc_pos..self.pos) {
            self.crc.update(bytes);
        }
        self.crc_pos = self.pos;
    }

    /// Moves the unconsumed bytes to the front, then reads until at least `want` bytes are
    /// buffered or the stream ends. Returns whether at least `need` bytes are buffered.
    async fn fill(&mut self, need: usize, want: usize) -> Result<bool, RdbError> {
        self.update_crc();
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            self.crc_pos = 0;
        }
        // Give memory back after a large value.
        if self.buf.len() > 4 * INITIAL_BUF && self.end <= INITIAL_BUF && want <= INITIAL_BUF {
            self.buf.truncate(INITIAL_BUF);
            self.buf.shrink_to_fit();
        }
        loop {
            if self.end >= want {
                return Ok(true);
            }
            if self.eof {
                return Ok(self.end >= need);
            }
            if self.end == self.buf.len() {
                // Grow geometrically, never beyond what is wanted: memory follows the data
                // that actually arrives, not a declared length.
                let target = self
                    .buf
                    .len()
                    .saturating_mul(2)
                    .max(INITIAL_BUF)
                    .min(want.max(INITIAL_BUF));
                self.buf.resize(target, 0);
            }
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            let n = self
                .reader
                .read(free)
                .await
                .map_err(|source| RdbError::Io {
                    offset: self.offset + self.end as u64,
                    source,
                })?;
            if n == 0 {
                self.eof = true;
            } else {
                self.end += n;
            }
        }
    }

    async fn read_header(&mut self) -> Result<(), RdbError> {
        let complete = self.end - self.pos >= 9 || self.fill(9, 9).await?;
        let have = self.buf.get(self.pos..self.end).unwrap_or_default();
        let head = have.get(..9.min(have.len())).unwrap_or_default();
        let magic_ok = head.iter().zip(b"REDIS").all(|(a, b)| a == b)
            && head.iter().skip(5).all(u8::is_ascii_digit);
        if !magic_ok {
            return Err(RdbError::BadMagic {
                found: head.escape_ascii().to_string(),
            });
        }
        if !complete {
            return Err(RdbError::Truncated {
                offset: have.len() as u64,
                context: "the RDB header".to_owned(),
            });
        }
        let version = head
            .iter()
            .skip(5)
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if version == 0 || version > MAX_RDB_VERSION {
            return Err(RdbError::UnsupportedVersion {
                version,
                max: MAX_RDB_VERSION,
            });
        }
        self.version = Some(version);
        self.consume(9);
        Ok(())
    }

    /// After the EOF opcode: the checksum (RDB 5+), then the end of the stream.
    async fn finish(&mut self, version: u16) -> Result<(), RdbError> {
        self.update_crc();
        let computed = self.crc.value();
        if version >= 5 {
            if self.end - self.pos < 8 && !self.fill(8, 8).await? {
                return Err(RdbError::Truncated {
                    offset: self.offset + (self.end - self.pos) as u64,
                    context: "the trailing CRC-64 checksum".to_owned(),
                });
            }
            let mut raw = [0u8; 8];
            if let Some(bytes) = self.buf.get(self.pos..self.pos + 8) {
                raw.copy_from_slice(bytes);
            }
            self.consume(8);
            self.crc_pos = self.pos;
            let recorded = u64::from_le_bytes(raw);
            if recorded != 0 {
                if recorded != computed {
                    return Err(RdbError::ChecksumMismatch { recorded, computed });
                }
                self.checksum_verified = true;
            }
        }
        if self.end == self.pos {
            self.fill(1, 1).await?;
        }
        if self.end > self.pos {
            return Err(RdbError::TrailingData {
                extra: (self.end - self.pos) as u64,
            });
        }
        Ok(())
    }

    /// The file's RDB version, once the header was read.
    pub fn version(&self) -> Option<u16> {
        self.version
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Whether the trailing checksum was present and verified (false when the file's checksum
    /// is zero, i.e. written with `rdbchecksum no`). Meaningful after `next` returned `None`.
    pub fn checksum_verified(&self) -> bool {
        self.checksum_verified
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
