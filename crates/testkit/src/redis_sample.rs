//! A deterministic Redis data set with every type and encoding Redis 7.0 writes, and
//! snapshots of a server's content to prove a restore exact.
//!
//! [`load_redis_sample`] fills databases 0, 1 and 7 (database 2 and the others stay empty)
//! with strings (integer, short, long, LZF-compressible, binary, a multi-megabyte value),
//! lists (small, multi-node, one with a plain node holding an element larger than 8 KB), sets
//! (intset, small and large hashtable), sorted sets (listpack and skiplist, with `inf`, `-inf`
//! and fractional scores), hashes (listpack and hashtable), streams (deleted entries, consumer
//! groups with pending and acknowledged entries, a group without consumers, an emptied
//! stream), a Lua function library and keys with relative and absolute expiries.
//!
//! [`redis_snapshot`] reads every key back in a canonical form (type, value, `PTTL`),
//! [`redis_functions`] the function libraries, and [`diff_snapshots`] /
//! [`assert_snapshots_match`] compare two snapshots with a tolerance for TTLs.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use redis::Value;

/// The logical databases [`load_redis_sample`] writes to.
pub const REDIS_SAMPLE_DBS: &[u8] = &[0, 1, 7];

/// A database [`load_redis_sample`] leaves empty (for checks that empty databases stay empty).
pub const REDIS_SAMPLE_EMPTY_DB: u8 = 2;

/// The name of the function library [`load_redis_sample`] loads.
pub const REDIS_SAMPLE_LIBRARY: &str = "backup_sample";

/// An absolute expiry far in the future (2100-01-01T00:00:00Z) in Unix milliseconds, used with
/// `PEXPIREAT`.
pub const FAR_FUTURE_MS: i64 = 4_102_444_800_000;

/// What [`load_redis_sample`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Keys per logical database.
    pub keys_per_db: BTreeMap<u8, usize>,
    /// Keys per database and type (`string`, `list`, ...).
    pub types_per_db: BTreeMap<u8, BTreeMap<String, usize>>,
    /// Keys with an expiry.
    pub keys_with_ttl: usize,
    /// Function libraries loaded.
    pub functions: usize,
    /// Whether the list with a plain quicklist node could be made (it needs `DEBUG
    /// QUICKLIST-PACKED-THRESHOLD`, i.e. `enable-debug-command` set to `yes` or `local`).
    pub plain_list_node: bool,
    /// Size in bytes of the large string value.
    pub large_value_bytes: usize,
    /// Representative keys per intended `OBJECT ENCODING` (`int`, `embstr`, `raw`,
    /// `quicklist`, `intset`, `hashtable`, `listpack`, `skiplist`, `stream`), as
    /// `(db, key, encoding)`.
    pub encodings: Vec<(u8, Vec<u8>, String)>,
}

impl SampleStats {
    /// All keys written.
    pub fn total_keys(&self) -> usize {
        self.keys_per_db.values().sum()
    }
}

/// One key as [`redis_snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySnapshot {
    /// `TYPE`: `string`, `list`, `set`, `zset`, `hash`, `stream`.
    pub kind: String,
    /// The value in a canonical order: the string; the list items; the sorted set members;
    /// member and score pairs; sorted field and value pairs; for streams the entries, then
    /// `XINFO STREAM` facts, groups, pending summaries and consumers as text lines.
    pub value: Vec<Vec<u8>>,
    /// `PTTL` in milliseconds, -1 without expiry.
    pub pttl_ms: i64,
}

/// A small deterministic generator (xorshift64*), so the data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn word(&mut self) -> &'static str {
        const WORDS: &[&str] = &[
            "randevu",
            "booking",
            "salon",
            "berber",
            "istanbul",
            "ankara",
            "izmir",
            "customer",
            "staff",
            "service",
            "payment",
            "review",
            "pending",
            "confirmed",
            "cancelled",
        ];
        WORDS[(self.next() % WORDS.len() as u64) as usize]
    }
}

/// Records what was written.
struct Loader<'a> {
    conn: &'a mut redis::Connection,
    stats: SampleStats,
    db: u8,
    rng: Rng,
}

impl Loader<'_> {
    fn select(&mut self, db: u8) -> anyhow::Result<()> {
        redis::cmd("SELECT")
            .arg(db)
            .query::<()>(self.conn)
            .with_context(|| format!("SELECT {db}"))?;
        self.db = db;
        Ok(())
    }

    fn run(&mut self, cmd: &redis::Cmd) -> anyhow::Result<Value> {
        let name = cmd
            .args_iter()
            .next()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .unwrap_or_default();
        let v: Value = cmd
            .query(self.conn)
            .with_context(|| format!("redis command {name} in db {}", self.db))?;
        if let Value::ServerError(e) = &v {
            bail!("redis command {name} in db {}: {e:?}", self.db);
        }
        Ok(v)
    }

    fn key(&mut self, key: &[u8], kind: &str, encoding: Option<&str>) {
        *self.stats.keys_per_db.entry(self.db).or_default() += 1;
        *self
            .stats
            .types_per_db
            .entry(self.db)
            .or_default()
            .entry(kind.to_owned())
            .or_default() += 1;
        if let Some(enc) = encoding {
            self.stats
                .encodings
                .push((self.db, key.to_vec(), enc.to_owned()));
        }
    }

    fn expire(&mut self, key: &[u8], seconds: u64) -> anyhow::Result<()> {
        self.run(redis::cmd("EXPIRE").arg(key).arg(seconds))?;
        self.stats.keys_with_ttl += 1;
        Ok(())
    }

    fn pexpireat(&mut self, key: &[u8], at_ms: i64) -> anyhow::Result<()> {
        self.run(redis::cmd("PEXPIREAT").arg(key).arg(at_ms))?;
        self.stats.keys_with_ttl += 1;
        Ok(())
    }

    fn set(&mut self, key: &[u8], value: &[u8], encoding: Option<&str>) -> anyhow::Result<()> {
        self.run(redis::cmd("SET").arg(key).arg(value))?;
        self.key(key, "string", encoding);
        Ok(())
    }

    /// Pushes `items` with one pipelined `RPUSH` per 500 items.
    fn rpush(&mut self, key: &[u8], items: &[Vec<u8>], enc: Option<&str>) -> anyhow::Result<()> {
        for chunk in items.chunks(500) {
            self.run(redis::cmd("RPUSH").arg(key).arg(chunk))?;
        }
        self.key(key, "list", enc);
        Ok(())
    }

    fn sadd(&mut self, key: &[u8], members: &[Vec<u8>], enc: Option<&str>) -> anyhow::Result<()> {
        for chunk in members.chunks(500) {
            self.run(redis::cmd("SADD").arg(key).arg(chunk))?;
        }
        self.key(key, "set", enc);
        Ok(())
    }

    fn zadd(
        &mut self,
        key: &[u8],
        members: &[(String, Vec<u8>)],
        enc: Option<&str>,
    ) -> anyhow::Result<()> {
        for chunk in members.chunks(500) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(key);
            for (score, member) in chunk {
                cmd.arg(score).arg(member);
            }
            self.run(&cmd)?;
        }
        self.key(key, "zset", enc);
        Ok(())
    }

    fn hset(
        &mut self,
        key: &[u8],
        fields: &[(Vec<u8>, Vec<u8>)],
        enc: Option<&str>,
    ) -> anyhow::Result<()> {
        for chunk in fields.chunks(500) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(key);
            for (f, v) in chunk {
                cmd.arg(f).arg(v);
            }
            self.run(&cmd)?;
        }
        self.key(key, "hash", enc);
        Ok(())
    }

    fn xadd(&mut self, key: &[u8], id: &str, fields: &[(&str, String)]) -> anyhow::Result<()> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg(id);
        for (f, v) in fields {
            cmd.arg(*f).arg(v);
        }
        self.run(&cmd)?;
        Ok(())
    }
}

/// Fills databases 0, 1 and 7 of the server behind `conn` with a deterministic data set that
/// covers every type and encoding Redis 7.0 writes (see the module docs). `scale` (at least 1)
/// multiplies the sizes of the large values and collections; scale 1 is roughly 6 MB of RDB.
///
/// The databases are not flushed first: call it on an empty server. Function library
/// [`REDIS_SAMPLE_LIBRARY`] is loaded with `FUNCTION LOAD REPLACE`.
///
/// # Errors
/// When a command fails.
pub fn load_redis_sample(
    conn: &mut redis::Connection,
    scale: usize,
) -> anyhow::Result<SampleStats> {
    let scale = scale.max(1);
    let mut l = Loader {
        conn,
        stats: SampleStats::default(),
        db: 0,
        rng: Rng(0x9e37_79b9_7f4a_7c15),
    };

    // ---------------------------------------------------------------- database 0: strings
    l.select(0)?;
    l.set(b"str:int", b"12345", Some("int"))?;
    l.set(b"str:int:negative", b"-9223372036854775808", Some("int"))?;
    l.set(b"str:short", b"merhaba dunya", Some("embstr"))?;
    l.set(b"str:empty", b"", None)?;
    let long: Vec<u8> = (0..200)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7) % 36])
        .collect();
    l.set(b"str:long", &long, Some("raw"))?;
    let lzf = "randevu booking confirmed; ".repeat(40);
    l.set(b"str:lzf", lzf.as_bytes(), Some("raw"))?;
    let lzf_short = "abcabcabcabcabcabcabcabcabcabc".to_owned();
    l.set(b"str:lzf:short", lzf_short.as_bytes(), None)?;
    l.set(
        b"str:utf8:\xc3\xbc\xc3\xa7",
        "Çağrı Öztürk ✂ 🎉".as_bytes(),
        None,
    )?;
    l.set(
        b"bin:\x00\xff\xfe key",
        b"\x00\x01\x02\xff\xfe\xc3\x28 invalid utf-8 \x00",
        None,
    )?;
    l.set(b"\xff\xfe\xfd", b"\x80\x81\x82", None)?;
    let mut random_value = l.rng.bytes(3000);
    random_value.extend_from_slice(&[0u8; 3000]);
    l.set(b"bin:mixed", &random_value, Some("raw"))?;
    // The large value: incompressible random bytes then compressible text.
    let large_bytes = 4 * 1024 * 1024 * scale;
    let mut large = l.rng.bytes(large_bytes / 2);
    let text = "the quick brown fox jumps over the lazy dog, ".repeat(large_bytes / 2 / 45 + 1);
    large.extend_from_slice(&text.as_bytes()[..large_bytes - large.len()]);
    l.set(b"str:large", &large, Some("raw"))?;
    l.stats.large_value_bytes = large.len();
    for i in 0..(200 * scale) {
        let key = format!("session:{i:05}");
        let value = format!("user={};token={:016x}", i * 31 % 977, l.rng.next());
        l.set(key.as_bytes(), value.as_bytes(), None)?;
        if i % 10 == 0 {
            l.expire(key.as_bytes(), 7200 + i as u64)?;
        }
    }
    l.set(b"str:ttl:long", b"expires in two hours", None)?;
    l.expire(b"str:ttl:long", 7200)?;
    l.set(b"str:ttl:absolute", b"expires in 2100", None)?;
    l.pexpireat(b"str:ttl:absolute", FAR_FUTURE_MS)?;

    // ---------------------------------------------------------------- database 0: lists
    let small: Vec<Vec<u8>> = ["a", "b", "c", "12", "-7", "9999999999"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    l.rpush(b"list:small", &small, Some("quicklist"))?;
    let large_list: Vec<Vec<u8>> = (0..(5000 * scale))
        .map(|i| {
            if i % 3 == 0 {
                i.to_string().into_bytes()
            } else {
                format!("item-{i}-{}", l_word(i)).into_bytes()
            }
        })
        .collect();
    l.rpush(b"list:large", &large_list, Some("quicklist"))?;
    let bin_list = vec![
        b"\x00".to_vec(),
        b"\xff\xff".to_vec(),
        Vec::new(),
        b"x\r\ny".to_vec(),
    ];
    l.rpush(b"list:binary", &bin_list, None)?;
    // A plain node: an element above the packed threshold (lowered with DEBUG, as the 7.0
    // default is 1 GB).
    let packed = redis::cmd("DEBUG")
        .arg("QUICKLIST-PACKED-THRESHOLD")
        .arg("8192")
        .query::<Value>(l.conn);
    let plain_ok = matches!(packed, Ok(Value::Okay) | Ok(Value::SimpleString(_)));
    let big_item = "plain node element / ".repeat(600).into_bytes(); // 12,600 bytes
    let plain_items = vec![b"before".to_vec(), big_item, b"after".to_vec()];
    l.rpush(b"list:plain", &plain_items, Some("quicklist"))?;
    if plain_ok {
        redis::cmd("DEBUG")
            .arg("QUICKLIST-PACKED-THRESHOLD")
            .arg("0")
            .query::<()>(l.conn)
            .context("DEBUG QUICKLIST-PACKED-THRESHOLD 0")?;
    }
    l.stats.plain_list_node = plain_ok;
    l.expire(b"list:large", 9000)?;

    // ---------------------------------------------------------------- database 0: sets
    let ints: Vec<Vec<u8>> = (0..100)
        .map(|i: i64| (i * i - 500).to_string().into_bytes())
        .collect();
    l.sadd(b"set:intset", &ints, Some("intset"))?;
    let words: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("{}-{i}", l.rng.word()).into_bytes())
        .collect();
    l.sadd(b"set:small", &words, Some("hashtable"))?;
    let large_set: Vec<Vec<u8>> = (0..(2000 * scale))
        .map(|i| format!("member:{i}:{:x}", i * 7919).into_bytes())
        .collect();
    l.sadd(b"set:large", &large_set, Some("hashtable"))?;
    let big_ints: Vec<Vec<u8>> = (0..1000)
        .map(|i: i64| (i * 1_000_003).to_string().into_bytes())
        .collect();
    l.sadd(b"set:intset:large", &big_ints, Some("hashtable"))?;
    l.sadd(
        b"set:binary",
        &[b"\x00\x01".to_vec(), b"\xff".to_vec(), b"".to_vec()],
        None,
    )?;

    // ---------------------------------------------------------------- database 0: sorted sets
    let zsmall: Vec<(String, Vec<u8>)> = vec![
        ("-inf".to_owned(), b"minus-infinity".to_vec()),
        ("inf".to_owned(), b"plus-infinity".to_vec()),
        ("0".to_owned(), b"zero".to_vec()),
        ("1.5".to_owned(), b"one and a half".to_vec()),
        ("-2.25".to_owned(), b"negative".to_vec()),
        ("3.141592653589793".to_owned(), b"pi".to_vec()),
        ("1e-300".to_owned(), b"tiny".to_vec()),
        ("12345678901234567".to_owned(), b"huge".to_vec()),
    ];
    l.zadd(b"zset:small", &zsmall, Some("listpack"))?;
    let mut zlarge: Vec<(String, Vec<u8>)> = (0..(1000 * scale))
        .map(|i| {
            (
                format!("{}.{}", i as i64 - 500, i % 10),
                format!("player:{i}").into_bytes(),
            )
        })
        .collect();
    zlarge.push(("inf".to_owned(), b"top".to_vec()));
    zlarge.push(("-inf".to_owned(), b"bottom".to_vec()));
    zlarge.push(("0.1".to_owned(), b"tenth".to_vec()));
    l.zadd(b"zset:large", &zlarge, Some("skiplist"))?;
    let zlong = vec![("1".to_owned(), vec![b'z'; 100])];
    l.zadd(b"zset:longmember", &zlong, Some("skiplist"))?;

    // ---------------------------------------------------------------- database 0: hashes
    let hsmall: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"name".to_vec(), "Ayşe Yılmaz".as_bytes().to_vec()),
        (b"age".to_vec(), b"34".to_vec()),
        (b"bin\x00field".to_vec(), b"\xff\x00".to_vec()),
        (b"empty".to_vec(), Vec::new()),
    ];
    l.hset(b"hash:small", &hsmall, Some("listpack"))?;
    let hlarge: Vec<(Vec<u8>, Vec<u8>)> = (0..(1000 * scale))
        .map(|i| {
            (
                format!("field:{i}").into_bytes(),
                format!("value {i} {}", l_word(i)).into_bytes(),
            )
        })
        .collect();
    l.hset(b"hash:large", &hlarge, Some("hashtable"))?;
    let hlong = vec![(b"f".to_vec(), vec![b'v'; 200])];
    l.hset(b"hash:longvalue", &hlong, Some("hashtable"))?;
    l.pexpireat(b"hash:small", FAR_FUTURE_MS + 1234)?;

    // ---------------------------------------------------------------- database 0: streams
    stream_sample(&mut l, scale)?;

    // ---------------------------------------------------------------- database 1
    l.select(1)?;
    l.set(b"db1:counter", b"42", Some("int"))?;
    l.set(b"str:int", b"shadows the key of database 0", None)?;
    for i in 0..(100 * scale) {
        let key = format!("cache:{i}");
        let value = format!("{{\"id\":{i},\"name\":\"{}\",\"n\":{}}}", l_word(i), i * 13);
        l.set(key.as_bytes(), value.as_bytes(), None)?;
        if i % 4 == 0 {
            l.expire(key.as_bytes(), 3600 * 5)?;
        }
    }
    l.rpush(b"db1:queue", &[b"job1".to_vec(), b"job2".to_vec()], None)?;
    l.hset(b"db1:hash", &[(b"k".to_vec(), b"v".to_vec())], None)?;
    l.pexpireat(b"db1:hash", FAR_FUTURE_MS)?;

    // ---------------------------------------------------------------- database 7
    l.select(7)?;
    l.set(b"db7:only", b"seven", None)?;
    l.sadd(
        b"db7:set",
        &[b"1".to_vec(), b"2".to_vec(), b"3".to_vec()],
        Some("intset"),
    )?;
    l.zadd(b"db7:zset", &[("2.5".to_owned(), b"m".to_vec())], None)?;
    l.xadd(b"db7:stream", "1-1", &[("f", "v".to_owned())])?;
    l.key(b"db7:stream", "stream", Some("stream"));
    l.select(0)?;

    // ---------------------------------------------------------------- functions
    let code = format!(
        "#!lua name={REDIS_SAMPLE_LIBRARY}\n\
         redis.register_function('sample_echo', function(keys, args) return args[1] end)\n\
         redis.register_function{{function_name='sample_get', \
         callback=function(keys, args) return redis.call('GET', keys[1]) end, \
         flags={{'no-writes'}}, description='reads a key'}}\n"
    );
    l.run(redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(code))?;
    l.stats.functions = 1;
    Ok(l.stats)
}

/// A word for item `i` (deterministic, independent of the generator state).
fn l_word(i: usize) -> &'static str {
    const W: &[&str] = &[
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    W[i % W.len()]
}

/// Streams in database 0: entries across several listpacks, deleted entries, consumer groups
/// with pending and acknowledged entries, a group without consumers, an emptied stream.
fn stream_sample(l: &mut Loader<'_>, scale: usize) -> anyhow::Result<()> {
    let key: &[u8] = b"stream:events";
    let n = 300 * scale;
    for i in 1..=n {
        let id = format!("1700000000000-{i}");
        let fields = [
            ("type", l_word(i).to_owned()),
            ("n", i.to_string()),
            ("payload", format!("{:x}", i * 2654435761 % 1_000_007)),
        ];
        l.xadd(key, &id, &fields)?;
    }
    // A different field set (a "non-master" entry in the listpack).
    l.xadd(
        key,
        "1700000001000-0",
        &[("other", "shape".to_owned()), ("x", "1".to_owned())],
    )?;
    for i in [5usize, 6, 7, 100] {
        l.run(
            redis::cmd("XDEL")
                .arg(key)
                .arg(format!("1700000000000-{i}")),
        )?;
    }
    l.run(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg("workers")
            .arg("0"),
    )?;
    l.run(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg("idle-group")
            .arg("$"),
    )?;
    l.run(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg("late")
            .arg("1700000000000-200"),
    )?;
    l.run(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg("alice")
            .arg("COUNT")
            .arg(10)
            .arg("STREAMS")
            .arg(key)
            .arg(">"),
    )?;
    l.run(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg("bob")
            .arg("COUNT")
            .arg(5)
            .arg("STREAMS")
            .arg(key)
            .arg(">"),
    )?;
    l.run(
        redis::cmd("XACK")
            .arg(key)
            .arg("workers")
            .arg("1700000000000-1")
            .arg("1700000000000-2"),
    )?;
    l.run(
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(key)
            .arg("workers")
            .arg("carol"),
    )?;
    l.run(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("late")
            .arg("dave")
            .arg("COUNT")
            .arg(3)
            .arg("STREAMS")
            .arg(key)
            .arg(">"),
    )?;
    l.key(key, "stream", Some("stream"));

    let empty: &[u8] = b"stream:emptied";
    l.xadd(empty, "5-1", &[("a", "1".to_owned())])?;
    l.xadd(empty, "5-2", &[("a", "2".to_owned())])?;
    l.run(redis::cmd("XDEL").arg(empty).arg("5-1").arg("5-2"))?;
    l.run(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(empty)
            .arg("g")
            .arg("0"),
    )?;
    l.key(empty, "stream", Some("stream"));

    let ttl: &[u8] = b"stream:ttl";
    l.xadd(ttl, "*", &[("k", "v".to_owned())])?;
    l.key(ttl, "stream", None);
    l.expire(ttl, 4 * 3600)?;
    Ok(())
}

/// Runs one command and returns its reply, failing on an error reply.
fn query(conn: &mut redis::Connection, cmd: &redis::Cmd, what: &str) -> anyhow::Result<Value> {
    let v: Value = cmd.query(conn).with_context(|| what.to_owned())?;
    if let Value::ServerError(e) = &v {
        bail!("{what}: {e:?}");
    }
    Ok(v)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::Okay => b"OK".to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Double(d) => d.to_string().into_bytes(),
        Value::Nil => b"(nil)".to_vec(),
        other => render(other).into_bytes(),
    }
}

fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Nil => Vec::new(),
        other => vec![other],
    }
}

/// A canonical text form of a reply (binary bytes escaped).
fn render(v: &Value) -> String {
    match v {
        Value::BulkString(b) => escape(b),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Nil => "(nil)".to_owned(),
        Value::Boolean(b) => b.to_string(),
        Value::Array(a) | Value::Set(a) => {
            format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

/// `key` with non-printable bytes as `\xNN`.
pub fn escape(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// A flat `[name, value, name, value, ...]` reply as pairs (RESP2 maps).
fn pairs(v: Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut it = items(v).into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((String::from_utf8_lossy(&bytes_of(&k)).into_owned(), v));
    }
    out
}

/// Keeps the fields of a flat map reply named in `keep`, as `name=value` text.
fn fields(v: Value, keep: &[&str]) -> Vec<String> {
    pairs(v)
        .into_iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", render(&v)))
        .collect()
}

fn stream_value(conn: &mut redis::Connection, key: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let entries = query(
        conn,
        redis::cmd("XRANGE").arg(key).arg("-").arg("+"),
        "XRANGE",
    )?;
    for e in items(entries) {
        out.push(format!("entry {}", render(&e)).into_bytes());
    }
    let info = query(
        conn,
        redis::cmd("XINFO").arg("STREAM").arg(key),
        "XINFO STREAM",
    )?;
    let facts = fields(
        info,
        &[
            "length",
            "last-generated-id",
            "max-deleted-entry-id",
            "entries-added",
            "recorded-first-entry-id",
            "groups",
        ],
    );
    out.push(format!("stream {}", facts.join(" ")).into_bytes());
    let groups = query(
        conn,
        redis::cmd("XINFO").arg("GROUPS").arg(key),
        "XINFO GROUPS",
    )?;
    let mut group_lines = Vec::new();
    for g in items(groups) {
        let ps = pairs(g);
        let name = ps
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| bytes_of(v))
            .unwrap_or_default();
        let facts: Vec<String> = ps
            .iter()
            .filter(|(k, _)| {
                [
                    "name",
                    "consumers",
                    "pending",
                    "last-delivered-id",
                    "entries-read",
                    "lag",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect();
        let mut lines = vec![format!("group {}", facts.join(" "))];
        let summary = query(conn, redis::cmd("XPENDING").arg(key).arg(&name), "XPENDING")?;
        lines.push(format!("pending-summary {}", render(&summary)));
        let pending = query(
            conn,
            redis::cmd("XPENDING")
                .arg(key)
                .arg(&name)
                .arg("-")
                .arg("+")
                .arg(100_000),
            "XPENDING range",
        )?;
        for p in items(pending) {
            // [id, consumer, idle ms, delivery count]: the idle time changes, leave it out.
            let parts = items(p);
            let kept: Vec<String> = parts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, v)| render(v))
                .collect();
            lines.push(format!("pending {}", kept.join(" ")));
        }
        let consumers = query(
            conn,
            redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(&name),
            "XINFO CONSUMERS",
        )?;
        let mut cons: Vec<String> = items(consumers)
            .into_iter()
            .map(|c| format!("consumer {}", fields(c, &["name", "pending"]).join(" ")))
            .collect();
        cons.sort();
        lines.extend(cons);
        group_lines.push(lines);
    }
    group_lines.sort();
    out.extend(group_lines.into_iter().flatten().map(String::into_bytes));
    Ok(out)
}

/// Reads every key of databases `dbs` (with `SCAN`): type, canonical value and `PTTL`, keyed
/// by `(db, key)`. Leaves the connection on database 0.
///
/// # Errors
/// When a command fails or a key has a type this function does not know.
pub fn redis_snapshot(
    conn: &mut redis::Connection,
    dbs: &[u8],
) -> anyhow::Result<BTreeMap<(u8, Vec<u8>), KeySnapshot>> {
    let mut out = BTreeMap::new();
    for &db in dbs {
        query(conn, redis::cmd("SELECT").arg(db), "SELECT")?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let reply = query(
                conn,
                redis::cmd("SCAN").arg(&cursor).arg("COUNT").arg(1000),
                "SCAN",
            )?;
            let mut parts = items(reply).into_iter();
            let (Some(next), Some(batch)) = (parts.next(), parts.next()) else {
                bail!("unexpected SCAN reply");
            };
            keys.extend(items(batch).iter().map(bytes_of));
            cursor = bytes_of(&next);
            if cursor == b"0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            let kind = String::from_utf8_lossy(&bytes_of(&query(
                conn,
                redis::cmd("TYPE").arg(&key),
                "TYPE",
            )?))
            .into_owned();
            let value: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![bytes_of(&query(conn, redis::cmd("GET").arg(&key), "GET")?)],
                "list" => items(query(
                    conn,
                    redis::cmd("LRANGE").arg(&key).arg(0).arg(-1),
                    "LRANGE",
                )?)
                .iter()
                .map(bytes_of)
                .collect(),
                "set" => {
                    let mut m: Vec<Vec<u8>> =
                        items(query(conn, redis::cmd("SMEMBERS").arg(&key), "SMEMBERS")?)
                            .iter()
                            .map(bytes_of)
                            .collect();
                    m.sort();
                    m
                }
                "zset" => items(query(
                    conn,
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                    "ZRANGE",
                )?)
                .iter()
                .map(bytes_of)
                .collect(),
                "hash" => {
                    let flat: Vec<Vec<u8>> =
                        items(query(conn, redis::cmd("HGETALL").arg(&key), "HGETALL")?)
                            .iter()
                            .map(bytes_of)
                            .collect();
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = flat
                        .chunks(2)
                        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
                        .collect();
                    pairs.sort();
                    pairs.into_iter().flat_map(|(f, v)| [f, v]).collect()
                }
                "stream" => stream_value(conn, &key)?,
                "none" => continue, // expired or deleted between SCAN and TYPE
                other => bail!(
                    "key {} in db {db} has unsupported type {other}",
                    escape(&key)
                ),
            };
            let pttl = match query(conn, redis::cmd("PTTL").arg(&key), "PTTL")? {
                Value::Int(i) => i,
                other => bail!("unexpected PTTL reply {}", render(&other)),
            };
            out.insert(
                (db, key),
                KeySnapshot {
                    kind,
                    value,
                    pttl_ms: pttl,
                },
            );
        }
    }
    query(conn, redis::cmd("SELECT").arg(0), "SELECT")?;
    Ok(out)
}

/// `FUNCTION LIST WITHCODE` in a canonical text form: one line per library, sorted by name,
/// with engine, functions (name, description, flags) and code.
///
/// # Errors
/// When the command fails.
pub fn redis_functions(conn: &mut redis::Connection) -> anyhow::Result<Vec<String>> {
    let reply = query(
        conn,
        redis::cmd("FUNCTION").arg("LIST").arg("WITHCODE"),
        "FUNCTION LIST",
    )?;
    let mut libs: Vec<String> = items(reply)
        .into_iter()
        .map(|lib| {
            pairs(lib)
                .into_iter()
                .map(|(k, v)| {
                    if k == "functions" {
                        let mut fs: Vec<String> = items(v).iter().map(render).collect();
                        fs.sort();
                        format!("functions=[{}]", fs.join(", "))
                    } else {
                        format!("{k}={}", render(&v))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    libs.sort();
    Ok(libs)
}

/// The differences between two snapshots, one readable line each (empty when they match).
/// TTLs match when both are -1, or both positive and within `ttl_tolerance_ms`.
pub fn diff_snapshots(
    expected: &BTreeMap<(u8, Vec<u8>), KeySnapshot>,
    actual: &BTreeMap<(u8, Vec<u8>), KeySnapshot>,
    ttl_tolerance_ms: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for ((db, key), e) in expected {
        let name = format!("db {db} key {}", escape(key));
        let Some(a) = actual.get(&(*db, key.clone())) else {
            out.push(format!("{name}: missing"));
            continue;
        };
        if e.kind != a.kind {
            out.push(format!("{name}: type {} != {}", e.kind, a.kind));
            continue;
        }
        if e.value != a.value {
            let first = e
                .value
                .iter()
                .zip(&a.value)
                .position(|(x, y)| x != y)
                .unwrap_or(e.value.len().min(a.value.len()));
            let show = |v: &Vec<Vec<u8>>| {
                v.get(first)
                    .map(|b| {
                        let s = escape(b);
                        if s.len() > 200 {
                            format!("{}...", &s[..200])
                        } else {
                            s
                        }
                    })
                    .unwrap_or_else(|| "(none)".to_owned())
            };
            out.push(format!(
                "{name}: {} value differs ({} vs {} items; first difference at item {first}: {} vs {})",
                e.kind,
                e.value.len(),
                a.value.len(),
                show(&e.value),
                show(&a.value)
            ));
        }
        let ttl_ok = match (e.pttl_ms, a.pttl_ms) {
            (x, y) if x < 0 || y < 0 => x == y,
            (x, y) => (x - y).abs() <= ttl_tolerance_ms,
        };
        if !ttl_ok {
            out.push(format!(
                "{name}: PTTL {} vs {} (tolerance {ttl_tolerance_ms} ms)",
                e.pttl_ms, a.pttl_ms
            ));
        }
    }
    for (db, key) in actual.keys() {
        if !expected.contains_key(&(*db, key.clone())) {
            out.push(format!("db {db} key {}: unexpected", escape(key)));
        }
    }
    out
}

/// Panics with a readable list of differences (at most 50 lines) when the snapshots differ.
pub fn assert_snapshots_match(
    expected: &BTreeMap<(u8, Vec<u8>), KeySnapshot>,
    actual: &BTreeMap<(u8, Vec<u8>), KeySnapshot>,
    ttl_tolerance_ms: i64,
) {
    let diff = diff_snapshots(expected, actual, ttl_tolerance_ms);
    assert!(
        diff.is_empty(),
        "snapshots differ ({} expected keys, {} actual, {} differences):\n{}",
        expected.len(),
        actual.len(),
        diff.len(),
        diff.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
    );
}
