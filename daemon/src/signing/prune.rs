//! Removing a retired key version's signature layers from an image, once the active
//! version has signed it too (never the last signature a verifier could check).

use super::formats::*;
use super::{ImageError, ImageSigner, parse_ref};
use crate::keys::{KeyRecord, KeyVersion};

/// What pruning one image did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pruned {
    /// Removed this many layers of the old version.
    Removed(usize),
    /// The old version has no layer there (pruned before).
    Nothing,
    /// The active version has not signed this image: the old signature is kept.
    NotCoSigned,
}

impl ImageSigner {
    /// Removes `old`'s signature layers of `digest` (by their fingerprint annotation;
    /// a layer planted with that annotation goes too) if `active`'s signature of it
    /// for `reference`'s identity is there and verifies (with `require_co_signed`
    /// false, in any case: a compromised version). The tag is read again after
    /// the push, as every `.sig` write does.
    pub async fn prune(
        &self,
        rec: &KeyRecord,
        old: &KeyVersion,
        active: &KeyVersion,
        reference: &str,
        digest: &str,
        require_co_signed: bool,
    ) -> Result<Pruned, ImageError> {
        let image = parse_ref(reference)?;
        let sig_tag = tag_for(digest, "sig");
        let sig_ref = image.with_tag(&sig_tag);
        let lock = self.tag_lock(format!("{}:{sig_tag}", image.repository()));
        let _one_writer = lock.lock().await;
        for _ in 0..5 {
            let Some(existing) = self.registries.manifest_if_exists(&sig_ref).await? else {
                return Ok(Pruned::Nothing);
            };
            let layers = existing_layers(Some(existing.bytes.as_slice()));
            let is_old = |l: &serde_json::Value| {
                l["annotations"][FINGERPRINT_ANNOTATION] == old.fingerprint.as_str()
            };
            let removed = layers.iter().filter(|l| is_old(l)).count();
            if removed == 0 {
                return Ok(Pruned::Nothing);
            }
            let co_signed = !require_co_signed
                || self
                    .already_signed(&sig_ref, &layers, rec, active, digest, &image.identity())
                    .await;
            if !co_signed {
                return Ok(Pruned::NotCoSigned);
            }
            let kept: Vec<_> = layers.into_iter().filter(|l| !is_old(l)).collect();
            self.push_manifest(&sig_ref, &kept).await?;
            let now = self.registries.manifest_if_exists(&sig_ref).await?;
            let still = existing_layers(now.as_ref().map(|m| m.bytes.as_slice()));
            if !still.iter().any(is_old) {
                return Ok(Pruned::Removed(removed));
            }
            tracing::warn!(signature = %sig_ref, "another writer put the old version's layers back; pruning again");
        }
        Err(ImageError::Registry(crate::oci::RegistryError::Protocol {
            registry: image.parsed.registry().to_string(),
            detail: format!("the signature tag {sig_tag} kept changing while it was pruned"),
        }))
    }
}

impl ImageSigner {
    /// Removes `version`'s layers of `digest` for `reference`'s identity that the
    /// ledger has no record of: a re-signature an interrupted campaign item pushed and
    /// never recorded, whose item is now refused (its original was condemned while the
    /// daemon was down). A layer the ledger records stays. Returns how many went.
    pub async fn withdraw_unrecorded(
        &self,
        rec: &KeyRecord,
        version: &KeyVersion,
        reference: &str,
        digest: &str,
    ) -> Result<usize, ImageError> {
        let image = parse_ref(reference)?;
        let identity = image.identity();
        let recorded = self
            .ledger
            .marked(&super::ledger::mark(
                &rec.name,
                version.version,
                image.parsed.registry(),
                image.parsed.repository(),
                digest,
                &identity,
            ))
            .await?
            .is_some();
        if recorded {
            return Ok(0);
        }
        let sig_tag = tag_for(digest, "sig");
        let sig_ref = image.with_tag(&sig_tag);
        let lock = self.tag_lock(format!("{}:{sig_tag}", image.repository()));
        let _one_writer = lock.lock().await;
        let Some(existing) = self.registries.manifest_if_exists(&sig_ref).await? else {
            return Ok(0);
        };
        let layers = existing_layers(Some(existing.bytes.as_slice()));
        let unrecorded = |l: &serde_json::Value| {
            l["annotations"][FINGERPRINT_ANNOTATION] == version.fingerprint.as_str()
                && l["annotations"][REFERENCE_ANNOTATION] == identity.as_str()
        };
        let removed = layers.iter().filter(|l| unrecorded(l)).count();
        if removed > 0 {
            let kept: Vec<_> = layers.into_iter().filter(|l| !unrecorded(l)).collect();
            self.push_manifest(&sig_ref, &kept).await?;
            tracing::warn!(signature = %sig_ref, version = version.version, "removed a re-signature an interrupted item pushed and never recorded, whose original is condemned");
        }
        Ok(removed)
    }
}
