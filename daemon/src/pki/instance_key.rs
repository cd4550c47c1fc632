//! The instance's own keys (the CA, the audit key, the time-stamping key) follow what
//! the CA's backend can do: ECDSA P-256 where the token offers it, otherwise RSA
//! PKCS#1 v1.5, or the algorithm `[ca] algorithm` names. Every one of them signs
//! SHA-256 of a message; verifiers (`keyward_client::signature`) read the kind of key
//! from its public key, so stored records need no algorithm field.

use crate::hsm::{Algorithm, DigestAlgorithm, HsmError, HsmSession, SignInput};
use keyward_client::signature::{KeyKind, key_kind};

/// The algorithms an instance key may have, in the order the default picks them.
pub const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::EcdsaP256,
    Algorithm::RsaPkcs3072,
    Algorithm::RsaPkcs4096,
];

/// The names of [`ALGORITHMS`], for messages.
pub fn names() -> String {
    ALGORITHMS.map(Algorithm::as_str).join(", ")
}

/// Refuses a configured algorithm instance keys cannot have.
pub fn check_configured(a: Algorithm) -> Result<(), String> {
    if ALGORITHMS.contains(&a) {
        return Ok(());
    }
    Err(format!(
        "[ca] algorithm = \"{a}\" cannot be used for the instance's keys (CA certificates, time-stamps and audit checkpoints must verify in cosign and X.509 tools); use one of: {}",
        names()
    ))
}

/// The algorithm for new instance keys on backend `backend`, which offers `offered`:
/// the configured one if the backend can do it, else the first of [`ALGORITHMS`] it
/// offers. The error says what the backend lacks and what to do.
pub fn choose(
    configured: Option<Algorithm>,
    offered: &[Algorithm],
    backend: &str,
) -> Result<Algorithm, String> {
    match configured {
        Some(a) if offered.contains(&a) => Ok(a),
        Some(a) => Err(format!(
            "[ca] algorithm = {a} but backend {backend} cannot make {a} keys (it offers: {}); choose one it offers, or put [ca] backend on another token",
            offered.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
        )),
        None => ALGORITHMS
            .into_iter()
            .find(|a| offered.contains(a))
            .ok_or_else(|| {
                format!(
                    "backend {backend} cannot hold the instance's keys (CA, audit, time-stamping): it offers none of {}; put [ca] backend on a token that offers one",
                    names()
                )
            }),
    }
}

/// The algorithm an instance key was made with, read from its public key.
pub fn algorithm_of(spki: &[u8]) -> Result<Algorithm, HsmError> {
    match key_kind(spki) {
        Some(KeyKind::EcdsaP256) => Ok(Algorithm::EcdsaP256),
        Some(KeyKind::Rsa(bits)) if bits <= 3072 => Ok(Algorithm::RsaPkcs3072),
        Some(KeyKind::Rsa(_)) => Ok(Algorithm::RsaPkcs4096),
        _ => Err(HsmError::Device {
            op: "read instance key",
            detail: "the stored public key is neither ECDSA P-256 nor RSA".into(),
        }),
    }
}

/// Signs SHA-256 of `message` with the instance key `hsm_id` whose public key is
/// `spki`: a DER ECDSA signature or an RSASSA-PKCS1-v1_5 one.
pub fn sign(
    session: &mut dyn HsmSession,
    hsm_id: &str,
    spki: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let digest = DigestAlgorithm::Sha256.hash(message);
    session.sign(
        hsm_id,
        algorithm_of(spki)?,
        &SignInput::Digest(DigestAlgorithm::Sha256, digest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_token_and_a_configured_one_must_be_offered() {
        let rsa_only = [Algorithm::RsaPss3072, Algorithm::RsaPkcs3072];
        assert_eq!(choose(None, &Algorithm::ALL, "b"), Ok(Algorithm::EcdsaP256));
        assert_eq!(choose(None, &rsa_only, "b"), Ok(Algorithm::RsaPkcs3072));
        assert_eq!(
            choose(Some(Algorithm::RsaPkcs4096), &Algorithm::ALL, "b"),
            Ok(Algorithm::RsaPkcs4096)
        );
        let err = choose(Some(Algorithm::EcdsaP256), &rsa_only, "ock").unwrap_err();
        assert!(err.contains("backend ock cannot make ecdsa-p256"), "{err}");
        let err = choose(None, &[Algorithm::Ed25519], "b").unwrap_err();
        assert!(
            err.contains("ecdsa-p256, rsa-pkcs1-3072, rsa-pkcs1-4096"),
            "{err}"
        );
        assert!(check_configured(Algorithm::RsaPss3072).is_err());
        assert!(check_configured(Algorithm::RsaPkcs3072).is_ok());
    }
}
