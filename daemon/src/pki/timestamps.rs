//! Keyward's RFC 3161 time-stamping authority: its key generated in the HSM (an
//! instance key, like the audit key), its certificate from the Keyward CA with the
//! critical `timeStamping` extended key usage, and the replies it signs.

use super::tsa::{self, Query, Stamp};
use super::{PkiError, Subject};
use crate::hsm::{HsmError, HsmSession};
use crate::keys::Backends;
use keyward_client::der;
use keyward_client::signature::{KeyKind, key_kind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The TSA's key, as stored in the instance's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TsaKey {
    /// Backend holding it.
    pub backend: String,
    /// Its HSM id.
    pub hsm_id: String,
    /// Its certificate from the Keyward CA, PEM.
    pub certificate_pem: String,
}

impl TsaKey {
    /// Generates the key in `s` and has the CA certify it (the caller destroys the
    /// object if the record cannot be stored).
    pub fn make(
        s: &mut dyn HsmSession,
        backend: String,
        ca: &super::CaRecord,
    ) -> Result<Self, PkiError> {
        // The same kind of key as the CA's: what the backend was found to offer.
        let ca_spki = hex::decode(&ca.public_key).map_err(|e| PkiError::Build(e.to_string()))?;
        let algorithm = super::instance_key::algorithm_of(&ca_spki)?;
        let k = s.generate("tsa", algorithm)?;
        match super::issue(s, ca, Subject::TimeStamping, &k.public_key_der, algorithm) {
            Ok(certificate_pem) => Ok(Self {
                backend,
                hsm_id: k.hsm_id,
                certificate_pem,
            }),
            Err(e) => {
                let _ = s.destroy(&k.hsm_id);
                Err(e)
            }
        }
    }
}

/// Why a time-stamp was not made.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// The query is not one this TSA stamps; the text says why.
    #[error("{0}")]
    BadQuery(String),
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The TSA cannot stamp now (its backend, the random number generator).
    #[error("{0}")]
    Unavailable(String),
}

/// The time-stamping authority.
pub struct Tsa {
    backends: Arc<Backends>,
    key: TsaKey,
    spki: Vec<u8>,
    certificate: Vec<u8>,
    issuer: Vec<u8>,
    certificate_serial: Vec<u8>,
    ca_pem: String,
    ca: Vec<u8>,
}

impl std::fmt::Debug for Tsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsa").finish_non_exhaustive()
    }
}

/// 16 random octets that read as a positive DER INTEGER (and any prefix of them).
fn random_positive() -> Result<[u8; 16], TsaError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| TsaError::Unavailable(format!("the random number generator failed: {e}")))?;
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(b)
}

impl Tsa {
    /// A TSA signing with `key` in its backend; `ca_pem` is the CA above it.
    pub fn new(backends: Arc<Backends>, key: TsaKey, ca_pem: &str) -> Result<Self, PkiError> {
        let build = PkiError::Build;
        Ok(Self {
            certificate: der::pem_der(&key.certificate_pem).map_err(build)?,
            issuer: der::certificate_issuer(&key.certificate_pem).map_err(build)?,
            certificate_serial: keyward_client::revocation::certificate_serial(
                &key.certificate_pem,
            )
            .map_err(build)?,
            ca: der::pem_der(ca_pem).map_err(build)?,
            spki: keyward_client::revocation::certificate_spki(&key.certificate_pem)
                .map_err(build)?,
            ca_pem: ca_pem.to_string(),
            backends,
            key,
        })
    }

    /// The TSA's certificate, then the CA's (PEM): what a verifier passes as
    /// `--timestamp-certificate-chain` (cosign) or `-untrusted` (openssl ts).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.key.certificate_pem, self.ca_pem)
    }

    /// Stamps a DER `TimeStampReq` now; the DER `TimeStampResp`.
    pub async fn stamp(&self, query: &[u8]) -> Result<Vec<u8>, TsaError> {
        let q = tsa::parse_query(query).map_err(TsaError::BadQuery)?;
        self.reply(&q).await
    }

    /// Stamps the SHA-256 of `data` now (a signature, a DSSE envelope), with the
    /// certificates in the reply, as cosign's `--timestamp-server-url` would have it
    /// done; the DER `TimeStampResp`.
    pub async fn stamp_data(&self, data: &[u8]) -> Result<Vec<u8>, TsaError> {
        let nonce = random_positive()?;
        self.reply(&Query::for_data(data, &nonce[..8])).await
    }

    async fn reply(&self, q: &Query) -> Result<Vec<u8>, TsaError> {
        let q = q.clone();
        let serial = random_positive()?;
        let chain = [self.ca.clone()];
        let stamp = Stamp {
            serial: &serial,
            time: crate::clock::now(),
            certificate: &self.certificate,
            issuer: &self.issuer,
            certificate_serial: &self.certificate_serial,
            chain: &chain,
            rsa: matches!(key_kind(&self.spki), Some(KeyKind::Rsa(_))),
        };
        let tst = tsa::tst_info(&q, &stamp);
        let attributes = tsa::signed_attributes(&tst, &self.certificate);
        let (id, spki, signed) = (
            self.key.hsm_id.clone(),
            self.spki.clone(),
            attributes.clone(),
        );
        let pool = self
            .backends
            .get(&self.key.backend)
            .map_err(|e| TsaError::Unavailable(e.to_string()))?;
        let sig: Vec<u8> = pool
            .run("timestamp", move |s| {
                super::instance_key::sign(s, &id, &spki, &signed)
            })
            .await?;
        Ok(tsa::response(&q, &stamp, &tst, &attributes, &sig))
    }
}
