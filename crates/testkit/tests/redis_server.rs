#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The throwaway Redis server of the testkit.

use backup_testkit::{RedisOptions, RedisServer};

#[test]
fn starts_sets_and_gets() {
    let server = RedisServer::start().unwrap();
    assert_eq!(server.host(), "127.0.0.1");
    assert!(server.password().is_none());
    let mut con = server.client().unwrap();
    redis::cmd("SET").arg("k").arg("v").exec(&mut con).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(server.log().contains("Ready to accept connections"));
}

#[test]
fn password_is_required_and_restart_keeps_saved_data() {
    let mut server = RedisServer::start_with(RedisOptions {
        password: Some("s3cr:et@".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    // Without the password, commands are refused.
    let anon = redis::Client::open(format!("redis://127.0.0.1:{}", server.port())).unwrap();
    let mut anon = anon.get_connection().unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut anon)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    // The configuration file holds the password, the command line does not.
    let env = server.env();
    assert!(env.contains(&("REDIS_PASSWORD".into(), "s3cr:et@".into())));
    assert!(server.url().contains("s3cr%3Aet%40"));

    let mut con = server.client().unwrap();
    redis::cmd("SET")
        .arg("saved")
        .arg("1")
        .exec(&mut con)
        .unwrap();
    redis::cmd("SAVE").exec(&mut con).unwrap();
    redis::cmd("SET")
        .arg("unsaved")
        .arg("1")
        .exec(&mut con)
        .unwrap();
    drop(con);
    assert!(server.rdb_path().is_file());
    let port = server.port();
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    let mut con = server.client().unwrap();
    let saved: Option<String> = redis::cmd("GET").arg("saved").query(&mut con).unwrap();
    let unsaved: Option<String> = redis::cmd("GET").arg("unsaved").query(&mut con).unwrap();
    assert_eq!(saved.as_deref(), Some("1"));
    assert_eq!(unsaved, None);
    server.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn acl_users_and_rdb_file() {
    let source = RedisServer::start().unwrap();
    let mut con = source.client().unwrap();
    redis::cmd("SET")
        .arg("from-rdb")
        .arg("yes")
        .exec(&mut con)
        .unwrap();
    redis::cmd("SAVE").exec(&mut con).unwrap();

    let server = RedisServer::start_with(RedisOptions {
        acl_users: vec![(
            "backup".into(),
            "pw with space".into(),
            "~* &* +@all -sync -psync".into(),
        )],
        rdb_file: Some(source.rdb_path()),
        diskless_sync: true,
        ..RedisOptions::default()
    })
    .unwrap();
    let client = redis::Client::open(format!(
        "redis://backup:pw%20with%20space@127.0.0.1:{}",
        server.port()
    ))
    .unwrap();
    let mut con = client.get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("from-rdb").query(&mut con).unwrap();
    assert_eq!(v, "yes");
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap();
    assert_eq!(who, "backup");
    let err = redis::cmd("SYNC").exec(&mut con).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    let mut admin = server.client().unwrap();
    let diskless: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("repl-diskless-sync")
        .query(&mut admin)
        .unwrap();
    assert_eq!(diskless[1], "yes");
}

#[test]
fn tls_server() {
    let server = RedisServer::start_with(RedisOptions {
        tls: true,
        password: Some("tlspw".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    assert!(server.url().starts_with("rediss://"));
    let ca = server.tls_ca_file().unwrap();
    assert!(ca.is_file());
    let env = server.env();
    assert!(env.iter().any(|(k, _)| k == "REDIS_TLS_CA_FILE"));
    let mut con = server.client().unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("tls")
        .exec(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "tls");
    // Plain TCP gets no answer that works.
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", server.port())).unwrap();
    let plain_result = plain
        .get_connection_with_timeout(std::time::Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(plain_result.is_err());
}
