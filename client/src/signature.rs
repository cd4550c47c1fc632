//! Verifying signatures made the way Keyward signs: the kind of key is read from its
//! SubjectPublicKeyInfo, so one check serves every algorithm a key or the instance's
//! own keys (CA, audit, time-stamping) may have.
//!
//! ECDSA (P-256, P-384) and RSASSA-PKCS1-v1_5 sign SHA-256 of the message (ECDSA
//! signatures in DER), Ed25519 signs the message itself. RSA-PSS is not verified here:
//! cosign and X.509 tooling do not accept it from Keyward, which never uses it there.

use crate::der::{children, element};
use sha2::Digest;

/// rsaEncryption (1.2.840.113549.1.1.1), the OID's contents octets.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-Ed25519 (1.3.101.112).
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// The DER prefix of a SHA-256 DigestInfo (RFC 8017, 9.2).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The kinds of public key Keyward signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA, with its modulus size in bits.
    Rsa(usize),
}

/// (algorithm OID, subjectPublicKey bits) of a DER SubjectPublicKeyInfo.
fn spki_parts(spki: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let outer = children(element(spki)?.contents);
    let algorithm = children(outer.first()?.contents);
    let bits = outer.get(1).filter(|b| b.tag == 0x03)?.contents;
    // A BIT STRING of whole octets: the first octet (unused bits) is zero.
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some((algorithm.first()?.contents.to_vec(), key.to_vec()))
}

/// The modulus and public exponent of an RSA SubjectPublicKeyInfo.
fn rsa_key(spki: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (oid, bits) = spki_parts(spki)?;
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let key = children(element(&bits)?.contents);
    let strip = |i: &[u8]| {
        let n = i.iter().take_while(|b| **b == 0).count();
        i[n..].to_vec()
    };
    Some((strip(key.first()?.contents), strip(key.get(1)?.contents)))
}

/// What kind of key a DER SubjectPublicKeyInfo holds, if Keyward knows it.
pub fn key_kind(spki: &[u8]) -> Option<KeyKind> {
    use p256::pkcs8::DecodePublicKey;
    if p256::ecdsa::VerifyingKey::from_public_key_der(spki).is_ok() {
        return Some(KeyKind::EcdsaP256);
    }
    if p384::ecdsa::VerifyingKey::from_public_key_der(spki).is_ok() {
        return Some(KeyKind::EcdsaP384);
    }
    if let Some((modulus, _)) = rsa_key(spki) {
        return Some(KeyKind::Rsa(modulus.len() * 8));
    }
    match spki_parts(spki)? {
        (oid, bits) if oid == ED25519 && bits.len() == 32 => Some(KeyKind::Ed25519),
        _ => None,
    }
}

/// Whether `signature` is an RSASSA-PKCS1-v1_5 signature over the DER `digest_info` by
/// the RSA key in `spki`.
pub fn rsa_pkcs1_verifies(spki: &[u8], digest_info: &[u8], signature: &[u8]) -> bool {
    use num_bigint::BigUint;
    let Some((modulus, exponent)) = rsa_key(spki) else {
        return false;
    };
    let (n, e) = (
        BigUint::from_bytes_be(&modulus),
        BigUint::from_bytes_be(&exponent),
    );
    let k = modulus.len();
    let s = BigUint::from_bytes_be(signature);
    if k == 0 || signature.len() != k || s >= n || k < digest_info.len() + 11 {
        return false;
    }
    let m = s.modpow(&e, &n).to_bytes_be();
    let mut em = vec![0u8; k - m.len().min(k)];
    em.extend_from_slice(&m);
    let mut expected = vec![0x00, 0x01];
    expected.resize(k - digest_info.len() - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(digest_info);
    em == expected
}

/// Whether `signature` over `message` verifies with the key in `spki`, signed the way
/// Keyward signs (see the module's documentation).
pub fn verifies(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::pkcs8::DecodePublicKey;
    let digest = sha2::Sha256::digest(message);
    match key_kind(spki) {
        Some(KeyKind::EcdsaP256) => {
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_public_key_der(spki),
                p256::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        Some(KeyKind::EcdsaP384) => {
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_public_key_der(spki),
                p384::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        Some(KeyKind::Ed25519) => {
            let Some((_, bits)) = spki_parts(spki) else {
                return false;
            };
            let (Ok(bits), Ok(sig)) = (
                <[u8; 32]>::try_from(bits.as_slice()),
                ed25519_dalek::Signature::from_slice(signature),
            ) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&bits)
                .is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
        }
        Some(KeyKind::Rsa(_)) => {
            rsa_pkcs1_verifies(spki, &[SHA256_DIGEST_INFO, &digest].concat(), signature)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    #[test]
    fn p256_signatures_verify_and_edits_do_not() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
        let sig: p256::ecdsa::Signature = key.sign(b"message");
        let der = sig.to_der();
        assert_eq!(key_kind(&spki), Some(KeyKind::EcdsaP256));
        assert!(verifies(&spki, b"message", der.as_bytes()));
        assert!(!verifies(&spki, b"massage", der.as_bytes()));
        assert!(!verifies(b"not a key", b"message", der.as_bytes()));
    }

    #[test]
    fn rsa_checks_refuse_garbage_without_panicking() {
        // rsaEncryption SPKI with a 16-octet modulus and exponent 65537.
        let mut key = vec![0x30, 0x18, 0x02, 0x11, 0x00];
        key.extend_from_slice(&[0xc5; 16]);
        key.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut spki = vec![0x30, 0x2c, 0x30, 0x0d, 0x06, 0x09];
        spki.extend_from_slice(RSA_ENCRYPTION);
        spki.extend_from_slice(&[0x05, 0x00, 0x03, 0x1b, 0x00]);
        spki.extend_from_slice(&key);
        assert_eq!(key_kind(&spki), Some(KeyKind::Rsa(128)));
        assert!(!verifies(&spki, b"m", &[0u8; 16]));
        assert!(!verifies(&spki, b"m", &[]));
        assert!(!rsa_pkcs1_verifies(&spki, &[1, 2, 3], &[0xff; 16]));
    }
}
