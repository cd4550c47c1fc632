//! Typed calls: one method per RPC, returning the answer or an [`Error`] that says what
//! kind of refusal it was; list RPCs also have an `_all` form that follows every page.

use crate::{Client, Error};
use keyward_proto::v1 as pb;

macro_rules! unary {
    ($($(#[$doc:meta])* $name:ident: $stub:ident.$rpc:ident($req:ident) -> $resp:ident;)*) => {
        impl Client {$(
            $(#[$doc])*
            pub async fn $name(&self, req: pb::$req) -> Result<pb::$resp, Error> {
                Ok(self.$stub.clone().$rpc(req).await?.into_inner())
            }
        )*}
    };
}

macro_rules! paged {
    ($($(#[$doc:meta])* $name:ident: $rpc:ident($req:ident) -> $item:ident in $items:ident;)*) => {
        impl Client {$(
            $(#[$doc])*
            pub async fn $name(&self, mut req: pb::$req) -> Result<Vec<pb::$item>, Error> {
                let mut all = Vec::new();
                loop {
                    let page = self.$rpc(req.clone()).await?;
                    all.extend(page.$items);
                    if page.next_page_token.is_empty() {
                        return Ok(all);
                    }
                    req.page_token = page.next_page_token;
                }
            }
        )*}
    };
}

unary! {
    /// Creates a key inside an HSM.
    create_key: keys.create_key(CreateKeyRequest) -> Key;
    /// One page of keys.
    list_keys: keys.list_keys(ListKeysRequest) -> ListKeysResponse;
    /// A key with its versions and policy.
    get_key: keys.get_key(GetKeyRequest) -> Key;
    /// Makes a new version active (and starts the campaign re-signing the old one's images).
    rotate_key: keys.rotate_key(RotateKeyRequest) -> RotateKeyResponse;
    /// A version's public key and certificate.
    get_public_key: keys.get_public_key(GetPublicKeyRequest) -> PublicKey;
    /// The daemon's HSM backends.
    list_backends: keys.list_backends(ListBackendsRequest) -> ListBackendsResponse;
    /// Sets the repositories a key may sign (a weakening change waits for approval).
    set_key_scope: keys.set_key_scope(SetKeyScopeRequest) -> PolicyChangeResponse;
    /// Changes a key's policy (a weakening change waits for approval).
    set_key_policy: keys.set_key_policy(SetKeyPolicyRequest) -> PolicyChangeResponse;
    /// A key's history, signed by the Keyward CA.
    get_key_history: keys.get_key_history(GetKeyHistoryRequest) -> KeyHistory;
    /// Signs a digest or message with a blob key.
    sign_digest: signing.sign_digest(SignDigestRequest) -> SignResponse;
    /// Signs many digests or messages with a blob key in one request.
    sign_digests: signing.sign_digests(SignDigestsRequest) -> SignDigestsResponse;
    /// Signs an image in its registry.
    sign_image: images.sign_image(SignImageRequest) -> SignImageResponse;
    /// Attaches a signed attestation to an image.
    attest_image: images.attest_image(AttestImageRequest) -> AttestImageResponse;
    /// Checks an image's signatures against a key's versions.
    verify_image: images.verify_image(VerifyImageRequest) -> VerifyImageResponse;
    /// One page of the signature ledger.
    list_signatures: images.list_signatures(ListSignaturesRequest) -> ListSignaturesResponse;
    /// Registers a principal and certifies its public key.
    add_principal: principals.add_principal(AddPrincipalRequest) -> AddPrincipalResponse;
    /// One page of principals.
    list_principals: principals.list_principals(ListPrincipalsRequest) -> ListPrincipalsResponse;
    /// A principal.
    get_principal: principals.get_principal(GetPrincipalRequest) -> Principal;
    /// Removes a principal.
    remove_principal: principals.remove_principal(RemovePrincipalRequest) -> Principal;
    /// Lifts a principal's MFA lockout.
    unlock_principal: principals.unlock_principal(UnlockPrincipalRequest) -> Principal;
    /// Deletes a principal's second factor.
    reset_principal_mfa: principals.reset_principal_mfa(ResetPrincipalMfaRequest) -> Principal;
    /// The principal this connection authenticates as.
    who_am_i: principals.who_am_i(WhoAmIRequest) -> Principal;
    /// The audit key's public half.
    audit_public_key: audit.audit_public_key(AuditPublicKeyRequest) -> AuditPublicKeyResponse;
    /// The audit chain's head, signed by the audit key.
    get_audit_head: audit.get_audit_head(GetAuditHeadRequest) -> SignedAuditHead;
    /// Starts a TOTP enrolment.
    enroll: mfa.enroll(EnrollRequest) -> EnrollResponse;
    /// Confirms a TOTP enrolment with a first code.
    confirm: mfa.confirm(ConfirmRequest) -> ConfirmResponse;
    /// One page of approvals.
    list_approvals: approvals.list_approvals(ListApprovalsRequest) -> ListApprovalsResponse;
    /// An approval.
    get_approval: approvals.get_approval(GetApprovalRequest) -> Approval;
    /// Approves a request.
    approve: approvals.approve(ApproveRequest) -> Approval;
    /// Denies a request.
    deny: approvals.deny(DenyRequest) -> Approval;
    /// One page of jobs.
    list_jobs: jobs.list_jobs(ListJobsRequest) -> ListJobsResponse;
    /// A job with its first failures.
    get_job: jobs.get_job(GetJobRequest) -> Job;
    /// Pauses a job.
    pause_job: jobs.pause_job(PauseJobRequest) -> Job;
    /// Resumes a paused job.
    resume_job: jobs.resume_job(ResumeJobRequest) -> Job;
    /// Cancels a job.
    cancel_job: jobs.cancel_job(CancelJobRequest) -> Job;
    /// Re-queues a finished job's failed items.
    retry_job: jobs.retry_job(RetryJobRequest) -> Job;
    /// Starts a re-signing campaign.
    resign: jobs.resign(ResignRequest) -> Job;
    /// Revokes a key version (irreversible).
    revoke_key_version: revocations.revoke_key_version(RevokeKeyVersionRequest) -> RevokeKeyVersionResponse;
    /// Incident response: revoke, rotate if needed, re-sign what came before, publish.
    incident_revoke: revocations.incident_revoke(IncidentRevokeRequest) -> IncidentReport;
    /// Revokes one image's signature by a key (irreversible).
    revoke_signature: revocations.revoke_signature(RevokeSignatureRequest) -> RevokeSignatureResponse;
    /// The CA, the TSA's chain, the issuer and a key's identity.
    get_trust: trust.get_trust(GetTrustRequest) -> Trust;
    /// The current revocation list, signed by the Keyward CA.
    get_revocation_list: revocations.get_revocation_list(GetRevocationListRequest) -> SignedRevocationList;
    /// Where revocation lists are published, and what each registry holds.
    get_publish_status: revocations.get_publish_status(GetPublishStatusRequest) -> PublishStatus;
}

paged! {
    /// Every key.
    list_keys_all: list_keys(ListKeysRequest) -> Key in keys;
    /// Every ledger entry that matches.
    list_signatures_all: list_signatures(ListSignaturesRequest) -> LedgerEntry in entries;
    /// Every principal.
    list_principals_all: list_principals(ListPrincipalsRequest) -> Principal in principals;
    /// Every approval that matches.
    list_approvals_all: list_approvals(ListApprovalsRequest) -> Approval in approvals;
    /// Every job that matches.
    list_jobs_all: list_jobs(ListJobsRequest) -> Job in jobs;
}

impl Client {
    /// The audit log as JSON lines, from record `from_seq` (or the time `since`); with
    /// `checkpoint` the daemon signs the chain head first.
    pub async fn export_audit(
        &self,
        req: pb::ExportAuditRequest,
    ) -> Result<Vec<pb::AuditLine>, Error> {
        let mut stream = self.audit.clone().export_audit(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(l) = stream.message().await? {
            out.push(l);
        }
        Ok(out)
    }
}
