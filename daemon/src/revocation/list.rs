//! The revocation list as verifiers read it: a canonical JSON document signed by the
//! Keyward CA key.

use crate::keys::KeyRecord;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One revoked key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedVersion {
    /// Key name.
    pub key: String,
    /// Version number.
    pub version: u32,
    /// SHA-256 of the version's DER SubjectPublicKeyInfo, hex.
    pub fingerprint: String,
    /// key-compromise, superseded or cessation.
    pub reason: String,
    /// RFC 3339.
    pub revoked_at: String,
    /// RFC 3339, when known.
    pub compromised_since: Option<String>,
}

/// The list. Serialised through `serde_json::Value`, whose keys are sorted: the bytes
/// signed are the canonical JSON (sorted keys, no whitespace).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationList {
    /// The CA's common name.
    pub issuer: String,
    /// SHA-256 of the CA's DER SubjectPublicKeyInfo, hex: the key that signs the list.
    pub issuer_fingerprint: String,
    /// Strictly increasing per issuer: a verifier refuses a lower one than it has seen.
    pub sequence: u64,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339: a verifier refuses the list after this time.
    pub next_update: String,
    /// Revoked key versions, by key name and version.
    pub entries: Vec<RevokedVersion>,
    /// Revoked single signatures, by key name, version and image digest.
    #[serde(default)]
    pub signatures: Vec<RevokedSignatureEntry>,
    /// SHA-256 (hex) of the canonical JSON of the list with the sequence before this
    /// one: a verifier that accepted that list checks that this one follows it. Empty
    /// on the first list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous: String,
    /// The audit chain's head when the list was issued (its last durable record): an
    /// audit export that ends before it, or differs at it, was cut or rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<ListedAuditHead>,
}

/// The audit head a list names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedAuditHead {
    /// The record's sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// One revoked signature: what key version signed which image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSignatureEntry {
    /// Key name.
    pub key: String,
    /// Version number.
    pub version: u32,
    /// The image manifest digest.
    pub digest: String,
    /// key-compromise, superseded or cessation.
    pub reason: String,
    /// RFC 3339.
    pub revoked_at: String,
}

/// The list's entries for revoked signatures.
pub fn signature_entries(
    all: &[super::signatures::RevokedSignature],
) -> Vec<RevokedSignatureEntry> {
    all.iter()
        .map(|r| RevokedSignatureEntry {
            key: r.key.clone(),
            version: r.version,
            digest: r.digest.clone(),
            reason: r.reason.as_str().to_string(),
            revoked_at: rfc3339(r.revoked_at),
        })
        .collect()
}

use crate::keys::rfc3339;

/// Every revoked version of `keys`, sorted by key name and version.
pub fn entries(keys: &[std::sync::Arc<KeyRecord>]) -> Vec<RevokedVersion> {
    let mut out: Vec<RevokedVersion> = keys
        .iter()
        .flat_map(|k| {
            k.versions.iter().filter_map(|v| {
                let r = v.revocation.as_ref()?;
                Some(RevokedVersion {
                    key: k.name.clone(),
                    version: v.version,
                    fingerprint: v.fingerprint.clone(),
                    reason: r.reason.as_str().to_string(),
                    revoked_at: rfc3339(r.revoked_at),
                    compromised_since: r.compromised_since.map(rfc3339),
                })
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.key, a.version).cmp(&(&b.key, b.version)));
    out
}

impl RevocationList {
    /// The canonical JSON: the exact bytes the CA signs.
    pub fn canonical(&self) -> Result<String, serde_json::Error> {
        serde_json::to_value(self).and_then(|v| serde_json::to_string(&v))
    }

    /// When it was issued, parsed back.
    pub fn issued(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.issued_at, &Rfc3339).ok()
    }

    /// Builds a list.
    pub fn new(
        issuer: (&str, &str),
        sequence: u64,
        now: OffsetDateTime,
        validity: time::Duration,
        entries: Vec<RevokedVersion>,
        signatures: Vec<RevokedSignatureEntry>,
    ) -> Self {
        Self {
            issuer: issuer.0.to_string(),
            issuer_fingerprint: issuer.1.to_string(),
            sequence,
            issued_at: rfc3339(now),
            next_update: rfc3339(now + validity),
            entries,
            signatures,
            previous: String::new(),
            audit_head: None,
        }
    }

    /// What of `earlier` this list would lose, in words; `None` when it keeps every
    /// entry (a version's compromise may only move earlier, its reason only become
    /// key-compromise) and every revoked signature.
    pub fn drops_from(&self, earlier: &RevocationList) -> Option<String> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        for old in &earlier.entries {
            let Some(new) = self
                .entries
                .iter()
                .find(|e| e.key == old.key && e.version == old.version)
            else {
                return Some(format!(
                    "key {:?} v{} (revoked at {}) is missing",
                    old.key, old.version, old.revoked_at
                ));
            };
            let reason_kept = new.reason == old.reason || new.reason == "key-compromise";
            let since_kept = match (parse(&old.compromised_since), parse(&new.compromised_since)) {
                (Some(o), Some(n)) => n <= o,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if new.fingerprint != old.fingerprint || !reason_kept || !since_kept {
                return Some(format!(
                    "key {:?} v{} would lose what was recorded of its revocation",
                    old.key, old.version
                ));
            }
        }
        for old in &earlier.signatures {
            let kept = self
                .signatures
                .iter()
                .any(|s| s.key == old.key && s.version == old.version && s.digest == old.digest);
            if !kept {
                return Some(format!(
                    "the revoked signature of {} by key {:?} v{} is missing",
                    old.digest, old.key, old.version
                ));
            }
        }
        None
    }
}

/// The CRL entries of every revoked version of `keys`: each certificate it had (its
/// current one and those renewed before), when and why.
pub fn crl_entries(keys: &[std::sync::Arc<KeyRecord>]) -> Vec<crate::pki::CrlEntry> {
    keys.iter()
        .flat_map(|k| {
            k.versions.iter().flat_map(|v| {
                let r = v.revocation.as_ref();
                let certificates =
                    r.map(|_| v.earlier_certificates.iter().chain([&v.certificate_pem]));
                certificates.into_iter().flatten().filter_map(move |pem| {
                    let r = r?;
                    Some(crate::pki::CrlEntry {
                        certificate_pem: pem.clone(),
                        revoked_at: r.revoked_at,
                        reason: r.reason,
                        invalidity: r.compromised_since,
                    })
                })
            })
        })
        .collect()
}
