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
//! database, the commands permitted), and claims the spare database with a key of its own
//! ([`CLAIM_KEY`], holding a token of this run, expiring after a day) so that a second restore
//! started at the same moment chooses another one. The claim stays in the spare while it is
//! used; the `SWAPDB` runs in one `MULTI`/`EXEC` with the claim's removal before it and its
//! renewal after the spare is emptied, so the claim never reaches a restored database and the
//! spare is never unclaimed while in use. A failed restore empties the spare only while the
//! claim is still its own.

use std::collections::BTreeSet;

use crate::redis::connection::{RedisClient, RedisConfig, Resp};
use crate::redis::error::RedisError;

/// The oldest Redis with `COPY` (and its `DB` option).
const MIN_VERSION: (u32, u32) = (6, 2);
/// Keys asked for per `SCAN` call while copying the target's own keys.
const SCAN_COUNT: &[u8] = b"1000";
/// The ACL rule a staged restore needs beyond a plain online restore.
pub const STAGING_ACL: &str = "+copy +swapdb +flushdb +scan +dbsize +set +get +del +multi +exec";
/// The key that claims a spare database for one restore (it lives only there).
pub const CLAIM_KEY: &[u8] = b"backup-restore:spare-claim";
/// How long a claim lasts when its restore never ends (killed): a day, in seconds.
const CLAIM_SECONDS: &[u8] = b"86400";

/// A spare database claimed for one restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpareDb {
    /// The database index.
    pub db: u64,
    /// This run's token, the value of [`CLAIM_KEY`] there.
    pub token: String,
}

impl SpareDb {
    /// A spare database `db` with a fresh token (claimed when the restore starts, or by
    /// [`choose_spare`]).
    pub fn new(db: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            db,
            token: format!("{}-{nanos}", std::process::id()),
        }
    }
}

/// Claims `spare` for this run: `SET claim token NX EX 86400` there, and it must then hold
/// nothing else. `Ok(false)` when another restore holds it or it holds other keys (our claim,
/// if set, is taken back).
///
/// # Errors
/// I/O and error replies (`NOPERM`).
pub(crate) async fn claim(client: &mut RedisClient, spare: &SpareDb) -> Result<bool, RedisError> {
    let text = spare.db.to_string();
    client.call(&[b"SELECT", text.as_bytes()]).await?;
    let set = client
        .call(&[
            b"SET",
            CLAIM_KEY,
            spare.token.as_bytes(),
            b"NX",
            b"EX",
            CLAIM_SECONDS,
        ])
        .await?;
    if matches!(set, Resp::Bulk(None) | Resp::Array(None)) {
        return owns(client, spare).await;
    }
    if matches!(client.call(&[b"DBSIZE"]).await?, Resp::Integer(1)) {
        return Ok(true);
    }
    client.call(&[b"DEL", CLAIM_KEY]).await?;
    Ok(false)
}

/// Whether the claim in the selected database is `spare`'s.
async fn owns(client: &mut RedisClient, spare: &SpareDb) -> Result<bool, RedisError> {
    let held = client.call(&[b"GET", CLAIM_KEY]).await?;
    Ok(matches!(held, Resp::Bulk(Some(t)) if t == spare.token.as_bytes()))
}

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
) -> Result<Result<SpareDb, String>, RedisError> {
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
    let candidates: Vec<u64> = (0..databases)
        .rev()
        .filter(|db| !used.contains(db) && !backup_dbs.contains(db))
        .collect();
    let Some(&first) = candidates.first() else {
        return Ok(Err(format!(
            "none of the server's {databases} databases is empty and unused by the backup"
        )));
    };
    // The commands the staged restore needs that cannot be tried by claiming, tried where
    // they change nothing: on an empty database.
    let first_text = first.to_string();
    let probes: [(&str, Vec<&[u8]>); 5] = [
        ("SELECT", vec![b"SELECT", first_text.as_bytes()]),
        ("DBSIZE", vec![b"DBSIZE"]),
        ("SCAN", vec![b"SCAN", b"0", b"COUNT", b"1"]),
        (
            "COPY",
            vec![
                b"COPY",
                b"backup-restore-probe\xff",
                b"backup-restore-probe\xfe",
                b"DB",
                first_text.as_bytes(),
            ],
        ),
        (
            "SWAPDB",
            vec![b"SWAPDB", first_text.as_bytes(), first_text.as_bytes()],
        ),
    ];
    for (name, args) in probes {
        if let Resp::Error(message) = client.command(&args).await? {
            return Ok(Err(refusal(name, first, &message)));
        }
    }
    for db in candidates {
        let spare = SpareDb::new(db);
        match claim(&mut client, &spare).await {
            Ok(true) => return Ok(Ok(spare)),
            Ok(false) => continue,
            Err(RedisError::Permission { command, .. }) => {
                return Ok(Err(refusal(&command, db, "NOPERM")))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Err(
        "every free database was claimed by another restore or received keys meanwhile".to_owned(),
    ))
}

/// Why a command refused on database `db` rules a staged restore out.
fn refusal(command: &str, db: u64, message: &str) -> String {
    if message.starts_with("NOPERM") {
        format!("this user may not run {command} (a staged restore needs ACL {STAGING_ACL})")
    } else {
        format!("{command} on database {db} failed: {message}")
    }
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

/// In one `MULTI`/`EXEC`: the claim taken out of the spare, `SWAPDB db spare`, the spare (now
/// holding the old contents) emptied and claimed again. The connection is left on the spare.
pub(crate) async fn swap_in(
    client: &mut RedisClient,
    db: u64,
    spare: &SpareDb,
) -> Result<(), RedisError> {
    let (db_text, spare_text) = (db.to_string(), spare.db.to_string());
    client.call(&[b"SELECT", spare_text.as_bytes()]).await?;
    let commands: [&[&[u8]]; 5] = [
        &[b"DEL", CLAIM_KEY],
        &[b"SWAPDB", db_text.as_bytes(), spare_text.as_bytes()],
        &[b"FLUSHDB", b"ASYNC"],
        &[
            b"SET",
            CLAIM_KEY,
            spare.token.as_bytes(),
            b"EX",
            CLAIM_SECONDS,
        ],
        &[b"EXEC"],
    ];
    client.send(&[b"MULTI"]);
    for command in commands {
        client.send(command);
    }
    client.flush().await?;
    // MULTI's +OK, a +QUEUED per command (or an error that aborts the EXEC), then EXEC's.
    let mut failure = None;
    for name in ["MULTI", "DEL", "SWAPDB", "FLUSHDB", "SET"] {
        if let Resp::Error(message) = client.read_reply().await? {
            failure.get_or_insert_with(|| client.reply_error(name, &message));
        }
    }
    let exec = client.read_reply().await?;
    if let Some(e) = failure {
        return Err(e);
    }
    match exec {
        Resp::Array(Some(replies)) => match replies.iter().find(|r| r.is_error()) {
            Some(Resp::Error(message)) => Err(client.reply_error("SWAPDB", message)),
            _ => Ok(()),
        },
        Resp::Error(message) => Err(client.reply_error("EXEC", &message)),
        other => Err(protocol(client, "to EXEC", format!("{other:?}"))),
    }
}

/// Gives the spare up at the end: its claim removed (the spare is empty then).
pub(crate) async fn release(client: &mut RedisClient, spare: &SpareDb) -> Result<(), RedisError> {
    let text = spare.db.to_string();
    client.call(&[b"SELECT", text.as_bytes()]).await?;
    if owns(client, spare).await? {
        client.call(&[b"DEL", CLAIM_KEY]).await?;
    }
    Ok(())
}

/// Empties the spare after a failure, if it is still this run's (`Ok(false)` when another
/// restore holds it now: then it is left alone).
pub(crate) async fn discard(client: &mut RedisClient, spare: &SpareDb) -> Result<bool, RedisError> {
    let text = spare.db.to_string();
    client.call(&[b"SELECT", text.as_bytes()]).await?;
    if !owns(client, spare).await? {
        return Ok(false);
    }
    client.call(&[b"FLUSHDB", b"ASYNC"]).await?;
    Ok(true)
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
