//! `backup-key reencrypt` in the library: backups move to the current key, the old key can go,
//! a backup that does not match its manifest is never signed anew, and a run that dies at any
//! step leaves every backup complete or in progress, and the next run finishes the work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use backup_core::reencrypt::{key_usage, ReencryptOptions, ReencryptSelection};
use backup_core::{
    list_backups, open_backup, run_backup, BackupKind, BackupOptions, BackupStatus, Compression,
    Destination, Destinations, MemorySource, RunStatus,
};
use backup_crypto::{EncryptionKey, Keyring};
use backup_storage::{
    MemorySink, ObjectMeta, ObjectReader, ObjectWriter, Sink, StorageError, WriteMode,
};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

fn key(passphrase: &str) -> EncryptionKey {
    EncryptionKey::from_passphrase(passphrase).unwrap()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

async fn back_up(sink: &dyn Sink, key: &EncryptionKey, encrypted: bool, bytes: Vec<u8>) {
    let options = BackupOptions {
        name_prefix: "randevubu".into(),
        compression: Compression::gzip(),
        key: encrypted.then(|| key.clone()),
        signing_key: (!encrypted).then(|| key.clone()),
        iterations: 1000,
        compression_threads: 1,
    };
    let mut source = MemorySource::new(BackupKind::DATABASE, "sql", bytes);
    run_backup(&mut source, sink, &options, None).await.unwrap();
}

/// Every backup's plain bytes, restored with `ring`, oldest first.
async fn restore_all(sink: &dyn Sink, ring: &Keyring) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in list_backups(sink, BackupKind::DATABASE).await.unwrap() {
        assert_eq!(entry.status, BackupStatus::Complete, "{}", entry.key);
        let mut opened = open_backup(sink, &entry, Some(ring), None).await.unwrap();
        let mut plain = Vec::new();
        opened.stream.read_to_end(&mut plain).await.unwrap();
        out.push(plain);
    }
    out
}

fn destinations(sink: &MemorySink) -> Destinations {
    Destinations::new(vec![Destination::new("mem", Box::new(sink.clone()))])
}

fn options(selection: ReencryptSelection, dry_run: bool) -> ReencryptOptions {
    ReencryptOptions {
        selection,
        kinds: BackupKind::BUILT_IN.to_vec(),
        iterations: 2000,
        dry_run,
    }
}

async fn keys_of(sink: &MemorySink) -> Vec<String> {
    sink.list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Objects a finished run must not leave: staged copies, journals, claims, its marker.
fn leftovers(keys: &[String]) -> Vec<&String> {
    keys.iter()
        .filter(|k| k.contains(".reencrypt") || k.ends_with(".claim") || *k == "reencrypt.run")
        .collect()
}

#[tokio::test]
async fn every_backup_moves_to_the_current_key_and_then_restores_without_the_old_one() {
    let sink = MemorySink::new();
    let old = key("the old key");
    let new = key("the new key");
    back_up(&sink, &old, true, data(300_000)).await;
    back_up(&sink, &old, false, data(1000)).await;
    let mut ring = Keyring::new(new.clone());
    ring.add(old.clone());
    let before = restore_all(&sink, &ring).await;
    let dests = destinations(&sink);

    let usage = key_usage(&dests, &BackupKind::BUILT_IN, &ring)
        .await
        .unwrap();
    assert_eq!(usage.by_key.get(old.id().as_str()), Some(&2), "{usage:?}");
    assert_eq!(usage.by_key.get(new.id().as_str()), None);

    // The dry run plans both and changes nothing.
    let objects = keys_of(&sink).await;
    let snapshot: Vec<Bytes> = {
        let mut v = Vec::new();
        for k in &objects {
            v.push(sink.get_bytes(k, u64::MAX).await.unwrap());
        }
        v
    };
    let plan = dests
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(old.id().clone()), true),
        )
        .await;
    assert_eq!(plan.items.len(), 2, "{}", plan.text());
    assert!(plan.text().contains("would re-encrypt"), "{}", plan.text());
    assert!(plan.text().contains("would re-sign"), "{}", plan.text());
    assert_eq!(keys_of(&sink).await, objects);
    for (k, before) in objects.iter().zip(&snapshot) {
        assert_eq!(
            &sink.get_bytes(k, u64::MAX).await.unwrap(),
            before,
            "{k} changed"
        );
    }

    let report = dests
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(old.id().clone()), false),
        )
        .await;
    assert_eq!(report.status(), RunStatus::Success, "{}", report.text());
    assert_eq!(report.items.len(), 2);
    assert!(
        leftovers(&keys_of(&sink).await).is_empty(),
        "{:?}",
        keys_of(&sink).await
    );

    // The old key is not needed any more: the new one alone restores the same bytes.
    let only_new = Keyring::new(new.clone());
    assert_eq!(restore_all(&sink, &only_new).await, before);
    let usage = key_usage(&dests, &BackupKind::BUILT_IN, &ring)
        .await
        .unwrap();
    assert_eq!(usage.by_key.get(new.id().as_str()), Some(&2), "{usage:?}");
    assert_eq!(
        usage.by_key.get(old.id().as_str()),
        None,
        "the old key is retirable"
    );
    // And the old key alone cannot restore them any more.
    let entry = list_backups(&sink, BackupKind::DATABASE)
        .await
        .unwrap()
        .remove(0);
    let err = open_backup(&sink, &entry, Some(&Keyring::new(old.clone())), None)
        .await
        .err()
        .expect("the old key no longer fits");
    assert!(err.to_string().contains("not loaded"), "{err}");

    // Nothing left to do: a second run changes nothing.
    let again = dests
        .reencrypt(
            &ring,
            &options(ReencryptSelection::OlderThan(chrono::Utc::now()), false),
        )
        .await;
    assert!(again.items.is_empty(), "{}", again.text());
    assert!(
        again.text().contains("nothing to re-encrypt"),
        "{}",
        again.text()
    );
}

#[tokio::test]
async fn a_key_that_is_not_in_the_keyring_is_refused_with_the_keys_that_are() {
    let sink = MemorySink::new();
    let ring = Keyring::new(key("current"));
    let unknown = key("never loaded").id().clone();
    let report = destinations(&sink)
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(unknown.clone()), false),
        )
        .await;
    assert_eq!(report.status(), RunStatus::Failed);
    let text = report.text();
    assert!(
        text.contains(unknown.as_str()) && text.contains("not in the keyring"),
        "{text}"
    );
}

#[tokio::test]
async fn a_backup_that_does_not_match_its_manifest_is_never_signed_anew() {
    let sink = MemorySink::new();
    let old = key("old");
    back_up(&sink, &old, true, data(100_000)).await;
    let entry = list_backups(&sink, BackupKind::DATABASE)
        .await
        .unwrap()
        .remove(0);
    // Same size, one bit flipped in the middle: CBC would decrypt it to a changed block.
    let mut stored = sink.get_bytes(&entry.key, u64::MAX).await.unwrap().to_vec();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    sink.put(&entry.key, Bytes::from(stored.clone()))
        .await
        .unwrap();
    let manifest_before = sink
        .get_bytes(&format!("{}.manifest.json", entry.key), u64::MAX)
        .await
        .unwrap();

    let mut ring = Keyring::new(key("new"));
    ring.add(old.clone());
    let report = destinations(&sink)
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(old.id().clone()), false),
        )
        .await;
    assert_eq!(report.status(), RunStatus::Failed, "{}", report.text());
    let error = report.items[0].error.as_deref().unwrap();
    assert!(error.contains("never signed anew"), "{error}");
    assert_eq!(
        sink.get_bytes(&entry.key, u64::MAX).await.unwrap(),
        Bytes::from(stored)
    );
    assert_eq!(
        sink.get_bytes(&format!("{}.manifest.json", entry.key), u64::MAX)
            .await
            .unwrap(),
        manifest_before,
        "the manifest is as it was"
    );
    assert!(
        leftovers(&keys_of(&sink).await).is_empty(),
        "{:?}",
        keys_of(&sink).await
    );
}

/// A memory sink whose process "dies" after `budget` changes: that change and everything after
/// it (reads too) fail, as they would for a process killed at that moment.
#[derive(Debug)]
struct Dying {
    inner: MemorySink,
    budget: AtomicUsize,
}

impl Dying {
    fn change(&self, what: &'static str, key: &str) -> backup_storage::Result<()> {
        let left = self.budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(self.dead(what, key));
        }
        self.budget.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
    fn dead(&self, what: &'static str, key: &str) -> StorageError {
        StorageError::io(what, key, io::Error::other("the process was killed"))
    }
    fn alive(&self, what: &'static str, key: &str) -> backup_storage::Result<()> {
        if self.budget.load(Ordering::SeqCst) == 0 {
            Err(self.dead(what, key))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Sink for Dying {
    fn describe(&self) -> String {
        "a store whose writer gets killed".to_owned()
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: WriteMode,
    ) -> backup_storage::Result<Box<dyn ObjectWriter>> {
        self.change("write", key)?;
        self.inner.writer_with(key, mode).await
    }
    async fn get(&self, key: &str) -> backup_storage::Result<ObjectReader> {
        self.alive("read", key)?;
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<ObjectMeta> {
        self.alive("stat", key)?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<ObjectMeta>> {
        self.alive("list", prefix)?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_storage::Result<()> {
        self.change("delete", key)?;
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> backup_storage::Result<()> {
        self.change("copy", to)?;
        self.inner.copy(from, to).await
    }
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test]
async fn a_run_killed_at_any_step_loses_nothing_shows_nothing_half_done_and_the_next_run_finishes()
{
    let old = key("old");
    let new = key("new");
    let mut ring = Keyring::new(new.clone());
    ring.add(old.clone());
    let template = MemorySink::new();
    back_up(&template, &old, true, data(200_000)).await;
    back_up(&template, &old, false, data(5_000)).await;
    let expected = restore_all(&template, &ring).await;

    for budget in 0.. {
        // A fresh copy of the two backups.
        let sink = MemorySink::new();
        for k in keys_of(&template).await {
            sink.put(&k, template.get_bytes(&k, u64::MAX).await.unwrap())
                .await
                .unwrap();
        }
        let dying = Dying {
            inner: sink.clone(),
            budget: AtomicUsize::new(budget),
        };
        let dests = Destinations::new(vec![Destination::new("dying", Box::new(dying))]);
        let report = dests
            .reencrypt(
                &ring,
                &options(ReencryptSelection::KeyId(old.id().clone()), false),
            )
            .await;
        if report.status() == RunStatus::Success {
            assert!(budget > 5, "the run has more steps than {budget}");
            break;
        }

        // Nothing half-visible: each backup is complete and restores (with either key), or is
        // in progress (never chosen, never pruned).
        for entry in list_backups(&sink, BackupKind::DATABASE).await.unwrap() {
            match entry.status {
                BackupStatus::Complete => {
                    let mut opened = open_backup(&sink, &entry, Some(&ring), None)
                        .await
                        .unwrap_or_else(|e| panic!("killed after {budget} changes: {e}"));
                    let mut plain = Vec::new();
                    opened
                        .stream
                        .read_to_end(&mut plain)
                        .await
                        .unwrap_or_else(|e| panic!("killed after {budget} changes: {e}"));
                    assert!(expected.contains(&plain), "killed after {budget} changes");
                }
                BackupStatus::InProgress => {}
                other => panic!("killed after {budget} changes: {} is {other:?}", entry.key),
            }
        }
        assert_eq!(
            list_backups(&sink, BackupKind::DATABASE)
                .await
                .unwrap()
                .len(),
            2,
            "killed after {budget} changes: a backup went missing"
        );

        // The killed process left its marker: it is dead now.
        if let Ok(marker) = sink.get_bytes("reencrypt.run", 4096).await {
            let mut body: serde_json::Value = serde_json::from_slice(&marker).unwrap();
            body["pid"] = serde_json::json!(dead_pid());
            sink.put("reencrypt.run", Bytes::from(body.to_string()))
                .await
                .unwrap();
        }
        let rerun = destinations(&sink)
            .reencrypt(
                &ring,
                &options(ReencryptSelection::KeyId(old.id().clone()), false),
            )
            .await;
        assert_eq!(
            rerun.status(),
            RunStatus::Success,
            "killed after {budget} changes, the next run: {}",
            rerun.text()
        );
        assert!(
            leftovers(&keys_of(&sink).await).is_empty(),
            "killed after {budget} changes: {:?}",
            keys_of(&sink).await
        );
        assert_eq!(
            restore_all(&sink, &Keyring::new(new.clone())).await,
            expected,
            "killed after {budget} changes: the new key alone restores everything"
        );
    }
}

#[tokio::test]
async fn a_second_run_beside_a_live_one_is_refused_and_changes_nothing() {
    let sink = MemorySink::new();
    let old = key("old");
    back_up(&sink, &old, true, data(1000)).await;
    // A live run's marker: this very process.
    sink.put(
        "reencrypt.run",
        Bytes::from(
            serde_json::json!({
                "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
                "pid": std::process::id(),
            })
            .to_string(),
        ),
    )
    .await
    .unwrap();
    let mut ring = Keyring::new(key("new"));
    ring.add(old.clone());
    let report = destinations(&sink)
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(old.id().clone()), false),
        )
        .await;
    assert_eq!(report.status(), RunStatus::Failed);
    assert!(
        report.text().contains("one run at a time"),
        "{}",
        report.text()
    );
    let usage = key_usage(&destinations(&sink), &BackupKind::BUILT_IN, &ring)
        .await
        .unwrap();
    assert_eq!(usage.by_key.get(old.id().as_str()), Some(&1));
    assert!(
        sink.head("reencrypt.run").await.is_ok(),
        "the live run's marker stays"
    );
}

#[tokio::test]
async fn an_unfinished_reencryption_keeps_its_backup_from_retention() {
    // The state a run killed after deleting the old manifest leaves: object, journal, staged
    // copy, claim. Even when the claim is gone (a day later, pruning removes stale claims),
    // the journal keeps the backup "in progress", so retention never deletes it.
    let old = key("old");
    let new = key("new");
    let mut ring = Keyring::new(new.clone());
    ring.add(old.clone());
    let sink = MemorySink::new();
    back_up(&sink, &old, true, data(10_000)).await;
    back_up(&sink, &old, true, data(20_000)).await;
    let first = list_backups(&sink, BackupKind::DATABASE)
        .await
        .unwrap()
        .remove(0)
        .key;
    // Stop after: claim, staged copy, journal, manifest deleted (4 changes; the marker is 1).
    let dying = Dying {
        inner: sink.clone(),
        budget: AtomicUsize::new(5),
    };
    let _ = Destinations::new(vec![Destination::new("dying", Box::new(dying))])
        .reencrypt(
            &ring,
            &options(ReencryptSelection::KeyId(old.id().clone()), false),
        )
        .await;
    assert!(
        sink.head(&format!("{first}.manifest.json")).await.is_err(),
        "{:?}",
        keys_of(&sink).await
    );
    sink.delete(&format!("{first}.claim")).await.unwrap();
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    assert_eq!(entries[0].status, BackupStatus::InProgress);
    let plan = backup_core::retention::plan(
        &entries,
        &backup_core::RetentionPolicy::within_days(0),
        chrono::Utc::now() + chrono::TimeDelta::days(3),
    );
    assert!(
        !plan.to_delete().any(|d| d.entry.key == first),
        "retention would delete a backup whose re-encryption is unfinished"
    );
}

#[tokio::test]
async fn a_journal_written_without_the_key_is_refused_and_its_bytes_never_used() {
    let old = key("old");
    let mut ring = Keyring::new(key("new"));
    ring.add(old.clone());
    let sink = MemorySink::new();
    back_up(&sink, &old, true, data(10_000)).await;
    let entry = list_backups(&sink, BackupKind::DATABASE)
        .await
        .unwrap()
        .remove(0);
    // Someone who can write to the bucket but has no key: a journal that would swap in their
    // own bytes (with the manifest copied and the hash changed), and those bytes staged.
    let manifest_key = format!("{}.manifest.json", entry.key);
    let mut forged: serde_json::Value =
        serde_json::from_slice(&sink.get_bytes(&manifest_key, u64::MAX).await.unwrap()).unwrap();
    forged["sha256"] = serde_json::json!("00".repeat(32));
    sink.put(
        &format!("{}.reencrypt.manifest.json", entry.key),
        Bytes::from(forged.to_string()),
    )
    .await
    .unwrap();
    sink.put(
        &format!("{}.reencrypt", entry.key),
        Bytes::from_static(b"attacker's bytes"),
    )
    .await
    .unwrap();
    let before = sink.get_bytes(&entry.key, u64::MAX).await.unwrap();

    let report = destinations(&sink)
        .reencrypt(
            &ring,
            &options(ReencryptSelection::OlderThan(chrono::Utc::now()), false),
        )
        .await;
    assert_eq!(report.resumed.len(), 1, "{}", report.text());
    let error = report.resumed[0].error.as_deref().unwrap();
    assert!(error.contains("failed HMAC verification"), "{error}");
    assert_ne!(report.status(), RunStatus::Success);
    // The backup itself was still re-encrypted from its own verified bytes, never from the
    // staged ones; the forged journal stays for a person to look at.
    let restored = restore_all(&sink, &Keyring::new(ring.current().clone())).await;
    assert_eq!(restored, vec![data(10_000)]);
    assert_ne!(sink.get_bytes(&entry.key, u64::MAX).await.unwrap(), before);
}
