//! The synchronous half of the parser: decodes one unit (an opcode and its arguments, or a
//! key and its value) from a buffer holding the unit's bytes. When the buffer is too short it
//! says how many bytes it needs, and the async driver in `reader.rs` reads more and retries.

use std::borrow::Cow;

use crate::error::RdbError;
use crate::reader::{Entry, Item, ParseOptions, ValueType, MAX_AUX_BYTES, MAX_BULK_BYTES};
use crate::{intset, listpack, lzf, stream, ziplist, zipmap};

/// Why a unit could not be parsed.
pub(crate) enum PErr {
    /// The buffer ends before the unit: at least `need` bytes (from the unit's start) are
    /// needed; `what` says what was being read.
    More { need: usize, what: &'static str },
    /// A definite error.
    Fail(RdbError),
}

impl From<RdbError> for PErr {
    fn from(e: RdbError) -> Self {
        Self::Fail(e)
    }
}

pub(crate) type PResult<T> = Result<T, PErr>;

/// One parsed unit of the stream.
pub(crate) enum Unit {
    /// An item to hand to the caller (`Entry.db` and `expire_at_ms` are filled in later).
    Item(Item),
    /// An expiry for the next key.
    Expire(i64),
    /// A `SELECTDB`.
    Select(u64),
    /// Something to skip (LFU/LRU hints, slot info).
    Skip,
    /// The `EOF` opcode.
    Eof,
    /// A key whose value is captured ([`ParseOptions::capture_payload`]): its bytes are
    /// `buf[start..consumed]`; the driver makes [`Entry::payload`] from them.
    Captured { entry: Entry, start: usize },
    /// The start of a key whose value is walked a field at a time (see [`Field`]): the key,
    /// its type and how many elements (strings: 1, quicklists: nodes, streams: nodes) follow.
    Begin { key: Vec<u8>, t: u8, count: u64 },
}

/// Raw strings longer than this are skipped as they stream by, never buffered, when values
/// are not captured.
pub(crate) const SKIP_IN_PLACE: u64 = 64 * 1024;

/// One field of a value walked a field at a time (when payloads are not captured), so that a
/// key of any size (a set of ten million members, a 512 MB string) is checked in bounded
/// memory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    /// A string (large raw ones are skipped in place).
    Str(&'static str),
    /// An old-style sorted set score: a length byte and that many bytes of text.
    ZScore,
    /// Eight bytes.
    Fixed8(&'static str),
    /// A length.
    Len(&'static str),
    /// A quicklist 2 node's container (1 plain, 2 packed).
    QlContainer,
    /// A quicklist node: a plain string or a listpack (`v2`), a ziplist (v1).
    QlNode { v2: bool },
    /// A stream node: a 16-byte master ID and a listpack.
    StreamNode,
    /// What follows the elements of a stream (its length, IDs and consumer groups) or makes
    /// up a module value (its opcodes), a piece at a time (see [`TailCursor`]).
    Tail { t: u8, nodes: u64 },
}

/// How many PEL entries or module opcodes one piece of a [`Field::Tail`] reads.
const TAIL_PIECE: u64 = 1024;

/// Progress through a [`Field::Tail`]: a stream's consumer groups, their pending entries and
/// consumers, or a module value's opcodes. Each piece leaves the cursor where the next one
/// starts, so a stream with millions of pending entries is read in bounded memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TailCursor {
    phase: Phase,
    /// Consumer groups not yet finished.
    groups: u64,
    /// Consumers of the current group not yet finished.
    consumers: u64,
    /// PEL entries still to read in the current PEL.
    left: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Start,
    GroupHead,
    GroupPel,
    ConsumerHead,
    ConsumerPel,
    Done,
}

impl TailCursor {
    /// Whether the tail was read to its end.
    pub(crate) fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// After a consumer (or a group's PEL): the group's next consumer, else the next group,
    /// else the end.
    fn next_consumer(&mut self) {
        self.phase = if self.consumers > 0 {
            Phase::ConsumerHead
        } else {
            self.groups = self.groups.saturating_sub(1);
            if self.groups == 0 {
                Phase::Done
            } else {
                Phase::GroupHead
            }
        };
    }
}

/// What the field-by-field walk of one value carries from one field to the next.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WalkState {
    /// A quicklist 2 node's container from [`Field::QlContainer`] for [`Field::QlNode`].
    pub(crate) container: u64,
    /// Progress through the value's [`Field::Tail`].
    pub(crate) tail: TailCursor,
}

/// What parsing one [`Field`] gave.
pub(crate) enum FieldOut {
    /// Parsed; it adds `elements` to the key's element count (quicklist nodes, stream length).
    Done { elements: u64 },
    /// A raw string of `bytes` bytes follows that the driver skips as it streams; it adds
    /// `elements`.
    SkipRaw { bytes: u64, elements: u64 },
}

/// Whether values of type `t` are walked a field at a time when payloads are not captured.
pub(crate) fn walked_by_field(t: u8) -> bool {
    use types::*;
    matches!(
        t,
        STRING
            | LIST
            | SET
            | ZSET
            | ZSET_2
            | HASH
            | HASH_METADATA
            | HASH_METADATA_PRE_GA
            | LIST_QUICKLIST
            | LIST_QUICKLIST_2
            | STREAM_LISTPACKS
            | STREAM_LISTPACKS_2
            | STREAM_LISTPACKS_3
            | MODULE_2
    )
}

/// The fields of one element of a value of type `t` walked a field at a time.
pub(crate) fn element_fields(t: u8) -> &'static [Field] {
    use types::*;
    match t {
        STRING => &[Field::Str("a string value")],
        LIST | SET => &[Field::Str("a list or set element")],
        ZSET => &[Field::Str("a sorted set member"), Field::ZScore],
        ZSET_2 => &[
            Field::Str("a sorted set member"),
            Field::Fixed8("a sorted set score"),
        ],
        HASH => &[Field::Str("a hash field"), Field::Str("a hash value")],
        HASH_METADATA | HASH_METADATA_PRE_GA => &[
            Field::Len("a hash field TTL"),
            Field::Str("a hash field"),
            Field::Str("a hash value"),
        ],
        LIST_QUICKLIST => &[Field::QlNode { v2: false }],
        LIST_QUICKLIST_2 => &[Field::QlContainer, Field::QlNode { v2: true }],
        _ => &[Field::StreamNode],
    }
}

/// The element count a value of type `t` walked a field at a time starts with: its length
/// for plain collections, 1 for a string, 0 where the fields add them up.
pub(crate) fn base_elements(t: u8, count: u64) -> u64 {
    use types::*;
    match t {
        STRING => 1,
        LIST | SET | ZSET | ZSET_2 | HASH | HASH_METADATA | HASH_METADATA_PRE_GA => count,
        _ => 0,
    }
}

/// Whether a value of type `t` walked a field at a time ends with a [`Field::Tail`]: a
/// stream after its nodes, a module value (all tail).
pub(crate) fn has_tail(t: u8) -> bool {
    use types::*;
    matches!(
        t,
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 | MODULE_2
    )
}

/// A length field, or a special string encoding.
enum Len {
    Plain(u64),
    Enc(u8),
}

/// A string as stored.
enum RStr<'a> {
    Raw(&'a [u8]),
    Int(i64),
    Lzf { data: &'a [u8], len: u64, at: usize },
}

/// Value type bytes (`rdb.h`).
pub(crate) mod types {
    pub(crate) const STRING: u8 = 0;
    pub(crate) const LIST: u8 = 1;
    pub(crate) const SET: u8 = 2;
    pub(crate) const ZSET: u8 = 3;
    pub(crate) const HASH: u8 = 4;
    pub(crate) const ZSET_2: u8 = 5;
    pub(crate) const MODULE_PRE_GA: u8 = 6;
    pub(crate) const MODULE_2: u8 = 7;
    pub(crate) const HASH_ZIPMAP: u8 = 9;
    pub(crate) const LIST_ZIPLIST: u8 = 10;
    pub(crate) const SET_INTSET: u8 = 11;
    pub(crate) const ZSET_ZIPLIST: u8 = 12;
    pub(crate) const HASH_ZIPLIST: u8 = 13;
    pub(crate) const LIST_QUICKLIST: u8 = 14;
    pub(crate) const STREAM_LISTPACKS: u8 = 15;
    pub(crate) const HASH_LISTPACK: u8 = 16;
    pub(crate) const ZSET_LISTPACK: u8 = 17;
    pub(crate) const LIST_QUICKLIST_2: u8 = 18;
    pub(crate) const STREAM_LISTPACKS_2: u8 = 19;
    pub(crate) const SET_LISTPACK: u8 = 20;
    pub(crate) const STREAM_LISTPACKS_3: u8 = 21;
    pub(crate) const HASH_METADATA_PRE_GA: u8 = 22;
    pub(crate) const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
    pub(crate) const HASH_METADATA: u8 = 24;
    pub(crate) const HASH_LISTPACK_EX: u8 = 25;
}

/// Opcodes (`rdb.h`).
mod op {
    pub(crate) const SLOT_INFO: u8 = 244;
    pub(crate) const FUNCTION2: u8 = 245;
    pub(crate) const FUNCTION_PRE_GA: u8 = 246;
    pub(crate) const MODULE_AUX: u8 = 247;
    pub(crate) const IDLE: u8 = 248;
    pub(crate) const FREQ: u8 = 249;
    pub(crate) const AUX: u8 = 250;
    pub(crate) const RESIZEDB: u8 = 251;
    pub(crate) const EXPIRETIME_MS: u8 = 252;
    pub(crate) const EXPIRETIME: u8 = 253;
    pub(crate) const SELECTDB: u8 = 254;
    pub(crate) const EOF: u8 = 255;
}

/// The logical type of an RDB value type byte.
pub(crate) fn value_type(t: u8) -> Option<ValueType> {
    use types::*;
    Some(match t {
        STRING => ValueType::String,
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => ValueType::List,
        SET | SET_INTSET | SET_LISTPACK => ValueType::Set,
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => ValueType::SortedSet,
        HASH
        | HASH_ZIPMAP
        | HASH_ZIPLIST
        | HASH_LISTPACK
        | HASH_METADATA_PRE_GA
        | HASH_LISTPACK_EX_PRE_GA
        | HASH_METADATA
        | HASH_LISTPACK_EX => ValueType::Hash,
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => ValueType::Stream,
        MODULE_PRE_GA | MODULE_2 => ValueType::Module,
        _ => return None,
    })
}

/// The 9-character module type name encoded in a module id (`moduleTypeNameByID`).
pub(crate) fn module_name(id: u64) -> String {
    const CSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = id >> 10;
    let mut name = [0u8; 9];
    for slot in name.iter_mut().rev() {
        // `id & 63` is always a valid index into the 64-character set.
        *slot = CSET.get((id & 63) as usize).copied().unwrap_or(b'?');
        id >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// Parses one unit from `buf`.
pub(crate) struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    version: u16,
    opts: &'a ParseOptions,
    /// [`ParseOptions::budget`].
    budget: u64,
    /// Memory the reader holds while this unit is parsed (its buffer, a walked key).
    held: u64,
    /// Memory this unit allocated so far (decoded strings, copies).
    spent: u64,
}

impl<'a> Parser<'a> {
    /// A parser over `buf`, whose first byte is at file offset `base`, while the reader
    /// holds `held` bytes (its buffer and any walked key): what this parser allocates is
    /// charged on top of that against the [budget](ParseOptions::budget).
    pub(crate) fn new(
        buf: &'a [u8],
        base: u64,
        version: u16,
        opts: &'a ParseOptions,
        held: u64,
    ) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            version,
            opts,
            budget: opts.budget(),
            held,
            spent: 0,
        }
    }

    /// Charges an allocation of `n` bytes made to read `what` against the budget; an error
    /// (before anything is allocated) when it does not fit.
    fn charge(&mut self, n: u64, at: usize, what: &str) -> PResult<()> {
        let needed = self.held.saturating_add(self.spent).saturating_add(n);
        if needed > self.budget {
            return Err(PErr::Fail(RdbError::OverBudget {
                what: what.to_owned(),
                needed,
                budget: self.budget,
                offset: self.offset(at),
            }));
        }
        self.spent += n;
        Ok(())
    }

    /// An error when `size` (declared by the stream) is above `limit`, the fixed cap for
    /// `what`.
    fn cap(&self, size: u64, limit: u64, at: usize, what: &str) -> PResult<()> {
        if size > limit {
            return Err(PErr::Fail(RdbError::OverLimit {
                what: what.to_owned(),
                size,
                limit,
                offset: self.offset(at),
            }));
        }
        Ok(())
    }

    /// Bytes consumed.
    pub(crate) fn consumed(&self) -> usize {
        self.pos
    }

    fn offset(&self, at: usize) -> u64 {
        self.base + at as u64
    }

    fn corrupt(&self, at: usize, detail: impl Into<String>) -> PErr {
        PErr::Fail(RdbError::Corrupt {
            offset: self.offset(at),
            detail: detail.into(),
        })
    }

    fn unsupported(&self, what: &'static str, byte: u8, at: usize) -> PErr {
        PErr::Fail(RdbError::Unsupported {
            what,
            byte,
            offset: self.offset(at),
            version: self.version,
        })
    }

    fn check_limit(&self, size: u64, at: usize) -> PResult<()> {
        match self.opts.max_value_bytes {
            Some(limit) if size > limit => Err(PErr::Fail(RdbError::TooLarge {
                size,
                limit,
                offset: self.offset(at),
            })),
            _ => Ok(()),
        }
    }

    fn take(&mut self, n: u64, what: &'static str) -> PResult<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .unwrap_or(usize::MAX);
        let buf: &'a [u8] = self.buf;
        match buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(PErr::More { need: end, what }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> PResult<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> PResult<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(PErr::More {
                need: self.pos + 1,
                what,
            }),
        }
    }

    fn len_or_enc(&mut self, what: &'static str) -> PResult<Len> {
        let at = self.pos;
        let b = self.u8(what)?;
        Ok(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3f)),
            1 => {
                let b2 = self.u8(what)?;
                Len::Plain((u64::from(b & 0x3f) << 8) | u64::from(b2))
            }
            3 => Len::Enc(b & 0x3f),
            _ => match b {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array(what)?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array(what)?)),
                _ => {
                    return Err(self.corrupt(
                        at,
                        format!("unknown length encoding {b:#04x} while reading {what}"),
                    ))
                }
            },
        })
    }

    fn length(&mut self, what: &'static str) -> PResult<u64> {
        let at = self.pos;
        match self.len_or_enc(what)? {
            Len::Plain(n) => Ok(n),
            Len::Enc(e) => Err(self.corrupt(
                at,
                format!("a string encoding ({e}) where a length was expected, reading {what}"),
            )),
        }
    }

    fn string(&mut self, what: &'static str) -> PResult<RStr<'a>> {
        self.string_capped(what, u64::MAX)
    }

    /// A string whose declared size (raw, or LZF uncompressed and compressed) must not pass
    /// `limit`: checked before anything is buffered or allocated for it.
    fn string_capped(&mut self, what: &'static str, limit: u64) -> PResult<RStr<'a>> {
        let at = self.pos;
        match self.len_or_enc(what)? {
            Len::Plain(n) => {
                self.check_limit(n, at)?;
                self.cap(n, limit, at, what)?;
                Ok(RStr::Raw(self.take(n, what)?))
            }
            Len::Enc(0) => Ok(RStr::Int(i64::from(i8::from_le_bytes(self.array(what)?)))),
            Len::Enc(1) => Ok(RStr::Int(i64::from(i16::from_le_bytes(self.array(what)?)))),
            Len::Enc(2) => Ok(RStr::Int(i64::from(i32::from_le_bytes(self.array(what)?)))),
            Len::Enc(3) => {
                let clen = self.length(what)?;
                let len = self.length(what)?;
                self.check_limit(clen, at)?;
                self.check_limit(len, at)?;
                self.cap(len, limit, at, what)?;
                self.cap(clen, limit, at, what)?;
                if len > clen.saturating_mul(lzf::MAX_RATIO) {
                    return Err(self.corrupt(
                        at,
                        format!(
                            "LZF string of {clen} compressed bytes claims {len} bytes \
                             uncompressed, reading {what}"
                        ),
                    ));
                }
                let data = self.take(clen, what)?;
                Ok(RStr::Lzf { data, len, at })
            }
            Len::Enc(e) => Err(self.corrupt(
                at,
                format!("unknown string encoding {e} while reading {what}"),
            )),
        }
    }

    fn lzf_into(
        &self,
        data: &[u8],
        len: u64,
        at: usize,
        out: &mut Vec<u8>,
        what: &str,
    ) -> PResult<()> {
        let len = usize::try_from(len).map_err(|_| self.corrupt(at, "LZF length overflows"))?;
        out.clear();
        out.resize(len, 0);
        lzf::decompress(data, out)
            .map_err(|e| self.corrupt(at, format!("invalid LZF data in {what}: {e}")))
    }

    /// Decodes a string (integers as decimal text, LZF decompressed after its declared
    /// length was charged against the budget).
    fn decode(&mut self, s: RStr<'a>, what: &str) -> PResult<Cow<'a, [u8]>> {
        Ok(match s {
            RStr::Raw(b) => Cow::Borrowed(b),
            RStr::Int(v) => Cow::Owned(v.to_string().into_bytes()),
            RStr::Lzf { data, len, at } => {
                self.charge(len, at, what)?;
                let mut out = Vec::new();
                self.lzf_into(data, len, at, &mut out, what)?;
                Cow::Owned(out)
            }
        })
    }

    /// A string decoded into a buffer of its own (a key, an AUX field, a function library),
    /// its declared size checked against `limit` and charged against the budget before
    /// anything is allocated.
    fn owned(&mut self, what: &'static str, limit: u64) -> PResult<Vec<u8>> {
        let at = self.pos;
        let s = self.string_capped(what, limit)?;
        if let RStr::Raw(b) = s {
            self.charge(b.len() as u64, at, what)?;
        }
        Ok(self.decode(s, what)?.into_owned())
    }

    /// Skips a string, validating LZF data (without decompressing it).
    fn skip_string(&mut self, what: &'static str) -> PResult<()> {
        if let RStr::Lzf { data, len, at } = self.string(what)? {
            self.lzf_check(data, len, at, what)?;
        }
        Ok(())
    }

    /// Checks LZF data decompresses to exactly `len` bytes, in no memory.
    fn lzf_check(&self, data: &[u8], len: u64, at: usize, what: &str) -> PResult<()> {
        let len = usize::try_from(len).map_err(|_| self.corrupt(at, "LZF length overflows"))?;
        lzf::validate(data, len)
            .map_err(|e| self.corrupt(at, format!("invalid LZF data in {what}: {e}")))
    }

    /// Reads a blob (ziplist, listpack, ...) and validates it with `check`.
    fn blob(
        &mut self,
        what: &'static str,
        check: fn(&[u8]) -> Result<u64, String>,
    ) -> PResult<u64> {
        let at = self.pos;
        let s = self.string(what)?;
        let bytes = self.decode(s, what)?;
        check(&bytes).map_err(|e| self.corrupt(at, format!("{what}: {e}")))
    }

    /// Parses the next unit.
    pub(crate) fn unit(&mut self) -> PResult<Unit> {
        let at = self.pos;
        let t = self.u8("an opcode or value type")?;
        Ok(match t {
            op::EOF => Unit::Eof,
            op::SELECTDB => Unit::Select(self.length("a SELECTDB database number")?),
            op::EXPIRETIME => {
                let secs = i32::from_le_bytes(self.array("an EXPIRETIME (seconds)")?);
                Unit::Expire(i64::from(secs) * 1000)
            }
            op::EXPIRETIME_MS => Unit::Expire(i64::from_le_bytes(self.array("an EXPIRETIME_MS")?)),
            op::RESIZEDB => {
                let db_size = self.length("a RESIZEDB database size")?;
                let expires_size = self.length("a RESIZEDB expires size")?;
                Unit::Item(Item::ResizeDb {
                    db_size,
                    expires_size,
                })
            }
            op::AUX => {
                let key = self.owned("an AUX field name", MAX_AUX_BYTES)?;
                let value = self.owned("an AUX field value", MAX_AUX_BYTES)?;
                Unit::Item(Item::Aux { key, value })
            }
            op::FREQ => {
                self.u8("an LFU frequency")?;
                Unit::Skip
            }
            op::IDLE => {
                self.length("an LRU idle time")?;
                Unit::Skip
            }
            op::SLOT_INFO => {
                self.length("a SLOT_INFO slot id")?;
                self.length("a SLOT_INFO slot size")?;
                self.length("a SLOT_INFO expires slot size")?;
                Unit::Skip
            }
            op::MODULE_AUX => {
                let module_id = self.length("a MODULE_AUX module id")?;
                let when_at = self.pos;
                let when_opcode = self.length("a MODULE_AUX when opcode")?;
                if when_opcode != 2 {
                    return Err(self.corrupt(
                        when_at,
                        format!("MODULE_AUX 'when' opcode is {when_opcode}, expected 2 (uint)"),
                    ));
                }
                self.length("a MODULE_AUX when value")?;
                self.module_body("MODULE_AUX data")?;
                Unit::Item(Item::ModuleAux {
                    module_id,
                    name: module_name(module_id),
                })
            }
            op::FUNCTION2 => {
                let code = self.owned("a function library", MAX_BULK_BYTES)?;
                Unit::Item(Item::Function { code })
            }
            op::FUNCTION_PRE_GA => return Err(self.unsupported("opcode", t, at)),
            types::MODULE_PRE_GA => return Err(self.unsupported("value type", t, at)),
            t if value_type(t).is_some() => {
                if !self.opts.capture_payload && walked_by_field(t) {
                    self.begin(t)?
                } else {
                    self.entry(t)?
                }
            }
            _ => return Err(self.unsupported("opcode or value type", t, at)),
        })
    }

    /// The key and the value's header of a value walked a field at a time.
    fn begin(&mut self, t: u8) -> PResult<Unit> {
        use types::*;
        let key = self.owned("a key", MAX_BULK_BYTES)?;
        let count = match t {
            STRING => 1,
            LIST | SET => self.length("a list or set length")?,
            ZSET | ZSET_2 => self.length("a sorted set length")?,
            HASH | HASH_METADATA_PRE_GA => self.length("a hash length")?,
            HASH_METADATA => {
                self.take(8, "a hash's minimum field expiry")?;
                self.length("a hash length")?
            }
            LIST_QUICKLIST | LIST_QUICKLIST_2 => self.length("a quicklist node count")?,
            MODULE_2 => {
                self.length("a module type id")?;
                0
            }
            _ => self.length("the stream node count")?,
        };
        Ok(Unit::Begin { key, t, count })
    }

    /// Parses one field of a value walked a field at a time; `state` carries what the next
    /// field needs (the caller keeps it only when this returns `Ok`).
    pub(crate) fn field(&mut self, f: Field, state: &mut WalkState) -> PResult<FieldOut> {
        let container = &mut state.container;
        let done = |elements| Ok(FieldOut::Done { elements });
        match f {
            Field::Str(what) => {
                if let Some(bytes) = self.large_raw(what)? {
                    return Ok(FieldOut::SkipRaw { bytes, elements: 0 });
                }
                self.skip_string(what)?;
                done(0)
            }
            Field::ZScore => {
                let len = self.u8("a sorted set score")?;
                if len < 253 {
                    self.take(u64::from(len), "a sorted set score")?;
                }
                done(0)
            }
            Field::Fixed8(what) => {
                self.take(8, what)?;
                done(0)
            }
            Field::Len(what) => {
                self.length(what)?;
                done(0)
            }
            Field::QlContainer => {
                let at = self.pos;
                let c = self.length("a quicklist node container")?;
                if c != 1 && c != 2 {
                    return Err(self.corrupt(
                        at,
                        format!("quicklist node container {c} is neither 1 nor 2"),
                    ));
                }
                *container = c;
                done(0)
            }
            Field::QlNode { v2: true } if *container == 1 => {
                let at = self.pos;
                if let Some(bytes) = self.large_raw("a quicklist plain node")? {
                    return Ok(FieldOut::SkipRaw { bytes, elements: 1 });
                }
                let s = self.string("a quicklist plain node")?;
                if matches!(s, RStr::Raw([])) {
                    return Err(self.corrupt(at, "empty quicklist node"));
                }
                if let RStr::Lzf { data, len, at } = s {
                    self.lzf_check(data, len, at, "a quicklist node")?;
                }
                done(1)
            }
            Field::QlNode { v2: true } => {
                done(self.blob("a quicklist listpack node", nonempty_listpack)?)
            }
            Field::QlNode { v2: false } => {
                done(self.blob("a quicklist ziplist node", nonempty_ziplist)?)
            }
            Field::StreamNode => {
                self.stream_node()?;
                done(0)
            }
            Field::Tail { t, .. } if t == types::MODULE_2 => self.module_piece(&mut state.tail),
            Field::Tail { t, nodes } => done(self.stream_tail_piece(t, nodes, &mut state.tail)?),
        }
    }

    /// Up to [`TAIL_PIECE`] opcodes of a module value; a large raw string is left to the
    /// driver to skip as it streams.
    fn module_piece(&mut self, cursor: &mut TailCursor) -> PResult<FieldOut> {
        const WHAT: &str = "a module value";
        for _ in 0..TAIL_PIECE {
            let at = self.pos;
            match self.length(WHAT)? {
                0 => {
                    cursor.phase = Phase::Done;
                    break;
                }
                1 | 2 => {
                    self.length(WHAT)?;
                }
                3 => {
                    self.take(4, WHAT)?;
                }
                4 => {
                    self.take(8, WHAT)?;
                }
                5 => {
                    if let Some(bytes) = self.large_raw(WHAT)? {
                        return Ok(FieldOut::SkipRaw { bytes, elements: 0 });
                    }
                    self.skip_string(WHAT)?;
                }
                other => {
                    return Err(self.corrupt(at, format!("unknown module opcode {other} in {WHAT}")))
                }
            }
        }
        Ok(FieldOut::Done { elements: 0 })
    }

    /// One piece of what follows a stream's nodes: the header (returns the stream's length
    /// as its elements), a consumer group's header, up to [`TAIL_PIECE`] pending entries, a
    /// consumer's header.
    fn stream_tail_piece(&mut self, t: u8, nodes: u64, cursor: &mut TailCursor) -> PResult<u64> {
        let v2 = t >= types::STREAM_LISTPACKS_2;
        let v3 = t >= types::STREAM_LISTPACKS_3;
        let mut elements = 0;
        match cursor.phase {
            Phase::Start => {
                elements = self.stream_tail_head(v2, nodes)?;
                cursor.groups = self.length("the consumer group count")?;
                cursor.phase = if cursor.groups == 0 {
                    Phase::Done
                } else {
                    Phase::GroupHead
                };
            }
            Phase::GroupHead => {
                cursor.left = self.group_head(v2)?;
                cursor.phase = Phase::GroupPel;
            }
            Phase::GroupPel => {
                let n = cursor.left.min(TAIL_PIECE);
                for _ in 0..n {
                    self.take(16, "a PEL entry ID")?;
                    self.take(8, "a PEL delivery time")?;
                    self.length("a PEL delivery count")?;
                }
                cursor.left -= n;
                if cursor.left == 0 {
                    cursor.consumers = self.length("a consumer count")?;
                    cursor.next_consumer();
                }
            }
            Phase::ConsumerHead => {
                cursor.left = self.consumer_head(v3)?;
                cursor.consumers -= 1;
                cursor.phase = Phase::ConsumerPel;
                if cursor.left == 0 {
                    cursor.next_consumer();
                }
            }
            Phase::ConsumerPel => {
                let n = cursor.left.min(TAIL_PIECE);
                for _ in 0..n {
                    self.take(16, "a consumer PEL entry ID")?;
                }
                cursor.left -= n;
                if cursor.left == 0 {
                    cursor.next_consumer();
                }
            }
            Phase::Done => {}
        }
        Ok(elements)
    }

    /// When the next string is raw and longer than [`SKIP_IN_PLACE`], consumes its length
    /// header and returns its size; otherwise consumes nothing.
    fn large_raw(&mut self, what: &'static str) -> PResult<Option<u64>> {
        let at = self.pos;
        if let Len::Plain(n) = self.len_or_enc(what)? {
            if n > SKIP_IN_PLACE {
                self.check_limit(n, at)?;
                return Ok(Some(n));
            }
        }
        self.pos = at;
        Ok(None)
    }

    fn entry(&mut self, t: u8) -> PResult<Unit> {
        let key = self.owned("a key", MAX_BULK_BYTES)?;
        let start = self.pos;
        let elements = match self.value(t) {
            Ok(n) => n,
            Err(PErr::More { need, what }) => {
                self.check_limit(need.saturating_sub(start) as u64, start)?;
                return Err(PErr::More { need, what });
            }
            Err(e) => return Err(e),
        };
        self.check_limit((self.pos - start) as u64, start)?;
        let entry = Entry {
            db: 0,
            key,
            expire_at_ms: None,
            value_type: value_type(t).unwrap_or(ValueType::Module),
            rdb_type: t,
            elements,
            payload: None,
        };
        Ok(if self.opts.capture_payload {
            Unit::Captured { entry, start }
        } else {
            Unit::Item(Item::Entry(entry))
        })
    }

    fn pairs(&mut self, at: usize, n: u64, per: u64, what: &str) -> PResult<u64> {
        if !n.is_multiple_of(per) {
            return Err(self.corrupt(
                at,
                format!("{what} holds {n} elements, not a multiple of {per}"),
            ));
        }
        Ok(n / per)
    }

    /// Walks one value; returns its element count.
    fn value(&mut self, t: u8) -> PResult<u64> {
        use types::*;
        let at = self.pos;
        match t {
            STRING => {
                self.skip_string("a string value")?;
                Ok(1)
            }
            LIST | SET => {
                let n = self.length("a list or set length")?;
                for _ in 0..n {
                    self.skip_string("a list or set element")?;
                }
                Ok(n)
            }
            ZSET | ZSET_2 => {
                let n = self.length("a sorted set length")?;
                for _ in 0..n {
                    self.skip_string("a sorted set member")?;
                    if t == ZSET_2 {
                        self.take(8, "a sorted set score")?;
                    } else {
                        let len = self.u8("a sorted set score")?;
                        if len < 253 {
                            self.take(u64::from(len), "a sorted set score")?;
                        }
                    }
                }
                Ok(n)
            }
            HASH => {
                let n = self.length("a hash length")?;
                for _ in 0..n {
                    self.skip_string("a hash field")?;
                    self.skip_string("a hash value")?;
                }
                Ok(n)
            }
            HASH_METADATA | HASH_METADATA_PRE_GA => {
                if t == HASH_METADATA {
                    self.take(8, "a hash's minimum field expiry")?;
                }
                let n = self.length("a hash length")?;
                for _ in 0..n {
                    self.length("a hash field TTL")?;
                    self.skip_string("a hash field")?;
                    self.skip_string("a hash value")?;
                }
                Ok(n)
            }
            MODULE_2 => {
                self.length("a module type id")?;
                self.module_body("a module value")?;
                Ok(0)
            }
            HASH_ZIPMAP => self.blob("a hash zipmap", zipmap::validate),
            LIST_ZIPLIST => self.blob("a list ziplist", ziplist::validate),
            SET_INTSET => self.blob("a set intset", intset::validate),
            SET_LISTPACK => self.blob("a set listpack", listpack::validate),
            ZSET_ZIPLIST | HASH_ZIPLIST => {
                let n = self.blob("a sorted set or hash ziplist", ziplist::validate)?;
                self.pairs(at, n, 2, "a sorted set or hash ziplist")
            }
            ZSET_LISTPACK | HASH_LISTPACK => {
                let n = self.blob("a sorted set or hash listpack", listpack::validate)?;
                self.pairs(at, n, 2, "a sorted set or hash listpack")
            }
            HASH_LISTPACK_EX | HASH_LISTPACK_EX_PRE_GA => {
                if t == HASH_LISTPACK_EX {
                    self.take(8, "a hash's minimum field expiry")?;
                }
                let lp_at = self.pos;
                let n = self.blob("a hash listpack with field expiries", listpack::validate)?;
                self.pairs(lp_at, n, 3, "a hash listpack with field expiries")
            }
            LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                let nodes = self.length("a quicklist node count")?;
                let mut total = 0u64;
                for _ in 0..nodes {
                    let mut container = 2;
                    if t == LIST_QUICKLIST_2 {
                        let c_at = self.pos;
                        container = self.length("a quicklist node container")?;
                        if container != 1 && container != 2 {
                            return Err(self.corrupt(
                                c_at,
                                format!("quicklist node container {container} is neither 1 nor 2"),
                            ));
                        }
                    }
                    let node_at = self.pos;
                    let n = if container == 1 {
                        let s = self.string("a quicklist plain node")?;
                        let empty = matches!(s, RStr::Raw([]));
                        if empty {
                            return Err(self.corrupt(node_at, "empty quicklist node"));
                        }
                        if let RStr::Lzf { data, len, at } = s {
                            self.lzf_check(data, len, at, "a quicklist node")?;
                        }
                        1
                    } else if t == LIST_QUICKLIST_2 {
                        self.blob("a quicklist listpack node", nonempty_listpack)?
                    } else {
                        self.blob("a quicklist ziplist node", nonempty_ziplist)?
                    };
                    total = total.saturating_add(n);
                }
                Ok(total)
            }
            STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => self.stream(t),
            _ => Err(self.unsupported("value type", t, at.saturating_sub(1))),
        }
    }

    fn module_body(&mut self, what: &'static str) -> PResult<()> {
        loop {
            let at = self.pos;
            match self.length(what)? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length(what)?;
                }
                3 => {
                    self.take(4, what)?;
                }
                4 => {
                    self.take(8, what)?;
                }
                5 => self.skip_string(what)?,
                other => {
                    return Err(self.corrupt(at, format!("unknown module opcode {other} in {what}")))
                }
            }
        }
    }

    fn stream(&mut self, t: u8) -> PResult<u64> {
        let nodes = self.length("the stream node count")?;
        for _ in 0..nodes {
            self.stream_node()?;
        }
        self.stream_tail(t, nodes)
    }

    /// One stream node: its 16-byte master ID and its listpack.
    fn stream_node(&mut self) -> PResult<()> {
        let at = self.pos;
        let s = self.string_capped("a stream node ID", 16)?;
        let id = self.decode(s, "a stream node ID")?;
        if id.len() != 16 {
            return Err(self.corrupt(
                at,
                format!("stream node ID of {} bytes, expected 16", id.len()),
            ));
        }
        let at = self.pos;
        let s = self.string("a stream listpack")?;
        let lp = self.decode(s, "a stream listpack")?;
        stream::validate_listpack(&lp)
            .map_err(|e| self.corrupt(at, format!("stream listpack: {e}")))?;
        Ok(())
    }

    /// What follows a stream's nodes, whole (when the value is captured); returns the
    /// stream's length.
    fn stream_tail(&mut self, t: u8, nodes: u64) -> PResult<u64> {
        let v2 = t >= types::STREAM_LISTPACKS_2;
        let v3 = t >= types::STREAM_LISTPACKS_3;
        let length = self.stream_tail_head(v2, nodes)?;
        let groups = self.length("the consumer group count")?;
        for _ in 0..groups {
            let pel = self.group_head(v2)?;
            for _ in 0..pel {
                self.take(16, "a PEL entry ID")?;
                self.take(8, "a PEL delivery time")?;
                self.length("a PEL delivery count")?;
            }
            let consumers = self.length("a consumer count")?;
            for _ in 0..consumers {
                let pel = self.consumer_head(v3)?;
                for _ in 0..pel {
                    self.take(16, "a consumer PEL entry ID")?;
                }
            }
        }
        Ok(length)
    }

    /// A stream's length and IDs after its nodes; returns the length.
    fn stream_tail_head(&mut self, v2: bool, nodes: u64) -> PResult<u64> {
        let at = self.pos;
        let length = self.length("the stream length")?;
        if length > 0 && nodes == 0 {
            return Err(self.corrupt(at, "stream length is not zero but it has no entries"));
        }
        self.length("the stream's last ID")?;
        self.length("the stream's last ID")?;
        if v2 {
            for _ in 0..4 {
                self.length("the stream's first or max deleted ID")?;
            }
            self.length("the stream's entries added")?;
        }
        Ok(length)
    }

    /// A consumer group's name and IDs; returns the size of its PEL.
    fn group_head(&mut self, v2: bool) -> PResult<u64> {
        self.skip_string("a consumer group name")?;
        self.length("a consumer group's last ID")?;
        self.length("a consumer group's last ID")?;
        if v2 {
            self.length("a consumer group's entries read")?;
        }
        self.length("a consumer group's PEL size")
    }

    /// A consumer's name and times; returns the size of its PEL.
    fn consumer_head(&mut self, v3: bool) -> PResult<u64> {
        self.skip_string("a consumer name")?;
        self.take(8, "a consumer's seen time")?;
        if v3 {
            self.take(8, "a consumer's active time")?;
        }
        self.length("a consumer's PEL size")
    }
}

fn nonempty_listpack(lp: &[u8]) -> Result<u64, String> {
    if lp.is_empty() {
        return Err("empty quicklist node".to_owned());
    }
    listpack::validate(lp)
}

fn nonempty_ziplist(zl: &[u8]) -> Result<u64, String> {
    if zl.is_empty() {
        return Err("empty quicklist node".to_owned());
    }
    ziplist::validate(zl)
}
