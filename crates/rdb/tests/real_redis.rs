//! Real RDB files written by the local `redis-server`: every encoding it produces is parsed,
//! counted and captured, and every captured payload is compared byte for byte with `DUMP`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use backup_rdb::{restore_payload, Item, ParseOptions, RdbError, RdbReader, RdbSummary, ValueType};
use common::*;

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

struct Expect {
    /// (db, key) -> type
    keys: BTreeMap<(u64, Vec<u8>), ValueType>,
}

/// Fills the server with every encoding Redis 7.0 writes. Returns the keys and types.
fn populate(r: &mut Redis, big: bool) -> Expect {
    let mut keys = BTreeMap::new();
    let mut put = |db: u64, k: &[u8], t: ValueType| {
        keys.insert((db, k.to_vec()), t);
    };
    r.ok(&["SELECT", "0"]);
    // strings: int, negative int, >32-bit int, embstr, raw, LZF-compressible, binary
    for (k, v) in [
        ("str:int", "12345"),
        ("str:neg", "-7"),
        ("str:small", "5"),
        ("str:i16", "-30000"),
        ("str:bigint", "123456789012"),
        ("str:embstr", "hello"),
        ("str:empty", ""),
    ] {
        r.ok(&["SET", k, v]);
        put(0, k.as_bytes(), ValueType::String);
    }
    let raw = String::from_utf8(noise(100, 1).iter().map(|c| b'a' + c % 26).collect()).unwrap();
    r.ok(&["SET", "str:raw", &raw]);
    put(0, b"str:raw", ValueType::String);
    r.ok(&["SET", "str:lzf", &"abcdefgh".repeat(50)]);
    put(0, b"str:lzf", ValueType::String);
    r.cmd(&[b"SET", b"bin\0key\xff", b"\0\xff\x00data\r\n"]);
    put(0, b"bin\0key\xff", ValueType::String);
    r.ok(&["SET", "1234", "integer-looking key"]);
    put(0, b"1234", ValueType::String);
    let long_key = "k".repeat(200);
    r.ok(&["SET", &long_key, "compressible key"]);
    put(0, long_key.as_bytes(), ValueType::String);
    // TTLs
    r.ok(&["SET", "ttl:str", "v", "PX", "100000000"]);
    put(0, b"ttl:str", ValueType::String);
    r.ok(&["HSET", "ttl:hash", "f", "v"]);
    r.ok(&["EXPIRE", "ttl:hash", "1000000"]);
    put(0, b"ttl:hash", ValueType::Hash);

    // lists: small listpack quicklist, multi-node quicklist, plain node
    r.ok(&[
        "RPUSH",
        "list:small",
        "a",
        "b",
        "c",
        "1",
        "2",
        "-3",
        "300000",
        "99999999999",
    ]);
    put(0, b"list:small", ValueType::List);
    let mut cmds = Vec::new();
    let mut push = vec![b("RPUSH"), b("list:large")];
    for i in 0..3000 {
        push.push(format!("element-{i}-{}", "x".repeat(i % 40)).into_bytes());
    }
    cmds.push(push);
    put(0, b"list:large", ValueType::List);
    r.pipeline(&cmds);
    r.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000"]);
    r.cmd(&[
        b"RPUSH",
        b"list:plain",
        b"small",
        &noise(5000, 2),
        b"tail",
        &vec![b'z'; 3000],
    ]);
    put(0, b"list:plain", ValueType::List);
    r.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1073741824"]);

    // sets: intset, hashtable (and listpack on 7.2+)
    r.ok(&[
        "SADD",
        "set:int",
        "1",
        "2",
        "3",
        "-5",
        "100000",
        "5000000000",
    ]);
    put(0, b"set:int", ValueType::Set);
    r.ok(&["SADD", "set:small", "a", "b", "c"]);
    put(0, b"set:small", ValueType::Set);
    let mut sadd = vec![b("SADD"), b("set:large")];
    for i in 0..1000 {
        sadd.push(format!("member-{i}").into_bytes());
    }
    r.pipeline(&[sadd]);
    put(0, b"set:large", ValueType::Set);

    // zsets: listpack, skiplist
    r.ok(&[
        "ZADD",
        "zset:small",
        "1",
        "a",
        "2.5",
        "b",
        "-3",
        "c",
        "inf",
        "d",
    ]);
    put(0, b"zset:small", ValueType::SortedSet);
    let mut zadd = vec![b("ZADD"), b("zset:large")];
    for i in 0..500 {
        zadd.push(format!("{}", f64::from(i) * 1.5 - 100.0).into_bytes());
        zadd.push(format!("zmember-{i}").into_bytes());
    }
    r.pipeline(&[zadd]);
    put(0, b"zset:large", ValueType::SortedSet);

    // hashes: listpack, hashtable
    r.ok(&["HSET", "hash:small", "f1", "v1", "f2", "2", "f3", ""]);
    put(0, b"hash:small", ValueType::Hash);
    let mut hset = vec![b("HSET"), b("hash:large")];
    for i in 0..1000 {
        hset.push(format!("field-{i}").into_bytes());
        hset.push(format!("value-{i}").into_bytes());
    }
    r.pipeline(&[hset]);
    put(0, b"hash:large", ValueType::Hash);
    r.cmd(&[b"HSET", b"hash:bigval", b"f", &[b'q'; 100]]);
    put(0, b"hash:bigval", ValueType::Hash);

    // streams: entries, consumer groups, pending entries, acks, deletions, many nodes
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = if i % 3 == 0 {
            r.ok(&["XADD", "stream:s", "*", "f", &i.to_string(), "g", "x"])
                .text()
        } else {
            r.ok(&["XADD", "stream:s", "*", "other", &i.to_string()])
                .text()
        };
        ids.push(id);
    }
    r.ok(&["XGROUP", "CREATE", "stream:s", "g1", "0"]);
    r.ok(&["XGROUP", "CREATE", "stream:s", "g2", "$"]);
    r.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "4",
        "STREAMS",
        "stream:s",
        ">",
    ]);
    r.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "3",
        "STREAMS",
        "stream:s",
        ">",
    ]);
    r.ok(&["XACK", "stream:s", "g1", &ids[0], &ids[5]]);
    r.ok(&["XDEL", "stream:s", &ids[2], &ids[8]]);
    r.ok(&["XGROUP", "CREATECONSUMER", "stream:s", "g2", "idle"]);
    put(0, b"stream:s", ValueType::Stream);
    let mut xadds = Vec::new();
    for i in 0..350 {
        xadds.push(vec![
            b("XADD"),
            b("stream:big"),
            b("*"),
            b("n"),
            i.to_string().into_bytes(),
        ]);
    }
    r.pipeline(&xadds);
    put(0, b"stream:big", ValueType::Stream);
    r.ok(&["XADD", "stream:empty", "*", "a", "b"]);
    let last = r.ok(&["XADD", "stream:empty", "*", "a", "b"]).text();
    let first = r.ok(&["XRANGE", "stream:empty", "-", "+", "COUNT", "1"]);
    let first_id = match first {
        Resp::Array(Some(v)) => match &v[0] {
            Resp::Array(Some(e)) => e[0].text(),
            _ => panic!(),
        },
        _ => panic!(),
    };
    r.ok(&["XDEL", "stream:empty", &first_id, &last]);
    put(0, b"stream:empty", ValueType::Stream);

    // function library
    r.ok(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return args[1] end)",
    ]);

    if big {
        // ~5 MB incompressible and ~5 MB compressible values
        r.cmd(&[b"SET", b"big:noise", &noise(5 << 20, 3)]);
        put(0, b"big:noise", ValueType::String);
        r.cmd(&[
            b"SET",
            b"big:text",
            "the quick brown fox ".repeat(250_000).as_bytes(),
        ]);
        put(0, b"big:text", ValueType::String);
    }

    // other databases
    r.ok(&["SELECT", "1"]);
    r.ok(&["SET", "db1:a", "1"]);
    put(1, b"db1:a", ValueType::String);
    r.ok(&["RPUSH", "db1:list", "x"]);
    put(1, b"db1:list", ValueType::List);
    r.ok(&["SELECT", "5"]);
    r.ok(&["SADD", "db5:set", "m"]);
    put(5, b"db5:set", ValueType::Set);
    r.ok(&["SET", "db5:ttl", "v", "EX", "1000000"]);
    put(5, b"db5:ttl", ValueType::String);
    r.ok(&["SELECT", "0"]);
    Expect { keys }
}

fn element_count(r: &mut Redis, t: ValueType, key: &[u8]) -> u64 {
    let cmd: &[u8] = match t {
        ValueType::String => return 1,
        ValueType::List => b"LLEN",
        ValueType::Set => b"SCARD",
        ValueType::SortedSet => b"ZCARD",
        ValueType::Hash => b"HLEN",
        ValueType::Stream => b"XLEN",
        ValueType::Module => return 0,
    };
    r.cmd(&[cmd, key]).int() as u64
}

/// Checks a real file against the server that wrote it.
async fn check_against_server(r: &mut Redis, expect: &Expect, file: &[u8]) {
    // Summary: keys per db and per type.
    let summary = RdbSummary::read(file).await.unwrap();
    assert!(summary.checksum_verified);
    assert_eq!(summary.bytes, file.len() as u64);
    assert_eq!(summary.functions, 1);
    let mut want_per_db: BTreeMap<u64, u64> = BTreeMap::new();
    let mut want_types: BTreeMap<u64, BTreeMap<ValueType, u64>> = BTreeMap::new();
    for ((db, _), t) in &expect.keys {
        *want_per_db.entry(*db).or_default() += 1;
        *want_types.entry(*db).or_default().entry(*t).or_default() += 1;
    }
    assert_eq!(summary.keys_per_db, want_per_db);
    assert_eq!(summary.types_per_db, want_types);
    assert_eq!(summary.keys_with_expiry, 3);
    assert_eq!(
        summary.aux.get("redis-ver").map(String::as_str),
        Some(r.version().as_str())
    );
    let expected_version = backup_rdb::rdb_version_for_server(&r.version()).unwrap();
    assert_eq!(summary.version, expected_version);

    // Capture: every payload equals DUMP's output.
    let parsed = parse(file, true).await.unwrap();
    let mut seen = 0;
    let mut saw_function = false;
    let mut selected = None;
    let mut rdb_types = std::collections::BTreeSet::new();
    for item in &parsed.items {
        match item {
            Item::SelectDb(db) => selected = Some(*db),
            Item::Function { code } => {
                assert!(code.starts_with(b"#!lua name=mylib"));
                saw_function = true;
            }
            Item::Entry(e) => {
                assert_eq!(Some(e.db), selected);
                let t = expect.keys.get(&(e.db, e.key.clone())).copied();
                assert_eq!(
                    t,
                    Some(e.value_type),
                    "key {:?}",
                    String::from_utf8_lossy(&e.key)
                );
                r.ok(&["SELECT", &e.db.to_string()]);
                let dump = r.cmd(&[b"DUMP", &e.key]).bulk().unwrap();
                let mine = restore_payload(e.payload.as_ref().unwrap(), summary.version);
                assert!(
                    mine == dump,
                    "payload of {:?} (type {}) differs from DUMP",
                    String::from_utf8_lossy(&e.key),
                    e.rdb_type
                );
                assert_eq!(
                    e.elements,
                    element_count(r, e.value_type, &e.key),
                    "elements of {:?}",
                    String::from_utf8_lossy(&e.key)
                );
                let pttl = r.cmd(&[b"PEXPIRETIME", &e.key]).int();
                assert_eq!(e.expire_at_ms, (pttl >= 0).then_some(pttl));
                rdb_types.insert(e.rdb_type);
                seen += 1;
            }
            _ => {}
        }
    }
    r.ok(&["SELECT", "0"]);
    assert!(saw_function);
    assert_eq!(seen, expect.keys.len());
    // Redis 7.0: string, set (hashtable), intset, zset skiplist (ZSET_2), hash (hashtable),
    // hash/zset listpacks, quicklist 2, stream v2.
    for t in [0u8, 2, 4, 5, 11, 16, 17, 18, 19] {
        assert!(
            rdb_types.contains(&t),
            "no key of RDB type {t}: {rdb_types:?}"
        );
    }

    // The same through a reader that trickles 7 bytes at a time.
    let trickled = parse_with(
        Chunked::new(file.to_vec(), 7),
        ParseOptions {
            capture_payload: true,
            max_value_bytes: None,
            memory_budget: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(trickled.items, parsed.items);
}

#[tokio::test]
async fn real_redis_files() {
    require_redis_server();
    let mut r = Redis::start(&["--rdbcompression", "yes", "--enable-debug-command", "yes"]);
    // Empty server first.
    let empty = r.save();
    let parsed = parse(&empty, true).await.unwrap();
    assert!(entries(&parsed.items).is_empty());
    assert!(parsed.verified);

    let expect = populate(&mut r, true);
    let file = r.save();
    eprintln!("real RDB: {} bytes", file.len());
    check_against_server(&mut r, &expect, &file).await;

    // Hostile: truncated at sampled offsets (all of the first 2 KiB, then every ~1/500th).
    let step = (file.len() / 500).max(1);
    let cuts: Vec<usize> = (0..2048.min(file.len()))
        .chain((2048..file.len()).step_by(step))
        .chain(file.len().saturating_sub(20)..file.len())
        .collect();
    for cut in cuts {
        let err = parse(&file[..cut], false).await.err();
        assert!(err.is_some(), "truncation at {cut} parsed OK");
    }

    // max_value_bytes refuses the big value before buffering it.
    let mut reader = RdbReader::new(
        &file[..],
        ParseOptions {
            capture_payload: false,
            max_value_bytes: Some(1 << 20),
            memory_budget: None,
        },
    );
    let err = loop {
        match reader.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the 5 MB value was accepted"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            RdbError::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn small_real_file_every_truncation_and_flip() {
    require_redis_server();
    let mut r = Redis::start(&["--rdbcompression", "yes"]);
    r.ok(&["SET", "a", "1"]);
    r.ok(&["SET", "lzf", &"abcd".repeat(20)]);
    r.ok(&["RPUSH", "l", "x", "y", "12"]);
    r.ok(&["SADD", "si", "1", "2"]);
    r.ok(&["ZADD", "z", "1", "m"]);
    r.ok(&["HSET", "h", "f", "v"]);
    r.ok(&["SET", "t", "v", "PX", "100000000"]);
    r.ok(&["XADD", "s", "1-1", "f", "v"]);
    r.ok(&["XGROUP", "CREATE", "s", "g", "0"]);
    r.ok(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]);
    r.ok(&["SELECT", "2"]);
    r.ok(&["SET", "b", "2"]);
    let file = r.save();
    eprintln!("small real RDB: {} bytes", file.len());
    let ok = parse(&file, false).await.unwrap();
    assert_eq!(entries(&ok.items).len(), 9);
    assert!(ok.verified);

    for cut in 0..file.len() {
        assert!(
            parse(&file[..cut], false).await.is_err(),
            "truncation at {cut}"
        );
    }
    for i in 0..file.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = file.clone();
            bad[i] ^= bit;
            assert!(
                parse(&bad, false).await.is_err(),
                "flip {bit:#x} at {i} parsed OK"
            );
        }
    }

    // Checksum zeroed: accepted, not verified.
    let mut zero = file.clone();
    let n = zero.len();
    zero[n - 8..].fill(0);
    let parsed = parse(&zero, false).await.unwrap();
    assert!(!parsed.verified);
    assert_eq!(entries(&parsed.items).len(), 9);
    // Zeroed checksum and a corrupted value: the structure check still catches most flips
    // (those inside blob encodings and lengths); at least it must never panic.
    for i in 9..n - 9 {
        let mut bad = zero.clone();
        bad[i] ^= 0x55;
        let _ = parse(&bad, false).await;
    }

    // A server with checksums off writes a zero checksum.
    let mut nocrc = Redis::start(&["--rdbchecksum", "no"]);
    nocrc.ok(&["SET", "a", "1"]);
    let f = nocrc.save();
    assert_eq!(&f[f.len() - 8..], &[0; 8]);
    let parsed = parse(&f, false).await.unwrap();
    assert!(!parsed.verified);
    assert_eq!(entries(&parsed.items).len(), 1);

    // Trailing garbage.
    let mut trailing = file.clone();
    trailing.extend_from_slice(b"junk");
    assert!(matches!(
        parse(&trailing, false).await,
        Err(RdbError::TrailingData { extra: 4 })
    ));
    // Wrong checksum.
    let mut wrong = file.clone();
    wrong[n - 1] ^= 1;
    assert!(matches!(
        parse(&wrong, false).await,
        Err(RdbError::ChecksumMismatch { .. })
    ));
}
