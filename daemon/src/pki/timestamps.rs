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
    /// The HTTP endpoint's own session, queue and one low-priority thread: stamps for
    /// callers of the unauthenticated endpoint never take a signing thread (the stamps
    /// of Keyward's own signature layers go with the signing).
    own: Option<crate::hsm::HsmPool>,
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
            own: None,
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

    /// Stamps the HTTP endpoint's queries on `pool` (see [`Tsa::own`]).
    pub fn with_own_pool(mut self, pool: crate::hsm::HsmPool) -> Self {
        self.own = Some(pool);
        self
    }

    /// Stamps a DER `TimeStampReq` now (a caller of the HTTP endpoint, on the TSA's own
    /// pool when it has one); the DER `TimeStampResp`.
    pub async fn stamp(&self, query: &[u8]) -> Result<Vec<u8>, TsaError> {
        let q = tsa::parse_query(query).map_err(TsaError::BadQuery)?;
        self.reply(&q, self.own.as_ref()).await
    }

    /// Stamps the SHA-256 of `data` now (a signature, a DSSE envelope), with the
    /// certificates in the reply, as cosign's `--timestamp-server-url` would have it
    /// done; the DER `TimeStampResp`.
    pub async fn stamp_data(&self, data: &[u8]) -> Result<Vec<u8>, TsaError> {
        let nonce = random_positive()?;
        self.reply(&Query::for_data(data, &nonce[..8]), None).await
    }

    async fn reply(
        &self,
        q: &Query,
        pool: Option<&crate::hsm::HsmPool>,
    ) -> Result<Vec<u8>, TsaError> {
        let q = q.clone();
        let serial = random_positive()?;
        let pool = match pool {
            Some(p) => p,
            None => self
                .backends
                .get(&self.key.backend)
                .map_err(|e| TsaError::Unavailable(e.to_string()))?,
        };
        // The whole reply is built on the pool's thread: for the HTTP endpoint that is
        // its own low-priority thread, so a stamp's work never competes with signing.
        let (chain, certificate) = ([self.ca.clone()], self.certificate.clone());
        let (issuer, certificate_serial) = (self.issuer.clone(), self.certificate_serial.clone());
        let (id, spki) = (self.key.hsm_id.clone(), self.spki.clone());
        let rsa = matches!(key_kind(&self.spki), Some(KeyKind::Rsa(_)));
        let time = crate::clock::now();
        pool.run("timestamp", move |s| {
            let stamp = Stamp {
                serial: &serial,
                time,
                certificate: &certificate,
                issuer: &issuer,
                certificate_serial: &certificate_serial,
                chain: &chain,
                rsa,
            };
            let tst = tsa::tst_info(&q, &stamp);
            let attributes = tsa::signed_attributes(&tst, &certificate);
            let sig = super::instance_key::sign(s, &id, &spki, &attributes)?;
            Ok::<_, TsaError>(tsa::response(&q, &stamp, &tst, &attributes, &sig))
        })
        .await
    }
}
