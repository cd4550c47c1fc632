//! Signing and digest algorithms.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;

/// A signing algorithm a key version is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// ECDSA on NIST P-256 (the default).
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Pure Ed25519.
    Ed25519,
    /// RSASSA-PSS with a 3072-bit modulus, MGF1 with the digest's hash, salt = digest length.
    RsaPss3072,
    /// RSASSA-PKCS1-v1_5 with a 3072-bit modulus: what cosign verifies for RSA image
    /// signatures, and what RSA-only HSMs offer.
    #[serde(rename = "rsa-pkcs1-3072")]
    RsaPkcs3072,
    /// RSASSA-PKCS1-v1_5 with a 4096-bit modulus.
    #[serde(rename = "rsa-pkcs1-4096")]
    RsaPkcs4096,
}

impl Algorithm {
    /// Every algorithm Keyward knows.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::EcdsaP256,
        Algorithm::EcdsaP384,
        Algorithm::Ed25519,
        Algorithm::RsaPss3072,
        Algorithm::RsaPkcs3072,
        Algorithm::RsaPkcs4096,
    ];

    /// The modulus size of an RSA algorithm.
    pub fn rsa_bits(self) -> Option<u64> {
        match self {
            Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 => Some(3072),
            Algorithm::RsaPkcs4096 => Some(4096),
            _ => None,
        }
    }

    /// The name used in configuration, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::EcdsaP384 => "ecdsa-p384",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::RsaPss3072 => "rsa-pss-3072",
            Algorithm::RsaPkcs3072 => "rsa-pkcs1-3072",
            Algorithm::RsaPkcs4096 => "rsa-pkcs1-4096",
        }
    }

    /// Parses a name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown algorithm {name:?}; valid algorithms: {}",
                    Self::ALL.map(Algorithm::as_str).join(", ")
                )
            })
    }

    /// The digest used when the daemon hashes a message itself.
    pub fn default_digest(self) -> DigestAlgorithm {
        match self {
            Algorithm::EcdsaP384 => DigestAlgorithm::Sha384,
            _ => DigestAlgorithm::Sha256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest algorithm for hash-then-sign requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256, 32 bytes.
    Sha256,
    /// SHA-384, 48 bytes.
    Sha384,
    /// SHA-512, 64 bytes.
    Sha512,
}

impl DigestAlgorithm {
    /// Every digest algorithm accepted.
    pub const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
    ];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Parses a name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown digest algorithm {name:?}; valid: {}",
                    Self::ALL.map(DigestAlgorithm::as_str).join(", ")
                )
            })
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            DigestAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
            DigestAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_algorithm_lists_valid_ones() {
        let err = Algorithm::parse("ecdsa-p521").unwrap_err();
        assert!(
            err.contains("ecdsa-p256, ecdsa-p384, ed25519, rsa-pss-3072"),
            "{err}"
        );
        assert_eq!(Algorithm::parse("ed25519"), Ok(Algorithm::Ed25519));
    }

    #[test]
    fn digest_lengths_match_hashes() {
        for d in DigestAlgorithm::ALL {
            assert_eq!(d.hash(b"x").len(), d.digest_len());
        }
    }
}
