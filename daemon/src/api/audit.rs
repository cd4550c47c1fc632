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
            Ok::<_, ImageError>(self.audit.export(r.from_seq, since)?)
        })();
        let lines = call.finish(result).await?;
        let stream = tokio_stream::iter(lines.into_iter().map(|line| Ok(pb::AuditLine { line })));
        Ok(Response::new(Box::pin(stream)))
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
