//! `keyward.v1.ImageService`.

use super::Observer;
use super::gate::admitted;
use super::keys::state;
use super::page;
use crate::signing::ledger::LedgerQuery;
use crate::signing::{ImageError, ImageSigner, Signed};
use keyward_proto::v1 as pb;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Serves image signing, attestation, verification and the ledger.
#[derive(Debug, Clone)]
pub struct ImageApi {
    signer: Arc<ImageSigner>,
    approvals: Arc<crate::approvals::Approvals>,
    obs: Observer,
}

impl ImageApi {
    /// A service over the signer.
    pub fn new(
        signer: Arc<ImageSigner>,
        approvals: Arc<crate::approvals::Approvals>,
        obs: Observer,
    ) -> Self {
        Self {
            signer,
            approvals,
            obs,
        }
    }
}

fn artifact(s: &Signed) -> pb::SignedArtifact {
    pb::SignedArtifact {
        reference: s.reference.clone(),
        digest: s.digest.clone(),
        pushed_to: s.pushed_to.clone(),
        version: s.version,
        already_signed: s.already_signed,
    }
}

fn time_arg(name: &str, v: &str) -> Result<Option<OffsetDateTime>, ImageError> {
    if v.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(v, &Rfc3339).map(Some).map_err(|e| {
        ImageError::InvalidArgument(format!(
            "--{name} {v:?} is not an RFC 3339 time (e.g. 2026-11-25T10:00:00Z): {e}"
        ))
    })
}

#[tonic::async_trait]
impl pb::image_service_server::ImageService for ImageApi {
    async fn sign_image(
        &self,
        req: Request<pb::SignImageRequest>,
    ) -> Result<Response<pb::SignImageResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let Some(permit) = call.permit.clone() else {
            let result = self
                .approvals
                .request_image(
                    call.principal(),
                    &r.key,
                    &r.reference,
                    r.recursive,
                    r.annotations.into_iter().collect(),
                    &call.request_hash,
                    call.approvals_needed,
                )
                .await;
            return call.finish(result).await.map(|a| {
                tracing::info!(principal = %call.principal(), key = %r.key, approval = %a.id, "image signing request waits for approval");
                Response::new(pb::SignImageResponse {
                    signed: Vec::new(),
                    approval_id: a.id,
                    pending: true,
                })
            });
        };
        let result = self
            .signer
            .sign(
                &permit,
                &r.reference,
                r.annotations.into_iter().collect(),
                r.recursive,
            )
            .await;
        if let Ok(signed) = &result {
            for s in signed.iter().filter(|s| !s.already_signed) {
                self.obs.metrics.signature(&r.key);
                tracing::info!(principal = %call.principal(), key = %r.key, version = s.version, digest = %s.digest, pushed_to = %s.pushed_to, "image signed");
            }
        }
        call.finish(result).await.map(|s| {
            Response::new(pb::SignImageResponse {
                signed: s.iter().map(artifact).collect(),
                ..Default::default()
            })
        })
    }

    async fn attest_image(
        &self,
        req: Request<pb::AttestImageRequest>,
    ) -> Result<Response<pb::AttestImageResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let Some(permit) = call.permit.clone() else {
            let result = self
                .approvals
                .request_attestation(
                    call.principal(),
                    &r.key,
                    &r.reference,
                    &r.predicate_type,
                    &r.predicate,
                    &call.request_hash,
                    call.approvals_needed,
                )
                .await;
            return call.finish(result).await.map(|a| {
                tracing::info!(principal = %call.principal(), key = %r.key, approval = %a.id, "attestation waits for approval");
                Response::new(pb::AttestImageResponse {
                    attestation: None,
                    predicate_type: String::new(),
                    approval_id: a.id,
                    pending: true,
                })
            });
        };
        let result = self
            .signer
            .attest(&permit, &r.reference, &r.predicate_type, &r.predicate)
            .await;
        if let Ok((s, t)) = &result {
            self.obs.metrics.signature(&r.key);
            tracing::info!(principal = %call.principal(), key = %r.key, digest = %s.digest, predicate_type = %t, "image attested");
        }
        call.finish(result).await.map(|(s, t)| {
            Response::new(pb::AttestImageResponse {
                attestation: Some(artifact(&s)),
                predicate_type: t,
                ..Default::default()
            })
        })
    }

    async fn verify_image(
        &self,
        req: Request<pb::VerifyImageRequest>,
    ) -> Result<Response<pb::VerifyImageResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = self.signer.verify(&r.key, &r.reference).await;
        call.finish(result).await.map(|v| {
            Response::new(pb::VerifyImageResponse {
                digest: v.digest,
                valid: v
                    .valid
                    .into_iter()
                    .map(|s| pb::VerifiedSignature {
                        version: s.version,
                        state: state(s.state) as i32,
                        docker_reference: s.docker_reference,
                        optional: s.optional.into_iter().collect(),
                        signed_at: s
                            .signed_at
                            .and_then(|t| t.format(&Rfc3339).ok())
                            .unwrap_or_default(),
                        valid_when_signed: s.valid_when_signed,
                    })
                    .collect(),
                rejected: v.rejected,
            })
        })
    }

    async fn list_signatures(
        &self,
        req: Request<pb::ListSignaturesRequest>,
    ) -> Result<Response<pb::ListSignaturesResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = async {
            if r.version.is_some() && r.key.is_empty() {
                return Err(ImageError::InvalidArgument(
                    "a key version was given without a key: pass --key too".into(),
                ));
            }
            let q = LedgerQuery {
                key: (!r.key.is_empty()).then(|| r.key.clone()),
                version: r.version,
                since: time_arg("since", &r.since)?,
                until: time_arg("until", &r.until)?,
                repository: if r.repository.is_empty() {
                    None
                } else {
                    Some(glob::Pattern::new(&r.repository).map_err(|e| {
                        ImageError::InvalidArgument(format!(
                            "invalid repository glob {:?}: {e}",
                            r.repository
                        ))
                    })?)
                },
            };
            Ok::<_, ImageError>(
                self.signer
                    .ledger()
                    .list_rows(&q, &r.page_token, page::size(r.page_size))
                    .await?,
            )
        }
        .await;
        call.finish(result).await.map(|(entries, next_page_token)| {
            Response::new(pb::ListSignaturesResponse {
                next_page_token,
                entries: entries
                    .into_iter()
                    .map(|(id, e)| pb::LedgerEntry {
                        id,
                        derived_from: e.derived_from,
                        kind: e.kind,
                        registry: e.registry,
                        repository: e.repository,
                        digest: e.digest,
                        tag: e.tag,
                        reference: e.reference,
                        key: e.key,
                        version: e.version,
                        fingerprint: e.fingerprint,
                        time: e.time.format(&Rfc3339).unwrap_or_default(),
                        requester: e.requester,
                        pushed_to: e.pushed_to,
                        size: e.size,
                    })
                    .collect(),
            })
        })
    }
}
