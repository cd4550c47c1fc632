//! `keyward.v1.RevocationService`.

use super::gate::admitted;
use super::keys::key;
use crate::keys::{KeyError, KeyRegistry, RevocationReason, RevokeRequest};
use crate::revocation::Revocations;
use crate::revocation::publish::Publisher;
use keyward_proto::v1 as pb;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Serves revocation.
#[derive(Debug, Clone)]
pub struct RevocationApi {
    keys: Arc<KeyRegistry>,
    lists: Arc<Revocations>,
    publisher: Arc<Publisher>,
}

impl RevocationApi {
    /// A service over the keys, their revocation list and where it is published.
    pub fn new(keys: Arc<KeyRegistry>, lists: Arc<Revocations>, publisher: Arc<Publisher>) -> Self {
        Self {
            keys,
            lists,
            publisher,
        }
    }
}

fn reason(r: i32) -> Result<RevocationReason, KeyError> {
    match pb::RevocationReason::try_from(r) {
        Ok(pb::RevocationReason::KeyCompromise) => Ok(RevocationReason::KeyCompromise),
        Ok(pb::RevocationReason::Superseded) => Ok(RevocationReason::Superseded),
        Ok(pb::RevocationReason::Cessation) => Ok(RevocationReason::Cessation),
        _ => Err(KeyError::InvalidArgument(
            "say why the version is revoked: --reason key-compromise, superseded or cessation"
                .into(),
        )),
    }
}

fn request(r: &pb::RevokeKeyVersionRequest, by: String) -> Result<RevokeRequest, KeyError> {
    if r.version == 0 {
        return Err(KeyError::InvalidArgument(
            "name the version to revoke (--version N; keyward key show lists them)".into(),
        ));
    }
    let compromised_since = match r.compromised_since.as_str() {
        "" => None,
        t => Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
            KeyError::InvalidArgument(format!(
                "--compromised-since {t:?} is not an RFC 3339 time (2026-05-01T12:00:00Z): {e}"
            ))
        })?),
    };
    Ok(RevokeRequest {
        name: r.name.clone(),
        version: r.version,
        reason: reason(r.reason)?,
        compromised_since,
        by,
    })
}

#[tonic::async_trait]
impl pb::revocation_service_server::RevocationService for RevocationApi {
    async fn revoke_key_version(
        &self,
        req: Request<pb::RevokeKeyVersionRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        let call = admitted(&req)?;
        let r = req.get_ref();
        let result = async {
            let request = request(r, call.principal().to_string())?;
            self.keys.revoke(&request).await
        }
        .await;
        if result.is_ok() {
            tracing::warn!(principal = %call.principal(), key = %r.name, version = r.version, "key version revoked");
            // The revocation stands whether or not the list can be issued now; the
            // refresher issues it on its next round.
            if let Err(e) = self.lists.ensure(OffsetDateTime::now_utc()).await {
                tracing::error!(error = %e, "the revocation list could not be issued after a revocation; it is issued on the next refresh");
            }
        }
        call.finish(result).await.map(|k| Response::new(key(&k)))
    }

    async fn get_publish_status(
        &self,
        req: Request<pb::GetPublishStatusRequest>,
    ) -> Result<Response<pb::PublishStatus>, Status> {
        let call = admitted(&req)?;
        let result = self.publisher.status().await;
        let current = self.lists.current().map_or(0, |l| l.list.sequence);
        call.finish(result).await.map(|targets| {
            Response::new(pb::PublishStatus {
                current_sequence: current,
                targets: targets
                    .into_iter()
                    .map(|t| pb::PublishTargetStatus {
                        repository: t.repository,
                        published_sequence: t.published,
                        last_error: t.last_error.unwrap_or_default(),
                        last_attempt: t
                            .last_attempt
                            .and_then(|a| a.format(&Rfc3339).ok())
                            .unwrap_or_default(),
                    })
                    .collect(),
            })
        })
    }

    async fn get_revocation_list(
        &self,
        req: Request<pb::GetRevocationListRequest>,
    ) -> Result<Response<pb::SignedRevocationList>, Status> {
        let call = admitted(&req)?;
        let result = match self.lists.current() {
            Some(l) => Ok(l),
            None => self.lists.ensure(OffsetDateTime::now_utc()).await,
        };
        call.finish(result).await.map(|l| {
            Response::new(pb::SignedRevocationList {
                document: l.document.clone(),
                signature: l.signature.clone(),
                ca_certificate_pem: self.keys.ca().certificate_pem.clone(),
            })
        })
    }
}
