//! Re-signing one image digest for a campaign: the same signing path as a request,
//! after checking that the image still exists.

use super::{ImageError, ImageSigner, Signed, check_scope, image_capable, parse_ref};
use crate::authz::SignPermit;
use std::collections::BTreeMap;

/// Why an image was not re-signed, when that is not an error.
#[derive(Debug)]
pub enum NotResigned {
    /// The digest is no longer in the registry.
    Gone(String),
}

impl ImageSigner {
    /// The image a re-made signature is for, once the key may still sign it (image
    /// key, current scope) and the registry still has the digest.
    pub(super) async fn re_making(
        &self,
        permit: &SignPermit,
        reference: &str,
        digest: &str,
    ) -> Result<Result<crate::oci::ImageRef, NotResigned>, ImageError> {
        let image = parse_ref(reference)?;
        let rec = permit.key();
        image_capable(rec)?;
        check_scope(rec, &image.repository())?;
        if self
            .registries
            .manifest_if_exists(&image.with_digest(digest))
            .await?
            .is_none()
        {
            return Ok(Err(NotResigned::Gone(format!(
                "{}@{digest} is no longer in the registry",
                image.repository()
            ))));
        }
        Ok(Ok(image))
    }

    /// Signs `digest` again with the permit's version, for `reference` (the reference
    /// the original signature named, tag included, so a verifier's identity rule that
    /// accepted the old signature accepts the new one). The key's current scope is
    /// checked; a digest the registry no longer has is not signed. A signature this
    /// version already made (a run interrupted after its push) is found, not repeated.
    pub async fn resign(
        &self,
        permit: &SignPermit,
        reference: &str,
        digest: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Result<Signed, NotResigned>, ImageError> {
        let image = match self.re_making(permit, reference, digest).await? {
            Ok(image) => image,
            Err(gone) => return Ok(Err(gone)),
        };
        self.sign_digest(permit, &image, digest, annotations, true)
            .await
            .map(Ok)
    }
}
