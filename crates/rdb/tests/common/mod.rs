//! Shared test helpers: an RDB byte builder, a chunking reader, parse helpers and a throwaway
//! `redis-server` driven over raw RESP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use backup_rdb::{crc64, Item, ParseOptions, RdbError, RdbReader, ValueType};
use tokio::io::{AsyncRead, ReadBuf};

// ---------------------------------------------------------------- RDB builder

/// RDB length encoding.
pub fn len(n: u64) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, (n & 0xff) as u8]
    } else if n <= u64::from(u32::MAX) {
        let mut v = vec![0x80];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![0x81];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }
}

/// A raw (length-prefixed) RDB string.
pub fn s(bytes: &[u8]) -> Vec<u8> {
    let mut v = len(bytes.len() as u64);
    v.extend_from_slice(bytes);
    v
}

/// An LZF-encoded RDB string (compressed data given).
pub fn lzf_s(compressed: &[u8], uncompressed_len: u64) -> Vec<u8> {
    let mut v = vec![0xC3];
    v.extend(len(compressed.len() as u64));
    v.extend(len(uncompressed_len));
    v.extend_from_slice(compressed);
    v
}

/// A tiny LZF encoder: literal runs only, plus one back reference when the input is a
/// repetition of its first byte (enough to exercise the decoder's paths).
pub fn lzf_compress(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if input.len() > 10 && input.iter().all(|&b| b == input[0]) {
        // literal first byte, then back references of up to 264 bytes at distance 1
        out.extend_from_slice(&[0, input[0]]);
        let mut left = input.len() - 1;
        while left > 0 {
            let n = left.min(264);
            if n < 3 {
                for _ in 0..n {
                    out.extend_from_slice(&[0, input[0]]);
                }
                break;
            }
            let l = n - 2;
            if l < 7 {
                out.extend_from_slice(&[(l << 5) as u8, 0]);
            } else {
                out.extend_from_slice(&[7 << 5, (l - 7) as u8, 0]);
            }
            left -= n;
        }
        return out;
    }
    for chunk in input.chunks(32) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
    out
}

pub struct Rdb {
    pub bytes: Vec<u8>,
}

impl Rdb {
    pub fn new(version: u16) -> Self {
        Self {
            bytes: format!("REDIS{version:04}").into_bytes(),
        }
    }

    pub fn raw(mut self, b: &[u8]) -> Self {
        self.bytes.extend_from_slice(b);
        self
    }

    pub fn aux(self, k: &[u8], v: &[u8]) -> Self {
        self.raw(&[0xFA]).raw(&s(k)).raw(&s(v))
    }

    pub fn select(self, db: u64) -> Self {
        self.raw(&[0xFE]).raw(&len(db))
    }

    pub fn resize(self, a: u64, b: u64) -> Self {
        self.raw(&[0xFB]).raw(&len(a)).raw(&len(b))
    }

    /// A key of type `t` with an already-encoded value.
    pub fn key(self, t: u8, key: &[u8], value: &[u8]) -> Self {
        self.raw(&[t]).raw(&s(key)).raw(value)
    }

    pub fn expire_ms(self, at: i64) -> Self {
        self.raw(&[0xFC]).raw(&at.to_le_bytes())
    }

    /// Appends EOF and the checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.push(0xFF);
        let crc = crc64(0, &self.bytes);
        self.bytes.extend_from_slice(&crc.to_le_bytes());
        self.bytes
    }

    /// Appends EOF and a zero checksum.
    pub fn finish_no_crc(mut self) -> Vec<u8> {
        self.bytes.push(0xFF);
        self.bytes.extend_from_slice(&[0; 8]);
        self.bytes
    }
}

/// A listpack of strings / small ints.
pub enum Lp<'a> {
    S(&'a [u8]),
    I(i64),
}

pub fn listpack(entries: &[Lp<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let start = body.len();
        match e {
            Lp::I(v) if (0..=127).contains(v) => body.push(*v as u8),
            Lp::I(v) => {
                body.push(0xF4);
                body.extend_from_slice(&v.to_le_bytes());
            }
            Lp::S(b) => {
                assert!(b.len() < 64);
                body.push(0x80 | b.len() as u8);
                body.extend_from_slice(b);
            }
        }
        let l = body.len() - start;
        assert!(l <= 127);
        body.push(l as u8);
    }
    let total = 6 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend(body);
    out.push(0xFF);
    out
}

/// A ziplist of short strings.
pub fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0usize;
    let mut tail = 10;
    for e in entries {
        assert!(e.len() < 64);
        tail = 10 + body.len();
        let start = body.len();
        body.push(prev as u8);
        body.push(e.len() as u8);
        body.extend_from_slice(e);
        prev = body.len() - start;
        assert!(prev < 254);
    }
    let total = 10 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(tail as u32).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend(body);
    out.push(0xFF);
    out
}

// ---------------------------------------------------------------- fixtures: every encoding

pub fn module_id(name: &str, encver: u64) -> u64 {
    const CSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for c in name.chars() {
        id = (id << 6) | CSET.find(c).unwrap() as u64;
    }
    (id << 10) | encver
}

pub fn stream_listpack() -> Vec<u8> {
    // master: 2 live, 1 deleted, fields [f], terminator; then 3 entries
    listpack(&[
        Lp::I(2),
        Lp::I(1),
        Lp::I(1),
        Lp::S(b"f"),
        Lp::I(0),
        // entry 1: same fields
        Lp::I(2),
        Lp::I(0),
        Lp::I(0),
        Lp::S(b"v1"),
        Lp::I(4),
        // entry 2: deleted, same fields
        Lp::I(3),
        Lp::I(1),
        Lp::I(0),
        Lp::S(b"v2"),
        Lp::I(4),
        // entry 3: own fields
        Lp::I(0),
        Lp::I(2),
        Lp::I(0),
        Lp::I(2),
        Lp::S(b"a"),
        Lp::S(b"1"),
        Lp::S(b"b"),
        Lp::S(b"2"),
        Lp::I(8),
    ])
}

pub fn stream_value(version: u8) -> Vec<u8> {
    let mut v = len(1);
    let mut node_id = 1000u64.to_be_bytes().to_vec();
    node_id.extend_from_slice(&0u64.to_be_bytes());
    v.extend(s(&node_id));
    v.extend(s(&stream_listpack()));
    v.extend(len(2)); // length
    v.extend(len(1002)); // last id
    v.extend(len(0));
    if version >= 2 {
        v.extend(len(1000)); // first id
        v.extend(len(0));
        v.extend(len(1001)); // max deleted
        v.extend(len(0));
        v.extend(len(3)); // entries added
    }
    v.extend(len(1)); // groups
    v.extend(s(b"group"));
    v.extend(len(1000));
    v.extend(len(0));
    if version >= 2 {
        v.extend(len(1)); // entries read
    }
    v.extend(len(1)); // PEL
    let mut raw_id = node_id.clone();
    raw_id[15] = 0;
    v.extend_from_slice(&raw_id);
    v.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    v.extend(len(2));
    v.extend(len(1)); // consumers
    v.extend(s(b"alice"));
    v.extend_from_slice(&1_700_000_000_001i64.to_le_bytes());
    if version >= 3 {
        v.extend_from_slice(&1_700_000_000_002i64.to_le_bytes());
    }
    v.extend(len(1));
    v.extend_from_slice(&raw_id);
    v
}

/// (type, key, value bytes, value type, elements)
pub type Fixture = (u8, &'static [u8], Vec<u8>, ValueType, u64);

pub fn fixtures() -> Vec<Fixture> {
    // strings: raw, INT8, INT16, INT32, LZF
    let mut out = vec![(0, &b"s:raw"[..], s(b"hello"), ValueType::String, 1)];
    out.push((0, b"s:i8", vec![0xC0, 0xF9], ValueType::String, 1));
    out.push((0, b"s:i16", vec![0xC1, 0x39, 0x30], ValueType::String, 1));
    out.push((
        0,
        b"s:i32",
        vec![0xC2, 0x15, 0xCD, 0x5B, 0x07],
        ValueType::String,
        1,
    ));
    let text = vec![b'a'; 1000];
    out.push((
        0,
        b"s:lzf",
        lzf_s(&lzf_compress(&text), 1000),
        ValueType::String,
        1,
    ));
    let mixed = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
    out.push((
        0,
        b"s:lzf2",
        lzf_s(&lzf_compress(&mixed), mixed.len() as u64),
        ValueType::String,
        1,
    ));
    // LIST (linked list)
    let mut v = len(3);
    v.extend(s(b"a"));
    v.extend([0xC0, 5]);
    v.extend(lzf_s(&lzf_compress(&text), 1000));
    out.push((1, b"list:linked", v, ValueType::List, 3));
    // SET
    let mut v = len(2);
    v.extend(s(b"x"));
    v.extend(s(b"y"));
    out.push((2, b"set:ht", v, ValueType::Set, 2));
    // ZSET (string doubles, incl. +inf, -inf, nan markers)
    let mut v = len(4);
    for (m, score) in [
        (&b"a"[..], &b"\x031.5"[..]),
        (b"b", b"\xfe"),
        (b"c", b"\xff"),
        (b"d", b"\xfd"),
    ] {
        v.extend(s(m));
        v.extend_from_slice(score);
    }
    out.push((3, b"zset:v1", v, ValueType::SortedSet, 4));
    // HASH
    let mut v = len(2);
    for x in [&b"f1"[..], b"v1", b"f2", b"v2"] {
        v.extend(s(x));
    }
    out.push((4, b"hash:ht", v, ValueType::Hash, 2));
    // ZSET_2
    let mut v = len(2);
    v.extend(s(b"m1"));
    v.extend_from_slice(&1.25f64.to_le_bytes());
    v.extend(s(b"m2"));
    v.extend_from_slice(&(-3.0f64).to_le_bytes());
    out.push((5, b"zset:v2", v, ValueType::SortedSet, 2));
    // MODULE_2: id, then SINT, UINT, FLOAT, DOUBLE, STRING, EOF
    let mut v = len(module_id("ReJSON-RL", 3));
    v.extend(len(1));
    v.extend(len(42));
    v.extend(len(2));
    v.extend(len(7));
    v.extend(len(3));
    v.extend_from_slice(&1.5f32.to_le_bytes());
    v.extend(len(4));
    v.extend_from_slice(&2.5f64.to_le_bytes());
    v.extend(len(5));
    v.extend(s(b"{\"a\":1}"));
    v.extend(len(0));
    out.push((7, b"module:json", v, ValueType::Module, 0));
    // HASH_ZIPMAP {"a": "xy", "bb": "z"}
    let zm = [
        2u8, 1, b'a', 2, 0, b'x', b'y', 2, b'b', b'b', 1, 1, b'z', 0, 0xFF,
    ];
    out.push((9, b"hash:zipmap", s(&zm), ValueType::Hash, 2));
    // LIST_ZIPLIST
    out.push((
        10,
        b"list:zl",
        s(&ziplist(&[b"a", b"b", b"c"])),
        ValueType::List,
        3,
    ));
    // SET_INTSET
    let mut is = vec![4, 0, 0, 0, 3, 0, 0, 0];
    for x in [-70000i32, 1, 70000] {
        is.extend_from_slice(&x.to_le_bytes());
    }
    out.push((11, b"set:intset", s(&is), ValueType::Set, 3));
    // ZSET_ZIPLIST, HASH_ZIPLIST
    out.push((
        12,
        b"zset:zl",
        s(&ziplist(&[b"m", b"1", b"n", b"2"])),
        ValueType::SortedSet,
        2,
    ));
    out.push((
        13,
        b"hash:zl",
        s(&ziplist(&[b"f", b"v"])),
        ValueType::Hash,
        1,
    ));
    // LIST_QUICKLIST (ziplist nodes), one of them LZF-compressed
    let big_zl = ziplist(&[&[b'q'; 40][..], &[b'q'; 40][..], &[b'q'; 40][..]]);
    let mut v = len(2);
    v.extend(s(&ziplist(&[b"a", b"b"])));
    v.extend(lzf_s(&lzf_compress(&big_zl), big_zl.len() as u64));
    out.push((14, b"list:ql1", v, ValueType::List, 5));
    // STREAM v1
    out.push((15, b"stream:v1", stream_value(1), ValueType::Stream, 2));
    // HASH_LISTPACK, ZSET_LISTPACK
    out.push((
        16,
        b"hash:lp",
        s(&listpack(&[
            Lp::S(b"f"),
            Lp::S(b"v"),
            Lp::S(b"g"),
            Lp::I(-5),
        ])),
        ValueType::Hash,
        2,
    ));
    out.push((
        17,
        b"zset:lp",
        s(&listpack(&[Lp::S(b"m"), Lp::I(3)])),
        ValueType::SortedSet,
        1,
    ));
    // LIST_QUICKLIST_2: packed + plain node
    let mut v = len(2);
    v.extend(len(2));
    v.extend(s(&listpack(&[Lp::S(b"a"), Lp::I(1), Lp::I(1_000_000)])));
    v.extend(len(1));
    v.extend(s(&[b'p'; 100]));
    out.push((18, b"list:ql2", v, ValueType::List, 4));
    // STREAM v2
    out.push((19, b"stream:v2", stream_value(2), ValueType::Stream, 2));
    // SET_LISTPACK
    out.push((
        20,
        b"set:lp",
        s(&listpack(&[Lp::S(b"a"), Lp::S(b"b")])),
        ValueType::Set,
        2,
    ));
    // STREAM v3
    out.push((21, b"stream:v3", stream_value(3), ValueType::Stream, 2));
    // HASH_METADATA_PRE_GA (22): len, then (ttl, field, value)
    let mut v = len(2);
    v.extend(len(0));
    v.extend(s(b"f1"));
    v.extend(s(b"v1"));
    v.extend(len(1_800_000_000_000));
    v.extend(s(b"f2"));
    v.extend(s(b"v2"));
    out.push((22, b"hash:meta-pre", v, ValueType::Hash, 2));
    // HASH_LISTPACK_EX_PRE_GA (23): listpack of triplets
    let lpx = listpack(&[
        Lp::S(b"f"),
        Lp::S(b"v"),
        Lp::I(0),
        Lp::S(b"g"),
        Lp::S(b"w"),
        Lp::I(1_800_000_000_000),
    ]);
    out.push((23, b"hash:lpex-pre", s(&lpx), ValueType::Hash, 2));
    // HASH_METADATA (24): min expiry, then relative TTLs
    let mut v = 1_800_000_000_000i64.to_le_bytes().to_vec();
    v.extend(len(1));
    v.extend(len(1));
    v.extend(s(b"f"));
    v.extend(s(b"v"));
    out.push((24, b"hash:meta", v, ValueType::Hash, 1));
    // HASH_LISTPACK_EX (25)
    let mut v = 1_800_000_000_000i64.to_le_bytes().to_vec();
    v.extend(s(&lpx));
    out.push((25, b"hash:lpex", v, ValueType::Hash, 2));
    out
}

pub fn full_file() -> Vec<u8> {
    let mut rdb = Rdb::new(12)
        .aux(b"redis-ver", b"7.4.0")
        .raw(&[0xFA])
        .raw(&s(b"redis-bits"))
        .raw(&[0xC0, 64])
        .raw(&[0xF5])
        .raw(&s(
            b"#!lua name=lib\nredis.register_function('f', function() return 1 end)",
        ))
        // MODULE_AUX: id, when_opcode=UINT, when=2, one UINT, EOF
        .raw(&[0xF7])
        .raw(&len(module_id("mymodule1", 1)))
        .raw(&len(2))
        .raw(&len(2))
        .raw(&len(2))
        .raw(&len(99))
        .raw(&len(0))
        .select(0)
        .resize(40, 3)
        .raw(&[0xF4])
        .raw(&len(1234))
        .raw(&len(40))
        .raw(&len(3));
    for (i, (t, key, value, _, _)) in fixtures().into_iter().enumerate() {
        match i {
            1 => rdb = rdb.expire_ms(1_900_000_000_123),
            2 => rdb = rdb.raw(&[0xFD]).raw(&1_900_000_000i32.to_le_bytes()),
            3 => rdb = rdb.raw(&[0xF9, 5]),             // FREQ
            4 => rdb = rdb.raw(&[0xF8]).raw(&len(100)), // IDLE
            5 => rdb = rdb.expire_ms(5).raw(&[0xF9, 1]).raw(&[0xF8, 3]),
            _ => {}
        }
        rdb = rdb.key(t, key, &value);
    }
    rdb.select(3)
        .raw(&[0x00])
        .raw(&[0xC1, 0xD2, 0x04]) // key 1234 as INT16
        .raw(&s(b"v"))
        .raw(&[0x00])
        .raw(&lzf_s(&lzf_compress(&[b'k'; 100]), 100)) // LZF key
        .raw(&s(b"v"))
        .finish()
}

// ---------------------------------------------------------------- parsing helpers

/// A reader that hands out at most `chunk` bytes per read.
pub struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl Chunked {
    pub fn new(data: Vec<u8>, chunk: usize) -> Self {
        Self {
            data,
            pos: 0,
            chunk,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

pub struct Parsed {
    pub items: Vec<Item>,
    pub version: Option<u16>,
    pub verified: bool,
    pub bytes: u64,
}

pub async fn parse_with<R: AsyncRead + Unpin>(
    reader: R,
    opts: ParseOptions,
) -> Result<Parsed, RdbError> {
    let mut r = RdbReader::new(reader, opts);
    let mut items = Vec::new();
    while let Some(item) = r.next().await? {
        items.push(item);
    }
    // After None, None again.
    assert!(r.next().await?.is_none());
    Ok(Parsed {
        items,
        version: r.version(),
        verified: r.checksum_verified(),
        bytes: r.bytes_read(),
    })
}

pub async fn parse(bytes: &[u8], capture: bool) -> Result<Parsed, RdbError> {
    parse_with(
        bytes,
        ParseOptions {
            capture_payload: capture,
            max_value_bytes: None,
            memory_budget: None,
        },
    )
    .await
}

pub fn entries(items: &[Item]) -> Vec<backup_rdb::Entry> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Entry(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- redis-server

/// Fails the test loudly when `redis-server` cannot be run: these tests compare the parser
/// with the real server, and a missing server must never pass as a skipped check.
pub fn require_redis_server() {
    let ran = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ran.as_ref().is_ok_and(|s| s.success()),
        "redis-server is needed by this test and could not be run ({ran:?}); install it \
         (scripts/setup.sh does: apt-get install redis-server)"
    );
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn bulk(&self) -> Option<Vec<u8>> {
        match self {
            Resp::Bulk(b) => b.clone(),
            other => panic!("expected a bulk string, got {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) => s.clone(),
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

pub struct Redis {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    conn: BufReader<TcpStream>,
}

impl Redis {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.path().to_str().unwrap(),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]);
        cmd.args(extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let conn = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut redis = Self {
            child,
            dir,
            port,
            conn: BufReader::new(conn),
        };
        loop {
            if let Resp::Simple(s) = redis.cmd(&[b"PING"]) {
                if s == "PONG" {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Resp {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&out).unwrap();
        self.read_reply()
    }

    /// Like `cmd` with text arguments, panicking on an error reply.
    pub fn ok(&mut self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        let r = self.cmd(&a);
        if let Resp::Error(e) = &r {
            panic!("{args:?} failed: {e}");
        }
        r
    }

    /// Pipelines many commands, checking none failed.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) {
        for chunk in cmds.chunks(1000) {
            let mut out = Vec::new();
            for args in chunk {
                out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                for a in args {
                    out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                    out.extend_from_slice(a);
                    out.extend_from_slice(b"\r\n");
                }
            }
            self.conn.get_mut().write_all(&out).unwrap();
            for _ in chunk {
                if let Resp::Error(e) = self.read_reply() {
                    panic!("pipelined command failed: {e}");
                }
            }
        }
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.conn.read_until(b'\n', &mut line).unwrap();
        assert!(line.ends_with(b"\r\n"), "bad RESP line {line:?}");
        line.truncate(line.len() - 2);
        String::from_utf8(line).unwrap()
    }

    fn read_reply(&mut self) -> Resp {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut data = vec![0; n as usize + 2];
                self.conn.read_exact(&mut data).unwrap();
                data.truncate(n as usize);
                Resp::Bulk(Some(data))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Array(None);
                }
                Resp::Array(Some((0..n).map(|_| self.read_reply()).collect()))
            }
            other => panic!("unknown RESP type {other}"),
        }
    }

    /// `SAVE`, then the file's bytes.
    pub fn save(&mut self) -> Vec<u8> {
        self.ok(&["SAVE"]);
        std::fs::read(self.rdb_path()).unwrap()
    }

    pub fn version(&mut self) -> String {
        let info = self.ok(&["INFO", "server"]).text();
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
