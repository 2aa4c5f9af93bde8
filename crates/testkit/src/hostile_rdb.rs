//! Hostile RDB files, generated on the fly: tiny inputs that declare huge things (LZF strings
//! up to 88 times their compressed size, raw lengths of hundreds of megabytes, millions of
//! stream PEL entries, thousands of databases or AUX fields), for tests that a parser of
//! untrusted RDB data (a `.rdb.gz` backup, a Redis master answering `SYNC`) stays within a
//! bounded amount of memory.
//!
//! Nothing is stored: every file is built by a [`Generated`], which yields it piece by piece
//! (pieces of at most [`PIECE`] bytes) and never holds it whole, so a generator of a 600 MB
//! file costs about 1 MiB. Read it with [`std::io::Read`] or [`tokio::io::AsyncRead`], or
//! take its [`Generated::pieces`].
//!
//! Every file is RDB version 10 (`REDIS0010`, what Redis 7.0 writes): the header, an AUX
//! field `redis-ver` = `7.0.99`, usually `SELECTDB 0`, the hostile part, then `EOF` (0xFF) and
//! a checksum of zero, which means "checksums disabled" and is accepted by Redis and by
//! `backup-rdb` alike, so nothing needs a CRC-64 over gigabytes.
//!
//! Some of the files are valid RDBs ([`lzf_value`], [`many_selectdb`], [`many_aux`], [`pel`],
//! [`module_string`], [`stream_listpack`] and the others with small enough arguments) that
//! a bounded parser must accept without holding what they declare; the others declare sizes
//! that a parser must refuse before allocating them.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The largest piece a [`Generated`] yields.
pub const PIECE: usize = 1 << 20;

/// The RDB version every generated file has (Redis 7.0).
const HEADER: &[u8] = b"REDIS0010";

/// Value types and opcodes (`rdb.h`).
const TYPE_STRING: u8 = 0;
const TYPE_MODULE_2: u8 = 7;
const TYPE_STREAM_LISTPACKS: u8 = 15;
const TYPE_HASH_LISTPACK: u8 = 16;
const OP_AUX: u8 = 0xFA;
const OP_SELECTDB: u8 = 0xFE;
const OP_EOF: u8 = 0xFF;

/// An LZF back reference of the longest kind: 264 bytes (7 + 255 + 2) at distance 1.
const LZF_LONG_REF: [u8; 3] = [7 << 5, 255, 0];
/// Bytes one [`LZF_LONG_REF`] produces.
const LZF_LONG_REF_LEN: u64 = 264;

/// A stream listpack element of the 7-bit unsigned integer encoding: the value (0..=127) and
/// its backlen (1).
const fn lp_small(v: u8) -> [u8; 2] {
    [v & 0x7f, 1]
}

/// The fields of one stream entry in a node whose master entry has one field, with the
/// SAMEFIELDS flag (2): flags, ms delta, seq delta, the value, lp-count (4).
const STREAM_ENTRY: [u8; 10] = {
    let f = lp_small(2);
    let ms = lp_small(0);
    let seq = lp_small(0);
    let v = lp_small(1);
    let c = lp_small(4);
    [
        f[0], f[1], ms[0], ms[1], seq[0], seq[1], v[0], v[1], c[0], c[1],
    ]
};

/// Bytes of one PEL entry: a 16-byte ID, an 8-byte delivery time, a 1-byte delivery count.
const PEL_ENTRY: usize = 16 + 8 + 1;

type Pieces = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// A generated file, yielded piece by piece (pieces of at most [`PIECE`] bytes) and never held
/// whole. Reading it (as [`Read`] or [`AsyncRead`]) never fails.
pub struct Generated {
    pieces: Pieces,
    piece: Vec<u8>,
    pos: usize,
    len: u64,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Generated {
    /// The file's exact length in bytes (of the whole file, however much was read already).
    pub fn len_hint(&self) -> u64 {
        self.len
    }

    /// The whole (remaining) file in memory. Only for small files.
    pub fn into_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0).min(PIECE));
        for piece in self.pieces() {
            out.extend_from_slice(&piece);
        }
        out
    }

    /// The remaining pieces (none longer than [`PIECE`], none empty).
    pub fn pieces(self) -> impl Iterator<Item = Vec<u8>> + Send {
        let rest = self.piece.get(self.pos..).unwrap_or_default().to_vec();
        std::iter::once(rest)
            .chain(self.pieces)
            .filter(|p| !p.is_empty())
    }

    /// Writes the remaining file to `out`, piece by piece; returns the bytes written.
    ///
    /// # Errors
    /// Those of `out`.
    pub fn write_to<W: Write + ?Sized>(self, out: &mut W) -> io::Result<u64> {
        let mut n = 0u64;
        for piece in self.pieces() {
            out.write_all(&piece)?;
            n += piece.len() as u64;
        }
        out.flush()?;
        Ok(n)
    }

    /// Copies as much of the current piece as fits into `buf`, moving to the next piece when
    /// the current one is used up; 0 at the end.
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        while self.pos >= self.piece.len() {
            match self.pieces.next() {
                Some(p) => {
                    self.piece = p;
                    self.pos = 0;
                }
                None => return 0,
            }
        }
        let rest = self.piece.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        n
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Assembles a file from small byte strings (gathered into pieces) and lazy parts.
struct Builder {
    parts: Vec<Pieces>,
    pending: Vec<u8>,
    len: u64,
}

impl Builder {
    /// The header and the `redis-ver` AUX field.
    fn new() -> Self {
        let mut b = Self {
            parts: Vec::new(),
            pending: Vec::new(),
            len: 0,
        };
        b.bytes(HEADER);
        b.bytes(&aux(b"redis-ver", b"7.0.99"));
        b
    }

    /// [`Builder::new`] and `SELECTDB 0`.
    fn db0() -> Self {
        let mut b = Self::new();
        b.bytes(&[OP_SELECTDB, 0]);
        b
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.pending.extend_from_slice(b);
        self.len += b.len() as u64;
        if self.pending.len() >= PIECE {
            self.flush();
        }
        self
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        // Pieces of at most PIECE bytes.
        let chunks: Vec<Vec<u8>> = pending.chunks(PIECE).map(<[u8]>::to_vec).collect();
        self.parts.push(Box::new(chunks.into_iter()));
    }

    /// A lazy part of exactly `len` bytes, yielded by `pieces` (each at most [`PIECE`]).
    fn lazy(&mut self, len: u64, pieces: impl Iterator<Item = Vec<u8>> + Send + 'static) {
        self.flush();
        self.len += len;
        self.parts.push(Box::new(pieces));
    }

    /// `EOF` and a zero checksum.
    fn finish(mut self) -> Generated {
        self.bytes(&[OP_EOF]);
        self.bytes(&[0; 8]);
        self.flush();
        Generated {
            pieces: Box::new(self.parts.into_iter().flatten()),
            piece: Vec::new(),
            pos: 0,
            len: self.len,
        }
    }
}

/// RDB length encoding (6-bit, 14-bit, 0x80 + u32 BE, 0x81 + u64 BE).
pub fn rdb_len(n: u64) -> Vec<u8> {
    match (u8::try_from(n), u16::try_from(n), u32::try_from(n)) {
        (Ok(b), _, _) if b < 64 => vec![b],
        (_, Ok(w), _) if w < 16384 => {
            let [hi, lo] = w.to_be_bytes();
            vec![0x40 | hi, lo]
        }
        (_, _, Ok(d)) => {
            let mut v = vec![0x80];
            v.extend_from_slice(&d.to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![0x81];
            v.extend_from_slice(&n.to_be_bytes());
            v
        }
    }
}

/// Bytes of [`rdb_len`]`(n)`.
fn rdb_len_size(n: u64) -> u64 {
    if n < 64 {
        1
    } else if n < 16384 {
        2
    } else if n <= u64::from(u32::MAX) {
        5
    } else {
        9
    }
}

/// A raw (length-prefixed) RDB string.
fn raw(bytes: &[u8]) -> Vec<u8> {
    let mut v = rdb_len(bytes.len() as u64);
    v.extend_from_slice(bytes);
    v
}

/// An AUX field with raw name and value.
fn aux(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = vec![OP_AUX];
    v.extend(raw(name));
    v.extend(raw(value));
    v
}

/// The LZF data [`lzf_expanding`] makes: its exact length and its pieces.
fn lzf_pieces(byte: u8, len: u64) -> (u64, impl Iterator<Item = Vec<u8>> + Send) {
    // One literal (2 bytes), then back references of 264 bytes at distance 1, then a tail
    // for what is left (a shorter reference, or a literal run of 1 or 2 bytes).
    let after_literal = len.saturating_sub(1);
    let refs = after_literal / LZF_LONG_REF_LEN;
    let rem = after_literal % LZF_LONG_REF_LEN;
    let tail: Vec<u8> = match rem {
        0 => Vec::new(),
        // A literal run of `rem` bytes (a back reference copies at least 3).
        1 => vec![0, byte],
        2 => vec![1, byte, byte],
        // 3..=8: length code 1..=6 in the control byte, distance 1.
        3..=8 => vec![u8::try_from(rem - 2).unwrap_or(0) << 5, 0],
        // 9..=263: length code 7, extra length byte.
        _ => vec![7 << 5, u8::try_from(rem - 9).unwrap_or(0), 0],
    };
    let head: Vec<u8> = if len == 0 { Vec::new() } else { vec![0, byte] };
    let total = head.len() as u64 + refs * LZF_LONG_REF.len() as u64 + tail.len() as u64;
    let per_piece = (PIECE / LZF_LONG_REF.len()) as u64;
    let full: Vec<u8> = LZF_LONG_REF.repeat(PIECE / LZF_LONG_REF.len());
    let mut refs_left = refs;
    let body = std::iter::from_fn(move || {
        if refs_left == 0 {
            return None;
        }
        let n = refs_left.min(per_piece);
        refs_left -= n;
        if n == per_piece {
            Some(full.clone())
        } else {
            // n < per_piece, so it fits in usize.
            Some(LZF_LONG_REF.repeat(usize::try_from(n).unwrap_or(0)))
        }
    });
    let pieces = std::iter::once(head)
        .chain(body)
        .chain(std::iter::once(tail))
        .filter(|p| !p.is_empty());
    (total, pieces)
}

/// Valid LZF data that decompresses to `len` copies of `byte` (one literal then back
/// references of 264 bytes at distance 1: about len/88 bytes).
pub fn lzf_expanding(byte: u8, len: u64) -> Vec<u8> {
    let (_, pieces) = lzf_pieces(byte, len);
    pieces.flatten().collect()
}

/// The header of an LZF-encoded RDB string (0xC3, compressed length, uncompressed length).
fn lzf_header(compressed: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0xC3];
    v.extend(rdb_len(compressed));
    v.extend(rdb_len(len));
    v
}

/// An RDB string encoded as LZF (0xC3, compressed length, uncompressed length, data).
pub fn lzf_string(byte: u8, len: u64) -> Vec<u8> {
    let data = lzf_expanding(byte, len);
    let mut v = lzf_header(data.len() as u64, len);
    v.extend(data);
    v
}

/// Adds [`lzf_string`]`(byte, len)` to `b`, streamed.
fn push_lzf_string(b: &mut Builder, byte: u8, len: u64) {
    let (compressed, pieces) = lzf_pieces(byte, len);
    b.bytes(&lzf_header(compressed, len));
    b.lazy(compressed, pieces);
}

/// Adds a raw string of `len` copies of `byte` to `b`, streamed.
fn push_raw_string(b: &mut Builder, byte: u8, len: u64) {
    b.bytes(&rdb_len(len));
    b.lazy(len, repeat(vec![byte; PIECE], len));
}

/// `len` bytes of `pattern` repeated, in pieces of `pattern.len()` bytes (the last shorter).
fn repeat(pattern: Vec<u8>, len: u64) -> impl Iterator<Item = Vec<u8>> + Send {
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 || pattern.is_empty() {
            return None;
        }
        let n = left.min(pattern.len() as u64);
        left -= n;
        // n <= pattern.len(), so it fits in usize.
        let n = usize::try_from(n).unwrap_or(0);
        Some(pattern.get(..n).unwrap_or_default().to_vec())
    })
}

/// Pieces made of `n` records `record(0..n)`, gathered up to [`PIECE`] bytes each (a record
/// must be shorter than that).
fn records(
    n: u64,
    record: impl Fn(u64, &mut Vec<u8>) + Send + 'static,
) -> impl Iterator<Item = Vec<u8>> + Send {
    let mut i = 0u64;
    std::iter::from_fn(move || {
        if i >= n {
            return None;
        }
        let mut piece = Vec::with_capacity(PIECE);
        while i < n && piece.len() + 4096 <= PIECE {
            record(i, &mut piece);
            i += 1;
        }
        Some(piece)
    })
}

/// A stream ID as stored in a stream node or a PEL: milliseconds and sequence, big-endian.
fn stream_id(ms: u64, seq: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&ms.to_be_bytes());
    id[8..].copy_from_slice(&seq.to_be_bytes());
    id
}

/// A small valid stream node listpack: master entry (count 1, deleted 0, one field `f`,
/// terminator 0) and one entry with the SAMEFIELDS flag.
fn small_stream_listpack() -> Vec<u8> {
    let mut body = Vec::new();
    for v in [1, 0, 1] {
        body.extend(lp_small(v));
    }
    body.extend([0x81, b'f', 2]); // the field: a 1-byte string, backlen 2
    body.extend(lp_small(0)); // master terminator
    body.extend(STREAM_ENTRY);
    let total = 6 + body.len() + 1;
    let mut lp = u32::try_from(total).unwrap_or(0).to_le_bytes().to_vec();
    lp.extend_from_slice(&10u16.to_le_bytes()); // 5 master elements, 5 entry elements
    lp.extend(body);
    lp.push(0xFF);
    lp
}

/// The tail of a version-1 stream (type 15): length, last ID, `groups` consumer groups
/// (whose bytes the caller adds).
fn stream_tail_v1(length: u64, last_ms: u64, last_seq: u64, groups: u64) -> Vec<u8> {
    let mut v = rdb_len(length);
    v.extend(rdb_len(last_ms));
    v.extend(rdb_len(last_seq));
    v.extend(rdb_len(groups));
    v
}

/// One string key whose NAME is an LZF string of `len` `b'k'` bytes, value `"v"`.
pub fn lzf_key(len: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_STRING]);
    push_lzf_string(&mut b, b'k', len);
    b.bytes(&raw(b"v"));
    b.finish()
}

/// Key `"big"`, whose string VALUE is an LZF string of `len` `b'x'` bytes (valid: a parser
/// can check it without decompressing it).
pub fn lzf_value(len: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_STRING]);
    b.bytes(&raw(b"big"));
    push_lzf_string(&mut b, b'x', len);
    b.finish()
}

/// A stream key (type 15) with one node whose master ID is an LZF string of `len` `b'i'`
/// bytes (Redis requires exactly 16), then a valid small listpack and stream tail: with
/// `len == 16` the file is valid.
pub fn lzf_stream_id(len: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_STREAM_LISTPACKS]);
    b.bytes(&raw(b"stream"));
    b.bytes(&rdb_len(1));
    push_lzf_string(&mut b, b'i', len);
    b.bytes(&raw(&small_stream_listpack()));
    b.bytes(&stream_tail_v1(1, 0, 0, 0));
    b.finish()
}

/// An AUX field (0xFA) whose NAME is an LZF string of `len` 0xFF bytes, value `"x"`.
pub fn lzf_aux_name(len: u64) -> Generated {
    let mut b = Builder::new();
    b.bytes(&[OP_AUX]);
    push_lzf_string(&mut b, 0xFF, len);
    b.bytes(&raw(b"x"));
    b.bytes(&[OP_SELECTDB, 0]);
    b.finish()
}

/// An AUX field `"evil"` with a RAW value of `len` `b'e'` bytes, streamed.
pub fn raw_aux_value(len: u64) -> Generated {
    let mut b = Builder::new();
    b.bytes(&[OP_AUX]);
    b.bytes(&raw(b"evil"));
    push_raw_string(&mut b, b'e', len);
    b.bytes(&[OP_SELECTDB, 0]);
    b.finish()
}

/// `n` SELECTDB records to the distinct databases `0..n`, each followed by one small string
/// key (`"k"` = `"v"`).
pub fn many_selectdb(n: u64) -> Generated {
    let mut b = Builder::new();
    // Per record: SELECTDB, the db number, type, "k", "v".
    let fixed = 1 + 1 + 2 + 2;
    let len = (0..n).map(|i| fixed + rdb_len_size(i)).sum();
    b.lazy(
        len,
        records(n, |i, out| {
            out.push(OP_SELECTDB);
            out.extend(rdb_len(i));
            out.push(TYPE_STRING);
            out.extend(raw(b"k"));
            out.extend(raw(b"v"));
        }),
    );
    b.finish()
}

/// `n` distinct AUX fields (`"aux-000001"` = `"v"`, numbered from 1).
pub fn many_aux(n: u64) -> Generated {
    let mut b = Builder::new();
    let name = |i: u64| format!("aux-{:06}", i + 1);
    // Per record: the opcode, the name, "v"; names are shorter than 64 bytes.
    let len = (0..n).map(|i| 1 + 1 + name(i).len() as u64 + 2).sum();
    b.lazy(
        len,
        records(n, move |i, out| out.extend(aux(name(i).as_bytes(), b"v"))),
    );
    b.bytes(&[OP_SELECTDB, 0]);
    b.finish()
}

/// A hash key of type 16 (HASH_LISTPACK) whose listpack blob is an LZF string declaring
/// `len` bytes (zeros: the decompressed bytes are not a valid listpack).
pub fn lzf_hash_listpack(len: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_HASH_LISTPACK]);
    b.bytes(&raw(b"hash"));
    push_lzf_string(&mut b, 0, len);
    b.finish()
}

/// A stream key (type 15) with one node: a 16-byte raw master ID (1-0), then a RAW listpack of
/// about `bytes` bytes (at most `u32::MAX`), streamed and structurally valid as a stream node:
/// the master entry (count, deleted 0, one master field `f`, terminator 0), then `count`
/// entries of 2-byte elements (7-bit integers) with the SAMEFIELDS flag (flags 2, ms delta 0,
/// seq delta 0, value 1, lp-count 4; so every entry has the master's ID), and 65535 ("unknown")
/// as the listpack's element count. Then the stream tail: length `count`, last ID 1-0, no
/// consumer groups.
pub fn stream_listpack(bytes: u64) -> Generated {
    // Header 6, count (32-bit integer: 0xF3 + 4 + backlen) 6, deleted 2, field count 2,
    // field "f" 3, terminator 2, end byte 1.
    const OVERHEAD: u64 = 6 + 6 + 2 + 2 + 3 + 2 + 1;
    let max_count = (u64::from(u32::MAX) - OVERHEAD) / STREAM_ENTRY.len() as u64;
    let count = (bytes.saturating_sub(OVERHEAD) / STREAM_ENTRY.len() as u64).min(max_count);
    let entries_len = count * STREAM_ENTRY.len() as u64;
    let total = OVERHEAD + entries_len;

    let mut b = Builder::db0();
    b.bytes(&[TYPE_STREAM_LISTPACKS]);
    b.bytes(&raw(b"stream"));
    b.bytes(&rdb_len(1));
    b.bytes(&raw(&stream_id(1, 0)));
    b.bytes(&rdb_len(total));
    // The listpack header and master entry.
    let mut head = u32::try_from(total)
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    head.extend_from_slice(&u16::MAX.to_le_bytes());
    head.push(0xF3);
    head.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    head.push(5);
    head.extend(lp_small(0));
    head.extend(lp_small(1));
    head.extend([0x81, b'f', 2]);
    head.extend(lp_small(0));
    b.bytes(&head);
    let per_piece = PIECE / STREAM_ENTRY.len();
    b.lazy(
        entries_len,
        repeat(STREAM_ENTRY.repeat(per_piece), entries_len),
    );
    b.bytes(&[0xFF]);
    b.bytes(&stream_tail_v1(count, 1, 0, 0));
    b.finish()
}

/// A valid stream (type 15) with one small node holding one entry (ID 1-0), then ONE consumer
/// group `g` (last ID 1-0) whose PEL has `entries` entries (IDs 1-0, 1-1, ...: a 16-byte ID,
/// an 8-byte delivery time, a delivery count of 1) and no consumers. Streamed. Redis 7.0
/// loads it as it is by default; with `sanitize-dump-payload yes` it refuses PEL entries that
/// no consumer owns.
pub fn pel(entries: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_STREAM_LISTPACKS]);
    b.bytes(&raw(b"stream"));
    b.bytes(&rdb_len(1));
    b.bytes(&raw(&stream_id(1, 0)));
    b.bytes(&raw(&small_stream_listpack()));
    b.bytes(&stream_tail_v1(1, 1, 0, 1));
    b.bytes(&raw(b"g"));
    b.bytes(&rdb_len(1));
    b.bytes(&rdb_len(0));
    b.bytes(&rdb_len(entries));
    let delivery_ms: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let per_piece = (PIECE / PEL_ENTRY) as u64;
    let mut template = Vec::with_capacity(PIECE);
    for _ in 0..per_piece {
        template.extend_from_slice(&stream_id(1, 0));
        template.extend_from_slice(&delivery_ms.to_le_bytes());
        template.extend(rdb_len(1));
    }
    let mut next = 0u64;
    let body = std::iter::from_fn(move || {
        if next >= entries {
            return None;
        }
        let n = (entries - next).min(per_piece);
        // n <= per_piece, so it fits in usize.
        let n_usize = usize::try_from(n).unwrap_or(0);
        let mut piece = template
            .get(..n_usize * PEL_ENTRY)
            .unwrap_or_default()
            .to_vec();
        for (k, entry) in piece.chunks_exact_mut(PEL_ENTRY).enumerate() {
            if let Some(seq) = entry.get_mut(8..16) {
                seq.copy_from_slice(&(next + k as u64).to_be_bytes());
            }
        }
        next += n;
        Some(piece)
    });
    b.lazy(entries * PEL_ENTRY as u64, body);
    b.bytes(&rdb_len(0)); // consumers
    b.finish()
}

/// The module id of a module type `name` (9 characters of `A-Za-z0-9-_`) at encoding
/// version `encver` (`moduleTypeEncodeId`).
fn module_id(name: &[u8; 9], encver: u64) -> u64 {
    const CSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for c in name {
        let index = CSET.iter().position(|x| x == c).unwrap_or(0);
        id = (id << 6) | index as u64;
    }
    (id << 10) | (encver & 1023)
}

/// A key of type 7 (MODULE_2) of module type `hostile-m` (encoding version 1): its module id,
/// then module opcodes: one opcode 5 (string) with a RAW string of `len` bytes, then opcode
/// 0 (EOF). Streamed.
pub fn module_string(len: u64) -> Generated {
    let mut b = Builder::db0();
    b.bytes(&[TYPE_MODULE_2]);
    b.bytes(&raw(b"module"));
    b.bytes(&rdb_len(module_id(b"hostile-m", 1)));
    b.bytes(&rdb_len(5));
    push_raw_string(&mut b, b'm', len);
    b.bytes(&rdb_len(0));
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain LZF decoder (liblzf's format), as simple as possible.
    fn lzf_decode(input: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        let mut ip = 0;
        while ip < input.len() {
            let ctrl = usize::from(input[ip]);
            ip += 1;
            if ctrl < 32 {
                out.extend_from_slice(&input[ip..ip + ctrl + 1]);
                ip += ctrl + 1;
            } else {
                let mut len = ctrl >> 5;
                if len == 7 {
                    len += usize::from(input[ip]);
                    ip += 1;
                }
                let back = ((ctrl & 0x1f) << 8) + usize::from(input[ip]) + 1;
                ip += 1;
                let from = out.len().checked_sub(back).expect("reference before start");
                for i in 0..len + 2 {
                    out.push(out[from + i]);
                }
            }
        }
        out
    }

    /// Reads `g` through without holding it: bytes, largest piece.
    fn measure(g: Generated) -> (u64, usize) {
        let mut total = 0u64;
        let mut largest = 0;
        for p in g.pieces() {
            total += p.len() as u64;
            largest = largest.max(p.len());
        }
        (total, largest)
    }

    fn summary(g: Generated) -> Result<backup_rdb::RdbSummary, backup_rdb::RdbError> {
        let len = g.len_hint();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let s = rt.block_on(backup_rdb::RdbSummary::read(g))?;
        assert_eq!(s.bytes, len, "the parser read the whole file");
        Ok(s)
    }

    #[test]
    fn hostile_rdb_len_encodings() {
        assert_eq!(rdb_len(0), [0]);
        assert_eq!(rdb_len(63), [63]);
        assert_eq!(rdb_len(64), [0x40, 64]);
        assert_eq!(rdb_len(16383), [0x7f, 0xff]);
        assert_eq!(rdb_len(16384), [0x80, 0, 0, 0x40, 0]);
        assert_eq!(rdb_len(u64::from(u32::MAX)), [0x80, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            rdb_len(1 << 32),
            [0x81, 0, 0, 0, 1, 0, 0, 0, 0],
            "0x81 + u64 BE"
        );
        for n in [0, 1, 63, 64, 16383, 16384, 1 << 32] {
            assert_eq!(rdb_len(n).len() as u64, rdb_len_size(n));
        }
    }

    #[test]
    fn hostile_lzf_expanding_decompresses_to_len_copies() {
        let mut lens: Vec<u64> = (0..600).collect();
        lens.extend([1000, 264 * 7 + 1, 100_000, 1 << 20]);
        for len in lens {
            let data = lzf_expanding(b'z', len);
            let out = lzf_decode(&data);
            assert_eq!(out.len() as u64, len, "len {len}");
            assert!(out.iter().all(|&b| b == b'z'), "len {len}");
            assert_eq!(data.len() as u64, lzf_pieces(b'z', len).0, "len {len}");
            // About len/88: 3 bytes per 264, plus at most 5 bytes of literal and tail.
            assert!(
                data.len() as u64 <= len / 88 + 5,
                "len {len}: {}",
                data.len()
            );
        }
        // By hand: 1 + 264 + 5 bytes: a literal, one long reference, a reference of 5.
        assert_eq!(
            lzf_expanding(7, 270),
            [0x00, 7, 0xE0, 0xFF, 0x00, 0x60, 0x00]
        );
        let data = lzf_expanding(b'a', 1000);
        let mut expected = vec![0xC3, u8::try_from(data.len()).unwrap(), 0x40 | 3, 0xE8];
        expected.extend(data);
        assert_eq!(lzf_string(b'a', 1000), expected);
    }

    #[test]
    fn hostile_generated_reads_back_identically_by_every_interface() {
        let whole = pel(100_000).into_vec();
        assert_eq!(whole.len() as u64, pel(100_000).len_hint());
        let mut by_read = Vec::new();
        let mut g = pel(100_000);
        let mut buf = [0u8; 7777];
        loop {
            let n = g.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            by_read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(by_read, whole);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let by_async = rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            AsyncReadExt::read_to_end(&mut pel(100_000), &mut out)
                .await
                .unwrap();
            out
        });
        assert_eq!(by_async, whole);
        let mut written = Vec::new();
        assert_eq!(
            pel(100_000).write_to(&mut written).unwrap(),
            whole.len() as u64
        );
        assert_eq!(written, whole);
        assert!(whole.starts_with(b"REDIS0010"));
        assert!(whole.ends_with(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn hostile_sizes_are_as_documented() {
        // 1 GiB of value in about 12 MB.
        let g = lzf_value(1 << 30);
        let len = g.len_hint();
        assert!((12_000_000..12_300_000).contains(&len), "{len}");
        let (read, largest) = measure(g);
        assert_eq!(read, len);
        assert!(largest <= PIECE && largest > PIECE - 10, "{largest}");
        // 100 MiB of listpack, streamed in pieces of at most 1 MiB.
        let g = stream_listpack(100 << 20);
        let len = g.len_hint();
        assert!(((100 << 20)..(100 << 20) + 200).contains(&len), "{len}");
        let (read, largest) = measure(g);
        assert_eq!(read, len);
        assert!(largest <= PIECE);
        // A PEL of 8 million entries is about 200 MB.
        let g = pel(8_000_000);
        assert!((200_000_000..200_001_000).contains(&g.len_hint()));
        // Raw lengths cost nothing to declare.
        let g = raw_aux_value(600_000_000);
        assert!((600_000_000..600_000_100).contains(&g.len_hint()));
        let g = module_string(300 << 20);
        assert!(((300 << 20)..(300 << 20) + 100).contains(&g.len_hint()));
        // 100 MiB of key name in about 1.2 MB.
        let g = lzf_key(100 << 20);
        let len = g.len_hint();
        assert!((1_100_000..1_300_000).contains(&len), "{len}");
        assert_eq!(measure(g).0, len);
        for g in [
            lzf_aux_name(32 << 20),
            lzf_hash_listpack(1 << 30),
            lzf_stream_id(1 << 30),
        ] {
            let len = g.len_hint();
            assert!(len < 13_000_000, "{len}");
            assert_eq!(measure(g).0, len);
        }
        let g = many_selectdb(100_000);
        let len = g.len_hint();
        assert_eq!(measure(g).0, len);
        let g = many_aux(100_000);
        let len = g.len_hint();
        assert_eq!(measure(g).0, len);
    }

    #[test]
    fn hostile_small_instances_parse_as_valid_rdb_files() {
        let s = summary(lzf_value(100_000)).unwrap();
        assert_eq!(s.aux.get("redis-ver").map(String::as_str), Some("7.0.99"));
        assert!(!s.checksum_verified, "zero checksum: not verified");
        summary(lzf_key(1000)).unwrap();
        summary(lzf_stream_id(16)).unwrap();
        summary(lzf_aux_name(1000)).unwrap();
        summary(raw_aux_value(100_000)).unwrap();
        summary(many_selectdb(1000)).unwrap();
        let s = summary(many_aux(1000)).unwrap();
        // (A bounded summary may keep only the first AUX fields.)
        assert!(s.aux.contains_key("aux-000001"), "{:?}", s.aux);
        summary(pel(10_000)).unwrap();
        summary(module_string(200_000)).unwrap();
        summary(stream_listpack(1 << 20)).unwrap();
        summary(stream_listpack(0)).unwrap();
        summary(pel(0)).unwrap();
        summary(lzf_value(0)).unwrap();
    }

    #[test]
    fn hostile_invalid_instances_are_refused() {
        // A stream ID must be 16 bytes; a listpack of zeros is not a listpack.
        assert!(summary(lzf_stream_id(17)).is_err());
        assert!(summary(lzf_hash_listpack(1000)).is_err());
    }
}
