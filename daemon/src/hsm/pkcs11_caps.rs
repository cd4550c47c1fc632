//! What a PKCS#11 token can do, read from its mechanism list when the backend opens
//! instead of assumed: the key algorithms Keyward generates and signs with, and what
//! the instance itself needs from it (sealing secrets, MACs over stored records), each
//! with the mechanisms it lacks when it cannot.

use crate::hsm::{Algorithm, Capabilities};
use cryptoki::mechanism::MechanismType as M;

/// The mechanisms an algorithm needs, by name.
fn needs(a: Algorithm) -> &'static [(M, &'static str)] {
    match a {
        Algorithm::EcdsaP256 | Algorithm::EcdsaP384 => &[
            (M::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
            (M::ECDSA, "CKM_ECDSA"),
        ],
        Algorithm::Ed25519 => &[
            (M::ECC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN"),
            (M::EDDSA, "CKM_EDDSA"),
        ],
        Algorithm::RsaPss3072 => &[
            (M::RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"),
            (M::RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS"),
        ],
        Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => &[
            (M::RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"),
            (M::RSA_PKCS, "CKM_RSA_PKCS"),
        ],
    }
}

/// What the instance needs besides signing keys: (name, mechanisms).
const FEATURES: &[(&str, &[(M, &str)])] = &[
    (
        "sealing (aes-gcm)",
        &[
            (M::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
            (M::AES_GCM, "CKM_AES_GCM"),
        ],
    ),
    (
        "record MACs (hmac-sha256)",
        &[
            (M::GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"),
            (M::SHA256_HMAC, "CKM_SHA256_HMAC"),
        ],
    ),
];

/// The names of the mechanisms of `wanted` that `offered` lacks.
fn lacking(offered: &[M], wanted: &[(M, &'static str)]) -> Vec<&'static str> {
    wanted
        .iter()
        .filter(|(m, _)| !offered.contains(m))
        .map(|(_, name)| *name)
        .collect()
}

/// The capabilities of a token offering `offered`.
pub fn from_mechanisms(offered: &[M]) -> Capabilities {
    let mut caps = Capabilities::default();
    for a in Algorithm::ALL {
        match lacking(offered, needs(a)).as_slice() {
            [] => caps.algorithms.push(a),
            names => caps
                .missing
                .push((a.to_string(), format!("no {}", names.join(", ")))),
        }
    }
    // The instance's own keys (CA, audit, time-stamping) are ECDSA P-256.
    const INSTANCE: &str = "instance keys (CA, audit, time-stamping: ecdsa-p256)";
    match lacking(offered, needs(Algorithm::EcdsaP256)).as_slice() {
        [] => caps.features.push(INSTANCE.to_string()),
        names => caps
            .missing
            .push((INSTANCE.to_string(), format!("no {}", names.join(", ")))),
    }
    for (feature, wanted) in FEATURES {
        match lacking(offered, wanted).as_slice() {
            [] => caps.features.push(feature.to_string()),
            names => caps
                .missing
                .push((feature.to_string(), format!("no {}", names.join(", ")))),
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rsa_only_token_offers_rsa_and_macs_and_says_what_the_rest_lacks() {
        // opencryptoki 3.8's software token: RSA, AES-CBC, HMAC; no EC, no AES-GCM.
        let offered = [
            M::RSA_PKCS_KEY_PAIR_GEN,
            M::RSA_PKCS,
            M::RSA_PKCS_PSS,
            M::AES_KEY_GEN,
            M::AES_CBC_PAD,
            M::GENERIC_SECRET_KEY_GEN,
            M::SHA256_HMAC,
        ];
        let caps = from_mechanisms(&offered);
        assert_eq!(
            caps.algorithms,
            [
                Algorithm::RsaPss3072,
                Algorithm::RsaPkcs3072,
                Algorithm::RsaPkcs4096
            ]
        );
        assert_eq!(caps.features, ["record MACs (hmac-sha256)"]);
        let missing: Vec<String> = caps
            .missing
            .iter()
            .map(|(w, why)| format!("{w}: {why}"))
            .collect();
        assert!(
            missing.contains(&"ecdsa-p256: no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"sealing (aes-gcm): no CKM_AES_GCM".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(
                &"instance keys (CA, audit, time-stamping: ecdsa-p256): no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA"
                    .to_string()
            ),
            "{missing:?}"
        );
        // SoftHSM's list has them all.
        let all = [
            M::ECC_KEY_PAIR_GEN,
            M::ECDSA,
            M::ECC_EDWARDS_KEY_PAIR_GEN,
            M::EDDSA,
            M::RSA_PKCS_KEY_PAIR_GEN,
            M::RSA_PKCS,
            M::RSA_PKCS_PSS,
            M::AES_KEY_GEN,
            M::AES_GCM,
            M::GENERIC_SECRET_KEY_GEN,
            M::SHA256_HMAC,
        ];
        let caps = from_mechanisms(&all);
        assert_eq!(caps.algorithms, Algorithm::ALL);
        assert!(caps.missing.is_empty(), "{:?}", caps.missing);
        assert_eq!(caps.features.len(), 3, "{:?}", caps.features);
    }
}
