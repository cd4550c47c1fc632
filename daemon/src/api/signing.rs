//! `keyward.v1.SigningService`.

use super::Observer;
use super::gate::admitted;
use crate::hsm::{DigestAlgorithm, SignInput};
use crate::keys::KeyError;
use crate::signing::blob::{BlobSigner, Described};
use keyward_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest message the daemon hashes or signs itself.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 - 1024;

/// Serves raw signing.
#[derive(Debug, Clone)]
pub struct SigningApi {
    blobs: Arc<BlobSigner>,
    approvals: Arc<crate::approvals::Approvals>,
    obs: Observer,
}

impl SigningApi {
    /// A service over the registry.
    pub fn new(
        blobs: Arc<BlobSigner>,
        approvals: Arc<crate::approvals::Approvals>,
        obs: Observer,
    ) -> Self {
        Self {
            blobs,
            approvals,
            obs,
        }
    }
}

/// What the HSM signs for a request.
pub fn input(r: pb::SignDigestRequest) -> Result<SignInput, KeyError> {
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
        let call = admitted(&req)?;
        let r = req.into_inner();
        let name = r.key.clone();
        let described = Described {
            file_name: r.file_name.clone(),
            size: r.size,
        };
        let Some(permit) = call.permit.clone() else {
            // The gate admitted the request but the key needs approvals first.
            let result = async {
                let input = input(r)?;
                self.approvals
                    .request_blob(
                        call.principal(),
                        &name,
                        &input,
                        described,
                        &call.request_hash,
                        call.approvals_needed,
                    )
                    .await
                    .map_err(|e| KeyError::InvalidArgument(e.to_string()))
            }
            .await;
            return call.finish(result).await.map(|a| {
                tracing::info!(principal = %call.principal(), key = %name, approval = %a.id, "signing request waits for approval");
                Response::new(pb::SignResponse {
                    key: name.clone(),
                    approval_id: a.id,
                    pending: true,
                    ..Default::default()
                })
            });
        };
        let result = async {
            let input = input(r)?;
            let signed = self
                .blobs
                .sign(&permit, input, &described, &call.request_hash)
                .await?;
            Ok::<_, KeyError>((
                signed.ledger_write,
                pb::SignResponse {
                    key: name.clone(),
                    version: signed.version,
                    algorithm: permit.key().algorithm.to_string(),
                    signature: signed.signature,
                    digest_algorithm: signed.digest_algorithm,
                    ..Default::default()
                },
            ))
        }
        .await;
        let ledger_write = match &result {
            Ok((w, _)) => {
                self.obs.metrics.signature(&name);
                tracing::debug!(principal = %call.principal(), key = %name, "signed");
                *w
            }
            Err(_) => 0,
        };
        // The signature leaves only once its ledger entry and outcome record are durable.
        call.finish_covering(result.map(|(_, r)| r), ledger_write)
            .await
            .map(Response::new)
    }

    async fn sign_digests(
        &self,
        req: Request<pb::SignDigestsRequest>,
    ) -> Result<Response<pb::SignDigestsResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let name = r.key.clone();
        let result = async {
            let Some(permit) = call.permit.clone() else {
                return Err(KeyError::FailedPrecondition(format!(
                    "key {name:?} needs {} approvals per signature, so it does not sign batches: send each digest with SignDigest (keyward sign-blob FILE)",
                    call.approvals_needed
                )));
            };
            let items = batch_inputs(r.items)?;
            let version = permit.version().number();
            let reasons: Vec<String> = items
                .iter()
                .map(|(input, described)| {
                    format!(
                        "signed {} ({}, {} bytes) with v{version}",
                        crate::signing::blob::ledger_digest(input),
                        described.file_name,
                        described.size
                    )
                })
                .collect();
            let signed = self
                .blobs
                .sign_many(&permit, items, &call.request_hash)
                .await?;
            // One audit record per signature, each naming what was signed; the outcome
            // record's group commit makes them durable before the answer leaves.
            for reason in &reasons {
                call.observer()
                    .audit
                    .append_queued(crate::audit::Entry {
                        principal: call.principal(),
                        action: call.rule.name,
                        target: &name,
                        decision: crate::audit::Decision::Allowed,
                        reason,
                        request_hash: &call.request_hash,
                    })
                    .map_err(|e| match e {
                        crate::audit::AuditError::Store(s) => KeyError::Store(s),
                        crate::audit::AuditError::Hsm(h) => KeyError::Hsm(h),
                    })?;
                self.obs.metrics.signature(&name);
            }
            let last = signed.last().map(|s| s.ledger_write).unwrap_or(0);
            Ok::<_, KeyError>((
                last,
                pb::SignDigestsResponse {
                    key: name.clone(),
                    version,
                    algorithm: permit.key().algorithm.to_string(),
                    signatures: signed
                        .into_iter()
                        .map(|s| pb::SignedItem {
                            signature: s.signature,
                            digest_algorithm: s.digest_algorithm,
                        })
                        .collect(),
                },
            ))
        }
        .await;
        let covers = result.as_ref().map(|(w, _)| *w).unwrap_or(0);
        // The signatures leave only once their ledger entries and records are durable.
        call.finish_covering(result.map(|(_, r)| r), covers)
            .await
            .map(Response::new)
    }
}

/// Most items one SignDigests request may carry.
pub const MAX_BATCH: usize = 1000;

/// Every item of a batch as the HSM signs it, each checked as a SignDigest would be;
/// the first bad item refuses the whole batch, naming it.
fn batch_inputs(items: Vec<pb::SignItem>) -> Result<Vec<(SignInput, Described)>, KeyError> {
    if items.is_empty() {
        return Err(KeyError::InvalidArgument(
            "nothing to sign: the batch has no items".into(),
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(KeyError::InvalidArgument(format!(
            "the batch has {} items; at most {MAX_BATCH} are accepted: split it",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let described = Described {
                file_name: item.file_name,
                size: item.size,
            };
            let one = pb::SignDigestRequest {
                digest_algorithm: item.digest_algorithm,
                digest: item.digest,
                message: item.message,
                ..Default::default()
            };
            input(one).map(|input| (input, described)).map_err(|e| {
                KeyError::InvalidArgument(format!("item {i}: {e}; nothing was signed"))
            })
        })
        .collect()
}
