//! Software verification of signatures against a key version's public key (the HSM is
//! not needed to verify).

use crate::hsm::Algorithm;
use crate::hsm::public_key::spki_key_bits;
use p256::pkcs8::DecodePublicKey;
use sha2::Digest;

/// Whether `signature` over `message` verifies with the SPKI public key, the way
/// Keyward signs images: ECDSA over SHA-256 of the message (DER signature), Ed25519
/// over the message itself.
pub fn verifies(algorithm: Algorithm, spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let digest = sha2::Sha256::digest(message);
    match algorithm {
        Algorithm::EcdsaP256 => {
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_public_key_der(spki),
                p256::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        Algorithm::EcdsaP384 => {
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_public_key_der(spki),
                p384::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        Algorithm::Ed25519 => {
            let Ok(bits) = spki_key_bits(spki) else {
                return false;
            };
            let (Ok(bits), Ok(sig)) = (
                <[u8; 32]>::try_from(bits.as_slice()),
                ed25519_dalek::Signature::from_slice(signature),
            ) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&bits)
                .map(|k| k.verify_strict(message, &sig).is_ok())
                .unwrap_or(false)
        }
        Algorithm::RsaPss3072 => false,
    }
}
