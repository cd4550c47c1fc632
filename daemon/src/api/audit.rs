//! `keyward.v1.AuditService`.

use super::gate::admitted;
use crate::audit::AuditLog;
use crate::keys::Backends;
use crate::signing::ImageError;
use keyward_proto::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Serves the audit log.
#[derive(Debug)]
pub struct AuditApi {
    audit: Arc<AuditLog>,
    backends: Arc<Backends>,
    audit_backend: String,
}

impl AuditApi {
    /// A service over the log.
    pub fn new(audit: Arc<AuditLog>, backends: Arc<Backends>, audit_backend: String) -> Self {
        Self {
            audit,
            backends,
            audit_backend,
        }
    }
}

/// Store records read per page of an export.
const EXPORT_PAGE: usize = 1000;

type Lines = Pin<Box<dyn Stream<Item = Result<pb::AuditLine, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    type ExportAuditStream = Lines;

    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<Lines>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        if r.checkpoint
            && let Ok(pool) = self.backends.get(&self.audit_backend)
            && let Err(e) = self.audit.checkpoint(pool).await
        {
            // The export goes on; its verifier names the records no checkpoint covers.
            tracing::error!(error = %e, "cannot checkpoint the audit log before an export");
        }
        let result = (|| {
            let since = if r.since.is_empty() {
                None
            } else {
                Some(OffsetDateTime::parse(&r.since, &Rfc3339).map_err(|e| {
                    ImageError::InvalidArgument(format!(
                        "--since {:?} is not an RFC 3339 time: {e}",
                        r.since
                    ))
                })?)
            };
            Ok::<_, ImageError>(since)
        })();
        let since = call.finish(result).await?;
        // Pages of the log are read and sent one after another, never all at once.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (audit, from_seq) = (self.audit.clone(), r.from_seq);
        tokio::spawn(async move {
            let mut cursor = String::new();
            loop {
                let page = audit
                    .export_page(from_seq, &cursor, since, EXPORT_PAGE)
                    .await;
                let (lines, next) = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "audit export failed");
                        let _ = tx
                            .send(Err(Status::internal(
                                "internal error: the audit log could not be read",
                            )))
                            .await;
                        return;
                    }
                };
                for line in lines {
                    if tx.send(Ok(typed(line))).await.is_err() {
                        return;
                    }
                }
                if next.is_empty() {
                    return;
                }
                cursor = next;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_audit_head(
        &self,
        req: Request<pb::GetAuditHeadRequest>,
    ) -> Result<Response<pb::SignedAuditHead>, Status> {
        let call = admitted(&req)?;
        let result = async {
            let pool = self.backends.get(&self.audit_backend)?;
            self.audit.signed_head(pool).await.map_err(|e| {
                crate::keys::KeyError::FailedPrecondition(format!(
                    "the audit head could not be signed: {e}"
                ))
            })
        }
        .await;
        call.finish(result).await.map(|s| {
            Response::new(pb::SignedAuditHead {
                head: Some(pb::AuditHead {
                    seq: s.head.seq,
                    hash: s.head.hash,
                    time: s.head.time,
                }),
                signature: s.signature,
            })
        })
    }

    async fn audit_public_key(
        &self,
        req: Request<pb::AuditPublicKeyRequest>,
    ) -> Result<Response<pb::AuditPublicKeyResponse>, Status> {
        let call = admitted(&req)?;
        call.finish::<_, ImageError>(Ok(())).await?;
        Ok(Response::new(pb::AuditPublicKeyResponse {
            public_key_pem: self.audit.public_key_pem(),
        }))
    }
}

/// An exported line with its sequence number and decision read out.
fn typed(line: String) -> pb::AuditLine {
    use keyward_client::audit::Line;
    let (seq, decision) = match serde_json::from_str::<Line>(&line) {
        Ok(Line::Record(r)) => (r.seq, pb::AuditDecision::from(r.decision)),
        Ok(Line::Checkpoint(c)) => (c.seq, pb::AuditDecision::Unspecified),
        Ok(Line::Anchor(a)) => (a.seq, pb::AuditDecision::Unspecified),
        Err(_) => (0, pb::AuditDecision::Unspecified),
    };
    pb::AuditLine {
        line,
        seq,
        decision: decision as i32,
    }
}
