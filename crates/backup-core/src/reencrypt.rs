//! Re-encryption of stored backups with the current key (`backup-key reencrypt`), so that an
//! old key can be retired; and which key each stored backup needs ([`key_usage`]).
//!
//! A backup is re-encrypted on each destination that holds it, one backup at a time, in
//! constant memory: its stored bytes are read once, checked against its HMAC-verified manifest
//! as they stream (a backup that does not match is never re-encrypted: signing it anew would
//! launder a forgery), decrypted with the old key and encrypted with the current one. Its
//! manifest is signed anew (embedded attachments re-encrypted too); unencrypted backups whose
//! manifests an old key signed are re-signed.
//!
//! # One backup, step by step
//! 1. Claim the backup's name ([`claim_key_for`]): a backup with a claim is never pruned, and
//!    a second re-encryption leaves it alone. Re-read the manifest: unchanged, or skip.
//! 2. Write the new bytes to `NAME.reencrypt`, then the new manifest to
//!    `NAME.reencrypt.manifest.json`: the journal ([`REENCRYPT_SUFFIX`]).
//! 3. Delete the old manifest: the backup is now "in progress" (its journal says so), so no
//!    restore takes the new bytes for the old manifest's.
//! 4. Copy `NAME.reencrypt` over `NAME`, write the new manifest, refresh a `latest/` copy.
//! 5. Delete the journal, the staged copy and the claim.
//!
//! At every moment the backup is either complete and verifiable (old or new) or in progress
//! with a signed journal and a staged copy that complete it. A run that is killed leaves the
//! journal, and the next run finishes it before anything else ([`Resumed`]).
//!
//! One run at a time per destination: a run holds [`REENCRYPT_RUN_KEY`], created only if
//! absent. A marker left by a killed run on this host (its process is gone) is taken over;
//! one held by a live process or another host is refused with what to do. Local
//! destinations are also held with the shared lock, so `backup-prune` waits.

use std::collections::BTreeMap;

use backup_crypto::{DecryptReader, EncryptReader, EncryptionKey, KeyId, Keyring};
use backup_storage::{LockMode, Sink, StorageError, WriteMode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::catalog::{list_backups, BackupStatus};
use crate::destinations::Destinations;
use crate::error::{CoreError, Result};
use crate::hashing::{HashingReader, StreamDigest, VerifyingReader};
use crate::layout::{
    claim_key_for, manifest_key_for, BackupKind, CLAIM_SUFFIX, MANIFEST_SUFFIX, REENCRYPT_RUN_KEY,
    REENCRYPT_SUFFIX,
};
use crate::manifest::{Manifest, MANIFEST_SIZE_LIMIT};
use crate::pipeline::DESTINATION_LOCK_WAIT;
use crate::RunStatus;

/// Which backups to re-encrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReencryptSelection {
    /// Backups taken before this time (by their names) that the current key did not make.
    OlderThan(DateTime<Utc>),
    /// Backups made with the key that has this id ([`EncryptionKey::id`], the name of its
    /// keyring file).
    KeyId(KeyId),
}

/// What [`Destinations::reencrypt`] does.
#[derive(Debug, Clone)]
pub struct ReencryptOptions {
    /// Which backups.
    pub selection: ReencryptSelection,
    /// The kinds of backup to look at.
    pub kinds: Vec<BackupKind>,
    /// PBKDF2 iterations of the new encryption.
    pub iterations: u32,
    /// Plan only: say what would be done, change nothing.
    pub dry_run: bool,
}

/// What is done to one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Decrypt with the old key, encrypt with the current one, sign the manifest anew.
    Reencrypt,
    /// An unencrypted backup whose manifest an old key signed: sign the manifest anew.
    Resign,
}

/// A backup chosen for re-encryption, and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The destination (its description).
    pub destination: String,
    /// The backup's object key.
    pub key: String,
    /// What is done.
    pub action: Action,
    /// The id of the key it was made with ([`EncryptionKey::id`]).
    pub from_key: String,
    /// Stored bytes.
    pub bytes: u64,
    /// `None` planned (dry run) or done; the error otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A backup left as it is, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The destination.
    pub destination: String,
    /// The backup's object key.
    pub key: String,
    /// Why it was left.
    pub reason: String,
}

/// An interrupted re-encryption that this run finished (or would finish, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Resumed {
    /// The destination.
    pub destination: String,
    /// The backup's object key.
    pub key: String,
    /// `None` when finished; the error otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`Destinations::reencrypt`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ReencryptReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The id of the current key, that the backups now need.
    pub current_key: String,
    /// Interrupted re-encryptions finished first.
    pub resumed: Vec<Resumed>,
    /// The backups chosen, in order.
    pub items: Vec<Item>,
    /// Backups left alone that a user would expect to be included.
    pub skipped: Vec<Skipped>,
    /// Destinations that could not be worked on at all, with why.
    pub destination_errors: Vec<String>,
}

impl ReencryptReport {
    /// Success when nothing failed, failed when nothing was done and something failed,
    /// partial otherwise.
    pub fn status(&self) -> RunStatus {
        let failed = self.items.iter().filter(|i| i.error.is_some()).count()
            + self.resumed.iter().filter(|r| r.error.is_some()).count()
            + self.destination_errors.len();
        let done = self.items.iter().filter(|i| i.error.is_none()).count()
            + self.resumed.iter().filter(|r| r.error.is_none()).count();
        match (failed, done) {
            (0, _) => RunStatus::Success,
            (_, 0) => RunStatus::Failed,
            _ => RunStatus::Partial,
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let verb = if self.dry_run { "would " } else { "" };
        for r in &self.resumed {
            let _ = match &r.error {
                None => writeln!(
                    out,
                    "{}finish the interrupted re-encryption of {} on {}",
                    verb, r.key, r.destination
                ),
                Some(e) => writeln!(
                    out,
                    "FAILED to finish the re-encryption of {} on {}: {e}",
                    r.key, r.destination
                ),
            };
        }
        for i in &self.items {
            let what = match i.action {
                Action::Reencrypt => "re-encrypt",
                Action::Resign => "re-sign",
            };
            let _ = match &i.error {
                None if self.dry_run => writeln!(
                    out,
                    "would {what} {} on {} (key {} -> {}, {} bytes)",
                    i.key, i.destination, i.from_key, self.current_key, i.bytes
                ),
                None => writeln!(
                    out,
                    "{what}ed {} on {} (key {} -> {})",
                    i.key, i.destination, i.from_key, self.current_key
                ),
                Some(e) => writeln!(out, "FAILED to {what} {} on {}: {e}", i.key, i.destination),
            };
        }
        for s in &self.skipped {
            let _ = writeln!(out, "left {} on {}: {}", s.key, s.destination, s.reason);
        }
        for e in &self.destination_errors {
            let _ = writeln!(out, "FAILED: {e}");
        }
        if self.items.is_empty() && self.resumed.is_empty() && self.destination_errors.is_empty() {
            let _ = writeln!(
                out,
                "nothing to re-encrypt: every matching backup already uses key {}",
                self.current_key
            );
        }
        out
    }
}

/// How many complete backups each key of the keyring was used for, over the given kinds on
/// every destination, by key id ([`EncryptionKey::id`]); plus backups no key at hand signed and
/// legacy (manifest-less) encrypted backups, whose key cannot be known without trying.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyUsage {
    /// Backups (on any destination) per key id.
    pub by_key: BTreeMap<String, usize>,
    /// Backups whose manifest no key of the keyring verifies (their key is missing, or the
    /// manifest was forged), by object key.
    pub unknown: Vec<String>,
    /// Encrypted backups without a manifest (made by the old scripts).
    pub legacy_encrypted: Vec<String>,
}

/// Counts which key each stored backup needs ([`KeyUsage`]). Each manifest is verified with
/// the keys of `ring` in turn (format 3 manifests name their key by an id derived from their
/// own salt, so the only way to know the key is to derive with each).
///
/// # Errors
/// When a destination cannot be listed.
pub async fn key_usage(
    destinations: &Destinations,
    kinds: &[BackupKind],
    ring: &Keyring,
) -> Result<KeyUsage> {
    let mut usage = KeyUsage::default();
    for destination in destinations.iter() {
        let sink = destination.sink();
        for &kind in kinds {
            for entry in list_backups(sink, kind).await? {
                match entry.status {
                    BackupStatus::Complete => {}
                    BackupStatus::Legacy | BackupStatus::Incomplete if entry.name.encrypted => {
                        usage.legacy_encrypted.push(entry.key.clone());
                        continue;
                    }
                    _ => continue,
                }
                let manifest_key = manifest_key_for(&entry.key);
                let bytes = sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await?;
                match Manifest::parse_verified_by(&entry.key, &manifest_key, &bytes, ring) {
                    Ok((m, signer)) if m.hmac.is_some() => {
                        *usage.by_key.entry(signer.id().to_string()).or_default() += 1;
                    }
                    Ok(_) => {}
                    Err(_) => usage.unknown.push(entry.key.clone()),
                }
            }
        }
    }
    Ok(usage)
}

impl Destinations {
    /// Re-encrypts the backups `options` select with the keyring's current key, on every
    /// destination (see the [module docs](crate::reencrypt)). Interrupted re-encryptions are
    /// finished first. Never fails as a whole: what went wrong is in the report.
    pub async fn reencrypt(&self, ring: &Keyring, options: &ReencryptOptions) -> ReencryptReport {
        let mut report = ReencryptReport {
            dry_run: options.dry_run,
            current_key: ring.current().id().to_string(),
            resumed: Vec::new(),
            items: Vec::new(),
            skipped: Vec::new(),
            destination_errors: Vec::new(),
        };
        if let ReencryptSelection::KeyId(id) = &options.selection {
            if ring.get(id).is_none() {
                report.destination_errors.push(format!(
                    "the key {id} is not in the keyring (the current key is {}, older keys: \
                     {}); put its key file in the keyring directory",
                    ring.current().id(),
                    older_keys(ring)
                ));
                return report;
            }
        }
        for destination in self.iter() {
            if let Err(e) =
                reencrypt_destination(destination.sink(), ring, options, &mut report).await
            {
                report
                    .destination_errors
                    .push(format!("{}: {e}", destination.sink().describe()));
            }
        }
        report
    }
}

fn older_keys(ring: &Keyring) -> String {
    let older: Vec<String> = ring.keys().skip(1).map(|k| k.id().to_string()).collect();
    if older.is_empty() {
        "none".to_owned()
    } else {
        older.join(", ")
    }
}

/// One backup to work on: its entry's key, its manifest as read and verified, the key that
/// signed it.
struct Candidate<'a> {
    key: String,
    manifest_bytes: Bytes,
    manifest: Manifest,
    signer: &'a EncryptionKey,
    action: Action,
}

async fn reencrypt_destination(
    sink: &dyn Sink,
    ring: &Keyring,
    options: &ReencryptOptions,
    report: &mut ReencryptReport,
) -> Result<()> {
    let destination = sink.describe();
    let (_lock, marker) = if options.dry_run {
        (None, None)
    } else {
        let lock = sink.lock(LockMode::Shared, DESTINATION_LOCK_WAIT).await?;
        (lock, Some(RunMarker::take(sink).await?))
    };
    let result = async {
        for &kind in &options.kinds {
            resume(sink, kind, ring, options.dry_run, report).await?;
        }
        let mut candidates = Vec::new();
        for &kind in &options.kinds {
            candidates.extend(plan_kind(sink, kind, ring, options, report).await?);
        }
        for c in candidates {
            let bytes = c.manifest.stored_bytes;
            let error = if options.dry_run {
                None
            } else {
                tracing::info!("re-encrypting {} on {destination}", c.key);
                match reencrypt_one(sink, &c, ring.current(), options.iterations).await {
                    Ok(Outcome::Done) => None,
                    // Still on the old key: the run did not do all it was asked.
                    Ok(Outcome::Skipped(reason)) => Some(reason),
                    Err(e) => Some(e.to_string()),
                }
            };
            report.items.push(Item {
                destination: destination.clone(),
                key: c.key,
                action: c.action,
                from_key: c.signer.id().to_string(),
                bytes,
                error,
            });
        }
        Ok(())
    }
    .await;
    if let Some(marker) = marker {
        marker.release(sink).await;
    }
    result
}

/// The backups of `kind` on `sink` that `options` select, with their verified manifests;
/// what a user might expect but is left goes to `report.skipped`.
async fn plan_kind<'a>(
    sink: &dyn Sink,
    kind: BackupKind,
    ring: &'a Keyring,
    options: &ReencryptOptions,
    report: &mut ReencryptReport,
) -> Result<Vec<Candidate<'a>>> {
    let destination = sink.describe();
    let mut skip = |key: &str, reason: String| {
        report.skipped.push(Skipped {
            destination: destination.clone(),
            key: key.to_owned(),
            reason,
        })
    };
    let mut chosen = Vec::new();
    for entry in list_backups(sink, kind).await? {
        if let ReencryptSelection::OlderThan(date) = options.selection {
            if entry.timestamp() >= date {
                continue;
            }
        }
        match &entry.status {
            BackupStatus::Complete => {}
            BackupStatus::Legacy | BackupStatus::Incomplete if entry.name.encrypted => {
                skip(
                    &entry.key,
                    "it has no manifest (made by the old scripts, or lost its commit marker), so \
                     it cannot be verified and is not re-encrypted; keep its key in the keyring \
                     until retention deletes it"
                        .to_owned(),
                );
                continue;
            }
            BackupStatus::InProgress => {
                skip(&entry.key, "it is being written by another run".to_owned());
                continue;
            }
            BackupStatus::Damaged(why) => {
                skip(&entry.key, format!("its manifest is damaged: {why}"));
                continue;
            }
            _ => continue,
        }
        let manifest_key = manifest_key_for(&entry.key);
        let bytes = sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await?;
        let (manifest, signer) =
            match Manifest::parse_verified_by(&entry.key, &manifest_key, &bytes, ring) {
                Ok((m, signer)) if m.hmac.is_some() => (m, signer),
                Ok(_) => continue, // unsigned: no key involved
                Err(e) => {
                    skip(&entry.key, format!("{e}"));
                    continue;
                }
            };
        let selected = match &options.selection {
            ReencryptSelection::OlderThan(_) => signer.id() != ring.current().id(),
            ReencryptSelection::KeyId(id) => signer.id() == id,
        };
        if !selected {
            continue;
        }
        if signer.id() == ring.current().id() {
            skip(&entry.key, "it already uses the current key".to_owned());
            continue;
        }
        let action = if manifest.encryption.is_some() {
            Action::Reencrypt
        } else {
            Action::Resign
        };
        chosen.push(Candidate {
            key: entry.key,
            manifest_bytes: bytes,
            manifest,
            signer,
            action,
        });
    }
    Ok(chosen)
}

enum Outcome {
    Done,
    Skipped(String),
}

fn journal_key(key: &str) -> String {
    manifest_key_for(&staging_key(key))
}

fn staging_key(key: &str) -> String {
    format!("{key}{REENCRYPT_SUFFIX}")
}

/// The body of a re-encryption's claim: says whose it is.
fn claim_body() -> Bytes {
    crate::marker::body(Some("reencrypt"), Utc::now())
}

/// Steps 1 to 5 of the [module docs](crate::reencrypt) for one backup.
async fn reencrypt_one(
    sink: &dyn Sink,
    c: &Candidate<'_>,
    current: &EncryptionKey,
    iterations: u32,
) -> Result<Outcome> {
    let key = c.key.as_str();
    let claim = claim_key_for(key);
    match sink.put_with(&claim, claim_body(), WriteMode::Create).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {
            return Ok(Outcome::Skipped(
                "another run holds a claim on it; run again later".to_owned(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let result = async {
        let manifest_key = manifest_key_for(key);
        match sink.get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT).await {
            Ok(now) if now == c.manifest_bytes => {}
            Ok(_) | Err(StorageError::NotFound { .. }) => {
                return Ok(Outcome::Skipped(
                    "its manifest changed or went away while this run planned (pruned?)".to_owned(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let mut manifest = c.manifest.clone();
        if c.action == Action::Reencrypt {
            let old = manifest.encryption.clone().ok_or_else(|| {
                CoreError::Config(format!("{key}: its manifest records no encryption"))
            })?;
            let digest = stage(
                sink,
                key,
                &c.manifest,
                c.signer,
                old.iterations,
                current,
                iterations,
            )
            .await?;
            manifest.stored_bytes = digest.size;
            manifest.sha256 = digest.sha256;
            if let Some(info) = &mut manifest.encryption {
                info.iterations = iterations;
            }
            manifest.attachments =
                reencrypt_attachments(&manifest, c.signer, old.iterations, current, iterations)
                    .await
                    .map_err(|detail| CoreError::Integrity {
                        key: key.to_owned(),
                        detail,
                    })?;
        }
        let json = Bytes::from(manifest.to_signed_json(Some(current))?);
        sink.put(&journal_key(key), json.clone()).await?;
        finish(sink, key, &json, manifest.encryption.is_some()).await?;
        Ok(Outcome::Done)
    }
    .await;
    match &result {
        // Finished: the claim goes. Failed before the journal: the staged copy and the claim
        // go, the backup is as it was. Failed after: the journal stays (the next run finishes
        // it), and so does the claim, which keeps retention away meanwhile.
        Ok(_) => {
            let _ = sink.delete(&claim).await;
        }
        Err(_) => {
            if !exists(sink, &journal_key(key)).await {
                let _ = sink.delete(&staging_key(key)).await;
                let _ = sink.delete(&claim).await;
            }
        }
    }
    result
}

/// Streams `key` through verify (against `manifest`) -> decrypt (`old`) -> encrypt (`new`)
/// into `NAME.reencrypt`; returns the new stored bytes' digest. Nothing is committed unless
/// the old bytes matched their manifest to the end.
async fn stage(
    sink: &dyn Sink,
    key: &str,
    manifest: &Manifest,
    old: &EncryptionKey,
    old_iterations: u32,
    new: &EncryptionKey,
    new_iterations: u32,
) -> Result<StreamDigest> {
    let staging = staging_key(key);
    let verified = VerifyingReader::new(sink.get(key).await?, Some(manifest.stored_digest()));
    let plain = DecryptReader::new(verified, old, old_iterations);
    let mut encrypted = HashingReader::new(EncryptReader::new(plain, new, new_iterations));
    let mut writer = sink.writer_with(&staging, WriteMode::Overwrite).await?;
    match tokio::io::copy(&mut encrypted, &mut writer).await {
        Ok(_) => {}
        Err(e) => {
            let _ = writer.abort().await;
            return Err(CoreError::Integrity {
                key: key.to_owned(),
                detail: format!(
                    "{e}; it was not re-encrypted (a backup that does not match its manifest is \
                     never signed anew)"
                ),
            });
        }
    }
    writer.commit().await?;
    Ok(encrypted.digest())
}

/// The manifest's attachments, decrypted with `old` and encrypted with `new`.
async fn reencrypt_attachments(
    manifest: &Manifest,
    old: &EncryptionKey,
    old_iterations: u32,
    new: &EncryptionKey,
    new_iterations: u32,
) -> std::result::Result<BTreeMap<String, crate::manifest::EmbeddedAttachment>, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = BTreeMap::new();
    for (name, attachment) in &manifest.attachments {
        let stored = b64
            .decode(&attachment.data)
            .map_err(|e| format!("attachment {name} is not base64: {e}"))?;
        let plain = DecryptReader::new(&stored[..], old, old_iterations);
        let mut again = Vec::new();
        EncryptReader::new(plain, new, new_iterations)
            .take(crate::manifest::MAX_ATTACHMENT_BYTES as u64 + 64)
            .read_to_end(&mut again)
            .await
            .map_err(|e| format!("attachment {name}: {e}"))?;
        out.insert(
            name.clone(),
            crate::manifest::EmbeddedAttachment {
                plain_bytes: attachment.plain_bytes,
                data: b64.encode(&again),
            },
        );
    }
    Ok(out)
}

/// Steps 3 to 5: the journal `json` (the new manifest) is written; put the new bytes and the
/// new manifest in place and clean up. Safe to repeat.
async fn finish(sink: &dyn Sink, key: &str, json: &Bytes, staged: bool) -> Result<()> {
    let manifest_key = manifest_key_for(key);
    if sink
        .get_bytes(&manifest_key, MANIFEST_SIZE_LIMIT)
        .await
        .ok()
        .as_ref()
        != Some(json)
    {
        delete_if_present(sink, &manifest_key).await?;
        if staged {
            sink.copy(&staging_key(key), key).await?;
            // Under Object Lock the new bytes are locked like a new backup.
            sink.retain(key).await?;
        }
        sink.put_with(&manifest_key, json.clone(), WriteMode::Retained)
            .await?;
    }
    refresh_latest_copy(sink, key, json).await?;
    delete_if_present(sink, &journal_key(key)).await?;
    delete_if_present(sink, &staging_key(key)).await?;
    Ok(())
}

/// A `latest/` copy of `key` (if there is one) gets the new bytes and manifest: manifest away,
/// bytes, manifest.
async fn refresh_latest_copy(sink: &dyn Sink, key: &str, json: &Bytes) -> Result<()> {
    let Some((folder, file)) = key.rsplit_once('/') else {
        return Ok(());
    };
    let copy = format!("{folder}/{}/{file}", crate::layout::LATEST);
    if !exists(sink, &copy).await {
        return Ok(());
    }
    delete_if_present(sink, &manifest_key_for(&copy)).await?;
    sink.copy(key, &copy).await?;
    sink.put(&manifest_key_for(&copy), json.clone()).await?;
    Ok(())
}

async fn exists(sink: &dyn Sink, key: &str) -> bool {
    sink.head(key).await.is_ok()
}

async fn delete_if_present(sink: &dyn Sink, key: &str) -> Result<()> {
    match sink.delete(key).await {
        Ok(()) | Err(StorageError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Finishes the re-encryptions of `kind` on `sink` that a killed run left (their journals).
async fn resume(
    sink: &dyn Sink,
    kind: BackupKind,
    ring: &Keyring,
    dry_run: bool,
    report: &mut ReencryptReport,
) -> Result<()> {
    let prefix = kind.prefix();
    let objects = sink.list(&prefix).await?;
    let journal_suffix = format!("{REENCRYPT_SUFFIX}{MANIFEST_SUFFIX}");
    for object in &objects {
        let direct = !object.key[prefix.len()..].contains('/');
        // A claim of a killed re-encryption without a journal (this run holds the destination's
        // marker, so no other re-encryption is running): the backup was never touched.
        if let Some(key) = object.key.strip_suffix(CLAIM_SUFFIX).filter(|_| direct) {
            if !dry_run && !exists(sink, &journal_key(key)).await {
                remove_own_claim(sink, key).await;
            }
            continue;
        }
        let Some(key) = object.key.strip_suffix(&journal_suffix).filter(|_| direct) else {
            // A staged copy without a journal: the run died before its journal; the backup
            // itself was never touched.
            if let Some(key) = object.key.strip_suffix(REENCRYPT_SUFFIX).filter(|_| direct) {
                if !dry_run && !exists(sink, &journal_key(key)).await {
                    delete_if_present(sink, &object.key).await?;
                    remove_own_claim(sink, key).await;
                }
            }
            continue;
        };
        let error = if dry_run {
            None
        } else {
            resume_one(sink, key, ring)
                .await
                .err()
                .map(|e| e.to_string())
        };
        report.resumed.push(Resumed {
            destination: sink.describe(),
            key: key.to_owned(),
            error,
        });
    }
    Ok(())
}

async fn resume_one(sink: &dyn Sink, key: &str, ring: &Keyring) -> Result<()> {
    let journal = journal_key(key);
    let bytes = sink.get_bytes(&journal, MANIFEST_SIZE_LIMIT).await?;
    // Only a journal signed by a key at hand is trusted to finish anything.
    let (manifest, _) = Manifest::parse_verified_by(key, &journal, &bytes, ring)?;
    if !manifest.describes(key) {
        return Err(CoreError::ManifestInvalid {
            key: journal,
            reason: format!("it describes {:?}", manifest.object_key),
        });
    }
    let staged = manifest.encryption.is_some();
    if staged && !exists(sink, &staging_key(key)).await {
        // Only possible once the new manifest is in place (the staged copy goes last).
        let current = sink
            .get_bytes(&manifest_key_for(key), MANIFEST_SIZE_LIMIT)
            .await;
        if current.ok().as_ref() != Some(&bytes) {
            return Err(CoreError::Integrity {
                key: key.to_owned(),
                detail: format!(
                    "its re-encryption journal {journal} remains but the staged copy is gone; \
                     check the backup with `restore-database --file {key} --dry-run` (or the \
                     restore command of its kind) before deleting the journal by hand"
                ),
            });
        }
    }
    finish(sink, key, &bytes, staged).await?;
    remove_own_claim(sink, key).await;
    Ok(())
}

/// Removes the claim on `key` if a re-encryption made it (never a backup's).
async fn remove_own_claim(sink: &dyn Sink, key: &str) {
    let claim = claim_key_for(key);
    if let Ok(body) = sink.get_bytes(&claim, 4096).await {
        let ours = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("purpose").and_then(|p| p.as_str()).map(str::to_owned))
            .is_some_and(|p| p == "reencrypt");
        if ours {
            let _ = sink.delete(&claim).await;
        }
    }
}

/// The marker of a run on a destination ([`REENCRYPT_RUN_KEY`]).
struct RunMarker {
    body: Bytes,
}

impl RunMarker {
    async fn take(sink: &dyn Sink) -> Result<Self> {
        let body = crate::marker::body(None, Utc::now());
        match crate::marker::take(sink, REENCRYPT_RUN_KEY, &body, None).await? {
            Ok(()) => Ok(Self { body }),
            Err(held) => Err(CoreError::Config(format!(
                "another backup-key reencrypt holds {} ({}): one run at a time; if that run is \
                 not running any more (it ran on another host, or was killed), delete \
                 {REENCRYPT_RUN_KEY} there and run again",
                sink.describe(),
                held.holder
            ))),
        }
    }

    async fn release(self, sink: &dyn Sink) {
        crate::marker::release(sink, REENCRYPT_RUN_KEY, &self.body).await;
    }
}
