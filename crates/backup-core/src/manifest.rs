//! The manifest: `NAME.manifest.json`, written after the object itself as its commit marker.
//!
//! It records what the backup is, how it was made and how to check it: sizes, the SHA-256 of the
//! stored bytes, and an HMAC-SHA256 over all of it with a key derived from the encryption key.
//! The HMAC is computed over the canonical JSON of the manifest without its `hmac` field
//! (object keys sorted, no whitespace), so fields added by later versions are covered too.

use backup_crypto::{EncryptionKey, KeyId, Keyring, StretchedMacKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compression::Compression;
use crate::error::{CoreError, Result};
use crate::hashing::StreamDigest;
use crate::layout::BackupKind;
use crate::source::SourceFacts;

/// The manifest format this version writes.
/// Version 3 records a key id derived from the manifest's stretched MAC key (different in
/// every manifest, see [`backup_crypto::KeyId`]); version 2 signs with a stretched MAC key
/// ([`MacKdf`]) and records the key's fixed-salt label; version 1 manifests (an HMAC under a
/// key derived from the passphrase without stretching) still verify.
pub const MANIFEST_FORMAT_VERSION: u32 = 3;

/// The KDF name recorded for the stretched manifest MAC key.
pub const MAC_KDF_NAME: &str = "pbkdf2-hmac-sha256";

/// How the MAC key of a (version 2) manifest is derived from the passphrase: recorded in the
/// manifest, and covered by its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacKdf {
    /// Always [`MAC_KDF_NAME`].
    pub kdf: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Random salt of this manifest, lowercase hex.
    pub salt: String,
    /// Id of the signing key derived from the stretched MAC key (version 3; see
    /// [`backup_crypto::StretchedMacKey::key_id`]). `None` in version 2 manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Largest manifest accepted when reading (a manifest is a few hundred bytes, or some
/// kilobytes with attachments).
pub const MANIFEST_SIZE_LIMIT: u64 = 8 * 1024 * 1024;

/// The most stored (compressed, encrypted) bytes all attachments of one backup may take; their
/// base64 text stays well under the largest manifest read (8 MiB).
pub const MAX_ATTACHMENT_BYTES: usize = 4 * 1024 * 1024;

/// A side payload of the backup ([`crate::Attachment`]), embedded in the manifest: compressed
/// and encrypted like the object (the manifest's `compression` and `encryption`), base64. The
/// manifest's HMAC covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedAttachment {
    /// Size of the plain bytes.
    pub plain_bytes: u64,
    /// The stored bytes (compressed, then encrypted), standard base64.
    pub data: String,
}

/// How the stored bytes were encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Cipher name, `aes-256-cbc`.
    pub cipher: String,
    /// Key derivation, `pbkdf2-hmac-sha256`.
    pub kdf: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Fingerprint of the key (never the key).
    pub key_id: String,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format_version: u32,
    /// Kind of backup.
    pub kind: BackupKind,
    /// Key of the object this manifest describes.
    pub object_key: String,
    /// When the backup started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the object was committed (UTC).
    pub finished_at: DateTime<Utc>,
    /// Facts about the source (server version, database, ...).
    pub source: SourceFacts,
    /// Compression applied before encryption.
    pub compression: Compression,
    /// Encryption, or `None` for a plain object.
    pub encryption: Option<EncryptionInfo>,
    /// Bytes produced by the source.
    pub raw_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// Name and version of the tool that wrote the backup.
    pub tool: String,
    /// Threads that compressed the stream, when more than one did (zstd's workers, each
    /// holding about three jobs of [`crate::compression::ZSTD_JOB_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_threads: Option<u32>,
    /// Side payloads by name (e.g. `globals.sql`: the PostgreSQL cluster's roles).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attachments: std::collections::BTreeMap<String, EmbeddedAttachment>,
    /// How the MAC key was derived (version 2); `None` in version 1 manifests and unsigned
    /// ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_kdf: Option<MacKdf>,
    /// HMAC-SHA256 of the canonical manifest without this field, lowercase hex. `None` when the
    /// backup was made without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
}

impl Manifest {
    /// The digest the stored object must match.
    pub fn stored_digest(&self) -> StreamDigest {
        StreamDigest {
            size: self.stored_bytes,
            sha256: self.sha256.clone(),
        }
    }

    /// The key id the object was encrypted with, if encrypted.
    pub fn key_id(&self) -> Option<&str> {
        self.encryption.as_ref().map(|e| e.key_id.as_str())
    }

    /// Signs the manifest with `key` (format 3: a stretched MAC key with a fresh random salt,
    /// recorded in `mac_kdf` with the key id derived from it) and returns it as pretty JSON
    /// bytes. An encrypted manifest's `encryption.key_id` becomes that id too: the signing key
    /// is the encryption key. Without a key the manifest is unsigned.
    pub fn to_signed_json(&mut self, key: Option<&EncryptionKey>) -> Result<Vec<u8>> {
        self.hmac = None;
        self.mac_kdf = None;
        if let Some(key) = key {
            use ring::rand::SecureRandom;
            let mut salt = [0u8; 16];
            ring::rand::SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| CoreError::Config("no system randomness for a salt".to_owned()))?;
            let iterations = backup_crypto::MANIFEST_MAC_ITERATIONS;
            let mac_key = key.stretched_mac_key(&salt, iterations).ok_or_else(|| {
                CoreError::Config(format!("{iterations} MAC iterations are out of range"))
            })?;
            let key_id = mac_key.key_id().to_string();
            self.format_version = self.format_version.max(3);
            if let Some(info) = &mut self.encryption {
                info.key_id.clone_from(&key_id);
            }
            self.mac_kdf = Some(MacKdf {
                kdf: MAC_KDF_NAME.to_owned(),
                iterations,
                salt: hex::encode(salt),
                key_id: Some(key_id),
            });
            let canonical = canonical_bytes(&serde_json::to_value(&*self).map_err(invalid)?)?;
            self.hmac = Some(mac_key.sign(&canonical));
        }
        let mut json = serde_json::to_vec_pretty(self).map_err(invalid)?;
        json.push(b'\n');
        Ok(json)
    }

    /// Parses manifest JSON read from `manifest_key`, without checking the HMAC.
    pub fn parse(manifest_key: &str, bytes: &[u8]) -> Result<Self> {
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|e| CoreError::ManifestInvalid {
                key: manifest_key.to_owned(),
                reason: e.to_string(),
            })?;
        if manifest.format_version > MANIFEST_FORMAT_VERSION {
            return Err(CoreError::ManifestInvalid {
                key: manifest_key.to_owned(),
                reason: format!(
                    "format version {} is newer than this tool understands ({}); upgrade the tool",
                    manifest.format_version, MANIFEST_FORMAT_VERSION
                ),
            });
        }
        Ok(manifest)
    }

    /// Parses manifest JSON and verifies its HMAC with `key`.
    ///
    /// Fields this version does not know are covered by the HMAC too, because it is computed
    /// over the JSON as stored rather than over the parsed struct.
    pub fn parse_verified(manifest_key: &str, bytes: &[u8], key: &EncryptionKey) -> Result<Self> {
        let manifest = Self::parse(manifest_key, bytes)?;
        let (canonical, mac) = signed_parts(manifest_key, bytes)?;
        let verified = match &manifest.mac_kdf {
            // Version 1: the unstretched subkey.
            None => key.verify_manifest_mac(&canonical, &mac),
            Some(params) => stretched_key(manifest_key, params, key)?.verify(&canonical, &mac),
        };
        if !verified {
            return Err(CoreError::ManifestTampered {
                key: manifest_key.to_owned(),
            });
        }
        Ok(manifest)
    }

    /// Parses manifest JSON of the backup `object`, finds which key of `ring` signed it and
    /// verifies its HMAC with that key; returns the manifest and the key (which also decrypts
    /// the object when it is encrypted).
    ///
    /// A version 3 manifest names its key by an id derived from its own salt: each key of the
    /// ring is stretched with that salt until one gives the id (the current key first, so the
    /// usual case costs one derivation). Older manifests name encrypted backups' keys by their
    /// fixed-salt label; their plain backups' signatures are tried with each key.
    pub fn parse_verified_by<'a>(
        object: &str,
        manifest_key: &str,
        bytes: &[u8],
        ring: &'a Keyring,
    ) -> Result<(Self, &'a EncryptionKey)> {
        let manifest = Self::parse(manifest_key, bytes)?;
        let tampered = || CoreError::ManifestTampered {
            key: manifest_key.to_owned(),
        };
        let not_available = |needed: &str| CoreError::KeyNotAvailable {
            key: object.to_owned(),
            needed: needed.to_owned(),
            available: ring
                .keys()
                .map(|k| k.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let recorded = manifest.mac_kdf.as_ref().and_then(|p| p.key_id.as_deref());
        match (manifest.mac_kdf.as_ref(), recorded) {
            (Some(params), Some(recorded)) => {
                if manifest.key_id().is_some_and(|id| id != recorded) {
                    return Err(CoreError::ManifestInvalid {
                        key: manifest_key.to_owned(),
                        reason: "its encryption key id differs from its signing key id".to_owned(),
                    });
                }
                let (canonical, mac) = signed_parts(manifest_key, bytes)?;
                for key in ring.keys() {
                    let mac_key = stretched_key(manifest_key, params, key)?;
                    if mac_key.key_id().as_str() == recorded {
                        return if mac_key.verify(&canonical, &mac) {
                            Ok((manifest, key))
                        } else {
                            Err(tampered())
                        };
                    }
                }
                Err(not_available(recorded))
            }
            _ => match manifest.key_id() {
                Some(label) => {
                    let key = ring
                        .keys()
                        .find(|k| k.id().as_str() == label)
                        .ok_or_else(|| not_available(label))?;
                    Ok((Self::parse_verified(manifest_key, bytes, key)?, key))
                }
                None => ring
                    .keys()
                    .find_map(|k| {
                        Self::parse_verified(manifest_key, bytes, k)
                            .ok()
                            .map(|m| (m, k))
                    })
                    .ok_or_else(tampered),
            },
        }
    }

    /// Whether this manifest belongs to the object stored under `key`. Only the file names are
    /// compared, so a backup copied with its manifest to another folder (or bucket prefix)
    /// still matches; the SHA-256 binds the manifest to the bytes in any case.
    pub fn describes(&self, key: &str) -> bool {
        let file = |k: &str| k.rsplit('/').next().unwrap_or(k).to_owned();
        file(&self.object_key) == file(key)
    }

    /// Whether `key` is the key this backup's id names.
    pub fn encrypted_with(&self, key: &KeyId) -> bool {
        self.key_id() == Some(key.as_str())
    }
}

/// The canonical bytes a manifest's HMAC covers (the stored JSON without `hmac`) and the MAC.
fn signed_parts(manifest_key: &str, bytes: &[u8]) -> Result<(Vec<u8>, String)> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CoreError::ManifestInvalid {
            key: manifest_key.to_owned(),
            reason: e.to_string(),
        })?;
    let mac = value
        .as_object_mut()
        .and_then(|map| map.remove("hmac"))
        .and_then(|v| v.as_str().map(str::to_owned));
    let Some(mac) = mac else {
        return Err(CoreError::ManifestTampered {
            key: manifest_key.to_owned(),
        });
    };
    Ok((canonical_bytes(&value)?, mac))
}

/// The stretched MAC key `params` ask for, after checking them (a forged manifest must not
/// make verification take hours).
fn stretched_key(
    manifest_key: &str,
    params: &MacKdf,
    key: &EncryptionKey,
) -> Result<StretchedMacKey> {
    let invalid_params = |reason: String| CoreError::ManifestInvalid {
        key: manifest_key.to_owned(),
        reason,
    };
    if params.kdf != MAC_KDF_NAME {
        return Err(invalid_params(format!(
            "unknown MAC key derivation {:?}",
            params.kdf
        )));
    }
    let salt = hex::decode(&params.salt)
        .map_err(|_| invalid_params("its MAC salt is not hex".to_owned()))?;
    key.stretched_mac_key(&salt, params.iterations)
        .ok_or_else(|| {
            invalid_params(format!(
                "{} MAC iterations are outside {:?}",
                params.iterations,
                backup_crypto::MANIFEST_MAC_ITERATIONS_RANGE
            ))
        })
}

/// Compact JSON with object keys sorted (serde_json's map is ordered by key).
fn canonical_bytes(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(invalid)
}

fn invalid(e: serde_json::Error) -> CoreError {
    CoreError::ManifestInvalid {
        key: "(being written)".to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use chrono::TimeZone;

    /// A plausible signed-able manifest for `object_key`, encrypted with `key`.
    pub(crate) fn manifest_for(object_key: &str, key: &EncryptionKey) -> Manifest {
        let t = Utc.with_ymd_and_hms(2024, 1, 15, 2, 0, 0).unwrap();
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            kind: BackupKind::DATABASE,
            object_key: object_key.into(),
            started_at: t,
            finished_at: t,
            source: SourceFacts {
                source_type: "postgresql".into(),
                server_version: Some("15.4".into()),
                database: Some("app".into()),
                details: Default::default(),
            },
            compression: Compression::gzip(),
            encryption: Some(EncryptionInfo {
                cipher: "aes-256-cbc".into(),
                kdf: "pbkdf2-hmac-sha256".into(),
                iterations: 10_000,
                key_id: key.id().to_string(),
            }),
            raw_bytes: 1000,
            stored_bytes: 400,
            sha256: "ab".repeat(32),
            tool: "backup 0.1.0".into(),
            compression_threads: None,
            attachments: Default::default(),
            hmac: None,
            mac_kdf: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &EncryptionKey) -> Manifest {
        tests_support::manifest_for("database/randevubu_backup_20240115_020000.sql.gz.enc", key)
    }

    #[test]
    fn signed_manifest_verifies_and_round_trips() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        let mut m = sample(&key);
        let json = m.to_signed_json(Some(&key)).unwrap();
        let parsed = Manifest::parse_verified("m", &json, &key).unwrap();
        assert_eq!(parsed, m);
    }

    fn ring_of(passphrases: &[&str]) -> Keyring {
        let mut keys = passphrases
            .iter()
            .map(|p| EncryptionKey::from_passphrase(*p).unwrap());
        let mut ring = Keyring::new(keys.next().unwrap());
        keys.for_each(|k| ring.add(k));
        ring
    }

    #[test]
    fn the_key_id_of_a_manifest_is_derived_from_its_salt_and_links_nothing() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        let (mut a, mut b) = (sample(&key), sample(&key));
        a.to_signed_json(Some(&key)).unwrap();
        b.to_signed_json(Some(&key)).unwrap();
        let id_a = a.key_id().unwrap().to_owned();
        assert_eq!(a.mac_kdf.as_ref().unwrap().key_id.as_deref(), Some(&*id_a));
        assert!(id_a.parse::<KeyId>().is_ok());
        // Not the fixed-salt label (precomputable), and not the same in two manifests.
        assert!(!a.encrypted_with(key.id()));
        assert_ne!(Some(&*id_a), b.key_id());
    }

    #[test]
    fn the_signing_key_is_found_in_a_keyring_by_derivation() {
        let ring = ring_of(&["current", "older", "oldest"]);
        let oldest = ring.keys().nth(2).unwrap().clone();
        let mut m = sample(&oldest);
        let json = m.to_signed_json(Some(&oldest)).unwrap();
        let (parsed, found) = Manifest::parse_verified_by("o", "m", &json, &ring).unwrap();
        assert_eq!(found.id(), oldest.id());
        assert_eq!(parsed, m);

        // A plain backup's manifest is found the same way.
        let mut plain = sample(&oldest);
        plain.encryption = None;
        let json = plain.to_signed_json(Some(&oldest)).unwrap();
        let (_, found) = Manifest::parse_verified_by("o", "m", &json, &ring).unwrap();
        assert_eq!(found.id(), oldest.id());

        // A key not in the ring: named by the manifest's id, with what was loaded.
        let stranger = EncryptionKey::from_passphrase("stranger").unwrap();
        let mut m = sample(&stranger);
        let json = m.to_signed_json(Some(&stranger)).unwrap();
        let err = Manifest::parse_verified_by("o", "m", &json, &ring).unwrap_err();
        assert!(matches!(err, CoreError::KeyNotAvailable { .. }), "{err}");
        assert!(err.to_string().contains(m.key_id().unwrap()), "{err}");

        // A key id rewritten to another key's: that key is found but the MAC refuses it.
        let current = ring.current().clone();
        let mut signed_by_current = sample(&current);
        signed_by_current.to_signed_json(Some(&current)).unwrap();
        let mut m = sample(&oldest);
        let json = m.to_signed_json(Some(&oldest)).unwrap();
        let their_id = m.key_id().unwrap().to_owned();
        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let current_id = signed_by_current.key_id().unwrap();
        let salt = signed_by_current.mac_kdf.as_ref().unwrap().salt.clone();
        value["mac_kdf"]["key_id"] = current_id.into();
        value["mac_kdf"]["salt"] = salt.into();
        value["encryption"]["key_id"] = current_id.into();
        let json = serde_json::to_vec(&value).unwrap();
        assert_ne!(their_id, current_id);
        assert!(matches!(
            Manifest::parse_verified_by("o", "m", &json, &ring),
            Err(CoreError::ManifestTampered { .. })
        ));

        // Encryption and signing ids that disagree are not something this tool writes.
        let mut m = sample(&current);
        let json = m.to_signed_json(Some(&current)).unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        value["encryption"]["key_id"] = "0123456789abcdef".into();
        let json = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Manifest::parse_verified_by("o", "m", &json, &ring),
            Err(CoreError::ManifestInvalid { .. })
        ));
    }

    #[test]
    fn version_2_manifests_still_verify_by_the_key_label_they_record() {
        // A manifest as version 2 wrote it: the stretched MAC key, the key's fixed-salt label,
        // no key id in mac_kdf.
        let ring = ring_of(&["current", "older"]);
        let older = ring.keys().nth(1).unwrap().clone();
        let mut v2 = sample(&older);
        v2.format_version = 2;
        let salt = [7u8; 16];
        let iterations = backup_crypto::MANIFEST_MAC_ITERATIONS;
        v2.mac_kdf = Some(MacKdf {
            kdf: MAC_KDF_NAME.to_owned(),
            iterations,
            salt: hex::encode(salt),
            key_id: None,
        });
        let mut value = serde_json::to_value(&v2).unwrap();
        value.as_object_mut().unwrap().remove("hmac");
        let mac_key = older.stretched_mac_key(&salt, iterations).unwrap();
        value["hmac"] = mac_key.sign(&canonical_bytes(&value).unwrap()).into();
        let json = serde_json::to_vec(&value).unwrap();
        let (parsed, found) = Manifest::parse_verified_by("o", "m", &json, &ring).unwrap();
        assert_eq!(found.id(), older.id());
        assert!(parsed.encrypted_with(older.id()));
        // Without that key: the label it records is named.
        let current_only = ring_of(&["current"]);
        let err = Manifest::parse_verified_by("o", "m", &json, &current_only).unwrap_err();
        assert!(err.to_string().contains(older.id().as_str()), "{err}");
    }

    #[test]
    fn manifests_are_signed_with_a_stretched_key_and_a_fresh_salt_each() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        let mut a = sample(&key);
        let mut b = sample(&key);
        let json_a = a.to_signed_json(Some(&key)).unwrap();
        let json_b = b.to_signed_json(Some(&key)).unwrap();
        let (ka, kb) = (a.mac_kdf.clone().unwrap(), b.mac_kdf.clone().unwrap());
        assert_eq!(a.format_version, 3);
        assert_eq!(ka.kdf, MAC_KDF_NAME);
        assert!(ka.iterations >= backup_crypto::MANIFEST_MAC_ITERATIONS);
        assert_eq!(ka.salt.len(), 32);
        assert_ne!(ka.salt, kb.salt, "salts must be random");
        assert_ne!(a.hmac, b.hmac);
        Manifest::parse_verified("a", &json_a, &key).unwrap();
        Manifest::parse_verified("b", &json_b, &key).unwrap();
        let other = EncryptionKey::from_passphrase("secret two").unwrap();
        assert!(matches!(
            Manifest::parse_verified("a", &json_a, &other),
            Err(CoreError::ManifestTampered { .. })
        ));
    }

    #[test]
    fn version_1_manifests_still_verify_and_cannot_be_made_from_version_2_ones() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        // A manifest as version 1 wrote it: HMAC under the unstretched subkey, no mac_kdf.
        let mut v1 = sample(&key);
        v1.format_version = 1;
        let mut value = serde_json::to_value(&v1).unwrap();
        value.as_object_mut().unwrap().remove("hmac");
        let mac = key.manifest_mac(&canonical_bytes(&value).unwrap());
        value["hmac"] = mac.into();
        let json = serde_json::to_vec(&value).unwrap();
        let parsed = Manifest::parse_verified("v1", &json, &key).unwrap();
        assert_eq!(parsed.format_version, 1);

        // Dropping mac_kdf from a version 2 manifest does not turn it into a valid version 1.
        let signed = sample(&key).to_signed_json(Some(&key)).unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        value.as_object_mut().unwrap().remove("mac_kdf");
        let json = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Manifest::parse_verified("m", &json, &key),
            Err(CoreError::ManifestTampered { .. })
        ));
    }

    #[test]
    fn a_manifest_asking_for_absurd_mac_iterations_is_refused_at_once() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        let signed = sample(&key).to_signed_json(Some(&key)).unwrap();
        for iterations in [1u32, 4_000_000_000] {
            let mut value: serde_json::Value = serde_json::from_slice(&signed).unwrap();
            value["mac_kdf"]["iterations"] = iterations.into();
            let json = serde_json::to_vec(&value).unwrap();
            // Refused by the range check, before any derivation (4e9 iterations would take
            // hours): the error is the range's, not a MAC mismatch.
            let err = Manifest::parse_verified("m", &json, &key).unwrap_err();
            assert!(matches!(err, CoreError::ManifestInvalid { .. }), "{err}");
            assert!(err.to_string().contains("iterations"), "{err}");
        }
    }

    #[test]
    fn any_change_to_a_signed_manifest_is_detected() {
        let key = EncryptionKey::from_passphrase("secret one").unwrap();
        let json = sample(&key).to_signed_json(Some(&key)).unwrap();
        let text = String::from_utf8(json).unwrap();
        let tampered = text.replace("\"stored_bytes\": 400", "\"stored_bytes\": 401");
        assert_ne!(tampered, text);
        assert!(matches!(
            Manifest::parse_verified("m", tampered.as_bytes(), &key),
            Err(CoreError::ManifestTampered { .. })
        ));
        // A field unknown to this version is covered by the HMAC as well.
        let added = text.replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            Manifest::parse_verified("m", added.as_bytes(), &key),
            Err(CoreError::ManifestTampered { .. })
        ));
        let other = EncryptionKey::from_passphrase("secret two").unwrap();
        assert!(matches!(
            Manifest::parse_verified("m", text.as_bytes(), &other),
            Err(CoreError::ManifestTampered { .. })
        ));
    }

    #[test]
    fn unsigned_or_garbage_manifests_are_refused() {
        let key = EncryptionKey::from_passphrase("k").unwrap();
        let unsigned = sample(&key).to_signed_json(None).unwrap();
        assert!(matches!(
            Manifest::parse_verified("m", &unsigned, &key),
            Err(CoreError::ManifestTampered { .. })
        ));
        for garbage in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"format_version\": 1}",
            &[0xff; 10],
        ] {
            assert!(matches!(
                Manifest::parse("m", garbage),
                Err(CoreError::ManifestInvalid { .. })
            ));
        }
    }

    #[test]
    fn newer_format_versions_are_refused_with_advice() {
        let key = EncryptionKey::from_passphrase("k").unwrap();
        let mut m = sample(&key);
        m.format_version = 99;
        let json = m.to_signed_json(Some(&key)).unwrap();
        let err = Manifest::parse("m", &json).unwrap_err().to_string();
        assert!(err.contains("upgrade"), "{err}");
    }
}
