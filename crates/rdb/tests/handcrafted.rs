//! Hand-crafted RDB streams for every encoding, including those a Redis 7.0 server cannot
//! write (zipmap, ziplists, quicklist of ziplists, stream v1/v3, hash field expiry, modules,
//! slot info), and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use backup_rdb::{crc64, Item, ParseOptions, RdbError, RdbReader, RdbSummary, ValueType};
use common::*;

fn module_id(name: &str, encver: u64) -> u64 {
    const CSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for c in name.chars() {
        id = (id << 6) | CSET.find(c).unwrap() as u64;
    }
    (id << 10) | encver
}

fn stream_listpack() -> Vec<u8> {
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

fn stream_value(version: u8) -> Vec<u8> {
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
type Fixture = (u8, &'static [u8], Vec<u8>, ValueType, u64);

fn fixtures() -> Vec<Fixture> {
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

fn full_file() -> Vec<u8> {
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

#[tokio::test]
async fn every_encoding() {
    let file = full_file();
    let parsed = parse(&file, true).await.unwrap();
    assert!(parsed.verified);
    assert_eq!(parsed.version, Some(12));
    assert_eq!(parsed.bytes, file.len() as u64);
    let items = &parsed.items;
    assert_eq!(
        items[0],
        Item::Aux {
            key: b"redis-ver".to_vec(),
            value: b"7.4.0".to_vec()
        }
    );
    assert_eq!(
        items[1],
        Item::Aux {
            key: b"redis-bits".to_vec(),
            value: b"64".to_vec()
        }
    );
    assert!(matches!(&items[2], Item::Function { code } if code.starts_with(b"#!lua name=lib")));
    assert_eq!(
        items[3],
        Item::ModuleAux {
            module_id: module_id("mymodule1", 1),
            name: "mymodule1".to_owned()
        }
    );
    assert_eq!(items[4], Item::SelectDb(0));
    assert_eq!(
        items[5],
        Item::ResizeDb {
            db_size: 40,
            expires_size: 3
        }
    );
    let es = entries(items);
    let fx = fixtures();
    assert_eq!(es.len(), fx.len() + 2);
    for (i, ((t, key, value, vt, n), e)) in fx.iter().zip(&es).enumerate() {
        let name = String::from_utf8_lossy(key);
        assert_eq!(e.key, *key, "{name}");
        assert_eq!(e.rdb_type, *t, "{name}");
        assert_eq!(e.value_type, *vt, "{name}");
        assert_eq!(e.elements, *n, "{name}");
        assert_eq!(e.db, 0);
        let mut want = vec![*t];
        want.extend_from_slice(value);
        assert_eq!(e.payload.as_ref(), Some(&want), "{name}");
        let expiry = match i {
            1 => Some(1_900_000_000_123),
            2 => Some(1_900_000_000_000),
            5 => Some(5),
            _ => None,
        };
        assert_eq!(e.expire_at_ms, expiry, "{name}");
    }
    let tail = &es[fx.len()..];
    assert_eq!(tail[0].key, b"1234");
    assert_eq!(tail[0].db, 3);
    assert_eq!(tail[1].key, vec![b'k'; 100]);
    assert!(es.iter().any(|e| e.value_type == ValueType::Module));

    // Module names decode.
    let summary = RdbSummary::read(&file[..]).await.unwrap();
    assert_eq!(summary.module_aux, 1);
    assert_eq!(summary.functions, 1);
    assert_eq!(summary.keys_with_expiry, 3);
    assert_eq!(summary.keys_per_db.get(&0), Some(&(fx.len() as u64)));
    assert_eq!(summary.keys_per_db.get(&3), Some(&2));
    assert_eq!(
        summary.aux.get("redis-bits").map(String::as_str),
        Some("64")
    );

    // The same items however the reader chunks the stream.
    for chunk in [1, 2, 3, 7, 64, 4096] {
        let p = parse_with(
            Chunked::new(file.clone(), chunk),
            ParseOptions {
                capture_payload: true,
                max_value_bytes: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(p.items, parsed.items, "chunk {chunk}");
    }

    // Every truncation fails; every bit flip fails.
    for cut in 0..file.len() {
        assert!(parse(&file[..cut], false).await.is_err(), "cut at {cut}");
    }
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x20;
        assert!(parse(&bad, false).await.is_err(), "flip at {i}");
    }
}

/// A file holding one key of type `t` with `value`, checksum on.
fn one(t: u8, value: &[u8]) -> Vec<u8> {
    Rdb::new(12).select(0).key(t, b"k", value).finish()
}

async fn err_of(file: &[u8]) -> RdbError {
    match parse(file, false).await {
        Ok(_) => panic!("parsed OK"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn structural_corruption_is_caught_without_crc() {
    // Each of these has a valid (zero) checksum and a broken structure.
    let zero = |t: u8, value: &[u8]| Rdb::new(12).select(0).key(t, b"k", value).finish_no_crc();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("odd hash listpack", zero(16, &s(&listpack(&[Lp::S(b"f")])))),
        ("odd zset ziplist", zero(12, &s(&ziplist(&[b"m"])))),
        (
            "hash listpack ex not triplets",
            zero(25, &{
                let mut v = 0i64.to_le_bytes().to_vec();
                v.extend(s(&listpack(&[Lp::S(b"f"), Lp::S(b"v")])));
                v
            }),
        ),
        (
            "listpack count",
            zero(
                20,
                &s(&{
                    let mut lp = listpack(&[Lp::S(b"a")]);
                    lp[4] = 2;
                    lp
                }),
            ),
        ),
        (
            "listpack terminator",
            zero(
                20,
                &s(&{
                    let mut lp = listpack(&[Lp::S(b"a")]);
                    let n = lp.len();
                    lp[n - 1] = 0;
                    lp
                }),
            ),
        ),
        (
            "ziplist prevlen",
            zero(
                10,
                &s(&{
                    let mut zl = ziplist(&[b"a", b"b"]);
                    zl[13] = 9;
                    zl
                }),
            ),
        ),
        (
            "intset order",
            zero(11, &s(&[2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 1, 0])),
        ),
        ("zipmap count", zero(9, &s(&[3, 1, b'a', 1, 0, b'x', 0xFF]))),
        ("quicklist container", zero(18, &[1, 3, 1, b'x'])),
        ("quicklist empty node", zero(18, &[1, 1, 0])),
        ("module opcode", zero(7, &[1, 9])),
        ("lzf data", zero(0, &lzf_s(&[0x05, b'a'], 6))),
        ("lzf ratio", zero(0, &lzf_s(&[0x00, b'a'], 1000))),
        (
            "stream node id",
            zero(15, &{
                let mut v = len(1);
                v.extend(s(b"short"));
                v
            }),
        ),
        (
            "stream listpack",
            zero(15, &{
                let mut v = len(1);
                v.extend(s(&[0; 16]));
                v.extend(s(&listpack(&[Lp::I(1), Lp::I(0), Lp::I(0), Lp::I(0)])));
                v
            }),
        ),
        ("string encoding", zero(0, &[0xC7])),
        ("length encoding", zero(1, &[0x82])),
        (
            "module aux when",
            Rdb::new(12).raw(&[0xF7, 1, 1, 0, 0]).finish_no_crc(),
        ),
    ];
    for (what, file) in cases {
        let e = err_of(&file).await;
        assert!(matches!(e, RdbError::Corrupt { .. }), "{what}: {e}");
        assert!(!e.to_string().is_empty());
    }
    // The same valid file with a zero checksum parses, unverified.
    let ok = Rdb::new(12)
        .select(0)
        .key(0, b"k", &s(b"v"))
        .finish_no_crc();
    let p = parse(&ok, false).await.unwrap();
    assert!(!p.verified);
}

#[tokio::test]
async fn headers_versions_and_trailers() {
    assert!(matches!(
        err_of(b"HELLO0009").await,
        RdbError::BadMagic { .. }
    ));
    assert!(matches!(
        err_of(b"REDISabcd").await,
        RdbError::BadMagic { .. }
    ));
    assert!(matches!(
        err_of(b"GET / HTTP/1.1\r\n").await,
        RdbError::BadMagic { .. }
    ));
    assert!(matches!(err_of(b"").await, RdbError::Truncated { .. }));
    assert!(matches!(
        err_of(b"REDIS00").await,
        RdbError::Truncated { .. }
    ));
    assert!(matches!(
        err_of(b"REDIS0099\xff").await,
        RdbError::UnsupportedVersion {
            version: 99,
            max: 12
        }
    ));
    assert!(matches!(
        err_of(&Rdb::new(13).finish()).await,
        RdbError::UnsupportedVersion { version: 13, .. }
    ));
    assert!(matches!(
        err_of(b"REDIS0000\xff").await,
        RdbError::UnsupportedVersion { .. }
    ));
    // Minimal files for every supported version.
    for v in 5..=12 {
        let p = parse(&Rdb::new(v).finish(), false).await.unwrap();
        assert_eq!(p.version, Some(v));
        assert!(p.verified);
    }
    // Before RDB 5 there is no checksum at all.
    let old = Rdb::new(4)
        .select(0)
        .key(0, b"k", &s(b"v"))
        .raw(&[0xFF])
        .bytes;
    let p = parse(&old, false).await.unwrap();
    assert!(!p.verified);
    assert_eq!(entries(&p.items).len(), 1);
    let mut old_trailing = old.clone();
    old_trailing.push(0);
    assert!(matches!(
        err_of(&old_trailing).await,
        RdbError::TrailingData { extra: 1 }
    ));
    // Trailing data after the checksum.
    let mut f = Rdb::new(10).finish();
    f.extend_from_slice(&[0; 100]);
    assert!(matches!(
        err_of(&f).await,
        RdbError::TrailingData { extra: 100 }
    ));
    // Checksum mismatch.
    let mut f = Rdb::new(10).aux(b"a", b"b").finish();
    let n = f.len();
    f[n - 3] ^= 0xff;
    assert!(matches!(
        err_of(&f).await,
        RdbError::ChecksumMismatch { .. }
    ));
    // No EOF at all.
    assert!(matches!(
        err_of(&Rdb::new(10).aux(b"a", b"b").bytes).await,
        RdbError::Truncated { .. }
    ));
}

#[tokio::test]
async fn unsupported_content() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (6, one(6, &[0])),
        (8, one(8, &[0])),
        (30, one(30, &[0])),
        (246, Rdb::new(10).raw(&[0xF6]).finish()),
        (200, Rdb::new(10).raw(&[200]).finish()),
    ];
    for (byte, file) in cases {
        match err_of(&file).await {
            RdbError::Unsupported { byte: b, .. } => assert_eq!(b, byte),
            other => panic!("{byte}: {other}"),
        }
    }
}

#[tokio::test]
async fn hostile_lengths_do_not_allocate() {
    let huge = 1u64 << 60;
    // A string that claims 2^60 bytes: truncated, not an allocation failure.
    let mut v = vec![0x81];
    v.extend_from_slice(&huge.to_be_bytes());
    v.extend_from_slice(b"abc");
    let f = Rdb::new(10).select(0).raw(&[0]).raw(&s(b"k")).raw(&v).bytes;
    assert!(matches!(err_of(&f).await, RdbError::Truncated { .. }));
    // ... as a key, and through a trickling reader.
    let f = Rdb::new(10).select(0).raw(&[0]).raw(&v).bytes;
    let e = parse_with(Chunked::new(f.clone(), 5), ParseOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RdbError::Truncated { .. }), "{e}");
    // With a limit: TooLarge at once.
    let e = parse_with(
        &f[..],
        ParseOptions {
            capture_payload: true,
            max_value_bytes: Some(1 << 20),
        },
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(e, RdbError::TooLarge { size, .. } if size == huge),
        "{e}"
    );
    // Element counts of 2^60.
    for t in [1u8, 2, 3, 4, 5, 14, 18, 15, 22] {
        let mut v = vec![0x81];
        v.extend_from_slice(&huge.to_be_bytes());
        v.extend(s(b"x"));
        let f = Rdb::new(12).select(0).key(t, b"k", &v).finish();
        let e = err_of(&f).await;
        assert!(
            matches!(e, RdbError::Truncated { .. } | RdbError::Corrupt { .. }),
            "type {t}: {e}"
        );
    }
    // LZF claiming a huge uncompressed size.
    let mut v = vec![0xC3, 2];
    v.push(0x81);
    v.extend_from_slice(&huge.to_be_bytes());
    v.extend_from_slice(&[0, b'a']);
    assert!(matches!(
        err_of(&one(0, &v)).await,
        RdbError::Corrupt { .. }
    ));
    // A value that grows past the limit element by element: refused when it is captured
    // (it would be held whole); walked field by field in bounded memory when it is not.
    let mut v = len(100_000);
    for _ in 0..100_000 {
        v.extend(s(b"0123456789"));
    }
    let f = one(1, &v);
    let e = parse_with(
        &f[..],
        ParseOptions {
            capture_payload: true,
            max_value_bytes: Some(100_000),
        },
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, RdbError::TooLarge { .. }), "{e}");
    assert!(parse_with(
        &f[..],
        ParseOptions {
            capture_payload: false,
            max_value_bytes: Some(100_000),
        },
    )
    .await
    .is_ok());
    assert!(parse(&f, false).await.is_ok());
}

#[tokio::test]
async fn errors_are_sticky_and_report_offsets() {
    let mut f = Rdb::new(10).select(0).key(0, b"k", &s(b"v")).finish();
    let n = f.len();
    f[n - 1] ^= 1;
    let mut r = RdbReader::new(&f[..], ParseOptions::default());
    assert_eq!(r.next().await.unwrap(), Some(Item::SelectDb(0)));
    assert!(matches!(r.next().await.unwrap(), Some(Item::Entry(_))));
    assert!(r.next().await.is_err());
    assert!(r.next().await.is_err());
    // A corrupt structure reports where it is.
    let f = Rdb::new(10).select(0).key(18, b"k", &[1, 3]).finish();
    match err_of(&f).await {
        RdbError::Corrupt { offset, detail } => {
            assert_eq!(offset, 9 + 2 + 1 + 2 + 1);
            assert!(detail.contains("container"), "{detail}");
        }
        other => panic!("{other}"),
    }
    let f = Rdb::new(10).select(0).key(0, b"k", &[5, b'a']).bytes;
    match err_of(&f).await {
        RdbError::Truncated { offset, context } => {
            assert_eq!(offset, f.len() as u64);
            assert!(context.contains("string"), "{context}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn throughput_sanity() {
    // ~64 MB of strings (1 KiB values and a few 4 MiB ones), skip mode.
    let mut rdb = Rdb::new(10).select(0);
    let small = vec![b'v'; 1024];
    let big = vec![b'B'; 4 << 20];
    for i in 0..40_000u32 {
        rdb = rdb.key(0, format!("key:{i}").as_bytes(), &s(&small));
    }
    for i in 0..6u32 {
        rdb = rdb.key(0, format!("big:{i}").as_bytes(), &s(&big));
    }
    let file = rdb.finish();
    let crc_start = std::time::Instant::now();
    let _ = crc64(0, &file);
    let crc_time = crc_start.elapsed();
    let start = std::time::Instant::now();
    let summary = RdbSummary::read(&file[..]).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.keys_per_db.get(&0), Some(&40_006));
    let mb = file.len() as f64 / 1e6;
    eprintln!(
        "parsed {mb:.1} MB in {elapsed:?}: {:.0} MB/s (CRC alone {:.0} MB/s)",
        mb / elapsed.as_secs_f64(),
        mb / crc_time.as_secs_f64()
    );
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_are_send() {
    let mut r = RdbReader::new(&b""[..], ParseOptions::default());
    assert_send(&r.next());
    assert_send(&RdbSummary::read(&b""[..]));
}
