//! What every request goes through after authentication: the role check, the audit
//! record (durable before the answer; fail closed), metrics and the log.

use super::ToStatus;
use crate::audit::{AuditLog, Entry, request_hash};
use crate::authz::Action;
use crate::identity::Principal;
use crate::keys::KeyRecord;
use crate::metrics::Metrics;
use crate::mfa::{Mfa, MfaError};
use std::sync::Arc;
use tonic::{Code, Status};

/// Shared by all services.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Second factors.
    pub mfa: Arc<Mfa>,
}

/// Request metadata carrying a one-time code.
pub const OTP_HEADER: &str = "x-keyward-otp";

/// One request in progress.
pub struct Call<'a> {
    obs: &'a Observer,
    who: &'a Principal,
    method: &'static str,
    target: String,
    request_hash: String,
    otp: Option<zeroize::Zeroizing<String>>,
}

impl Observer {
    /// Starts accounting for a request.
    pub fn call<'a, M: prost::Message>(
        &'a self,
        who: &'a Principal,
        method: &'static str,
        target: impl Into<String>,
        request: &tonic::Request<M>,
    ) -> Call<'a> {
        Call {
            obs: self,
            who,
            method,
            target: target.into(),
            request_hash: request_hash(request.get_ref()),
            otp: request
                .metadata()
                .get(OTP_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|s| zeroize::Zeroizing::new(s.trim().to_string())),
        }
    }
}

impl Call<'_> {
    async fn record(&self, decision: &str, reason: &str) -> Result<(), Status> {
        self.obs
            .audit
            .append(Entry {
                principal: &self.who.name,
                action: self.method,
                target: &self.target,
                decision,
                reason,
                request_hash: &self.request_hash,
            })
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(method = self.method, principal = %self.who.name, error = %e, "audit log write failed; refusing the request");
                Status::unavailable("the audit log cannot be written, so the request is refused; see the daemon log")
            })
    }

    async fn refuse(&self, st: Status) -> Status {
        tracing::info!(method = self.method, principal = %self.who.name, reason = %st.message(), "request refused");
        self.obs.metrics.request(self.method, st.code());
        match self.record("denied", st.message()).await {
            Ok(()) => st,
            Err(audit) => audit,
        }
    }

    /// Checks the caller's roles; a refusal is audited and says which role is missing.
    pub async fn gate(&self, action: Action, what: &str) -> Result<(), Status> {
        match self.who.allow(action, what) {
            Ok(()) => Ok(()),
            Err(st) => Err(self.refuse(st).await),
        }
    }

    /// Asks for the caller's one-time code when MFA is enforced. Refusals (missing,
    /// wrong, reused code, lockout) are audited and never echo the code.
    pub async fn require_mfa(&self, what: &str) -> Result<(), Status> {
        if !self.obs.mfa.required() {
            return Ok(());
        }
        match self
            .obs
            .mfa
            .verify(
                &self.who.name,
                what,
                self.otp.as_deref().map(|s| s.as_str()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self.refuse(mfa_status(&e)).await),
        }
    }

    /// The caller's one-time code, if it sent one.
    pub fn otp(&self) -> Option<&str> {
        self.otp.as_deref().map(|s| s.as_str())
    }

    /// Checks a key's signer list: when it names principals, only they may sign with it.
    pub async fn may_sign(&self, key: &KeyRecord) -> Result<(), Status> {
        if key.signers.is_empty() || key.signers.iter().any(|s| s == &self.who.name) {
            return Ok(());
        }
        Err(self
            .refuse(Status::permission_denied(format!(
                "principal {:?} is not among the signers of key {:?} ({})",
                self.who.name,
                key.name,
                key.signers.join(", ")
            )))
            .await)
    }

    /// Records the outcome and turns an error into the caller's status. A successful
    /// result is returned only once its audit record is durable.
    pub async fn finish<T, E: ToStatus>(&self, result: Result<T, E>) -> Result<T, Status> {
        match result {
            Ok(v) => {
                self.record("allowed", "").await?;
                self.obs.metrics.request(self.method, Code::Ok);
                Ok(v)
            }
            Err(e) => {
                let st = e.to_status();
                if matches!(
                    st.code(),
                    Code::Internal | Code::Unavailable | Code::DataLoss
                ) {
                    tracing::error!(method = self.method, principal = %self.who.name, error = %e, "request failed");
                } else {
                    tracing::info!(method = self.method, principal = %self.who.name, error = %e, "request refused");
                }
                self.obs.metrics.request(self.method, st.code());
                let decision =
                    if matches!(st.code(), Code::PermissionDenied | Code::Unauthenticated) {
                        "denied"
                    } else {
                        "failed"
                    };
                self.record(decision, st.message()).await?;
                Err(st)
            }
        }
    }
}

/// The status for an MFA refusal.
pub fn mfa_status(e: &MfaError) -> Status {
    match e {
        MfaError::Store(_) | MfaError::Hsm(_) => {
            Status::unavailable("the second-factor check failed; see the daemon log")
        }
        MfaError::Malformed | MfaError::NothingToConfirm(_) => {
            Status::invalid_argument(e.to_string())
        }
        _ => Status::unauthenticated(e.to_string()),
    }
}

impl ToStatus for MfaError {
    fn to_status(&self) -> Status {
        mfa_status(self)
    }
}
