//! Changes of key policy, how they apply, and which of them weaken the policy. A
//! weakening (fewer approvals, signers or approvers added, an explicit list made
//! empty, scope widened or removed, `require_mfa` turned off, purpose changed, fewer
//! approvals to revoke) needs a second key-admin or admin to approve it; a change that
//! only tightens applies at once. A new policy field must say here when changing it
//! weakens.

use super::{KeyError, KeyRecord, Purpose};
use serde::{Deserialize, Serialize};

/// A change of key policy; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Who may sign.
    pub signers: Option<Vec<String>>,
    /// Which repositories it may sign.
    pub scope: Option<Vec<String>>,
    /// Whether signing needs a one-time code.
    pub require_mfa: Option<bool>,
    /// Who may approve.
    pub approvers: Option<Vec<String>>,
    /// How many approvals a request needs.
    pub approvals: Option<u32>,
    /// What the key signs.
    #[serde(default)]
    pub purpose: Option<Purpose>,
    /// Rotation period in seconds (`Some(None)`: on demand only). Rotation fields never
    /// weaken who may sign or what; they apply at once.
    #[serde(default)]
    pub rotate_every: Option<Option<u64>>,
    /// Overlap in seconds.
    #[serde(default)]
    pub overlap: Option<u64>,
    /// Re-sign on rotation.
    #[serde(default)]
    pub resign_on_rotate: Option<bool>,
    /// Prune the old version's layers after the overlap.
    #[serde(default)]
    pub prune_after_overlap: Option<bool>,
    /// Approvals a revocation needs: raising it tightens, lowering it weakens.
    #[serde(default)]
    pub revoke_approvals: Option<u32>,
}

/// A list that restricts (empty means "anyone"): what the new list lets in that the old
/// one did not.
fn widened(old: &[String], new: &[String], what: &str) -> Option<String> {
    if new.is_empty() && !old.is_empty() {
        return Some(format!("{what}: limit removed (was {})", old.join(", ")));
    }
    if old.is_empty() {
        return None;
    }
    let added: Vec<&str> = new
        .iter()
        .filter(|n| !old.contains(n))
        .map(String::as_str)
        .collect();
    (!added.is_empty()).then(|| format!("{what}: adds {}", added.join(", ")))
}

/// How `change` would weaken `key`'s policy, in words; empty when it only tightens
/// or changes nothing.
pub fn weakenings(key: &KeyRecord, change: &PolicyChange) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = change.approvals
        && n < key.approvals
    {
        out.push(format!("approvals: {} -> {n}", key.approvals));
    }
    if let Some(n) = change.revoke_approvals
        && n < key.revoke_approvals
    {
        out.push(format!("revoke approvals: {} -> {n}", key.revoke_approvals));
    }
    if let Some(s) = &change.signers {
        out.extend(widened(&key.signers, s, "signers"));
    }
    if let Some(a) = &change.approvers {
        out.extend(widened(&key.approvers, a, "approvers"));
    }
    if let Some(s) = &change.scope {
        out.extend(widened(&key.scope, s, "scope"));
    }
    if change.require_mfa == Some(false) && key.require_mfa {
        out.push("require_mfa: turned off".into());
    }
    if let Some(p) = change.purpose
        && p != key.purpose
    {
        out.push(format!(
            "purpose: {} -> {}",
            key.purpose.as_str(),
            p.as_str()
        ));
    }
    out
}

/// Approvals a revocation may be made to wait for, at most.
const MAX_REVOKE_APPROVALS: u32 = 9;

impl PolicyChange {
    /// Applies the change to `rec`; the error says which value is out of range.
    pub(super) fn apply(&self, rec: &mut KeyRecord) -> Result<(), KeyError> {
        let change = self.clone();
        if let Some(scope) = change.scope {
            rec.scope = scope;
        }
        if let Some(signers) = change.signers {
            rec.signers = signers;
        }
        if let Some(m) = change.require_mfa {
            rec.require_mfa = m;
        }
        if let Some(a) = change.approvers {
            rec.approvers = a;
        }
        if let Some(p) = change.purpose {
            rec.purpose = p;
        }
        if let Some(n) = change.revoke_approvals {
            if n > MAX_REVOKE_APPROVALS {
                return Err(KeyError::InvalidArgument(format!(
                    "--revoke-approvals {n}: at most {MAX_REVOKE_APPROVALS}; an incident must not wait on a quorum that cannot meet"
                )));
            }
            rec.revoke_approvals = n;
        }
        let mut rotation = rec.rotation.clone();
        if let Some(every) = change.rotate_every {
            rotation.every_seconds = every;
        }
        if let Some(overlap) = change.overlap {
            rotation.overlap_seconds = Some(overlap);
        }
        if let Some(r) = change.resign_on_rotate {
            rotation.resign = r;
        }
        if let Some(p) = change.prune_after_overlap {
            rotation.prune_after_overlap = p;
        }
        rotation.check().map_err(KeyError::InvalidArgument)?;
        rec.rotation = rotation;
        if let Some(n) = change.approvals {
            if n > 0 && !rec.approvers.is_empty() && (rec.approvers.len() as u32) < n {
                return Err(KeyError::InvalidArgument(format!(
                    "{n} approvals cannot be reached with {} named approvers",
                    rec.approvers.len()
                )));
            }
            rec.approvals = n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRecord {
        serde_json::from_value(serde_json::json!({
            "name": "k", "algorithm": "ecdsa-p256", "backend": "b",
            "created_at": "2026-11-27T00:00:00Z", "versions": [],
            "scope": ["r/prod/*"], "signers": ["alice"], "require_mfa": true,
            "approvers": ["ann", "aaron"], "approvals": 2, "revoke_approvals": 1
        }))
        .unwrap()
    }

    #[test]
    fn tightening_is_not_weakening() {
        let k = key();
        let tighter = PolicyChange {
            approvals: Some(3),
            signers: Some(vec![]).filter(|_: &Vec<String>| false),
            scope: Some(vec!["r/prod/*".into()]),
            require_mfa: Some(true),
            approvers: Some(vec!["ann".into()]),
            revoke_approvals: Some(1),
            ..Default::default()
        };
        assert!(weakenings(&k, &tighter).is_empty());
    }

    #[test]
    fn every_weakening_is_named() {
        let k = key();
        let w = weakenings(
            &k,
            &PolicyChange {
                approvals: Some(0),
                signers: Some(vec![]),
                scope: Some(vec!["r/prod/*".into(), "r/**".into()]),
                require_mfa: Some(false),
                approvers: Some(vec!["ann".into(), "mallory".into()]),
                purpose: Some(Purpose::Blob),
                revoke_approvals: Some(0),
                ..Default::default()
            },
        );
        let text = w.join("; ");
        for part in [
            "approvals: 2 -> 0",
            "signers: limit removed",
            "scope: adds r/**",
            "require_mfa: turned off",
            "approvers: adds mallory",
            "purpose: image -> blob",
            "revoke approvals: 1 -> 0",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }
}
