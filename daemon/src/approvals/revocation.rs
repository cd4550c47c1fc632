//! Revocations that wait for other revokers. On a key whose policy has
//! `revoke_approvals` N > 0, `key revoke` and `incident revoke` are held here (the one
//! place both RPCs go through) and run on the N-th approval by other principals who
//! may revoke; with N = 0, the default, they run at once: an incident cannot wait for
//! a quorum unless the key says so.

use super::{ApprovalError, ApprovalRecord, Approvals, Subject};
use crate::keys::{RevokeEffect, RevokeRequest};
use crate::revocation::incident::IncidentRequest;

/// A revocation as asked: what is revoked, and whether the whole incident runs.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The revocation itself.
    pub revoke: RevokeRequest,
    /// Run the incident on approval (with `remove_signatures`), not only the revocation.
    pub incident: Option<bool>,
    /// Also destroy the version's HSM object.
    pub destroy: bool,
}

impl Approvals {
    /// Holds `asked` for approval when the key's policy says so: the pending request
    /// then, none when the revocation may run now (no approvals needed, or it would
    /// change nothing: the version is already revoked exactly as asked). A request the
    /// recorded facts refuse (a later compromise, a milder reason) is refused here,
    /// before any approval is filed.
    pub async fn hold_revocation(
        &self,
        asked: &Asked,
        request_hash: &str,
    ) -> Result<Option<ApprovalRecord>, ApprovalError> {
        let req = &asked.revoke;
        let key = self.keys.get(&req.name)?;
        let effect = key.revoke_effect(req)?;
        if key.revoke_approvals == 0 || (effect == RevokeEffect::Nothing && !asked.destroy) {
            return Ok(None);
        }
        let subject = Subject::Revocation {
            version: req.version,
            reason: req.reason,
            compromised_since: req.compromised_since,
            incident: asked.incident.is_some(),
            remove_signatures: asked.incident.unwrap_or(false),
            destroy: asked.destroy,
        };
        let r = self
            .new_record(
                &req.by,
                &req.name,
                subject,
                request_hash,
                key.revoke_approvals,
            )
            .await?;
        tracing::warn!(principal = %req.by, key = %req.name, version = req.version, approval = %r.id, needed = r.needed, "revocation waits for approvals (the key's policy asks for them)");
        Ok(Some(r))
    }

    /// Runs an approved revocation with the requester's authority; records what it
    /// did in `r.outcome`. Run again after a crash, it finishes what is missing.
    pub(super) async fn apply_revocation(
        &self,
        r: &mut ApprovalRecord,
    ) -> Result<(), ApprovalError> {
        let Subject::Revocation {
            version,
            reason,
            compromised_since,
            incident,
            remove_signatures,
            destroy,
        } = r.subject.clone()
        else {
            return Ok(());
        };
        let revoke = RevokeRequest {
            name: r.key.clone(),
            version,
            reason,
            compromised_since,
            by: r.requester.clone(),
        };
        if let (true, Some(since)) = (incident, compromised_since) {
            let rep = self
                .incidents
                .revoke(&IncidentRequest {
                    name: r.key.clone(),
                    version,
                    compromised_since: since,
                    by: r.requester.clone(),
                    dry_run: false,
                    remove_signatures,
                    approved_by: r.approved_by.clone(),
                })
                .await?;
            let job = |j: &Option<String>| j.clone().unwrap_or_else(|| "none".into());
            r.outcome = Some(format!(
                "incident ran: v{version} revoked; {} images signed before the compromise (re-signing job: {}), {} from it on (removal job: {}); rotated to: {}; revocation list {} issued; report in audit record {}",
                rep.signed_before,
                job(&rep.resign_job),
                rep.signed_after,
                job(&rep.remove_job),
                rep.rotated_to
                    .map_or("no rotation".into(), |v| format!("v{v}")),
                rep.list_sequence,
                rep.audit_seq
            ));
            return Ok(());
        }
        let key = self.keys.get(&r.key)?;
        if key.revoke_effect(&revoke)? != RevokeEffect::Nothing {
            self.incidents.revoke_version(&revoke).await?;
        }
        if destroy {
            self.keys.destroy_revoked(&r.key, version).await?;
        }
        r.outcome = Some(format!(
            "v{version} revoked ({}){}; it never signs again",
            reason.as_str(),
            if destroy {
                " and its HSM object destroyed"
            } else {
                ""
            }
        ));
        Ok(())
    }
}
