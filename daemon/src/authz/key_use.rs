//! The one check that decides whether a principal may sign with a key: role, the key's
//! signer list and its purpose. The gate runs it for every signing RPC and approvals
//! run it again when an approved request executes; the HSM signs only with the
//! [`SignPermit`] it returns, so no path can sign without passing it.

use super::{Action, PrincipalRecord};
use crate::keys::{KeyRecord, Purpose, VersionRef};
use std::sync::Arc;
use time::OffsetDateTime;

/// Proof that `principal` passed the signing checks for `key`. Only
/// [`check_key_use`] makes one; `KeyRegistry::sign` requires one.
#[derive(Debug, Clone)]
pub struct SignPermit {
    version: VersionRef,
    principal: String,
    issued_at: OffsetDateTime,
}

impl SignPermit {
    /// The key as it was when the checks passed.
    pub fn key(&self) -> &Arc<KeyRecord> {
        self.version.key()
    }

    /// The version that signs: the key's active version when the checks passed.
    pub fn version(&self) -> &VersionRef {
        &self.version
    }

    /// The key's name.
    pub fn key_name(&self) -> &str {
        &self.key().name
    }

    /// Who may sign.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// When the checks passed, with the pinned version active: the time the ledger
    /// gives the signature (a rotation may land before the HSM signs; the version was
    /// in service when the request was accepted).
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }
}

/// Whether `who` may sign with `key` for a request of `purpose`; the error says why not
/// and what to do.
pub fn check_key_use(
    who: &PrincipalRecord,
    key: Arc<KeyRecord>,
    purpose: Purpose,
) -> Result<SignPermit, String> {
    if who.removed_at.is_some() {
        return Err(format!("principal {:?} was removed", who.name));
    }
    who.allow(Action::Sign, "sign")?;
    if !key.signers.is_empty() && !key.signers.iter().any(|s| s == &who.name) {
        return Err(format!(
            "principal {:?} is not among the signers of key {:?} ({})",
            who.name,
            key.name,
            key.signers.join(", ")
        ));
    }
    if key.purpose != purpose {
        return Err(match key.purpose {
            Purpose::Image => format!(
                "key {:?} is an image key: it signs only container images and attestations (keyward sign, keyward attest). To sign files, create a blob key: keyward key create NAME --purpose blob",
                key.name
            ),
            Purpose::Blob => format!(
                "key {:?} is a blob key: it signs only files (keyward sign-blob). To sign images, create an image key: keyward key create NAME --purpose image",
                key.name
            ),
        });
    }
    let name = key.name.clone();
    let version = VersionRef::active(key).ok_or_else(|| {
        format!("key {name:?} has no active version, so it cannot sign; rotate it to make one")
    })?;
    Ok(SignPermit {
        version,
        principal: who.name.clone(),
        issued_at: crate::clock::now(),
    })
}

/// The permit of a re-signing campaign: it re-makes signatures the key already made,
/// with the authority of what started it (the key-admin who rotated, or the
/// scheduler), not of a signer, and without per-request approvals. Only the campaign
/// job (`jobs::resign`) asks for one. The key must still sign images; its current
/// scope is checked on the signing path, as for every signature.
pub fn campaign_permit(key: Arc<KeyRecord>, authority: &str) -> Result<SignPermit, String> {
    if key.purpose != Purpose::Image {
        return Err(format!(
            "key {:?} is no longer an image key; its images are not re-signed",
            key.name
        ));
    }
    let name = key.name.clone();
    let version = VersionRef::active(key)
        .ok_or_else(|| format!("key {name:?} has no active version to re-sign with"))?;
    Ok(SignPermit {
        version,
        principal: authority.to_string(),
        issued_at: crate::clock::now(),
    })
}
