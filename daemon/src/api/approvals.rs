//! `keyward.v1.ApprovalService`.

use super::ToStatus;
use super::gate::admitted;
use super::page;
use crate::approvals::{ApprovalError, ApprovalRecord, Approvals, State, Subject};
use crate::store::integrity::IntegrityError;
use keyward_proto::v1 as pb;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Serves approvals.
#[derive(Debug)]
pub struct ApprovalApi {
    approvals: Arc<Approvals>,
}

impl ApprovalApi {
    /// A service over the approvals.
    pub fn new(approvals: Arc<Approvals>) -> Self {
        Self { approvals }
    }
}

impl ToStatus for ApprovalError {
    fn to_status(&self) -> Status {
        match self {
            ApprovalError::NotFound(_) => Status::not_found(self.to_string()),
            ApprovalError::NotPending { .. } => Status::failed_precondition(self.to_string()),
            ApprovalError::Refused(_) => Status::permission_denied(self.to_string()),
            ApprovalError::Key(k) => k.to_status(),
            ApprovalError::Image(i) => i.to_status(),
            ApprovalError::Store(_) => Status::internal("internal error: the store failed"),
            ApprovalError::Busy(_) => Status::unavailable(self.to_string()),
            ApprovalError::Random(_) => {
                tracing::error!(error = %self, "cannot make an approval id");
                Status::unavailable("the daemon cannot make random ids now; see the daemon log")
            }
            ApprovalError::Integrity(IntegrityError::Tampered { .. }) => {
                Status::data_loss(self.to_string())
            }
            ApprovalError::Integrity(_) => {
                Status::unavailable("the approval could not be checked; see the daemon log")
            }
        }
    }
}

fn ts(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn state(s: State) -> pb::ApprovalState {
    match s {
        State::Pending => pb::ApprovalState::Pending,
        State::Approved => pb::ApprovalState::Approved,
        State::Signed => pb::ApprovalState::Signed,
        State::Denied => pb::ApprovalState::Denied,
        State::Expired => pb::ApprovalState::Expired,
        State::Refused => pb::ApprovalState::Refused,
    }
}

/// The API view of an approval: everything an approver needs to see.
pub fn view(r: &ApprovalRecord) -> pb::Approval {
    let mut a = pb::Approval {
        id: r.id.clone(),
        status: state(r.status) as i32,
        key: r.key.clone(),
        requester: r.requester.clone(),
        created_at: ts(r.created_at),
        expires_at: ts(r.expires_at),
        approvals_needed: r.needed,
        approved_by: r.approved_by.clone(),
        denied_by: r
            .denied_by
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or_default(),
        deny_reason: r
            .denied_by
            .as_ref()
            .map(|d| d.1.clone())
            .unwrap_or_default(),
        signature: r.signature.clone().unwrap_or_default(),
        version: r.version,
        pushed_to: r.pushed_to.clone(),
        error: r.error.clone().unwrap_or_default(),
        request_hash: r.request_hash.clone(),
        outcome: r.outcome.clone().unwrap_or_default(),
        ..Default::default()
    };
    match &r.subject {
        Subject::Blob {
            digest_algorithm,
            data,
            file_name,
            size,
        } => {
            a.kind = pb::ApprovalKind::Blob as i32;
            a.digest_algorithm = digest_algorithm.clone();
            a.digests = vec![data.clone()];
            a.file_name = file_name.clone();
            a.size = *size;
        }
        Subject::Policy { weakens, .. } => {
            a.kind = pb::ApprovalKind::Policy as i32;
            a.policy_changes = weakens.clone();
        }
        Subject::Revocation {
            version,
            reason,
            compromised_since,
            incident,
            remove_signatures,
            ..
        } => {
            a.kind = pb::ApprovalKind::Revocation as i32;
            a.revoke_version = *version;
            a.revoke_reason = super::keys::reason_view(*reason) as i32;
            a.compromised_since = compromised_since.map(ts).unwrap_or_default();
            a.incident = *incident;
            a.remove_signatures = *remove_signatures;
        }
        Subject::Attestation {
            reference,
            digest,
            predicate_type,
            predicate_digest,
            ..
        } => {
            a.kind = pb::ApprovalKind::Attestation as i32;
            a.reference = reference.clone();
            a.digests = vec![digest.clone()];
            a.predicate_type = predicate_type.clone();
            a.predicate_digest = predicate_digest.clone();
        }
        Subject::Image {
            reference,
            digests,
            annotations,
        } => {
            a.kind = pb::ApprovalKind::Image as i32;
            a.reference = reference.clone();
            a.digests = digests.clone();
            a.annotations = annotations.clone().into_iter().collect();
        }
    }
    a
}

#[tonic::async_trait]
impl pb::approval_service_server::ApprovalService for ApprovalApi {
    async fn list_approvals(
        &self,
        req: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        // Newest first, one index page at a time: the open index for --pending.
        let result = if r.archived {
            self.approvals
                .archived_page(&r.page_token, page::size(r.page_size))
                .await
        } else {
            self.approvals
                .page(r.pending_only, &r.page_token, page::size(r.page_size))
                .await
        };
        call.finish(result).await.map(|(l, next_page_token)| {
            Response::new(pb::ListApprovalsResponse {
                approvals: l
                    .iter()
                    .filter(|a| !r.pending_only || a.status == State::Pending)
                    .map(view)
                    .collect(),
                next_page_token,
            })
        })
    }

    async fn get_approval(
        &self,
        req: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let call = admitted(&req)?;
        let result = self.approvals.get(&req.get_ref().id).await;
        call.finish(result).await.map(|r| Response::new(view(&r)))
    }

    async fn approve(
        &self,
        req: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let call = admitted(&req)?;
        let result = self
            .approvals
            .approve(&call.who.record, &req.get_ref().id)
            .await;
        if let Ok(r) = &result {
            tracing::info!(principal = %call.principal(), approval = %r.id, status = %r.status, "approval recorded");
        }
        call.finish(result).await.map(|r| Response::new(view(&r)))
    }

    async fn deny(&self, req: Request<pb::DenyRequest>) -> Result<Response<pb::Approval>, Status> {
        let call = admitted(&req)?;
        let r = req.get_ref();
        let result = self
            .approvals
            .deny(&call.who.record, &r.id, &r.reason)
            .await;
        call.finish(result).await.map(|r| Response::new(view(&r)))
    }
}
