//! In-toto attestations about images, signed in DSSE envelopes and appended to
//! `sha256-<hex>.att` as `cosign attest` stores them. An attestation is a signature:
//! it is planned (digest resolved, predicate checked) so that an approval binds the
//! exact statement, then signed with a permit.

use super::formats::*;
use super::{
    ImageError, ImageSigner, Recorded, Signed, check_scope, image_capable, parse_ref, sign_input,
};
use crate::authz::SignPermit;
use crate::oci::ImageRef;
use serde_json::Value;
use sha2::Digest;

/// An attestation resolved at request time: what approvers see and what is signed.
#[derive(Debug, Clone)]
pub struct AttestationPlan {
    /// The image as requested.
    pub image: ImageRef,
    /// The manifest digest the statement's subject names.
    pub digest: String,
    /// The predicate type URI.
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Value,
    /// SHA-256 of the predicate bytes as sent, hex.
    pub predicate_digest: String,
}

impl ImageSigner {
    /// Checks the request and resolves the image digest the statement will name.
    pub async fn plan_attestation(
        &self,
        key: &str,
        reference: &str,
        predicate_type_name: &str,
        predicate: &[u8],
    ) -> Result<AttestationPlan, ImageError> {
        let image = parse_ref(reference)?;
        let predicate_type =
            predicate_type(predicate_type_name).map_err(ImageError::InvalidArgument)?;
        let predicate_digest = hex::encode(sha2::Sha256::digest(predicate));
        let predicate: Value = serde_json::from_slice(predicate).map_err(|e| {
            ImageError::InvalidArgument(format!("the predicate is not valid JSON: {e}"))
        })?;
        let rec = self.keys.get(key)?;
        image_capable(&rec)?;
        check_scope(&rec, &image.repository())?;
        let manifest = self.registries.manifest(&image.parsed).await?;
        Ok(AttestationPlan {
            image,
            digest: manifest.digest,
            predicate_type,
            predicate,
            predicate_digest,
        })
    }

    /// A DSSE envelope of `statement` signed in the HSM with the permit's version.
    pub(super) async fn envelope(
        &self,
        permit: &SignPermit,
        statement: &[u8],
    ) -> Result<Vec<u8>, ImageError> {
        let pae = dsse_pae(IN_TOTO, statement);
        let signature = self
            .keys
            .sign(permit, sign_input(permit.key().algorithm, &pae))
            .await?;
        Ok(dsse_envelope(statement, &signature))
    }

    /// Plans and signs at once (no approvals needed).
    pub async fn attest(
        &self,
        permit: &SignPermit,
        reference: &str,
        predicate_type_name: &str,
        predicate: &[u8],
    ) -> Result<(Signed, String), ImageError> {
        let plan = self
            .plan_attestation(permit.key_name(), reference, predicate_type_name, predicate)
            .await?;
        let signed = self.attest_planned(permit, &plan).await?;
        Ok((signed, plan.predicate_type))
    }

    /// Signs a planned statement (an approved request signs exactly what was
    /// approved) and appends it to the image's `.att` manifest.
    pub async fn attest_planned(
        &self,
        permit: &SignPermit,
        plan: &AttestationPlan,
    ) -> Result<Signed, ImageError> {
        let (image, digest) = (&plan.image, plan.digest.as_str());
        let rec = permit.key();
        image_capable(rec)?;
        check_scope(rec, &image.repository())?;
        let att_tag = tag_for(digest, "att");
        let att_ref = image.with_tag(&att_tag);
        let pushed_to = format!("{}:{att_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;

        let statement = statement(
            &image.repository(),
            digest,
            &plan.predicate_type,
            plan.predicate.clone(),
        );
        let envelope = self.envelope(permit, &statement).await?;
        // The envelope is stamped while it travels to the registry.
        let (existing, env_digest, stamp) = tokio::join!(
            self.registries.manifest_if_exists(&att_ref),
            self.registries.push_blob(&att_ref, envelope.clone(), false),
            self.stamp(&envelope),
        );
        let (existing, env_digest) = (existing?, env_digest?);
        let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let mut ann = self.signer_annotations(permit);
        ann.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
        ann.extend(stamp?);
        ann.insert(
            PREDICATE_TYPE_ANNOTATION.to_string(),
            plan.predicate_type.clone(),
        );
        layers.push(layer(DSSE_ENVELOPE, &envelope, &env_digest, ann));
        self.publish(
            &att_ref,
            &layers,
            Recorded {
                deferred: false,
                kind: "attestation",
                image,
                digest,
                permit,
                pushed_to: &pushed_to,
            },
        )
        .await
    }
}
