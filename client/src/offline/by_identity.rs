//! Verifying an image's signatures without the daemon by the Keyward CA and a key's
//! identity, as `cosign verify --ca-roots --certificate-identity
//! --certificate-oidc-issuer [--timestamp-certificate-chain]` does, and against the
//! signed revocation list: a layer counts when its certificate comes from the CA,
//! names the identity and the issuer, was valid when it signed (the time-stamp's time
//! with a TSA chain, else now), its signature over the payload verifies, the payload
//! names the image, and neither the version nor the signature is revoked.

use super::stamp;
use super::x509::Cert;
use super::{Failure, OfflineResult, checked_list, revocation_refusal, signature_layers};
use crate::revocation::SeenSequences;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whom to trust.
pub struct TrustedIdentity<'a> {
    /// The Keyward CA (PEM).
    pub ca_pem: &'a str,
    /// The URI SAN the certificates must name (`keyward://keys/NAME`).
    pub identity: &'a str,
    /// The OIDC issuer they must carry; default: the one a Keyward instance derives
    /// from this CA (`keyward://ca/` and 16 hex digits of its key's fingerprint).
    pub issuer: Option<&'a str>,
    /// The TSA's certificate then its root (PEM): each layer's time-stamp is checked
    /// against it and the certificate must have been valid at the stamp's time.
    pub tsa_chain_pem: Option<&'a str>,
}

/// The issuer a Keyward instance with this CA names by default.
pub fn default_issuer(ca: &Cert) -> String {
    let fp = hex::encode(sha2::Sha256::digest(&ca.spki));
    format!("keyward://ca/{}", &fp[..16])
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Checks one layer; who signed it (key, version, public-key fingerprint from the
/// certificate), or why it does not count.
fn check_layer(
    layer: &Value,
    payload: &[u8],
    digest: &str,
    who: &TrustedIdentity<'_>,
    (ca, issuer, tsa): (&Cert, &str, Option<&(Cert, Cert)>),
) -> Result<(String, u32, String), String> {
    let ann = &layer["annotations"];
    let pem = ann["dev.sigstore.cosign/certificate"]
        .as_str()
        .ok_or("no certificate (signed without one: verify it by key)")?;
    let cert = Cert::from_pem(pem)?;
    if !cert.signed_by(ca) {
        return Err("its certificate is not from the given CA".into());
    }
    if !cert.uris.iter().any(|u| u == who.identity) {
        return Err(format!(
            "its certificate names {:?}, not {:?}",
            cert.uris, who.identity
        ));
    }
    if cert.issuer.as_deref() != Some(issuer) {
        return Err(format!(
            "its certificate's issuer is {:?}, not {issuer:?}",
            cert.issuer.as_deref().unwrap_or("none")
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature = ann["dev.cosignproject.cosign/signature"]
        .as_str()
        .and_then(|s| b64.decode(s).ok())
        .ok_or("no signature")?;
    if !crate::signature::verifies(&cert.spki, payload, &signature) {
        return Err("its signature does not verify with its certificate's key".into());
    }
    let p: Value = serde_json::from_slice(payload).unwrap_or_default();
    if p["critical"]["image"]["docker-manifest-digest"] != digest {
        return Err("it signs another image".into());
    }
    let when = match tsa {
        Some((leaf, root)) => {
            let stamp: Value = ann["dev.sigstore.cosign/rfc3161timestamp"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or("no time-stamp, and a TSA chain was given")?;
            let response = stamp["SignedRFC3161Timestamp"]
                .as_str()
                .and_then(|s| b64.decode(s).ok())
                .ok_or("a malformed time-stamp")?;
            stamp::verify(&response, &signature, leaf, root)?
        }
        None => OffsetDateTime::now_utc(),
    };
    if !cert.valid_at(when) {
        return Err(format!(
            "its certificate was not valid at {} (valid {} to {}){}",
            rfc3339(when),
            rfc3339(cert.not_before),
            rfc3339(cert.not_after),
            if tsa.is_none() {
                "; with --tsa-chain its time-stamp shows when it was signed"
            } else {
                ""
            }
        ));
    }
    let optional = &p["optional"];
    let key = optional["dev.keyward/key"].as_str().unwrap_or_default();
    let version = optional["dev.keyward/version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fingerprint = hex::encode(sha2::Sha256::digest(&cert.spki));
    Ok((key.to_string(), version, fingerprint))
}

/// Verifies `image`'s signatures by CA and identity, and against the revocation list.
pub async fn verify(
    image: &str,
    who: &TrustedIdentity<'_>,
    revocations: &str,
    seen: &mut SeenSequences,
    max_staleness: Option<time::Duration>,
) -> Result<OfflineResult, Failure> {
    let ca = Cert::from_pem(who.ca_pem)?;
    let issuer = who
        .issuer
        .map(str::to_string)
        .unwrap_or_else(|| default_issuer(&ca));
    let tsa = match who.tsa_chain_pem {
        Some(pem) => {
            let mut chain = Cert::all_pem(pem)?;
            if chain.len() < 2 {
                return Err("the TSA chain needs the TSA's certificate, then its root".into());
            }
            let root = chain.pop().ok_or("empty TSA chain")?;
            Some((chain.swap_remove(0), root))
        }
        None => None,
    };
    let list = checked_list(revocations, who.ca_pem, seen, max_staleness).await?;
    let (repo, digest, layers) = signature_layers(image).await?;
    let mut result = OfflineResult::new(&digest, list.sequence);
    for (i, layer) in layers.iter().enumerate() {
        let payload = repo
            .blob(layer["digest"].as_str().unwrap_or_default())
            .await?;
        let checked = check_layer(layer, &payload, &digest, who, (&ca, &issuer, tsa.as_ref()));
        let (key, version, fingerprint) = match checked {
            Ok(signer) => signer,
            Err(why) => {
                result.rejected.push(format!("layer {i}: {why}"));
                continue;
            }
        };
        if let Some(why) = revocation_refusal(&list, (&key, version, &fingerprint), &digest) {
            result.rejected.push(format!("layer {i}: {why}"));
            continue;
        }
        result.valid.push(version);
    }
    Ok(result)
}
