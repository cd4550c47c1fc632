//! A key's history for verifiers: every version with its fingerprint, state, the time
//! it was in service and its certificate, in one document signed by the Keyward CA, so
//! that a verifier that trusts the CA learns which public keys to trust, and since
//! when, from any copy of it. The signature (ECDSA P-256, DER) covers SHA-256 of the
//! document's canonical JSON: keys sorted, no whitespace, no `signature` field; a
//! verifier re-serialises what it received that way and checks it.

use super::{KeyError, KeyRegistry, VersionState};
use crate::hsm::HsmError;
use crate::store::StoreError;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One version in a key's history.
#[derive(Debug, Serialize)]
pub struct HistoryVersion {
    /// 1, 2, ...
    pub version: u32,
    /// SHA-256 of the public key (DER SubjectPublicKeyInfo), hex.
    pub fingerprint: String,
    /// pending, active, retiring, retired, revoked or destroyed.
    pub state: &'static str,
    /// When it started signing (absent: pending, never signed).
    pub valid_from: Option<String>,
    /// When it stopped signing (absent: it still signs, or never did).
    pub valid_until: Option<String>,
    /// Its code-signing certificate from the Keyward CA, PEM.
    pub certificate: String,
}

/// The document the CA signs.
#[derive(Debug, Serialize)]
pub struct History {
    /// The key's name.
    pub key: String,
    /// When the document was made.
    pub issued_at: String,
    /// Every version, oldest first.
    pub versions: Vec<HistoryVersion>,
}

/// A history and the CA's signature of its bytes.
#[derive(Debug)]
pub struct SignedHistory {
    /// The document, canonical JSON: exactly the bytes the signature covers.
    pub document: String,
    /// DER ECDSA signature by the CA key.
    pub signature: Vec<u8>,
}

fn ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}

impl KeyRegistry {
    /// The key's history, signed by the CA.
    pub async fn history(&self, name: &str) -> Result<SignedHistory, KeyError> {
        let rec = self.get(name)?;
        let versions = rec
            .versions
            .iter()
            .map(|v| HistoryVersion {
                version: v.version,
                fingerprint: v.fingerprint.clone(),
                state: v.state.as_str(),
                valid_from: ts(v.activated_at),
                valid_until: match v.state {
                    VersionState::Pending | VersionState::Active => None,
                    _ => ts(v.in_service_until()),
                },
                certificate: v.certificate_pem.clone(),
            })
            .collect();
        let history = History {
            key: rec.name.clone(),
            issued_at: ts(Some(crate::clock::now())).unwrap_or_default(),
            versions,
        };
        // A `Value` keeps its keys sorted: the canonical form.
        let document = serde_json::to_value(&history)
            .and_then(|v| serde_json::to_string(&v))
            .map_err(|e| KeyError::InvalidArgument(format!("cannot encode the history: {e}")))?;
        let signature = self.ca_sign("sign-history", &document).await?;
        Ok(SignedHistory {
            document,
            signature,
        })
    }

    /// Signs a document with the Keyward CA key: DER ECDSA P-256 over SHA-256 of its
    /// bytes. For what verifiers check offline (key histories, revocation lists).
    pub async fn ca_sign(&self, what: &'static str, document: &str) -> Result<Vec<u8>, KeyError> {
        let ca = self.ca.clone();
        let spki = hex::decode(&ca.public_key).map_err(|e| StoreError::Corrupt {
            key: "meta/ca".into(),
            detail: format!("its public key is not hex: {e}"),
        })?;
        let document = document.as_bytes().to_vec();
        let pool = self.backends.get(&ca.backend)?;
        let signature: Result<Vec<u8>, HsmError> = pool
            .run(what, move |s| {
                crate::pki::instance_key::sign(s, &ca.hsm_id, &spki, &document)
            })
            .await;
        Ok(signature?)
    }
}
