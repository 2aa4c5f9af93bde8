//! Markers a run holds on a destination while it works: an object created only if absent
//! ([`WriteMode::Create`]) whose body names the run (tool, host, process, start time and a
//! random run id). A marker left by a run that died is taken over: one whose process is gone
//! on this host, or, when the caller allows it, one older than a limit (a run on another host
//! that never came back).

use std::time::Duration;

use backup_storage::{Sink, WriteMode};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::pipeline::{host_name, TOOL_NAME};

/// The most bytes of a marker's body that are read.
const MARKER_LIMIT: u64 = 4096;

/// A marker body unique to this run (its `run` field is random).
pub(crate) fn body(purpose: Option<&str>, started_at: DateTime<Utc>) -> Bytes {
    let run = ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new())
        .map(|r| r.expose())
        .unwrap_or_default();
    let mut value = serde_json::json!({
        "tool": TOOL_NAME,
        "host": host_name(),
        "pid": std::process::id(),
        "started_at": started_at,
        "run": hex::encode(run),
    });
    if let (Some(purpose), Some(map)) = (purpose, value.as_object_mut()) {
        map.insert("purpose".to_owned(), purpose.into());
    }
    Bytes::from(value.to_string())
}

/// Why a marker could not be taken: another run holds it.
#[derive(Debug)]
pub(crate) struct Held {
    /// The holder's marker body, as text (tool, host, pid, start).
    pub holder: String,
}

/// Takes the marker `key` on `sink` with `body`: creates it, or replaces it when its holder is
/// dead (see the module). `Ok(Err(Held))` when a live run holds it.
pub(crate) async fn take(
    sink: &dyn Sink,
    key: &str,
    body: &Bytes,
    stale_after: Option<Duration>,
) -> Result<std::result::Result<(), Held>> {
    for _ in 0..3 {
        match sink.put_with(key, body.clone(), WriteMode::Create).await {
            Ok(_) => return Ok(Ok(())),
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        let held = match sink.get_bytes(key, MARKER_LIMIT).await {
            Ok(held) => held,
            // Released meanwhile: try again.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        if !is_dead(&held, stale_after) {
            return Ok(Err(Held {
                holder: String::from_utf8_lossy(&held).trim().to_owned(),
            }));
        }
        tracing::info!(
            "taking over {key} on {} from a run that is gone ({})",
            sink.describe(),
            String::from_utf8_lossy(&held).trim()
        );
        // Only the dead run's marker is removed: if another run replaced it meanwhile, its
        // marker differs and stays.
        if sink.get_bytes(key, MARKER_LIMIT).await.ok().as_ref() == Some(&held) {
            match sink.delete(key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let held = sink.get_bytes(key, MARKER_LIMIT).await.unwrap_or_default();
    Ok(Err(Held {
        holder: String::from_utf8_lossy(&held).trim().to_owned(),
    }))
}

/// Removes the marker `key` from `sink` if it is still `body` (ours).
pub(crate) async fn release(sink: &dyn Sink, key: &str, body: &Bytes) {
    if sink.get_bytes(key, MARKER_LIMIT).await.ok().as_ref() == Some(body) {
        if let Err(error) = sink.delete(key).await {
            tracing::warn!(destination = %sink.describe(), %error, "could not remove {key}");
        }
    }
}

/// Whether the run that wrote marker `held` is gone: its process is not alive on this host, or
/// it started longer than `stale_after` ago.
fn is_dead(held: &[u8], stale_after: Option<Duration>) -> bool {
    let holder: serde_json::Value = serde_json::from_slice(held).unwrap_or(serde_json::Value::Null);
    let same_host = holder.get("host").and_then(|h| h.as_str()) == Some(host_name().as_str());
    let pid = holder
        .get("pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| i32::try_from(p).ok());
    if same_host && pid.is_some_and(|p| !process_alive(p)) {
        return true;
    }
    let started = holder
        .get("started_at")
        .and_then(|s| s.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    match (stale_after, started) {
        (Some(limit), Some(started)) => {
            let age = Utc::now().signed_duration_since(started.with_timezone(&Utc));
            age.to_std().is_ok_and(|age| age > limit)
        }
        _ => false,
    }
}

/// Whether process `pid` exists on this host.
pub(crate) fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists, owned by someone else.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_storage::MemorySink;

    #[tokio::test]
    async fn a_live_holder_keeps_its_marker_and_a_dead_one_loses_it() {
        let sink = MemorySink::new();
        let ours = body(None, Utc::now());
        take(&sink, "m", &ours, None).await.unwrap().unwrap();
        // Held by us, alive: another run is refused.
        let other = body(None, Utc::now());
        let held = take(&sink, "m", &other, None).await.unwrap().unwrap_err();
        assert!(held.holder.contains("\"pid\""), "{}", held.holder);
        // A dead process on this host.
        let dead =
            serde_json::json!({"host": host_name(), "pid": i32::MAX, "started_at": Utc::now()});
        sink.put("d", Bytes::from(dead.to_string())).await.unwrap();
        take(&sink, "d", &ours, None).await.unwrap().unwrap();
        assert_eq!(sink.get_bytes("d", 4096).await.unwrap(), ours);
        // Another host, recent: kept; old and a limit given: taken.
        let away = serde_json::json!({"host": "elsewhere", "pid": 1, "started_at": Utc::now() - chrono::Duration::hours(2)});
        sink.put("a", Bytes::from(away.to_string())).await.unwrap();
        assert!(take(&sink, "a", &ours, None).await.unwrap().is_err());
        assert!(
            take(&sink, "a", &ours, Some(Duration::from_secs(7200 + 60)))
                .await
                .unwrap()
                .is_err()
        );
        take(&sink, "a", &ours, Some(Duration::from_secs(3600)))
            .await
            .unwrap()
            .unwrap();
        // Release removes only our own marker.
        release(&sink, "m", &other).await;
        assert!(sink.head("m").await.is_ok());
        release(&sink, "m", &ours).await;
        assert!(sink.head("m").await.is_err());
    }
}
