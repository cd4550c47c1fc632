//! Deciding and executing approval requests. Before an approved request signs, every
//! check is made again against the current state, not the state when it was asked:
//! the requester must still exist and pass the signing checks (role, signers,
//! purpose), each approver must still exist, still hold an approving role, still be
//! among the key's approvers and not be the requester, and there must still be as many
//! of them as the key needs now. The image scope is checked on the signing path.

use super::{ApprovalError, ApprovalRecord, Approvals, CAS_TRIES, State, Subject};
use crate::audit::{Decision, Entry};
use crate::authz::{Action, PrincipalRecord, SignPermit, check_key_use};
use crate::hsm::{DigestAlgorithm, SignInput};
use crate::keys::Purpose;
use crate::signing::attest::AttestationPlan;
use crate::signing::blob::Described;
use crate::signing::parse_ref;
use crate::store::{Revision, StoreError};
use base64::Engine;

impl Approvals {
    /// A request that can still be approved or denied, with its revision.
    async fn pending(&self, id: &str) -> Result<(ApprovalRecord, Revision), ApprovalError> {
        let (r, rev) = self.get_rev(id).await?;
        if r.status != State::Pending {
            return Err(ApprovalError::NotPending {
                id: r.id,
                status: r.status,
            });
        }
        Ok((r, rev))
    }

    /// Whether `approver` may approve `r` now; the error says why not.
    fn may_approve(&self, approver: &PrincipalRecord, r: &ApprovalRecord) -> Result<(), String> {
        if approver.removed_at.is_some() {
            return Err(format!("approver {:?} was removed", approver.name));
        }
        if r.requester == approver.name {
            return Err(format!(
                "{:?} made this request and may not approve it (separation of duties)",
                approver.name
            ));
        }
        match r.subject {
            // A weaker policy needs a second principal who could have made the change,
            // a revocation a second principal who could have revoked.
            Subject::Policy { .. } => {
                return approver.allow(Action::ManageKeys, "approve key policy changes");
            }
            Subject::Revocation { .. } => {
                return approver.allow(Action::Revoke, "approve revocations");
            }
            _ => {}
        }
        approver.allow(Action::Approve, "approve signing requests")?;
        let key = self.keys.get(&r.key).map_err(|e| e.to_string())?;
        if !key.approvers.is_empty() && !key.approvers.contains(&approver.name) {
            return Err(format!(
                "principal {:?} is not among the approvers of key {:?} ({})",
                approver.name,
                key.name,
                key.approvers.join(", ")
            ));
        }
        Ok(())
    }

    /// Records an approval; the request is signed once enough distinct approvers agreed.
    pub async fn approve(
        &self,
        approver: &PrincipalRecord,
        id: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        // A compare-and-swap on the record: of two deciders (here or in another daemon)
        // one wins, the other decides again on what the winner wrote. Only the one that
        // moves the request to approved signs it.
        for _ in 0..CAS_TRIES {
            let (mut r, rev) = self.pending(id).await?;
            self.may_approve(approver, &r)
                .map_err(ApprovalError::Refused)?;
            if r.approved_by.contains(&approver.name) {
                return Err(ApprovalError::Refused(format!(
                    "{:?} already approved this request; it needs another approver",
                    approver.name
                )));
            }
            r.approved_by.push(approver.name.clone());
            let enough = r.approved_by.len() as u32 >= self.needed(&r)?;
            if enough {
                r.status = State::Approved;
            }
            if !self.save_if(&r, rev).await? {
                continue;
            }
            return Ok(if enough { self.execute(r).await } else { r });
        }
        Err(ApprovalError::Busy(id.to_string()))
    }

    /// Approvals `r` needs now: what the key asks today if that is more than when the
    /// request was made (a policy change needs one).
    fn needed(&self, r: &ApprovalRecord) -> Result<u32, ApprovalError> {
        Ok(match r.subject {
            Subject::Policy { .. } => r.needed.max(1),
            Subject::Revocation { .. } => self.keys.get(&r.key)?.revoke_approvals.max(r.needed),
            _ => self.keys.get(&r.key)?.approvals.max(r.needed),
        })
    }

    /// Denies a pending request: an approver, or the requester withdrawing it.
    pub async fn deny(
        &self,
        who: &PrincipalRecord,
        id: &str,
        reason: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        for _ in 0..CAS_TRIES {
            let (mut r, rev) = self.pending(id).await?;
            // Whoever may decide this kind of request may deny it, and the requester
            // may withdraw it.
            let role = match r.subject {
                Subject::Policy { .. } => (Action::ManageKeys, "key-admin"),
                Subject::Revocation { .. } => (Action::Revoke, "revoker"),
                _ => (Action::Approve, "approver"),
            };
            if who.allow(role.0, "deny").is_err() && who.name != r.requester {
                return Err(ApprovalError::Refused(format!(
                    "principal {:?} may not deny: that needs the role {}",
                    who.name, role.1
                )));
            }
            r.status = State::Denied;
            r.denied_by = Some((who.name.clone(), reason.to_string()));
            if self.save_if(&r, rev).await? {
                return Ok(r);
            }
        }
        Err(ApprovalError::Busy(id.to_string()))
    }

    /// Every check made again against the current state; the permit to sign, or why
    /// the request may not sign any more.
    fn recheck(&self, r: &ApprovalRecord) -> Result<Option<SignPermit>, String> {
        let requester = self
            .principals
            .get(&r.requester)
            .map_err(|_| format!("the requester {:?} no longer exists", r.requester))?;
        let key = self.keys.get(&r.key).map_err(|e| e.to_string())?;
        let permit = match r.subject {
            Subject::Policy { .. } | Subject::Revocation { .. } => {
                if requester.removed_at.is_some() {
                    return Err(format!("the requester {:?} was removed", r.requester));
                }
                let (action, what) = match r.subject {
                    Subject::Policy { .. } => (Action::ManageKeys, "change key policy"),
                    _ => (Action::Revoke, "revoke"),
                };
                requester
                    .allow(action, what)
                    .map_err(|e| format!("the requester may not {what} any more: {e}"))?;
                None
            }
            Subject::Blob { .. } => Some(Purpose::Blob),
            Subject::Image { .. } | Subject::Attestation { .. } => Some(Purpose::Image),
        }
        .map(|purpose| {
            check_key_use(&requester, key.clone(), purpose)
                .map_err(|e| format!("the requester may not sign any more: {e}"))
        })
        .transpose()?;
        let mut valid = Vec::new();
        for name in &r.approved_by {
            let approver = self
                .principals
                .get(name)
                .map_err(|_| format!("approver {name:?} no longer exists"))?;
            self.may_approve(&approver, r)?;
            if !valid.contains(name) {
                valid.push(name.clone());
            }
        }
        let needed = self.needed(r).map_err(|e| e.to_string())?;
        if (valid.len() as u32) < needed {
            return Err(format!(
                "{} distinct approvals are needed and {} remain valid",
                needed,
                valid.len()
            ));
        }
        Ok(permit)
    }

    /// Signs an approved request and stores the result (or the error).
    async fn execute(&self, mut r: ApprovalRecord) -> ApprovalRecord {
        let permit = match self.recheck(&r) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(approval = %r.id, reason = %why, "an approved request no longer passes the checks; it is not signed");
                r.status = State::Refused;
                r.error = Some(why);
                if let Err(e) = self.save(&r).await {
                    tracing::error!(approval = %r.id, error = %e, "cannot store the approval's result");
                }
                return r;
            }
        };
        let result = match (&permit, &r.subject) {
            (Some(permit), _) => self.sign(permit, &mut r).await,
            (None, Subject::Revocation { .. }) => self.apply_revocation(&mut r).await,
            (None, _) => self.apply_policy(&r).await,
        };
        match result {
            Ok(()) => {
                r.status = State::Signed;
                r.error = None;
            }
            Err(e) => {
                tracing::error!(approval = %r.id, error = %e, "signing an approved request failed; it stays approved and is retried at start-up");
                r.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.save(&r).await {
            tracing::error!(approval = %r.id, error = %e, "cannot store the approval's result");
        }
        r
    }

    async fn apply_policy(&self, r: &ApprovalRecord) -> Result<(), ApprovalError> {
        if let Subject::Policy { change, .. } = &r.subject {
            let k = self.keys.set_policy(&r.key, change.clone()).await?;
            tracing::info!(approval = %r.id, key = %k.name, requester = %r.requester, approved_by = ?r.approved_by, "weakening policy change applied after approval");
        }
        Ok(())
    }

    async fn sign(&self, permit: &SignPermit, r: &mut ApprovalRecord) -> Result<(), ApprovalError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        match &r.subject {
            Subject::Blob {
                digest_algorithm,
                data,
                file_name,
                size,
            } => {
                // A record that decodes but holds a bad blob was written by no keywardd.
                let corrupt = |detail: String| StoreError::Corrupt {
                    key: r.id.clone(),
                    detail,
                };
                let input = match digest_algorithm {
                    None => {
                        SignInput::Message(b64.decode(data).map_err(|e| corrupt(e.to_string()))?)
                    }
                    Some(d) => SignInput::Digest(
                        DigestAlgorithm::parse(d).map_err(corrupt)?,
                        hex::decode(data).map_err(|e| corrupt(e.to_string()))?,
                    ),
                };
                let described = Described {
                    file_name: file_name.clone(),
                    size: *size,
                };
                let signed = self
                    .blobs
                    .sign(permit, input, &described, &r.request_hash)
                    .await?;
                r.version = Some(signed.version);
                r.signature = Some(b64.encode(signed.signature));
            }
            Subject::Image {
                reference,
                digests,
                annotations,
            } => {
                let image = parse_ref(reference)?;
                let signed = self
                    .signer
                    .sign_planned(permit, &image, digests, annotations)
                    .await?;
                r.version = signed.first().map(|s| s.version);
                r.pushed_to = signed.into_iter().map(|s| s.pushed_to).collect();
            }
            Subject::Attestation {
                reference,
                digest,
                predicate_type,
                predicate,
                predicate_digest,
            } => {
                let plan = AttestationPlan {
                    image: parse_ref(reference)?,
                    digest: digest.clone(),
                    predicate_type: predicate_type.clone(),
                    predicate: predicate.clone(),
                    predicate_digest: predicate_digest.clone(),
                };
                let signed = self.signer.attest_planned(permit, &plan).await?;
                r.version = Some(signed.version);
                r.pushed_to = vec![signed.pushed_to];
            }
            Subject::Policy { .. } | Subject::Revocation { .. } => {}
        }
        Ok(())
    }

    /// Approved requests whose signing did not finish before this start (a crash, a
    /// failed push): taken before the API serves, so that none of them is a request
    /// this process is signing.
    pub async fn unfinished(&self) -> Vec<ApprovalRecord> {
        match self.list(false).await {
            Ok(all) => all
                .into_iter()
                .filter(|r| r.status == State::Approved)
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list approvals to resume");
                Vec::new()
            }
        }
    }

    /// Signs one request [`Approvals::unfinished`] found, after checking it again
    /// (its intent audited first; the job that calls this audits the outcome). A
    /// request that is no longer approved (signed meanwhile, expired) is returned as
    /// it is.
    pub async fn resume_one(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        let r = self.get(id).await?;
        if r.status != State::Approved {
            return Ok(r);
        }
        tracing::info!(approval = %r.id, "signing an approved request left unfinished");
        self.audit
            .append(Entry {
                principal: "keywardd",
                action: "ResumeApproval",
                target: &r.id,
                decision: Decision::Intent,
                reason: "",
                request_hash: &r.request_hash,
            })
            .await
            .map_err(|e| ApprovalError::Busy(format!("cannot audit a resumed approval: {e}")))?;
        Ok(self.execute(r).await)
    }
}
