//! What a PKCS#11 token can do, read from its mechanism list when the backend opens
//! instead of assumed: the key algorithms Keyward generates and signs with, and what
//! the instance itself needs from it (sealing secrets, MACs over stored records), each
//! with the mechanisms it lacks when it cannot.

use crate::hsm::{Algorithm, Capabilities};
use crate::pki::instance_key::ALGORITHMS;
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

const HMAC: [(M, &str); 2] = [
    (M::GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"),
    (M::SHA256_HMAC, "CKM_SHA256_HMAC"),
];
/// How secrets can be sealed, in order of preference: (name, mechanisms).
const SEALING: [(&str, &[(M, &str)]); 2] = [
    (
        "sealing (aes-gcm)",
        &[
            (M::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
            (M::AES_GCM, "CKM_AES_GCM"),
        ],
    ),
    (
        "sealing (aes-cbc-pad + hmac-sha256)",
        &[
            (M::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
            (M::AES_CBC_PAD, "CKM_AES_CBC_PAD"),
            HMAC[0],
            HMAC[1],
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
    // The instance's own keys (CA, audit, time-stamping): the first kind offered.
    const INSTANCE: &str = "instance keys (CA, audit, time-stamping)";
    match ALGORITHMS.iter().find(|a| caps.algorithms.contains(a)) {
        Some(a) => caps.features.push(format!("{INSTANCE}: {a}")),
        None => caps.missing.push((
            INSTANCE.to_string(),
            format!("none of {} (see above)", crate::pki::instance_key::names()),
        )),
    }
    match SEALING
        .iter()
        .find(|(_, wanted)| lacking(offered, wanted).is_empty())
    {
        Some((name, _)) => caps.features.push(name.to_string()),
        None => caps.missing.push((
            "sealing".to_string(),
            format!(
                "no {} for aes-gcm, no {} for aes-cbc-pad + hmac-sha256",
                lacking(offered, SEALING[0].1).join(", "),
                lacking(offered, SEALING[1].1).join(", ")
            ),
        )),
    }
    const MACS: &str = "record MACs (hmac-sha256)";
    match lacking(offered, &HMAC).as_slice() {
        [] => caps.features.push(MACS.to_string()),
        names => caps
            .missing
            .push((MACS.to_string(), format!("no {}", names.join(", ")))),
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(caps: &Capabilities) -> Vec<String> {
        caps.missing
            .iter()
            .map(|(w, why)| format!("{w}: {why}"))
            .collect()
    }

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
        assert_eq!(
            caps.features,
            [
                "instance keys (CA, audit, time-stamping): rsa-pkcs1-3072",
                "sealing (aes-cbc-pad + hmac-sha256)",
                "record MACs (hmac-sha256)"
            ]
        );
        let missing = reasons(&caps);
        assert!(
            missing.contains(&"ecdsa-p256: no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA".to_string()),
            "{missing:?}"
        );
        assert_eq!(missing.len(), 3, "{missing:?}");
        // Without HMAC there is no sealing at all, and the reason names both ways.
        let caps = from_mechanisms(&offered[..5]);
        let missing = reasons(&caps);
        assert!(
            missing.contains(&"sealing: no CKM_AES_GCM for aes-gcm, no CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC for aes-cbc-pad + hmac-sha256".to_string()),
            "{missing:?}"
        );
        // Without RSA either, the instance keys have nowhere to live.
        let caps = from_mechanisms(&offered[3..]);
        assert!(
            caps.missing
                .iter()
                .any(|(w, why)| w == "instance keys (CA, audit, time-stamping)"
                    && why.contains("ecdsa-p256, rsa-pkcs1-3072")),
            "{:?}",
            caps.missing
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
        assert_eq!(
            caps.features,
            [
                "instance keys (CA, audit, time-stamping): ecdsa-p256",
                "sealing (aes-gcm)",
                "record MACs (hmac-sha256)"
            ]
        );
    }
}
