//! Software verification of signatures against a key version's public key (the HSM is
//! not needed to verify).

use super::formats::*;
use super::{ImageError, ImageSigner, Verification, Verified, parse_ref};
use crate::hsm::Algorithm;
use crate::keys::VersionState;
use base64::Engine;
use serde_json::Value;

/// Whether `signature` over `message` verifies with the SPKI public key of a version
/// made for `algorithm`, the way Keyward signs images (see
/// [`keyward_client::signature`]). RSA-PSS signatures are not image signatures.
pub fn verifies(algorithm: Algorithm, spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    algorithm != Algorithm::RsaPss3072
        && keyward_client::signature::verifies(spki, message, signature)
}

/// How long after a rotation a request checked against the old version may still
/// be accepted: the new version becomes visible to every check a moment after the
/// rotation is stored, and a request signs with the version it was checked against.
const IN_FLIGHT: time::Duration = time::Duration::seconds(10);

impl ImageSigner {
    /// Checks the image's signatures against every version of the key. Retired
    /// versions still verify; revoked and destroyed ones do not.
    pub async fn verify(&self, key: &str, reference: &str) -> Result<Verification, ImageError> {
        let image = parse_ref(reference)?;
        let rec = self.keys.get(key)?;
        let manifest = self.registries.manifest(&image.parsed).await?;
        let digest = manifest.digest;
        let sig_ref = image.with_tag(&tag_for(&digest, "sig"));
        let existing = self.registries.manifest_if_exists(&sig_ref).await?;
        let layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut result = Verification {
            digest: digest.clone(),
            valid: Vec::new(),
            rejected: Vec::new(),
        };
        for (i, l) in layers.iter().enumerate() {
            if l["mediaType"] != SIMPLE_SIGNING {
                continue;
            }
            let (Some(blob_digest), Some(sig_b64)) = (
                l["digest"].as_str(),
                l["annotations"][SIGNATURE_ANNOTATION].as_str(),
            ) else {
                result
                    .rejected
                    .push(format!("layer {i}: no digest or signature"));
                continue;
            };
            let payload = match self.registries.blob(&sig_ref, blob_digest).await {
                Ok(p) => p,
                Err(e) => {
                    result.rejected.push(format!("layer {i}: {e}"));
                    continue;
                }
            };
            let Ok(signature) = b64.decode(sig_b64) else {
                result
                    .rejected
                    .push(format!("layer {i}: signature is not base64"));
                continue;
            };
            let signer = rec
                .versions
                .iter()
                .find(|v| verifies(rec.algorithm, &v.public_key, &payload, &signature));
            let Some(v) = signer else {
                result.rejected.push(format!(
                    "layer {i}: not signed by any version of key {key:?}"
                ));
                continue;
            };
            if matches!(v.state, VersionState::Revoked | VersionState::Destroyed) {
                result.rejected.push(format!(
                    "layer {i}: signed by v{} which is {}",
                    v.version,
                    v.state.as_str()
                ));
                continue;
            }
            if let Some(r) = self
                .revoked
                .as_ref()
                .and_then(|s| s.get(key, v.version, &digest))
            {
                result.rejected.push(format!(
                    "layer {i}: this signature by v{} was revoked at {} ({})",
                    v.version,
                    r.revoked_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    r.reason.as_str()
                ));
                continue;
            }
            let p: Value = serde_json::from_slice(&payload).unwrap_or_default();
            if p["critical"]["image"]["docker-manifest-digest"] != digest.as_str() {
                result
                    .rejected
                    .push(format!("layer {i}: signs another image"));
                continue;
            }
            let docker_reference = p["critical"]["identity"]["docker-reference"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let repo_of_ref = docker_reference
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(r, _)| r.to_string())
                .unwrap_or(docker_reference.clone());
            if repo_of_ref != image.repository() {
                result
                    .rejected
                    .push(format!("layer {i}: signed for {docker_reference}"));
                continue;
            }
            let optional = p["optional"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            // When the ledger says this version signed it, and whether the version
            // was in service then (active: from activation to retirement).
            let mark = super::ledger::mark(
                &rec.name,
                v.version,
                image.parsed.registry(),
                image.parsed.repository(),
                &digest,
                &docker_reference,
            );
            let signed_at = self.ledger.marked(&mark).await?.map(|e| e.time);
            let valid_when_signed = signed_at.map(|t| {
                v.activated_at.is_some_and(|from| from <= t)
                    && v.retired_at.is_none_or(|until| t <= until + IN_FLIGHT)
            });
            result.valid.push(Verified {
                version: v.version,
                state: v.state,
                docker_reference,
                optional,
                signed_at,
                valid_when_signed,
            });
        }
        Ok(result)
    }
}
