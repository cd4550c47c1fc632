//! Re-making attestations for a campaign: every in-toto statement the old version
//! attested about an image is signed again, unchanged, with the active version and
//! appended to the image's `.att` manifest, so `cosign verify-attestation` with the
//! new key finds the provenance. Only statements whose DSSE signature verifies with the
//! old version's public key are re-made: a planted layer that merely claims the old
//! version's fingerprint is never signed by the new one.

use super::formats::*;
use super::{ImageError, ImageSigner, NotResigned, Recorded, Signed};
use crate::authz::SignPermit;
use crate::keys::KeyVersion;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;

/// The statement (payload bytes) of a DSSE envelope, if `version` signed it.
fn statement_signed_by(envelope: &[u8], version: &KeyVersion, digest: &str) -> Option<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let env: Value = serde_json::from_slice(envelope).ok()?;
    if env["payloadType"] != IN_TOTO {
        return None;
    }
    let payload = b64.decode(env["payload"].as_str()?).ok()?;
    let pae = dsse_pae(IN_TOTO, &payload);
    let signed = env["signatures"].as_array()?.iter().any(|s| {
        s["sig"]
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .is_some_and(|sig| keyward_client::signature::verifies(&version.public_key, &pae, &sig))
    });
    let statement: Value = serde_json::from_slice(&payload).ok()?;
    let hex = digest.trim_start_matches("sha256:");
    let about = statement["subject"]
        .as_array()?
        .iter()
        .any(|s| s["digest"]["sha256"] == hex);
    (signed && about).then_some(payload)
}

impl ImageSigner {
    /// Signs again, with the permit's version, every statement `old` attested about
    /// `digest` (for `reference`), appending them to `.att`; statements the permit's
    /// version attested already are not repeated. `annotations` go on the new layers.
    pub async fn reattest(
        &self,
        permit: &SignPermit,
        old: &KeyVersion,
        reference: &str,
        digest: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Result<Signed, NotResigned>, ImageError> {
        let image = match self.re_making(permit, reference, digest).await? {
            Ok(image) => image,
            Err(gone) => return Ok(Err(gone)),
        };
        let att_tag = tag_for(digest, "att");
        let att_ref = image.with_tag(&att_tag);
        let pushed_to = format!("{}:{att_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;
        let existing = self.registries.manifest_if_exists(&att_ref).await?;
        let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let new_fp = permit.version().fingerprint().to_string();
        let (mut wanted, mut made) = (Vec::new(), Vec::new());
        for l in layers.iter().filter(|l| l["mediaType"] == DSSE_ENVELOPE) {
            let fp = l["annotations"][FINGERPRINT_ANNOTATION]
                .as_str()
                .unwrap_or("");
            if fp != old.fingerprint && fp != new_fp {
                continue;
            }
            let Some(blob) = l["digest"].as_str() else {
                continue;
            };
            let Ok(envelope) = self.registries.blob(&att_ref, blob).await else {
                continue;
            };
            if fp == old.fingerprint {
                if let Some(s) = statement_signed_by(&envelope, old, digest) {
                    let predicate = l["annotations"][PREDICATE_TYPE_ANNOTATION].clone();
                    wanted.push((s, predicate));
                }
            } else if let Some(s) =
                statement_signed_by(&envelope, permit.version().version(), digest)
            {
                made.push(s);
            }
        }
        if wanted.is_empty() {
            return Ok(Err(NotResigned::Gone(format!(
                "{}@{digest} carries no attestation by v{} any more",
                image.repository(),
                old.version
            ))));
        }
        let todo: Vec<_> = wanted
            .into_iter()
            .filter(|(s, _)| !made.contains(s))
            .collect();
        let recorded = Recorded {
            deferred: true,
            kind: "attestation",
            image: &image,
            digest,
            permit,
            pushed_to: &pushed_to,
        };
        if todo.is_empty() {
            // Made by an earlier run that a crash interrupted: the caller records it.
            let mut signed = self.published(recorded).await?;
            signed.already_signed = true;
            return Ok(Ok(signed));
        }
        for (statement, predicate) in todo {
            let envelope = self.envelope(permit, &statement).await?;
            let (env_digest, stamp) = tokio::join!(
                self.registries.push_blob(&att_ref, envelope.clone(), false),
                self.stamp(&envelope),
            );
            let mut ann = self.signer_annotations(permit);
            ann.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
            ann.extend(stamp?);
            if let Some(p) = predicate.as_str() {
                ann.insert(PREDICATE_TYPE_ANNOTATION.to_string(), p.to_string());
            }
            ann.extend(annotations.clone());
            layers.push(layer(DSSE_ENVELOPE, &envelope, &env_digest?, ann));
        }
        self.publish(&att_ref, &layers, recorded).await.map(Ok)
    }
}
