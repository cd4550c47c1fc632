//! Public keys and signatures as the HSMs return them, converted to the standard
//! encodings verifiers want (SubjectPublicKeyInfo, ASN.1 DER ECDSA signatures).

use super::{Algorithm, HsmError};
use p256::pkcs8::EncodePublicKey;
use sha2::Digest;
use spki::der::{Decode, Encode};

const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn bad(what: &str, e: impl std::fmt::Display) -> HsmError {
    HsmError::Device {
        op: "read public key",
        detail: format!("{what}: {e}"),
    }
}

/// Builds a SubjectPublicKeyInfo from an EC point (SEC1, uncompressed) or an Ed25519 key.
pub fn ec_spki(algorithm: Algorithm, point: &[u8]) -> Result<Vec<u8>, HsmError> {
    let doc = match algorithm {
        Algorithm::EcdsaP256 => p256::PublicKey::from_sec1_bytes(point)
            .map_err(|e| bad("P-256 point", e))?
            .to_public_key_der(),
        Algorithm::EcdsaP384 => p384::PublicKey::from_sec1_bytes(point)
            .map_err(|e| bad("P-384 point", e))?
            .to_public_key_der(),
        Algorithm::Ed25519 => {
            if point.len() != 32 {
                return Err(bad(
                    "Ed25519 key",
                    format!("{} bytes, want 32", point.len()),
                ));
            }
            let mut spki = ED25519_SPKI_PREFIX.to_vec();
            spki.extend_from_slice(point);
            return Ok(spki);
        }
        Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => {
            return Err(bad("RSA key", "not an EC key"));
        }
    };
    Ok(doc.map_err(|e| bad("SPKI", e))?.as_bytes().to_vec())
}

/// Builds an rsaEncryption SubjectPublicKeyInfo from modulus and public exponent.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, HsmError> {
    let key = pkcs1::RsaPublicKey {
        modulus: pkcs1::UintRef::new(modulus).map_err(|e| bad("RSA modulus", e))?,
        public_exponent: pkcs1::UintRef::new(exponent).map_err(|e| bad("RSA exponent", e))?,
    };
    let pkcs1_der = key.to_der().map_err(|e| bad("RSA key", e))?;
    let spki = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: pkcs1::ALGORITHM_OID,
            parameters: Some(spki::der::asn1::AnyRef::NULL),
        },
        subject_public_key: spki::der::asn1::BitStringRef::from_bytes(&pkcs1_der)
            .map_err(|e| bad("RSA key", e))?,
    };
    spki.to_der().map_err(|e| bad("RSA SPKI", e))
}

/// The key bits inside a SubjectPublicKeyInfo: the SEC1 point, the raw Ed25519 key or
/// the PKCS#1 RSAPublicKey (what X.509 builders call the key's DER bytes).
pub fn spki_key_bits(spki_der: &[u8]) -> Result<Vec<u8>, String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| e.to_string())?;
    Ok(spki.subject_public_key.raw_bytes().to_vec())
}

/// Strips the DER OCTET STRING that PKCS#11 wraps around `CKA_EC_POINT`. Modules that
/// return the bare point are accepted too.
pub fn unwrap_ec_point(value: &[u8]) -> Vec<u8> {
    if let Ok(octets) = spki::der::asn1::OctetStringRef::from_der(value) {
        return octets.as_bytes().to_vec();
    }
    value.to_vec()
}

/// Converts a raw `r || s` ECDSA signature into ASN.1 DER.
pub fn ecdsa_raw_to_der(algorithm: Algorithm, raw: &[u8]) -> Result<Vec<u8>, HsmError> {
    let err = |e: p256::ecdsa::Error| HsmError::Device {
        op: "sign",
        detail: format!("the HSM returned a malformed ECDSA signature: {e}"),
    };
    Ok(match algorithm {
        Algorithm::EcdsaP256 => p256::ecdsa::Signature::from_slice(raw)
            .map_err(err)?
            .to_der()
            .as_bytes()
            .to_vec(),
        Algorithm::EcdsaP384 => p384::ecdsa::Signature::from_slice(raw)
            .map_err(err)?
            .to_der()
            .as_bytes()
            .to_vec(),
        _ => raw.to_vec(),
    })
}

/// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: a key version's fingerprint.
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(spki_der))
}

/// PEM `PUBLIC KEY` block for a DER SubjectPublicKeyInfo.
pub fn spki_pem(spki_der: &[u8]) -> String {
    pem_block("PUBLIC KEY", spki_der)
}

/// A PEM block with 64-column base64 lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER DigestInfo (RFC 8017, 9.2) of `digest`: what RSASSA-PKCS1-v1_5 signs.
pub fn digest_info(algorithm: super::DigestAlgorithm, digest: &[u8]) -> Vec<u8> {
    use super::DigestAlgorithm::*;
    let prefix: &[u8] = match algorithm {
        Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    };
    [prefix, digest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_octet_string_is_unwrapped() {
        let mut wrapped = vec![0x04, 0x41, 0x04];
        wrapped.extend_from_slice(&[7u8; 64]);
        assert_eq!(unwrap_ec_point(&wrapped).len(), 65);
        assert_eq!(unwrap_ec_point(&wrapped)[0], 0x04);
    }

    #[test]
    fn malformed_ecdsa_signature_is_an_error() {
        assert!(ecdsa_raw_to_der(Algorithm::EcdsaP256, &[1, 2, 3]).is_err());
    }
}
