//! Revoking a key version: irreversible, effective for signing the moment the record
//! is written (the signing path re-reads the version's state), and the only change a
//! revoked version accepts afterwards is an earlier `compromised_since`.

use super::{KeyError, KeyRecord, KeyRegistry, VersionState};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a version was revoked (RFC 5280 CRLReason codes 1, 4 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// The private key is, or may be, in other hands.
    KeyCompromise,
    /// Replaced by another version; nothing suggests a compromise.
    Superseded,
    /// No longer used.
    Cessation,
}

impl RevocationReason {
    /// The name users type and lists carry.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::Superseded => "superseded",
            RevocationReason::Cessation => "cessation",
        }
    }
}

/// A version's revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Why.
    pub reason: RevocationReason,
    /// When the revocation was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Who revoked it.
    pub revoked_by: String,
    /// From when the key is taken to have been in other hands (key compromise only).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub compromised_since: Option<OffsetDateTime>,
}

/// What a revocation asks for.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// Key name.
    pub name: String,
    /// The version to revoke.
    pub version: u32,
    /// Why.
    pub reason: RevocationReason,
    /// From when the key was compromised (key compromise only; not in the future).
    pub compromised_since: Option<OffsetDateTime>,
    /// Who asks.
    pub by: String,
}

/// An RFC 3339 time as records, lists and messages print it.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// What a revocation request would change on a key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeEffect {
    /// The version is not revoked yet: it will be.
    Revokes,
    /// It is revoked as compromised: the compromise moves earlier.
    MovesEarlier,
    /// It was revoked for another reason: it is now revoked as compromised.
    BecomesCompromised,
    /// It is revoked exactly so already: nothing changes.
    Nothing,
}

impl KeyRecord {
    /// What `req` would change. Revocation facts only grow: a later
    /// `compromised_since`, a narrower compromise or a milder reason than the one
    /// recorded is refused, with the recorded facts named. Every door that revokes
    /// (`key revoke`, `incident revoke`, an approval, a resumed approval) asks this.
    pub fn revoke_effect(&self, req: &RevokeRequest) -> Result<RevokeEffect, KeyError> {
        let name = &self.name;
        let v = self
            .version(req.version)
            .ok_or_else(|| KeyError::VersionNotFound {
                name: name.clone(),
                version: req.version,
            })?;
        let existing = match (v.state, &v.revocation) {
            (VersionState::Destroyed, _) => {
                return Err(KeyError::FailedPrecondition(format!(
                    "key {name:?} version {} was destroyed: its HSM object is gone, so it cannot sign; there is nothing to revoke",
                    req.version
                )));
            }
            (VersionState::Revoked, Some(existing)) => existing,
            _ => return Ok(RevokeEffect::Revokes),
        };
        use RevocationReason::KeyCompromise;
        let effect = match (existing.reason, req.reason) {
            (held, KeyCompromise) if held != KeyCompromise => {
                Some(RevokeEffect::BecomesCompromised)
            }
            (KeyCompromise, KeyCompromise) => {
                match (req.compromised_since, existing.compromised_since) {
                    (Some(new), Some(old)) if new < old => Some(RevokeEffect::MovesEarlier),
                    (Some(new), Some(old)) if new == old => Some(RevokeEffect::Nothing),
                    (None, None) => Some(RevokeEffect::Nothing),
                    _ => None,
                }
            }
            (held, asked) if held == asked => Some(RevokeEffect::Nothing),
            _ => None,
        };
        effect.ok_or_else(|| {
            let since = existing
                .compromised_since
                .map(|t| format!(", compromised since {}", rfc3339(t)))
                .unwrap_or_default();
            KeyError::FailedPrecondition(format!(
                "key {name:?} version {} was revoked at {} ({}{since}); revocation is irreversible, and revoking it again can only move --compromised-since earlier or make a revocation one for key-compromise",
                req.version,
                rfc3339(existing.revoked_at),
                existing.reason.as_str(),
            ))
        })
    }
}

/// Applies `req` to `rec` at `now`: revokes the version, moves an existing
/// revocation's `compromised_since` earlier, or makes it one for key compromise.
/// Anything else is refused with the reason.
fn apply(rec: &mut KeyRecord, req: &RevokeRequest, now: OffsetDateTime) -> Result<(), KeyError> {
    let effect = rec.revoke_effect(req)?;
    let Some(v) = rec.versions.iter_mut().find(|v| v.version == req.version) else {
        return Ok(());
    };
    match (effect, &mut v.revocation) {
        (RevokeEffect::Nothing, Some(existing)) => {
            let since = existing
                .compromised_since
                .map(|t| format!(", compromised since {}", rfc3339(t)))
                .unwrap_or_default();
            Err(KeyError::FailedPrecondition(format!(
                "key {:?} version {} was revoked at {} ({}{since}) already: nothing changed; revocation is irreversible",
                rec.name,
                req.version,
                rfc3339(existing.revoked_at),
                existing.reason.as_str(),
            )))
        }
        (RevokeEffect::MovesEarlier | RevokeEffect::BecomesCompromised, Some(existing)) => {
            existing.reason = req.reason;
            existing.compromised_since = req.compromised_since;
            Ok(())
        }
        _ => {
            v.state = VersionState::Revoked;
            v.revocation = Some(Revocation {
                reason: req.reason,
                revoked_at: now,
                revoked_by: req.by.clone(),
                compromised_since: req.compromised_since,
            });
            Ok(())
        }
    }
}

impl super::KeyVersion {
    /// Whether it was revoked as compromised (its object must not sign at all).
    pub fn compromised(&self) -> bool {
        self.state == VersionState::Revoked
            && self
                .revocation
                .as_ref()
                .is_some_and(|r| r.reason == RevocationReason::KeyCompromise)
    }

    /// When its time in service ended: the earliest of its retirement, its revocation
    /// and the start of a compromise (none while it is in service).
    pub fn in_service_until(&self) -> Option<OffsetDateTime> {
        let revoked = self.revocation.as_ref();
        [
            self.retired_at,
            revoked.map(|r| r.revoked_at),
            revoked.and_then(|r| r.compromised_since),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl KeyRegistry {
    /// Revokes a version. When this returns, the version no longer signs: the record
    /// is written and the cache the signing path reads is updated.
    pub async fn revoke(&self, req: &RevokeRequest) -> Result<Arc<KeyRecord>, KeyError> {
        let now = crate::clock::now();
        if let Some(since) = req.compromised_since {
            if req.reason != RevocationReason::KeyCompromise {
                return Err(KeyError::InvalidArgument(format!(
                    "--compromised-since goes with --reason key-compromise, not {}",
                    req.reason.as_str()
                )));
            }
            if since > now {
                return Err(KeyError::InvalidArgument(format!(
                    "--compromised-since {} is in the future",
                    rfc3339(since)
                )));
            }
        }
        let rec = self.update(&req.name, |rec| apply(rec, req, now)).await?;
        if let Some(v) = rec.version(req.version).filter(|v| v.compromised()) {
            self.unable_to_sign(
                &rec.backend,
                &format!("{}/v{}", rec.name, v.version),
                &v.hsm_id,
            )
            .await;
        }
        Ok(rec)
    }

    /// Destroys a revoked version's HSM object (`key revoke --destroy`): the object
    /// first, then the record says `destroyed` (its revocation kept, so every list
    /// still names it). Only a revoked version is destroyed this way.
    pub async fn destroy_revoked(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        let rec = self.get(name)?;
        let v = rec
            .version(version)
            .ok_or_else(|| KeyError::VersionNotFound {
                name: name.to_string(),
                version,
            })?;
        match v.state {
            VersionState::Revoked => {}
            VersionState::Destroyed => return Ok(rec),
            other => {
                return Err(KeyError::FailedPrecondition(format!(
                    "key {name:?} version {version} is {}: only a revoked version is destroyed; revoke it in the same command (--reason, --destroy)",
                    other.as_str()
                )));
            }
        }
        let pool = self.backends.get(&rec.backend)?;
        let id = v.hsm_id.clone();
        match pool.run("destroy", move |s| s.destroy(&id)).await {
            Ok(()) | Err(crate::hsm::HsmError::KeyNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::warn!(key = %name, version, "a revoked version's HSM object was destroyed");
        self.update(name, |r| {
            if let Some(v) = r.versions.iter_mut().find(|v| v.version == version) {
                v.state = VersionState::Destroyed;
            }
            Ok(())
        })
        .await
    }

    /// Takes signing away from a compromised version's HSM object where the module
    /// allows it (the record already stops every signature; this stops the object
    /// itself). What the module refuses is logged, and named again at every start.
    async fn unable_to_sign(&self, backend: &str, what: &str, hsm_id: &str) {
        let Ok(pool) = self.backends.get(backend) else {
            return;
        };
        let id = hsm_id.to_string();
        match pool
            .run("usage", move |s| s.restrict_usage(&id, false))
            .await
        {
            Ok(check) if check.refused.is_empty() => {
                tracing::warn!(version = %what, corrected = ?check.corrected, "a compromised version's HSM object can no longer sign");
            }
            Ok(check) => {
                tracing::error!(version = %what, refused = ?check.refused, "a compromised version's HSM object can still sign: destroy it");
            }
            Err(e) => {
                tracing::error!(version = %what, error = %e, "cannot take signing away from a compromised version's HSM object");
            }
        }
    }
}
