//! All-or-nothing online restores, one logical database at a time.
//!
//! Each database of the backup is restored into an empty spare database of the same server;
//! the target's keys that the backup does not have are then copied beside them (`COPY ... DB`,
//! Redis 6.2+), and one `SWAPDB` makes the result the database's contents at once. Until that
//! `SWAPDB` the database is untouched: a failure, a refusal or a lost connection leaves it as
//! it was, and the spare database is emptied again (`FLUSHDB`). The cost: the server holds a
//! second copy of the database while it is restored, and writes made to the database between
//! the copy and the swap are lost (stop the application first, as for any restore).
//!
//! [`choose_spare`] finds out whether the server allows it (version, not cluster mode, a free
//! database, the commands permitted) and names the spare database, or says why not.

use std::collections::BTreeSet;

use crate::redis::connection::{RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;

/// The oldest Redis with `COPY` (and its `DB` option).
const MIN_VERSION: (u32, u32) = (6, 2);
/// Keys asked for per `SCAN` call while copying the target's own keys.
const SCAN_COUNT: &[u8] = b"1000";
/// The ACL rule a staged restore needs beyond a plain online restore.
pub const STAGING_ACL: &str = "+copy +swapdb +flushdb +scan +dbsize";

/// The spare database to stage the restore in, or why the server allows no staged restore
/// (`Ok(Err(reason))`; the caller falls back to writing keys in place and says so).
///
/// `backup_dbs` are the databases the backup writes to: the spare is the highest-numbered
/// empty database that is not one of them.
///
/// # Errors
/// When the server cannot be reached or answers nonsense.
pub async fn choose_spare(
    config: &RedisConfig,
    backup_dbs: &BTreeSet<u64>,
) -> Result<Result<u64, String>, RedisError> {
    let mut client = RedisClient::connect(config).await?;
    let version = client.server_version().await?;
    if parse_version(&version).is_none_or(|v| v < MIN_VERSION) {
        return Ok(Err(format!(
            "Redis {version} has no COPY (6.2 and later have it)"
        )));
    }
    if client
        .info("cluster")
        .await
        .ok()
        .and_then(|info| info.get("cluster_enabled").cloned())
        .as_deref()
        == Some("1")
    {
        return Ok(Err(
            "a cluster node has only database 0, so there is no spare one".to_owned(),
        ));
    }
    let databases = match client.command(&[b"CONFIG", b"GET", b"databases"]).await? {
        Resp::Array(Some(items)) => items
            .get(1)
            .and_then(Resp::as_text)
            .and_then(|t| t.parse::<u64>().ok()),
        _ => None,
    }
    // CONFIG may be forbidden to this user: the default count, checked by SELECT below.
    .unwrap_or(16);
    let used: BTreeSet<u64> = client
        .info("keyspace")
        .await?
        .keys()
        .filter_map(|k| k.strip_prefix("db").and_then(|n| n.parse().ok()))
        .collect();
    let Some(spare) = (0..databases)
        .rev()
        .find(|db| !used.contains(db) && !backup_dbs.contains(db))
    else {
        return Ok(Err(format!(
            "none of the server's {databases} databases is empty and unused by the backup"
        )));
    };
    // Every command the staged restore needs, tried where it changes nothing: on the empty
    // spare database.
    let spare_text = spare.to_string();
    let probes: [(&str, Vec<&[u8]>); 6] = [
        ("SELECT", vec![b"SELECT", spare_text.as_bytes()]),
        ("DBSIZE", vec![b"DBSIZE"]),
        ("SCAN", vec![b"SCAN", b"0", b"COUNT", b"1"]),
        (
            "COPY",
            vec![
                b"COPY",
                b"backup-restore-probe\xff",
                b"backup-restore-probe\xfe",
                b"DB",
                spare_text.as_bytes(),
            ],
        ),
        (
            "SWAPDB",
            vec![b"SWAPDB", spare_text.as_bytes(), spare_text.as_bytes()],
        ),
        ("FLUSHDB", vec![b"FLUSHDB"]),
    ];
    for (name, args) in probes {
        // A key may have arrived in the spare database since INFO: then it is in use.
        if name == "FLUSHDB" && !matches!(client.command(&[b"DBSIZE"]).await?, Resp::Integer(0)) {
            return Ok(Err(format!(
                "database {spare} received keys while it was being checked as a spare"
            )));
        }
        if let Resp::Error(message) = client.command(&args).await? {
            return Ok(Err(if message.starts_with("NOPERM") {
                format!("this user may not run {name} (a staged restore needs ACL {STAGING_ACL})")
            } else {
                format!("{name} on database {spare} failed: {message}")
            }));
        }
    }
    Ok(Ok(spare))
}

/// Copies the keys of database `db` into `spare` where `spare` does not have them yet (the
/// backup's version of a key wins). Returns how many were copied and how many were already
/// there; the connection is left on `db`.
pub(crate) async fn copy_missing(
    client: &mut RedisClient,
    db: u64,
    spare: u64,
) -> Result<(u64, u64), RedisError> {
    let (db_text, spare_text) = (db.to_string(), spare.to_string());
    client.call(&[b"SELECT", db_text.as_bytes()]).await?;
    let mut cursor = b"0".to_vec();
    let (mut copied, mut present) = (0u64, 0u64);
    loop {
        let reply = client
            .call(&[b"SCAN", &cursor, b"COUNT", SCAN_COUNT])
            .await?;
        let Resp::Array(Some(mut parts)) = reply else {
            return Err(protocol(client, "to SCAN", format!("{reply:?}")));
        };
        let keys = match parts.pop() {
            Some(Resp::Array(Some(keys))) if parts.len() == 1 => keys,
            other => return Err(protocol(client, "to SCAN", format!("{other:?}"))),
        };
        cursor = match parts.pop() {
            Some(Resp::Bulk(Some(next))) => next,
            other => return Err(protocol(client, "to SCAN", format!("{other:?}"))),
        };
        let mut sent = 0usize;
        for key in &keys {
            if let Resp::Bulk(Some(key)) = key {
                client.send(&[b"COPY", key, key, b"DB", spare_text.as_bytes()]);
                sent += 1;
            }
        }
        client.flush().await?;
        // Every reply is read, even after a failure, to keep the connection in step.
        let mut failure = None;
        for _ in 0..sent {
            match client.read_reply().await? {
                Resp::Integer(1) => copied += 1,
                Resp::Integer(_) => present += 1,
                Resp::Error(message) => {
                    failure.get_or_insert_with(|| client.reply_error("COPY", &message));
                }
                other => {
                    failure
                        .get_or_insert_with(|| protocol(client, "to COPY", format!("{other:?}")));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if cursor == b"0" {
            return Ok((copied, present));
        }
    }
}

/// `SWAPDB db spare`, then the spare database (now holding the old contents) emptied. The
/// connection is left on `spare`.
pub(crate) async fn swap_in(
    client: &mut RedisClient,
    db: u64,
    spare: u64,
) -> Result<(), RedisError> {
    let (db_text, spare_text) = (db.to_string(), spare.to_string());
    client
        .call(&[b"SWAPDB", db_text.as_bytes(), spare_text.as_bytes()])
        .await?;
    empty(client, spare).await
}

/// Empties the spare database.
pub(crate) async fn empty(client: &mut RedisClient, spare: u64) -> Result<(), RedisError> {
    let spare_text = spare.to_string();
    client.call(&[b"SELECT", spare_text.as_bytes()]).await?;
    client.call(&[b"FLUSHDB", b"ASYNC"]).await?;
    Ok(())
}

fn protocol(client: &RedisClient, context: &str, detail: String) -> RedisError {
    RedisError::Protocol {
        endpoint: client.endpoint().to_owned(),
        context: context.to_owned(),
        detail,
    }
}

/// `major.minor` of a `redis_version`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_by_major_and_minor() {
        assert_eq!(parse_version("7.0.15"), Some((7, 0)));
        assert_eq!(parse_version("6.2.0"), Some((6, 2)));
        assert!(parse_version("6.0.20").unwrap() < MIN_VERSION);
        assert!(parse_version("6.2.1").unwrap() >= MIN_VERSION);
        assert_eq!(parse_version("seven"), None);
    }
}
