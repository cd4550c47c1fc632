//! Key records as stored.

use crate::hsm::Algorithm;
use keyward_client::duration::human;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The life of a key version.
///
/// ```text
/// pending -> active -> retiring -> retired   (both verify, never sign; retiring until
///               |                            the re-signing campaign is done)
///               \-----> revoked
/// retiring, retired ----> revoked | destroyed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionState {
    /// Generated, not yet in use.
    Pending,
    /// The one version that signs.
    Active,
    /// Replaced by rotation: verifies, never signs.
    Retired,
    /// Replaced by rotation, its images being re-signed: verifies, never signs.
    Retiring,
    /// Withdrawn: signatures made with it must not be trusted.
    Revoked,
    /// The HSM object is gone.
    Destroyed,
}

impl VersionState {
    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Active => "active",
            VersionState::Retired => "retired",
            VersionState::Retiring => "retiring",
            VersionState::Revoked => "revoked",
            VersionState::Destroyed => "destroyed",
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One HSM key pair of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyVersion {
    /// 1, 2, ...
    pub version: u32,
    /// Where it is in its life.
    pub state: VersionState,
    /// The backend's id of the private key object.
    pub hsm_id: String,
    /// DER SubjectPublicKeyInfo.
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// SHA-256 of `public_key`, hex.
    pub fingerprint: String,
    /// Code-signing certificate from the Keyward CA, PEM.
    pub certificate_pem: String,
    /// Certificates it had before its current one was issued (renewals), PEM, oldest
    /// first: signatures made under them still carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_certificates: Vec<String>,
    /// When it was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it became active.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When rotation retired it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// The job removing its signatures after the overlap, once one was started.
    #[serde(default)]
    pub prune_job: Option<String>,
    /// Why, when and by whom it was revoked (revoked versions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<super::Revocation>,
}

/// What a key signs. A key of one purpose is refused by the RPCs of the other, so a
/// blob key cannot forge an image signature outside the image path's scope check and
/// ledger, and an image key cannot sign arbitrary bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Container images and attestations (`keyward sign`, `keyward attest`). Keys
    /// created before purposes existed are image keys.
    #[default]
    Image,
    /// Files (`keyward sign-blob`).
    Blob,
}

impl Purpose {
    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Image => "image",
            Purpose::Blob => "blob",
        }
    }

    /// Parses a purpose (empty means `image`); the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "image" => Ok(Purpose::Image),
            "blob" => Ok(Purpose::Blob),
            other => Err(format!(
                "unknown key purpose {other:?}; purposes: image (container images and attestations), blob (files)"
            )),
        }
    }
}

/// A named key with its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Unique name, e.g. `release-prod`.
    pub name: String,
    /// Algorithm of every version.
    pub algorithm: Algorithm,
    /// Backend holding every version.
    pub backend: String,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Versions, oldest first.
    pub versions: Vec<KeyVersion>,
    /// Repositories (`registry/repository` globs) this key may sign; empty means any.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Principals who may sign with it; empty means every principal with the signer role.
    #[serde(default)]
    pub signers: Vec<String>,
    /// Signing with this key needs a one-time code.
    #[serde(default)]
    pub require_mfa: bool,
    /// Who may approve signing requests; empty means anyone with the approver role.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct approvals a signing request needs (0: signs at once).
    #[serde(default)]
    pub approvals: u32,
    /// What it signs.
    #[serde(default)]
    pub purpose: Purpose,
    /// Distinct approvals (by other revokers) a revocation of one of its versions needs
    /// before it applies (0: at once; an incident cannot wait for a quorum).
    #[serde(default)]
    pub revoke_approvals: u32,
    /// When and how it rotates.
    #[serde(default)]
    pub rotation: RotationPolicy,
}

/// When a key rotates and what a rotation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    /// Rotate once the active version is this many seconds old (none: only on demand).
    #[serde(default)]
    pub every_seconds: Option<u64>,
    /// How long the old version's signatures stay next to the new ones.
    #[serde(default)]
    pub overlap_seconds: Option<u64>,
    /// Re-sign, with the new version, what the old one signed.
    #[serde(default = "yes")]
    pub resign: bool,
    /// Remove the old version's signature layers once the overlap is over.
    #[serde(default)]
    pub prune_after_overlap: bool,
}

fn yes() -> bool {
    true
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            every_seconds: None,
            overlap_seconds: None,
            resign: true,
            prune_after_overlap: false,
        }
    }
}

/// The longest rotation period or overlap a policy may name: ten years (3650 days).
/// Longer is not a schedule, and far longer overflows the calendar.
pub const MAX_PERIOD_SECONDS: u64 = 3650 * 86_400;

impl RotationPolicy {
    /// Checks the policy; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.every_seconds == Some(0) {
            return Err("a rotation period of 0 would rotate all the time; give a period of at least one day (e.g. --rotate-every 90d)".into());
        }
        for (what, value) in [
            ("--rotate-every", self.every_seconds),
            ("--overlap", self.overlap_seconds),
        ] {
            if let Some(v) = value.filter(|v| *v > MAX_PERIOD_SECONDS) {
                return Err(format!(
                    "{what} {}: at most 10 years (3650d); a key that should not rotate needs no period (--rotate-every none)",
                    human(v)
                ));
            }
        }
        if let (Some(every), Some(overlap)) = (self.every_seconds, self.overlap_seconds)
            && overlap > every
        {
            return Err(format!(
                "the overlap ({}) is longer than the rotation period ({}): the old version's signatures would outlive the next rotation; make the overlap shorter than the period",
                human(overlap),
                human(every)
            ));
        }
        Ok(())
    }
}

impl KeyRecord {
    /// The version that signs.
    pub fn active(&self) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Active)
    }

    /// A version by number.
    pub fn version(&self, n: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.version == n)
    }
}

/// Checks scope globs (`registry.example.com/prod/*`; `*` stays within one path
/// segment, `**` crosses them).
pub fn validate_scope(scope: &[String]) -> Result<(), String> {
    const SHAPE: &str = "a pattern is registry/repository with globs, e.g. registry.example.com/team/* or registry.example.com/prod/**; give several as separate arguments or comma separated";
    for g in scope {
        if g.is_empty() {
            return Err("empty scope pattern".into());
        }
        let allowed = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '/' | ':' | '*' | '?' | '[' | ']' | '!')
        };
        if let Some(c) = g.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "invalid scope pattern {g:?}: {c:?} cannot be in a registry or repository name; {SHAPE}"
            ));
        }
        let Some((registry, repository)) = g.split_once('/') else {
            return Err(format!(
                "invalid scope pattern {g:?}: it names no repository; {SHAPE}"
            ));
        };
        if registry.is_empty() || repository.is_empty() {
            return Err(format!("invalid scope pattern {g:?}: {SHAPE}"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "invalid scope pattern {g:?}: repository names are lower case"
            ));
        }
        glob::Pattern::new(g).map_err(|e| format!("invalid scope pattern {g:?}: {e}"))?;
    }
    Ok(())
}

/// Key names: 1 to 64 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid key name {name:?}: use 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("release-prod").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Release").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
    }
}
