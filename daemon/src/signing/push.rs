//! Signature manifests: the `.sig` tag next to an image is read, our layer appended
//! and the manifest pushed, then read again (another writer may have replaced it);
//! what reached the registry is recorded in the ledger.

use super::formats::*;
use super::{ImageError, ImageSigner, Recorded, Signed, sign_input, verify};
use crate::authz::SignPermit;
use crate::keys::KeyRecord;
use crate::oci::{ImageRef, RegistryError, sha256_digest};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;

impl ImageSigner {
    /// Signs one digest and appends the signature to its `.sig` tag. The tag is
    /// read-modify-write: after pushing, the tag is read again, and if another writer
    /// (another daemon) replaced it meanwhile without our layer, our layer is appended
    /// to what is there now and pushed again, so that no writer's signature is lost.
    /// `deferred`: the caller records the ledger entry (see [`Signed::ledger`]).
    pub(crate) async fn sign_digest(
        &self,
        permit: &SignPermit,
        image: &ImageRef,
        digest: &str,
        annotations: &BTreeMap<String, String>,
        deferred: bool,
    ) -> Result<Signed, ImageError> {
        let sig_tag = tag_for(digest, "sig");
        let sig_ref = image.with_tag(&sig_tag);
        let pushed_to = format!("{}:{sig_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;

        let identity = image.identity();
        let (key, requester) = (permit.key_name(), permit.principal());
        let (rec, active) = (permit.key(), permit.version().version());
        let recorded = Recorded {
            deferred,
            kind: "signature",
            image,
            digest,
            permit,
            pushed_to: &pushed_to,
        };
        let mut ours: Option<Value> = None;
        for _ in 0..5 {
            let existing = self.registries.manifest_if_exists(&sig_ref).await?;
            let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
            if let Some(l) = &ours {
                if layers.iter().any(|x| x["digest"] == l["digest"]) {
                    return self.published(recorded).await;
                }
                tracing::warn!(signature = %sig_ref, "another writer replaced the signature tag without our layer; appending it again");
            } else if self
                .already_signed(&sig_ref, &layers, rec, active, digest, &identity)
                .await
            {
                return Ok(Signed {
                    reference: image.original.clone(),
                    digest: digest.to_string(),
                    pushed_to: pushed_to.clone(),
                    version: active.version,
                    already_signed: true,
                    ledger: deferred.then(|| Self::entry(&recorded)),
                });
            }
            let l = match &ours {
                Some(l) => l.clone(),
                None => {
                    let mut optional = annotations.clone();
                    optional.insert(KEY_ANNOTATION.into(), key.to_string());
                    optional.insert(VERSION_OPTIONAL.into(), active.version.to_string());
                    optional.insert(FINGERPRINT_ANNOTATION.into(), active.fingerprint.clone());
                    optional.insert("dev.keyward/requester".into(), requester.to_string());
                    let payload = simple_signing_payload(&identity, digest, &optional);
                    // The payload travels to the registry while the HSM signs it and
                    // the TSA stamps the signature.
                    let signed = async {
                        let signature = self
                            .keys
                            .sign(permit, sign_input(rec.algorithm, &payload))
                            .await?;
                        let stamp = self.stamp(&signature).await?;
                        Ok::<_, ImageError>((signature, stamp))
                    };
                    let pushed = self.registries.push_blob(&sig_ref, payload.clone(), false);
                    let (signed, pushed) = tokio::join!(signed, pushed);
                    let ((signature, stamp), payload_digest) = (signed?, pushed?);
                    let mut ann = self.signer_annotations(permit);
                    ann.insert(
                        SIGNATURE_ANNOTATION.to_string(),
                        base64::engine::general_purpose::STANDARD.encode(&signature),
                    );
                    ann.insert(REFERENCE_ANNOTATION.to_string(), identity.clone());
                    ann.extend(stamp);
                    let l = layer(SIMPLE_SIGNING, &payload, &payload_digest, ann);
                    ours = Some(l.clone());
                    l
                }
            };
            layers.push(l);
            self.push_manifest(&sig_ref, &layers).await?;
        }
        Err(ImageError::Registry(RegistryError::Protocol {
            registry: image.parsed.registry().to_string(),
            detail: format!(
                "the signature tag {pushed_to} kept changing under us; our signature was not kept, try again"
            ),
        }))
    }

    /// Pushes the manifest with its new layer, then records the ledger entry (only
    /// what reached the registry is recorded), and says what was made.
    pub(super) async fn publish(
        &self,
        tag_ref: &oci_client::Reference,
        layers: &[Value],
        r: Recorded<'_>,
    ) -> Result<Signed, ImageError> {
        self.push_manifest(tag_ref, layers).await?;
        self.published(r).await
    }

    /// Records what reached the registry (or hands the entry to the caller) and says
    /// what was made.
    pub(super) async fn published(&self, r: Recorded<'_>) -> Result<Signed, ImageError> {
        let entry = Self::entry(&r);
        let ledger = if r.deferred {
            Some(entry)
        } else {
            self.ledger.record(&entry).await?;
            None
        };
        Ok(Signed {
            reference: r.image.original.clone(),
            digest: r.digest.to_string(),
            pushed_to: r.pushed_to.to_string(),
            version: r.permit.version().number(),
            already_signed: false,
            ledger,
        })
    }

    /// Whether this key version's signature of this digest for this identity is really
    /// there: decided by verifying the layer's payload and signature with the
    /// version's public key, never from annotations alone (anyone with push rights can
    /// plant a layer that claims to be ours).
    pub(super) async fn already_signed(
        &self,
        sig_ref: &oci_client::Reference,
        layers: &[Value],
        rec: &KeyRecord,
        active: &crate::keys::KeyVersion,
        digest: &str,
        identity: &str,
    ) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        for l in layers.iter().filter(|l| {
            l["mediaType"] == SIMPLE_SIGNING
                && l["annotations"][FINGERPRINT_ANNOTATION] == active.fingerprint.as_str()
                && l["annotations"][REFERENCE_ANNOTATION] == identity
        }) {
            let (Some(blob), Some(sig)) = (
                l["digest"].as_str(),
                l["annotations"][SIGNATURE_ANNOTATION].as_str(),
            ) else {
                continue;
            };
            let (Ok(payload), Ok(sig)) =
                (self.registries.blob(sig_ref, blob).await, b64.decode(sig))
            else {
                continue;
            };
            let Ok(p) = serde_json::from_slice::<SimpleSigning>(&payload) else {
                continue;
            };
            if p.critical.image.docker_manifest_digest == digest
                && p.critical.identity.docker_reference == identity
                && verify::verifies(rec.algorithm, &active.public_key, &payload, &sig)
            {
                return true;
            }
            tracing::warn!(signature = %sig_ref, layer = blob, "a signature layer claims this key version but does not verify; signing again");
        }
        false
    }

    /// Blobs first (a registry refuses a manifest naming unknown blobs), then the
    /// manifest in one PUT: a failed push leaves the old manifest in place.
    pub(super) async fn push_manifest(
        &self,
        tag_ref: &oci_client::Reference,
        layers: &[Value],
    ) -> Result<(), ImageError> {
        let config = config_blob();
        let config_digest = sha256_digest(&config);
        self.registries
            .push_blob(tag_ref, config.clone(), true)
            .await?;
        let manifest = image_manifest(&config, &config_digest, layers);
        self.registries
            .push_manifest(tag_ref, manifest, crate::oci::OCI_MANIFEST)
            .await?;
        Ok(())
    }
}
