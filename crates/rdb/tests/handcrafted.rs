//! Hand-crafted RDB streams for every encoding, including those a Redis 7.0 server cannot
//! write (zipmap, ziplists, quicklist of ziplists, stream v1/v3, hash field expiry, modules,
//! slot info), and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use backup_rdb::{crc64, Item, ParseOptions, RdbError, RdbReader, RdbSummary, ValueType};
use common::*;

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
                memory_budget: None,
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
    // ... as a key, through a trickling reader: beyond Redis's 512 MiB limit for a key,
    // refused before anything is buffered.
    let f = Rdb::new(10).select(0).raw(&[0]).raw(&v).bytes;
    let e = parse_with(Chunked::new(f.clone(), 5), ParseOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, RdbError::OverLimit { size, limit, .. } if size == huge && limit == 512 << 20),
        "{e}"
    );
    // With a value limit: TooLarge at once.
    let e = parse_with(
        &f[..],
        ParseOptions {
            capture_payload: true,
            max_value_bytes: Some(1 << 20),
            memory_budget: None,
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
            memory_budget: None,
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
            memory_budget: None,
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

#[tokio::test]
async fn large_captured_values_are_exact_however_the_bytes_arrive() {
    // Values above the parser's resting buffer take its buffer as their payload; whatever the
    // chunking, each payload is the type byte and the value's bytes, the CRC still covers
    // everything and the keys around them parse.
    let pattern = |n: usize, salt: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
    };
    let mut set = len(3);
    for n in [200_000usize, 70_000, 400_000] {
        set.extend(s(&pattern(n, 7)));
    }
    let values: Vec<(u8, &[u8], Vec<u8>)> = vec![
        (0, b"a", s(&pattern(300_000, 1))),
        (0, b"small", s(b"v")),
        (0, b"b", s(&pattern(1 << 20, 2))),
        (2, b"set", set),
        (0, b"c", s(&pattern(5 << 20, 3))),
    ];
    let mut rdb = Rdb::new(10).select(0);
    for (t, key, value) in &values {
        rdb = rdb.key(*t, key, value);
    }
    let file = rdb.finish();
    for chunk in [7, 4096, 65_537, (1 << 20) + 3, file.len()] {
        let options = ParseOptions {
            capture_payload: true,
            max_value_bytes: None,
            memory_budget: None,
        };
        let parsed = parse_with(Chunked::new(file.clone(), chunk), options)
            .await
            .unwrap();
        assert!(parsed.verified, "chunk {chunk}");
        let got = entries(&parsed.items);
        assert_eq!(got.len(), values.len(), "chunk {chunk}");
        for (e, (t, key, value)) in got.iter().zip(&values) {
            assert_eq!(e.key, *key, "chunk {chunk}");
            let payload = e.payload.as_ref().unwrap();
            assert_eq!(payload[0], *t, "chunk {chunk}");
            assert!(
                payload[1..] == value[..],
                "chunk {chunk}: payload of {:?}",
                e.key
            );
        }
    }
}

#[tokio::test]
async fn a_stream_tail_read_in_pieces_parses_alike_whatever_the_read_sizes() {
    // A walked stream tail keeps a cursor from piece to piece; a read that ends anywhere
    // (inside a pending entry, just after the last one) must not move it.
    let file = backup_testkit::hostile_rdb::pel(1030).into_vec();
    let want = vec![(b"stream".to_vec(), 1u64)];
    for chunk in [1, 2, 3, 5, 7, 11, 13, 25, 4096, file.len()] {
        for capture in [false, true] {
            let options = ParseOptions {
                capture_payload: capture,
                max_value_bytes: None,
                memory_budget: None,
            };
            let parsed = parse_with(Chunked::new(file.clone(), chunk), options)
                .await
                .unwrap();
            let got: Vec<_> = entries(&parsed.items)
                .into_iter()
                .map(|e| (e.key, e.elements))
                .collect();
            assert_eq!(got, want, "chunk {chunk}, capture {capture}");
        }
    }
}
