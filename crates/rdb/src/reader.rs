//! The streaming RDB parser: the public types and the async driver. The driver keeps one
//! buffer, fills it asynchronously, and lets the synchronous parser in `parse.rs` decode whole
//! units (an opcode, or a key and its value) from it; when a unit does not fit, the buffer
//! grows (geometrically, only as data actually arrives) and the unit is parsed again.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::crc64::Crc64;
use crate::error::RdbError;
use crate::parse::{
    base_elements, element_fields, has_tail, value_type, Field, FieldOut, PErr, Parser, Unit,
    WalkState,
};
use crate::MAX_RDB_VERSION;

/// The buffer's initial (and resting) size.
const INITIAL_BUF: usize = 256 * 1024;

/// The most the buffer grows by at once for a unit that does not fit (it doubles below
/// that), so that what is read past the end of a large captured value stays small.
const GROWTH_STEP: usize = 32 << 20;

/// What [`crate::restore_payload`] appends to a captured value (RDB version and CRC-64): room
/// for it is reserved so that the payload is not copied to add it.
const PAYLOAD_TRAILER: usize = 10;

/// The default [memory budget](ParseOptions::memory_budget) of a parse that does not capture
/// values (a check, a backup's validation): 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

/// Redis's own limit for one bulk string (`proto-max-bulk-len`, 512 MiB): the most a key
/// name, a function library or a captured value can be.
pub const MAX_BULK_BYTES: u64 = 512 << 20;

/// The most an `AUX` field's name or value may declare (16 MiB). Redis writes a few short
/// fields (`redis-ver`, `ctime`, `repl-id`, ...); before 7.0 it also wrote each Lua script
/// as a `lua` field.
pub const MAX_AUX_BYTES: u64 = 16 << 20;

/// The smallest budget [`ParseOptions::budget`] gives, whatever is asked for: the parser's
/// resting buffer and a few small strings.
const MIN_BUDGET: u64 = 1 << 20;

/// What [`RdbReader`] keeps of each value, and how much memory it may use.
///
/// Memory is bounded whatever the input: a value walked a field at a time (not captured)
/// costs a buffer of at most one field, large raw strings are skipped as they stream and LZF
/// strings are checked without being decompressed; what must be held (a key name, an `AUX`
/// field, a listpack to validate, a captured value) is checked against a fixed cap for its
/// kind and against [`budget`](Self::budget) *before* it is buffered or allocated, and
/// refused with [`RdbError::OverLimit`] or [`RdbError::OverBudget`].
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
    /// The most memory the parser may hold at once: its read buffer, the decoded strings
    /// of the current unit and, when capturing, the value being captured. `None` for the
    /// default: [`DEFAULT_MEMORY_BUDGET`] without `capture_payload`; with it, the largest
    /// allowed value (`max_value_bytes`, else [`MAX_BULK_BYTES`]) plus 64 MiB. Values below
    /// 1 MiB count as 1 MiB.
    pub memory_budget: Option<u64>,
}

impl ParseOptions {
    /// The memory budget in effect (see [`memory_budget`](Self::memory_budget)).
    pub fn budget(&self) -> u64 {
        let default = if self.capture_payload {
            self.max_value_bytes
                .unwrap_or(MAX_BULK_BYTES)
                .saturating_add(DEFAULT_MEMORY_BUDGET)
        } else {
            DEFAULT_MEMORY_BUDGET
        };
        self.memory_budget.unwrap_or(default).max(MIN_BUDGET)
    }
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
    /// What the next field needs from the ones before.
    state: WalkState,
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
                let held = self.buf.len() as u64;
                let mut parser = Parser::new(window, self.offset, version, &self.options, held);
                parser.unit().map(|unit| (unit, parser.consumed()))
            };
            match parsed {
                Ok((unit, used)) => {
                    let unit_start = self.pos;
                    self.consume(used);
                    match unit {
                        Unit::Captured { mut entry, start } => {
                            entry.db = self.db;
                            entry.expire_at_ms = self.expire.take();
                            entry.payload =
                                Some(self.take_value(unit_start + start, entry.rdb_type));
                            return Ok(Some(Item::Entry(entry)));
                        }
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
                                state: WalkState::default(),
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
                Err(PErr::More { need, what }) => self.more(need, what).await?,
            }
        }
    }

    /// After a unit did not fit in what is buffered: reads at least `need` bytes (from the
    /// unit's start), an error when the stream ends first or the budget does not allow them.
    async fn more(&mut self, need: usize, what: &'static str) -> Result<(), RdbError> {
        // Ask for twice what the failed attempt saw (by at most GROWTH_STEP), so that a large
        // value is re-parsed a small number of times however the reader chunks data.
        let have = self.end - self.pos;
        let want = need.max(have.saturating_mul(2).min(have.saturating_add(GROWTH_STEP)));
        if self.fill(need, want, what).await? {
            Ok(())
        } else {
            Err(RdbError::Truncated {
                offset: self.offset + (self.end - self.pos) as u64,
                context: what.to_owned(),
            })
        }
    }

    /// Memory held besides the buffer: the key of a value being walked.
    fn held(&self) -> u64 {
        self.walking
            .as_ref()
            .map_or(0, |w| w.entry.key.len() as u64)
    }

    /// A captured value as [`Entry::payload`]: its type byte and the bytes from `start` to
    /// the consumed position. A large one takes the buffer itself (what follows the value
    /// moves to a fresh buffer), so that the value is held once, not twice.
    fn take_value(&mut self, start: usize, t: u8) -> Vec<u8> {
        let len = self.pos - start;
        self.update_crc();
        if len < INITIAL_BUF || start == 0 {
            let mut payload = Vec::with_capacity(len + 1 + PAYLOAD_TRAILER);
            payload.push(t);
            payload.extend_from_slice(self.buf.get(start..self.pos).unwrap_or_default());
            return payload;
        }
        let rest = self.end - self.pos;
        let mut fresh = vec![0u8; rest.max(INITIAL_BUF)];
        if let (Some(slot), Some(bytes)) = (fresh.get_mut(..rest), self.buf.get(self.pos..self.end))
        {
            slot.copy_from_slice(bytes);
        }
        self.end = rest;
        let mut payload = std::mem::replace(&mut self.buf, fresh);
        // The byte before the value (the key's last) becomes the type byte.
        if let Some(slot) = payload.get_mut(start - 1) {
            *slot = t;
        }
        payload.copy_within(start - 1..start + len, 0);
        payload.truncate(len + 1);
        payload.shrink_to(len + 1 + PAYLOAD_TRAILER);
        self.pos = 0;
        self.crc_pos = 0;
        payload
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
        } else if has_tail(walk.t) && !walk.state.tail.done() {
            Field::Tail {
                t: walk.t,
                nodes: walk.count,
            }
        } else {
            return Ok(self.walking.take().map(|w| w.entry));
        };
        let before = walk.state;
        let (out, state) = loop {
            // Each attempt starts from the state before the field: one that ran out of data
            // may have changed it half way.
            let mut state = before;
            let parsed = {
                let window = self.buf.get(self.pos..self.end).unwrap_or_default();
                let held = self.buf.len() as u64 + self.held();
                let mut parser = Parser::new(window, self.offset, version, &self.options, held);
                parser
                    .field(field, &mut state)
                    .map(|out| (out, parser.consumed()))
            };
            match parsed {
                Ok((out, used)) => {
                    self.consume(used);
                    break (out, state);
                }
                Err(PErr::Fail(e)) => return Err(e),
                Err(PErr::More { need, what }) => self.more(need, what).await?,
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
        walk.state = state;
        walk.entry.elements = walk.entry.elements.saturating_add(added);
        if walk.remaining > 0 {
            walk.step += 1;
            if walk.step >= element_fields(walk.t).len() {
                walk.step = 0;
                walk.remaining -= 1;
            }
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
            if !self.fill(1, want, "a large string").await? {
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
    ///
    /// # Errors
    /// [`RdbError::OverBudget`] when `need` bytes (reading `what`) do not fit in the budget
    /// with what else is held; nothing is allocated then.
    async fn fill(&mut self, need: usize, want: usize, what: &str) -> Result<bool, RdbError> {
        self.update_crc();
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            self.crc_pos = 0;
        }
        let budget = self.options.budget();
        let room = usize::try_from(budget.saturating_sub(self.held())).unwrap_or(usize::MAX);
        if need > room {
            return Err(RdbError::OverBudget {
                what: what.to_owned(),
                needed: (need as u64).saturating_add(self.held()),
                budget,
                offset: self.offset,
            });
        }
        let want = want.min(room);
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
                    .min(want.max(INITIAL_BUF))
                    .min(room);
                // Exactly the target: `resize` alone may reserve twice what it is asked for.
                self.buf
                    .reserve_exact(target.saturating_sub(self.buf.len()));
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
        let complete = self.end - self.pos >= 9 || self.fill(9, 9, "the RDB header").await?;
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
            if self.end - self.pos < 8 && !self.fill(8, 8, "the trailing CRC-64 checksum").await? {
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
            self.fill(1, 1, "the end of the stream").await?;
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

/// How many databases [`RdbSummary`] lists one by one; keys of further databases are only
/// counted ([`RdbSummary::keys_in_other_dbs`]). Redis has 16 databases unless configured
/// otherwise.
pub const SUMMARY_DATABASES: usize = 256;

/// How many `AUX` fields [`RdbSummary::aux`] keeps (Redis writes about ten), and how many
/// bytes of each name and value.
pub const SUMMARY_AUX_FIELDS: usize = 32;
const SUMMARY_AUX_BYTES: usize = 256;

/// Counts of a whole RDB, from [`RdbSummary::read`]. It keeps what it reports and no more:
/// its size does not grow with the number of databases or `AUX` fields in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdbSummary {
    /// The RDB version.
    pub version: u16,
    /// The first [`SUMMARY_AUX_FIELDS`] `AUX` fields (`redis-ver`, `ctime`, ...), each name
    /// and value cut to 256 bytes and lossily decoded.
    pub aux: BTreeMap<String, String>,
    /// `AUX` fields in the file, kept or not.
    pub aux_fields: u64,
    /// Keys per logical database (databases with no keys are absent), for the first
    /// [`SUMMARY_DATABASES`] databases that have keys.
    pub keys_per_db: BTreeMap<u64, u64>,
    /// Keys per database and type, for the databases of `keys_per_db`.
    pub types_per_db: BTreeMap<u64, BTreeMap<ValueType, u64>>,
    /// Keys in databases beyond the first [`SUMMARY_DATABASES`].
    pub keys_in_other_dbs: u64,
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
    /// Parses a whole stream with the default [`ParseOptions`] and counts what it holds.
    ///
    /// # Errors
    /// As [`RdbReader::next`].
    pub async fn read<R: AsyncRead + Unpin>(reader: R) -> Result<Self, RdbError> {
        Self::read_with(reader, ParseOptions::default()).await
    }

    /// Parses a whole stream with `options` (e.g. another
    /// [`memory_budget`](ParseOptions::memory_budget)) and counts what it holds.
    ///
    /// # Errors
    /// As [`RdbReader::next`].
    pub async fn read_with<R: AsyncRead + Unpin>(
        reader: R,
        options: ParseOptions,
    ) -> Result<Self, RdbError> {
        let mut parser = RdbReader::new(reader, options);
        let mut summary = Self::default();
        let mut db = 0;
        while let Some(item) = parser.next().await? {
            match item {
                Item::Aux { key, value } => {
                    summary.aux_fields += 1;
                    if summary.aux.len() < SUMMARY_AUX_FIELDS {
                        summary.aux.insert(short_text(&key), short_text(&value));
                    }
                }
                Item::SelectDb(n) => db = n,
                Item::ResizeDb { .. } => {}
                Item::Entry(e) => {
                    if e.expire_at_ms.is_some() {
                        summary.keys_with_expiry += 1;
                    }
                    let listed = summary.keys_per_db.contains_key(&db)
                        || summary.keys_per_db.len() < SUMMARY_DATABASES;
                    if !listed {
                        summary.keys_in_other_dbs += 1;
                        continue;
                    }
                    *summary.keys_per_db.entry(db).or_default() += 1;
                    *summary
                        .types_per_db
                        .entry(db)
                        .or_default()
                        .entry(e.value_type)
                        .or_default() += 1;
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

    /// Keys in the whole file.
    pub fn keys(&self) -> u64 {
        self.keys_per_db
            .values()
            .sum::<u64>()
            .saturating_add(self.keys_in_other_dbs)
    }
}

/// At most [`SUMMARY_AUX_BYTES`] of `bytes`, lossily decoded.
fn short_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.get(..SUMMARY_AUX_BYTES).unwrap_or(bytes)).into_owned()
}
