//! Signing files (`keyward sign-blob`) with blob keys: the signature is returned only
//! once the signature ledger holds it (digest, requester, key version, time, and the
//! file name and size the requester gave).

use super::ledger::{LedgerEntry, SignatureLedger};
use crate::authz::SignPermit;
use crate::hsm::{Algorithm, DigestAlgorithm, SignInput};
use crate::keys::{KeyError, KeyRegistry};
use std::sync::Arc;

/// What the requester says it signs (shown to approvers, kept in the ledger).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Described {
    /// File name as given (no path is trusted or opened).
    #[serde(default)]
    pub file_name: String,
    /// Size in bytes as given.
    #[serde(default)]
    pub size: u64,
}

/// A blob signature.
#[derive(Debug, Clone)]
pub struct BlobSigned {
    /// Key version that signed.
    pub version: u32,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The digest algorithm the signature covers (empty for Ed25519 messages).
    pub digest_algorithm: String,
    /// The store write token of its ledger entry: durable once this token is.
    pub ledger_write: u64,
}

/// Signs blobs and records them.
#[derive(Debug)]
pub struct BlobSigner {
    keys: Arc<KeyRegistry>,
    ledger: SignatureLedger,
}

/// `algorithm:hex` of what was signed, for the ledger and the audit log.
pub fn ledger_digest(input: &SignInput) -> String {
    match input {
        SignInput::Digest(d, bytes) => format!("{d}:{}", hex::encode(bytes)),
        SignInput::Message(m) => format!("sha256:{}", hex::encode(DigestAlgorithm::Sha256.hash(m))),
    }
}

impl BlobSigner {
    /// A signer over the keys, recording in the ledger.
    pub fn new(keys: Arc<KeyRegistry>, ledger: SignatureLedger) -> Self {
        Self { keys, ledger }
    }

    /// Signs with the permit's key and writes the ledger entry; the caller makes the
    /// entry durable (`BlobSigned::ledger_write`) before it hands the signature out.
    pub async fn sign(
        &self,
        permit: &SignPermit,
        input: SignInput,
        described: &Described,
        request_hash: &str,
    ) -> Result<BlobSigned, KeyError> {
        let mut one = self
            .sign_many(permit, vec![(input, described.clone())], request_hash)
            .await?;
        one.pop().ok_or_else(|| {
            KeyError::InvalidArgument("nothing to sign: send a digest or a message".into())
        })
    }

    /// Signs every item with the permit's key (all or none: the HSM signs them all
    /// before any ledger entry is written) and writes one ledger entry per signature,
    /// in order; the caller makes the last entry's write durable before it hands the
    /// signatures out.
    pub async fn sign_many(
        &self,
        permit: &SignPermit,
        items: Vec<(SignInput, Described)>,
        request_hash: &str,
    ) -> Result<Vec<BlobSigned>, KeyError> {
        let algorithm = permit.key().algorithm;
        let mut inputs = Vec::with_capacity(items.len());
        let mut about = Vec::with_capacity(items.len());
        for (input, described) in items {
            let digest_algorithm = match &input {
                SignInput::Digest(d, _) => d.to_string(),
                SignInput::Message(_) if algorithm == Algorithm::Ed25519 => String::new(),
                SignInput::Message(_) => algorithm.default_digest().to_string(),
            };
            about.push((ledger_digest(&input), digest_algorithm, described));
            inputs.push(input);
        }
        let signatures = self.keys.sign_many(permit, inputs).await?;
        let (version, fingerprint) = (
            permit.version().number(),
            permit.version().fingerprint().to_string(),
        );
        let mut out = Vec::with_capacity(signatures.len());
        for (signature, (digest, digest_algorithm, described)) in signatures.into_iter().zip(about)
        {
            let ledger_write = self.ledger.record_pending(&LedgerEntry {
                kind: "blob".into(),
                registry: String::new(),
                repository: String::new(),
                digest,
                tag: String::new(),
                reference: described.file_name,
                key: permit.key_name().to_string(),
                version,
                fingerprint: fingerprint.clone(),
                time: permit.issued_at(),
                requester: permit.principal().to_string(),
                pushed_to: String::new(),
                size: described.size,
                request_hash: request_hash.to_string(),
                derived_from: String::new(),
            })?;
            out.push(BlobSigned {
                version,
                signature,
                digest_algorithm,
                ledger_write,
            });
        }
        Ok(out)
    }
}
