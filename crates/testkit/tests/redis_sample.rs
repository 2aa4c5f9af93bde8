//! `load_redis_sample` against a real redis-server: every type, the intended encodings, and
//! snapshots that compare equal to themselves and differ on a change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use backup_testkit::{
    diff_snapshots, load_redis_sample, redis_functions, redis_snapshot, RedisOptions, RedisServer,
    REDIS_SAMPLE_DBS, REDIS_SAMPLE_EMPTY_DB, REDIS_SAMPLE_LIBRARY,
};

fn server() -> RedisServer {
    RedisServer::start_with(RedisOptions {
        config: vec![("enable-debug-command".to_owned(), "local".to_owned())],
        ..RedisOptions::default()
    })
    .unwrap()
}

#[test]
fn sample_has_every_type_and_encoding() {
    let server = server();
    let mut conn = server.client().unwrap();
    let stats = load_redis_sample(&mut conn, 1).unwrap();
    assert!(stats.plain_list_node, "the plain list node needs DEBUG");
    assert_eq!(
        stats.keys_per_db.keys().copied().collect::<Vec<_>>(),
        REDIS_SAMPLE_DBS
    );
    assert!(stats.large_value_bytes >= 4 * 1024 * 1024);

    let snapshot = redis_snapshot(&mut conn, &[0, 1, 2, 7]).unwrap();
    assert_eq!(snapshot.len(), stats.total_keys());
    for db in REDIS_SAMPLE_DBS {
        let n = snapshot.keys().filter(|(d, _)| d == db).count();
        assert_eq!(n, stats.keys_per_db[db], "db {db}");
    }
    assert!(!snapshot.keys().any(|(d, _)| *d == REDIS_SAMPLE_EMPTY_DB));
    let kinds: BTreeSet<&str> = snapshot.values().map(|k| k.kind.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["hash", "list", "set", "stream", "string", "zset"])
    );
    let with_ttl = snapshot.values().filter(|k| k.pttl_ms > 0).count();
    assert_eq!(with_ttl, stats.keys_with_ttl);
    let far = snapshot
        .values()
        .filter(|k| k.pttl_ms > 50 * 365 * 86_400_000)
        .count();
    assert!(far >= 2, "keys with PEXPIREAT in 2100: {far}");

    // The intended encodings.
    let mut seen = BTreeSet::new();
    for (db, key, expected) in &stats.encodings {
        redis::cmd("SELECT")
            .arg(*db)
            .query::<()>(&mut conn)
            .unwrap();
        let enc: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        assert_eq!(&enc, expected, "db {db} key {}", key.escape_ascii());
        seen.insert(enc);
    }
    redis::cmd("SELECT").arg(0).query::<()>(&mut conn).unwrap();
    for enc in [
        "int",
        "embstr",
        "raw",
        "listpack",
        "quicklist",
        "intset",
        "hashtable",
        "skiplist",
        "stream",
    ] {
        assert!(seen.contains(enc), "no key with encoding {enc}: {seen:?}");
    }

    // Streams: pending entries and a group without consumers are visible in the snapshot.
    let stream = &snapshot[&(0, b"stream:events".to_vec())];
    let lines: Vec<String> = stream
        .value
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(lines.iter().any(|l| l.starts_with("pending ")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("name=idle-group") && l.contains("consumers=0")),
        "{:?}",
        lines
            .iter()
            .filter(|l| l.starts_with("group"))
            .collect::<Vec<_>>()
    );
    assert!(lines.iter().any(|l| l.contains("max-deleted-entry-id=")));

    let functions = redis_functions(&mut conn).unwrap();
    assert_eq!(functions.len(), 1);
    assert!(functions[0].contains(REDIS_SAMPLE_LIBRARY));
    assert!(functions[0].contains("sample_echo"));

    // The snapshot is stable, and sees a change.
    let again = redis_snapshot(&mut conn, &[0, 1, 2, 7]).unwrap();
    assert!(diff_snapshots(&snapshot, &again, 5_000).is_empty());
    redis::cmd("LSET")
        .arg("list:large")
        .arg(17)
        .arg("changed")
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("PERSIST")
        .arg("str:ttl:long")
        .query::<()>(&mut conn)
        .unwrap();
    let changed = redis_snapshot(&mut conn, &[0, 1, 2, 7]).unwrap();
    let diff = diff_snapshots(&snapshot, &changed, 5_000);
    assert_eq!(diff.len(), 2, "{diff:?}");
    assert!(
        diff[0].contains("list:large") && diff[0].contains("item 17"),
        "{diff:?}"
    );
    assert!(
        diff[1].contains("str:ttl:long") && diff[1].contains("PTTL"),
        "{diff:?}"
    );
}

#[test]
fn sample_is_deterministic() {
    let a = server();
    let b = server();
    let sa = load_redis_sample(&mut a.client().unwrap(), 1).unwrap();
    let sb = load_redis_sample(&mut b.client().unwrap(), 1).unwrap();
    assert_eq!(sa, sb);
    let xa = redis_snapshot(&mut a.client().unwrap(), REDIS_SAMPLE_DBS).unwrap();
    let xb = redis_snapshot(&mut b.client().unwrap(), REDIS_SAMPLE_DBS).unwrap();
    // Everything matches except the one stream with an auto-generated id.
    let diff = diff_snapshots(&xa, &xb, 60_000);
    assert!(diff.iter().all(|d| d.contains("stream:ttl")), "{diff:?}");
}
