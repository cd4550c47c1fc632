//! What every request ends with: the outcome record (durable before the answer; fail
//! closed), metrics and the log. The checks before a handler runs are in `gate.rs`.

use super::ToStatus;
use super::gate::Admitted;
use crate::audit::{AuditLog, Decision, Entry};
use crate::metrics::Metrics;
use crate::mfa::{Mfa, MfaError};
use std::sync::Arc;
use tonic::{Code, Status};

/// Shared by the gate and all services.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Second factors.
    pub mfa: Arc<Mfa>,
}

impl Observer {
    /// Writes an audit record and waits until it is durable; if it cannot be written,
    /// the caller gets UNAVAILABLE and the request goes no further.
    pub async fn record(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        decision: Decision,
        reason: &str,
        request_hash: &str,
    ) -> Result<(), Status> {
        self.record_covering(principal, action, target, decision, reason, request_hash, 0)
            .await
    }

    /// Like [`Observer::record`]; the earlier store write `covers` is durable too.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_covering(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        decision: Decision,
        reason: &str,
        request_hash: &str,
        covers: u64,
    ) -> Result<(), Status> {
        self.audit
            .append_covering(
                Entry {
                    principal,
                    action,
                    target,
                    decision,
                    reason,
                    request_hash,
                },
                covers,
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(method = action, principal, error = %e, "audit log write failed; refusing the request");
                Status::unavailable("the audit log cannot be written, so the request is refused; see the daemon log")
            })
    }
}

impl Admitted {
    /// The caller's name.
    pub fn principal(&self) -> &str {
        &self.who.name
    }

    /// The observer (metrics, audit, MFA).
    pub fn observer(&self) -> &Observer {
        &self.obs
    }

    /// Records the outcome and turns an error into the caller's status. A result is
    /// returned only once its outcome record is durable (reads that succeed were
    /// recorded by the gate and add nothing).
    pub async fn finish<T, E: ToStatus>(&self, result: Result<T, E>) -> Result<T, Status> {
        self.finish_covering(result, 0).await
    }

    /// Like [`Admitted::finish`]; a successful result is also held back until the
    /// earlier store write `covers` (its ledger entry) is durable, in the same group
    /// commit as the outcome record.
    pub async fn finish_covering<T, E: ToStatus>(
        &self,
        result: Result<T, E>,
        covers: u64,
    ) -> Result<T, Status> {
        let (method, who) = (self.rule.name, self.who.name.as_str());
        match result {
            Ok(v) => {
                if self.rule.effect.changes_state() || covers > 0 {
                    self.obs
                        .record_covering(
                            who,
                            method,
                            &self.target.name,
                            Decision::Allowed,
                            "",
                            &self.request_hash,
                            covers,
                        )
                        .await?;
                }
                self.obs.metrics.request(method, Code::Ok);
                Ok(v)
            }
            Err(e) => {
                let st = e.to_status();
                if matches!(
                    st.code(),
                    Code::Internal | Code::Unavailable | Code::DataLoss
                ) {
                    tracing::error!(method, principal = %who, error = %e, "request failed");
                } else {
                    tracing::info!(method, principal = %who, error = %e, "request refused");
                }
                self.obs.metrics.request(method, st.code());
                let decision =
                    if matches!(st.code(), Code::PermissionDenied | Code::Unauthenticated) {
                        Decision::Denied
                    } else {
                        Decision::Failed
                    };
                self.obs
                    .record(
                        who,
                        method,
                        &self.target.name,
                        decision,
                        st.message(),
                        &self.request_hash,
                    )
                    .await?;
                Err(st)
            }
        }
    }
}

/// The status for an MFA refusal. Mistakes of the caller's own (no enrolment, already
/// enrolled, wrong or reused code) reach the caller; device and storage details stay
/// in the log.
pub fn mfa_status(e: &MfaError) -> Status {
    match e {
        MfaError::Integrity(crate::store::integrity::IntegrityError::Tampered { .. }) => {
            tracing::error!(error = %e, "second-factor record refused");
            Status::unauthenticated(
                "this principal's stored second factor failed its integrity check and is not used; an admin must remove and re-add the principal",
            )
        }
        MfaError::Store(_) | MfaError::Hsm(_) | MfaError::Integrity(_) => {
            tracing::error!(error = %e, "second-factor check failed");
            Status::unavailable("the second-factor check failed; see the daemon log")
        }
        MfaError::Malformed | MfaError::NothingToConfirm(_) => {
            Status::invalid_argument(e.to_string())
        }
        MfaError::AlreadyEnrolled(_) => Status::failed_precondition(e.to_string()),
        MfaError::Busy(_) => Status::unavailable(e.to_string()),
        MfaError::Required(_) => Status::with_details(
            tonic::Code::Unauthenticated,
            e.to_string(),
            keyward_proto::mfa_required_details().into(),
        ),
        _ => Status::unauthenticated(e.to_string()),
    }
}

impl ToStatus for MfaError {
    fn to_status(&self) -> Status {
        mfa_status(self)
    }
}
