#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Redis backup source against real `redis-server`s (and a few fake masters that
//! misbehave on purpose).

use std::time::Duration;

use backup_core::{run_backup, BackupOptions, BackupReport, Compression, CoreError, Source};
use backup_rdb::RdbSummary;
use backup_sources::redis::{
    BackupMethod, RedisClient, RedisConfig, RedisError, RedisSource, ReplicationStream, Resp,
};
use backup_storage::{MemorySink, Sink};
use backup_testkit::{RedisOptions, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn config_from(env: &[(String, String)]) -> RedisConfig {
    let env = env.to_vec();
    RedisConfig::from_lookup(&move |name: &str| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
}

fn config_of(server: &RedisServer) -> RedisConfig {
    config_from(&server.env())
}

fn options() -> BackupOptions {
    BackupOptions {
        name_prefix: "redis".into(),
        compression: Compression::gzip(),
        key: None,
        signing_key: None,
        iterations: 10000,
        compression_threads: 1,
    }
}

/// The error and all its sources, for matching.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(" / ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// Deterministic incompressible-ish bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn ok(client: &mut RedisClient, args: &[&[u8]]) -> Resp {
    let reply = client.command(args).await.unwrap();
    assert!(!reply.is_error(), "{args:?}: {reply:?}");
    reply
}

/// Fills db 0 (120 keys, some large, some expiring, a hash and a list) and db 3 (5 keys).
async fn seed(config: &RedisConfig) {
    let mut c = RedisClient::connect(config).await.unwrap();
    for i in 0..100u64 {
        let key = format!("key:{i}");
        let value = noise(i, if i % 10 == 0 { 40_000 } else { 100 });
        c.send(&[b"SET", key.as_bytes(), &value]);
    }
    for i in 0..10u64 {
        let key = format!("ttl:{i}");
        c.send(&[b"SET", key.as_bytes(), b"v", b"EX", b"100000"]);
    }
    for i in 0..9u64 {
        let key = format!("hash:{i}");
        c.send(&[b"HSET", key.as_bytes(), b"f1", b"v1", b"f2", b"v2"]);
    }
    c.send(&[b"RPUSH", b"list", b"a", b"b", b"c"]);
    c.flush().await.unwrap();
    for _ in 0..120 {
        let reply = c.read_reply().await.unwrap();
        assert!(!reply.is_error(), "{reply:?}");
    }
    ok(&mut c, &[b"SELECT", b"3"]).await;
    for i in 0..5u64 {
        let key = format!("db3:{i}");
        ok(&mut c, &[b"SET", key.as_bytes(), b"three"]).await;
    }
}

/// Checks that `config`'s server holds what [`seed`] wrote.
async fn check_seeded(config: &RedisConfig) {
    let mut c = RedisClient::connect(config).await.unwrap();
    assert_eq!(ok(&mut c, &[b"DBSIZE"]).await, Resp::Integer(120));
    assert_eq!(
        ok(&mut c, &[b"GET", b"key:30"]).await,
        Resp::Bulk(Some(noise(30, 40_000)))
    );
    assert_eq!(
        ok(&mut c, &[b"GET", b"key:7"]).await,
        Resp::Bulk(Some(noise(7, 100)))
    );
    assert_eq!(
        ok(&mut c, &[b"HGET", b"hash:4", b"f2"]).await,
        Resp::Bulk(Some(b"v2".to_vec()))
    );
    assert_eq!(ok(&mut c, &[b"LLEN", b"list"]).await, Resp::Integer(3));
    match ok(&mut c, &[b"TTL", b"ttl:3"]).await {
        Resp::Integer(ttl) => assert!(ttl > 90_000, "{ttl}"),
        other => panic!("{other:?}"),
    }
    ok(&mut c, &[b"SELECT", b"3"]).await;
    assert_eq!(ok(&mut c, &[b"DBSIZE"]).await, Resp::Integer(5));
    assert_eq!(
        ok(&mut c, &[b"GET", b"db3:2"]).await,
        Resp::Bulk(Some(b"three".to_vec()))
    );
}

/// The stored, decompressed RDB of a backup.
async fn stored_rdb(sink: &MemorySink, report: &BackupReport) -> Vec<u8> {
    let reader = sink.get(&report.key).await.unwrap();
    let mut decoder = Compression::gzip().decoder(reader);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).await.unwrap();
    out
}

fn assert_object_name(key: &str) {
    let name = key.strip_prefix("redis/redis_backup_").expect(key);
    let stamp = name.strip_suffix(".rdb.gz").expect(key);
    let (date, time) = stamp.split_once('_').expect(key);
    assert!(
        date.len() == 8
            && time.len() == 6
            && date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit()),
        "{key}"
    );
}

/// A proper RDB: parses (CRC included, no trailing bytes) and ends with the EOF opcode and
/// the checksum, not with a replication end mark.
async fn assert_clean_rdb(rdb: &[u8]) -> RdbSummary {
    assert!(rdb.starts_with(b"REDIS0"));
    assert_eq!(rdb[rdb.len() - 9], 0xFF, "EOF opcode before the CRC");
    let summary = RdbSummary::read(rdb).await.unwrap();
    assert!(summary.checksum_verified);
    summary
}

/// Loads `rdb` into a fresh server and checks its content.
async fn assert_loads(rdb: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.rdb");
    std::fs::write(&path, rdb).unwrap();
    let restored = RedisServer::start_with(RedisOptions {
        rdb_file: Some(path),
        ..RedisOptions::default()
    })
    .unwrap();
    check_seeded(&config_of(&restored)).await;
}

async fn replication_backup_round_trip(diskless: bool) {
    let server = RedisServer::start_with(RedisOptions {
        password: Some("pa ss:w@rd".into()),
        diskless_sync: diskless,
        ..RedisOptions::default()
    })
    .unwrap();
    let config = config_of(&server);
    seed(&config).await;
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let report = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_or_else(|e| panic!("{}\nserver log:\n{}", chain(&e), server.log()));
    assert_object_name(&report.key);
    let facts = &report.manifest.source;
    assert_eq!(facts.source_type, "redis");
    assert_eq!(facts.server_version.as_deref(), Some("7.0.15"));
    assert_eq!(facts.details["method"], "replication");
    assert_eq!(
        facts.details["transfer"],
        if diskless { "diskless" } else { "disk" }
    );
    assert_eq!(facts.details["keys"], 125);
    assert_eq!(facts.details["keys_per_db"]["0"], 120);
    assert_eq!(facts.details["keys_per_db"]["3"], 5);
    assert_eq!(facts.details["keys_with_expiry"], 10);
    assert_eq!(facts.details["rdb_version"], 10);
    assert_eq!(facts.details["checksum_verified"], true);
    let rdb = stored_rdb(&sink, &report).await;
    let summary = assert_clean_rdb(&rdb).await;
    assert_eq!(summary.keys_per_db.get(&0), Some(&120));
    assert_loads(&rdb).await;
    // The connection was a replica only for the transfer.
    let log = server.log();
    assert!(log.contains("Starting BGSAVE for SYNC"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_based_replication_backup_with_password() {
    replication_backup_round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskless_replication_backup_strips_the_end_mark() {
    replication_backup_round_trip(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_yields_exactly_the_rdb() {
    // Read the replication stream directly; compare with what the server saves itself.
    let server = RedisServer::start_with(RedisOptions {
        diskless_sync: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let config = config_of(&server);
    seed(&config).await;
    let mut stream = ReplicationStream::start(&config).await.unwrap();
    assert!(stream.diskless());
    assert_eq!(stream.expected_len(), None);
    let mut rdb = Vec::new();
    stream.read_to_end(&mut rdb).await.unwrap();
    assert!(stream.is_complete());
    assert_eq!(stream.bytes_received(), rdb.len() as u64);
    let summary = assert_clean_rdb(&rdb).await;
    assert_eq!(summary.keys_per_db.values().sum::<u64>(), 125);
    // A second read after the end stays at the end.
    let mut more = Vec::new();
    assert_eq!(stream.read_to_end(&mut more).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_with_only_replication_rights_can_back_up() {
    let server = RedisServer::start_with(RedisOptions {
        acl_users: vec![(
            "replicator".into(),
            "rep-pw".into(),
            "+sync +psync +replconf +ping".into(),
        )],
        ..RedisOptions::default()
    })
    .unwrap();
    seed(&config_of(&server)).await;
    let mut env = server.env();
    env.push(("REDIS_USERNAME".into(), "replicator".into()));
    env.push(("REDIS_PASSWORD".into(), "rep-pw".into()));
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config_from(&env), BackupMethod::Replication);
    let report = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    // INFO is not allowed: no version, but the backup is complete.
    assert_eq!(report.manifest.source.server_version, None);
    assert_eq!(report.manifest.source.details["keys"], 125);
    assert_loads(&stored_rdb(&sink, &report).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_of_an_acl_user_is_an_authentication_error() {
    let server = RedisServer::start_with(RedisOptions {
        acl_users: vec![("backup".into(), "right".into(), "~* &* +@all".into())],
        ..RedisOptions::default()
    })
    .unwrap();
    let mut env = server.env();
    env.push(("REDIS_USERNAME".into(), "backup".into()));
    env.push(("REDIS_PASSWORD".into(), "wrong-secret".into()));
    let mut source = RedisSource::new(config_from(&env), BackupMethod::Replication);
    let err = source.open().await.map(|_| ()).unwrap_err();
    let redis = err.downcast_ref::<RedisError>().expect("a RedisError");
    assert!(
        matches!(redis, RedisError::Authentication { .. }),
        "{redis:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("REDIS_PASSWORD") && text.contains("REDIS_USERNAME"),
        "{text}"
    );
    assert!(text.contains("\"backup\""), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");

    // No password at all for a server that needs one.
    let protected = RedisServer::start_with(RedisOptions {
        password: Some("needed".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    let mut config = config_of(&protected);
    config.password = None;
    let err = RedisClient::connect(&config).await.unwrap_err();
    assert!(matches!(err, RedisError::Authentication { .. }), "{err:?}");
    assert!(err.to_string().contains("REDIS_PASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_without_sync_is_a_permission_error() {
    let server = RedisServer::start_with(RedisOptions {
        acl_users: vec![(
            "nosync".into(),
            "pw".into(),
            "~* &* +@all -sync -psync".into(),
        )],
        ..RedisOptions::default()
    })
    .unwrap();
    let mut env = server.env();
    env.push(("REDIS_USERNAME".into(), "nosync".into()));
    env.push(("REDIS_PASSWORD".into(), "pw".into()));
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config_from(&env), BackupMethod::Replication);
    let err = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_err();
    let CoreError::Source { source, .. } = &err else {
        panic!("{err:?}")
    };
    let redis = source.downcast_ref::<RedisError>().expect("a RedisError");
    match redis {
        RedisError::Permission { command, hint, .. } => {
            assert_eq!(command, "SYNC");
            assert!(hint.contains("+sync +psync +replconf"), "{hint}");
            assert!(hint.contains("nosync"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    assert!(sink.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = vec![
        ("REDIS_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("REDIS_PORT".to_owned(), port.to_string()),
    ];
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config_from(&env), BackupMethod::Replication);
    let err = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("REDIS_HOST") && text.contains("REDIS_PORT"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let CoreError::Source { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        source.downcast_ref::<RedisError>(),
        Some(RedisError::Connect { .. })
    ));
    assert!(sink.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_method_runs_bgsave_and_streams_the_file() {
    let server = RedisServer::start().unwrap();
    let config = config_of(&server);
    seed(&config).await;
    assert!(!server.rdb_path().exists());
    let sink = MemorySink::new();
    let mut source = RedisSource::new(
        config.clone(),
        BackupMethod::File {
            rdb_path: server.rdb_path(),
        },
    );
    let report = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), server.log()));
    assert_object_name(&report.key);
    let facts = &report.manifest.source;
    assert_eq!(facts.details["method"], "file");
    assert!(!facts.details.contains_key("transfer"));
    assert_eq!(facts.details["keys_per_db"]["3"], 5);
    let rdb = stored_rdb(&sink, &report).await;
    assert_eq!(rdb, std::fs::read(server.rdb_path()).unwrap());
    assert_clean_rdb(&rdb).await;
    assert_loads(&rdb).await;

    // A second backup right away makes a fresh snapshot (same second as the first).
    let mut c = RedisClient::connect(&config).await.unwrap();
    ok(&mut c, &[b"SET", b"later", b"1"]).await;
    let sink2 = MemorySink::new();
    let report = run_backup(&mut source, &sink2, &options(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest.source.details["keys_per_db"]["0"], 121);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_method_with_a_wrong_path_names_it() {
    let server = RedisServer::start().unwrap();
    let missing = server.dir().join("elsewhere").join("dump.rdb");
    let sink = MemorySink::new();
    let mut source = RedisSource::new(
        config_of(&server),
        BackupMethod::File {
            rdb_path: missing.clone(),
        },
    );
    let err = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("CONFIG GET dir"), "{text}");
    assert!(
        text.contains(&server.rdb_path().display().to_string()),
        "the server's own path is suggested: {text}"
    );
    assert!(sink.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backup_with_rediss_url_and_ca_file() {
    let server = RedisServer::start_with(RedisOptions {
        tls: true,
        password: Some("tls-pw".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    let config = config_of(&server);
    assert!(config.tls);
    assert!(config.tls_ca_file.is_some());
    seed(&config).await;
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config.clone(), BackupMethod::Replication);
    let report = run_backup(&mut source, &sink, &options(), None)
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), server.log()));
    assert_eq!(report.manifest.source.details["keys"], 125);
    assert_loads(&stored_rdb(&sink, &report).await).await;

    // Without the CA the certificate is not trusted.
    let mut untrusted = config.clone();
    untrusted.tls_ca_file = None;
    let err = RedisClient::connect(&untrusted).await.unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("REDIS_TLS_CA_FILE"), "{err}");
    // Plain TCP to a TLS port fails with a hint about rediss://.
    let mut plain = config;
    plain.tls = false;
    let err = RedisClient::connect(&plain).await.unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Fake masters

/// What a fake master sends after `SYNC`.
#[derive(Clone)]
struct FakeSync {
    /// The bytes after `SYNC` (keep-alives, header, RDB, mark).
    payload: Vec<u8>,
    /// Written in pieces of this size, with a short pause between them.
    piece: usize,
}

/// A master on a free port that answers the handshake and then sends `sync`; returns the
/// config to reach it.
async fn fake_master(sync: FakeSync) -> RedisConfig {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let mut reader = BufReader::new(socket);
        while let Some(args) = backup_testkit::read_resp_command(&mut reader).await {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let socket = reader.get_mut();
            match name.as_str() {
                "INFO" => {
                    let body = "# Server\r\nredis_version:7.0.99\r\n";
                    let reply = format!("${}\r\n{body}\r\n", body.len());
                    socket.write_all(reply.as_bytes()).await.unwrap();
                }
                "SYNC" => {
                    for piece in sync.payload.chunks(sync.piece.max(1)) {
                        if socket.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let _ = socket.shutdown().await;
                    return;
                }
                _ => socket.write_all(b"+OK\r\n").await.unwrap(),
            }
        }
    });
    config_from(&[
        ("REDIS_HOST".into(), "127.0.0.1".into()),
        ("REDIS_PORT".into(), port.to_string()),
    ])
}

/// A real RDB file (saved by a real server).
async fn real_rdb() -> Vec<u8> {
    let server = RedisServer::start().unwrap();
    let config = config_of(&server);
    seed(&config).await;
    let mut c = RedisClient::connect(&config).await.unwrap();
    ok(&mut c, &[b"SAVE"]).await;
    std::fs::read(server.rdb_path()).unwrap()
}

const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

async fn backup_from_fake(sync: FakeSync) -> (Result<BackupReport, CoreError>, MemorySink) {
    let config = fake_master(sync).await;
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let result = run_backup(&mut source, &sink, &options(), None).await;
    (result, sink)
}

async fn assert_failed_and_nothing_committed(
    result: Result<BackupReport, CoreError>,
    sink: &MemorySink,
    expect: &str,
) {
    let err = result.map(|r| r.key).unwrap_err();
    let text = chain(&err);
    eprintln!("expected failure: {text}");
    assert!(text.contains(expect), "expected {expect:?} in: {text}");
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "nothing may be stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_transfer_cut_short_is_an_error() {
    let mut payload = b"\n\n$1000\r\n".to_vec();
    payload.extend_from_slice(b"REDIS0010\xfa");
    let (result, sink) = backup_from_fake(FakeSync { payload, piece: 4 }).await;
    assert_failed_and_nothing_committed(result, &sink, "ended early").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_mark_transfer_cut_short_is_an_error() {
    let rdb = real_rdb().await;
    let mut payload = b"\n$EOF:".to_vec();
    payload.extend_from_slice(MARK);
    payload.extend_from_slice(b"\r\n");
    // The whole RDB but no end mark: could look complete to a careless reader.
    payload.extend_from_slice(&rdb);
    let (result, sink) = backup_from_fake(FakeSync {
        payload,
        piece: 64 * 1024,
    })
    .await;
    assert_failed_and_nothing_committed(result, &sink, "without the end mark").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_mark_transfer_in_small_pieces_is_exact() {
    let rdb = real_rdb().await;
    let mut payload = b"\n\n$EOF:".to_vec();
    payload.extend_from_slice(MARK);
    payload.extend_from_slice(b"\r\n");
    payload.extend_from_slice(&rdb);
    payload.extend_from_slice(MARK);
    // Odd piece sizes split the mark across reads.
    let (result, sink) = backup_from_fake(FakeSync {
        payload,
        piece: 30_011,
    })
    .await;
    let report = result.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(
        report.manifest.source.server_version.as_deref(),
        Some("7.0.99")
    );
    assert_eq!(report.manifest.source.details["transfer"], "diskless");
    assert_eq!(stored_rdb(&sink, &report).await, rdb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_crc_is_an_error_and_nothing_is_committed() {
    let mut rdb = real_rdb().await;
    let last = rdb.len() - 1;
    rdb[last] ^= 0x55;
    let mut payload = format!("\n${}\r\n", rdb.len()).into_bytes();
    payload.extend_from_slice(&rdb);
    let (result, sink) = backup_from_fake(FakeSync {
        payload,
        piece: 64 * 1024,
    })
    .await;
    assert_failed_and_nothing_committed(result, &sink, "invalid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_header_fails_the_stream_early() {
    // A "snapshot" of 64 MiB that is not an RDB: the stream must fail long before its end.
    let len = 64 * 1024 * 1024usize;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_by_master = std::sync::Arc::clone(&sent);
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut reader = BufReader::new(socket);
        while let Some(args) = backup_testkit::read_resp_command(&mut reader).await {
            let socket = reader.get_mut();
            if args[0].eq_ignore_ascii_case(b"SYNC") {
                let header = format!("${len}\r\n");
                if socket.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent_by_master.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    left -= n;
                }
                return;
            }
            if args[0].eq_ignore_ascii_case(b"INFO") {
                let body = "redis_version:7.0.99\r\n";
                let reply = format!("${}\r\n{body}\r\n", body.len());
                socket.write_all(reply.as_bytes()).await.unwrap();
                continue;
            }
            socket.write_all(b"+OK\r\n").await.unwrap();
        }
    });
    let config = config_from(&[
        ("REDIS_HOST".into(), "127.0.0.1".into()),
        ("REDIS_PORT".into(), port.to_string()),
    ]);
    let sink = MemorySink::new();
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let result = run_backup(&mut source, &sink, &options(), None).await;
    assert_failed_and_nothing_committed(result, &sink, "REDIS").await;
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < len / 2, "the stream went on for {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refused_by_the_master_is_a_command_error() {
    let payload = b"-ERR Can't SYNC while not connected with my master\r\n".to_vec();
    let (result, sink) = backup_from_fake(FakeSync {
        payload,
        piece: 100,
    })
    .await;
    assert_failed_and_nothing_committed(result, &sink, "SYNC failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reports_the_parser_verdict_directly() {
    // Without the pipeline: open, read everything, finish.
    let rdb = real_rdb().await;
    let mut payload = format!("${}\r\n", rdb.len()).into_bytes();
    payload.extend_from_slice(&rdb);
    let config = fake_master(FakeSync {
        payload,
        piece: 1 << 20,
    })
    .await;
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let mut stream = source.open().await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, rdb);
    let facts = source.finish().await.unwrap();
    assert_eq!(facts.details["transfer"], "disk");
    assert_eq!(facts.details["keys"], 125);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_after_an_abandoned_stream_fails_at_once() {
    let rdb = real_rdb().await;
    let mut payload = format!("${}\r\n", rdb.len()).into_bytes();
    payload.extend_from_slice(&rdb);
    let config = fake_master(FakeSync {
        payload,
        piece: 1 << 20,
    })
    .await;
    let mut source = RedisSource::new(config, BackupMethod::Replication);
    let mut stream = source.open().await.unwrap();
    let mut some = [0u8; 100];
    stream.read_exact(&mut some).await.unwrap();
    // The stream is still alive (as in the pipeline): finish must not wait for it.
    let err = tokio::time::timeout(Duration::from_secs(10), source.finish())
        .await
        .expect("finish returned")
        .unwrap_err();
    assert!(err.to_string().contains("not read to its end"), "{err}");
    drop(stream);
}

/// A peer that sends an endless line before the snapshot (1 MiB here, unbounded in an attack)
/// is refused once the line passes the limit: the buffer never grows with what the peer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_line_before_the_snapshot_is_a_protocol_error() {
    let (result, sink) = backup_from_fake(FakeSync {
        payload: vec![b'+'; 1 << 20],
        piece: 64 << 10,
    })
    .await;
    assert_failed_and_nothing_committed(result, &sink, "longer than 65536 bytes").await;
}
