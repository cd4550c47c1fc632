//! `keyward.v1.MfaService`.

use super::Observer;
use super::gate::admitted;
use keyward_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// Serves enrolment of the caller's own second factor.
#[derive(Debug)]
pub struct MfaApi {
    obs: Observer,
}

impl MfaApi {
    /// A service over the observer's MFA state.
    pub fn new(obs: Observer) -> Self {
        Self { obs }
    }
}

#[tonic::async_trait]
impl pb::mfa_service_server::MfaService for MfaApi {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let call = admitted(&req)?;
        let result = self.obs.mfa.enroll(call.principal(), false).await;
        let e = call.finish(result).await?;
        Ok(Response::new(pb::EnrollResponse {
            otpauth_uri: e.uri.to_string(),
        }))
    }

    async fn confirm(
        &self,
        req: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let call = admitted(&req)?;
        let result = self
            .obs
            .mfa
            .confirm(call.principal(), req.get_ref().code.trim())
            .await;
        call.finish(result).await?;
        Ok(Response::new(pb::ConfirmResponse {}))
    }
}
