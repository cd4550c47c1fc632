//! `keyward.v1.SigningService`.

use super::Observer;
use crate::authz::Action;
use crate::hsm::{DigestAlgorithm, SignInput};
use crate::identity::principal;
use crate::keys::{KeyError, KeyRegistry};
use keyward_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest message the daemon hashes or signs itself.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 - 1024;

/// Serves raw signing.
#[derive(Debug, Clone)]
pub struct SigningApi {
    keys: Arc<KeyRegistry>,
    approvals: Arc<crate::approvals::Approvals>,
    obs: Observer,
}

impl SigningApi {
    /// A service over the registry.
    pub fn new(
        keys: Arc<KeyRegistry>,
        approvals: Arc<crate::approvals::Approvals>,
        obs: Observer,
    ) -> Self {
        Self {
            keys,
            approvals,
            obs,
        }
    }
}

fn input(r: pb::SignDigestRequest) -> Result<SignInput, KeyError> {
    match (r.digest.is_empty(), r.message.is_empty()) {
        (false, false) => Err(KeyError::InvalidArgument(
            "send either a digest or a message, not both".into(),
        )),
        (true, true) => Err(KeyError::InvalidArgument(
            "nothing to sign: send a digest (with digest_algorithm) or a message".into(),
        )),
        (false, true) => {
            let alg = if r.digest_algorithm.is_empty() {
                DigestAlgorithm::Sha256
            } else {
                DigestAlgorithm::parse(&r.digest_algorithm).map_err(KeyError::InvalidArgument)?
            };
            Ok(SignInput::Digest(alg, r.digest))
        }
        (true, false) => {
            if r.message.len() > MAX_MESSAGE {
                return Err(KeyError::InvalidArgument(format!(
                    "message is {} bytes; at most {MAX_MESSAGE} are accepted: send its digest instead",
                    r.message.len()
                )));
            }
            Ok(SignInput::Message(r.message))
        }
    }
}

#[tonic::async_trait]
impl pb::signing_service_server::SigningService for SigningApi {
    async fn sign_digest(
        &self,
        req: Request<pb::SignDigestRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let who = principal(&req)?;
        let call = self
            .obs
            .call(&who, "SignDigest", req.get_ref().key.clone(), &req);
        call.gate(Action::Sign, "sign").await?;
        if let Ok(rec) = self.keys.get(&req.get_ref().key) {
            call.may_sign(&rec).await?;
            if rec.require_mfa {
                call.require_mfa("signing with this key").await?;
            }
        }
        let request_hash = crate::audit::request_hash(req.get_ref());
        let r = req.into_inner();
        let name = r.key.clone();
        let needed = self.keys.get(&name).map(|k| k.approvals).unwrap_or(0);
        if needed > 0 {
            let result = async {
                let input = input(r)?;
                self.approvals
                    .request_blob(&who.name, &name, &input, &request_hash, needed)
                    .map_err(|e| KeyError::InvalidArgument(e.to_string()))
            }
            .await;
            return call.finish(result).await.map(|a| {
                tracing::info!(principal = %who.name, key = %name, approval = %a.id, "signing request waits for approval");
                Response::new(pb::SignResponse {
                    key: name.clone(),
                    approval_id: a.id,
                    pending: true,
                    ..Default::default()
                })
            });
        }
        let result = async {
            let rec = self.keys.get(&name)?;
            let input = input(r)?;
            let digest_algorithm = match &input {
                SignInput::Digest(d, _) => d.to_string(),
                SignInput::Message(_) if rec.algorithm == crate::hsm::Algorithm::Ed25519 => {
                    String::new()
                }
                SignInput::Message(_) => rec.algorithm.default_digest().to_string(),
            };
            let (version, signature) = self.keys.sign(&name, input).await?;
            Ok::<_, KeyError>(pb::SignResponse {
                key: name.clone(),
                version,
                algorithm: rec.algorithm.to_string(),
                signature,
                digest_algorithm,
                ..Default::default()
            })
        }
        .await;
        if result.is_ok() {
            self.obs.metrics.signature(&name);
            tracing::debug!(principal = %who.name, key = %name, "signed");
        }
        call.finish(result).await.map(Response::new)
    }
}
