//! `keyward.v1.RevocationService`.

use super::gate::{Admitted, admitted};
use super::keys::key;
use crate::approvals::{ApprovalError, ApprovalRecord, Approvals, Asked};
use crate::jobs::RevokeDerivedSpec;
use crate::keys::{KeyError, KeyRegistry, RevocationReason, RevokeRequest};
use crate::revocation::Revocations;
use crate::revocation::incident::{IncidentRequest, Incidents};
use crate::revocation::publish::Publisher;
use crate::revocation::signatures::RevokedSignature;
use crate::signing::{ImageError, ImageSigner, parse_ref};
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
    signer: Arc<ImageSigner>,
    incidents: Arc<Incidents>,
    approvals: Arc<Approvals>,
}

impl RevocationApi {
    /// A service over the keys, their revocation list, where it is published, the
    /// image signer whose ledger says what each key signed, the incidents that revoke,
    /// and the approvals that hold a revocation when the key's policy asks for them.
    pub fn new(
        keys: Arc<KeyRegistry>,
        lists: Arc<Revocations>,
        publisher: Arc<Publisher>,
        signer: Arc<ImageSigner>,
        (incidents, approvals): (Arc<Incidents>, Arc<Approvals>),
    ) -> Self {
        Self {
            keys,
            lists,
            publisher,
            signer,
            incidents,
            approvals,
        }
    }

    /// The pending approval when the key's policy makes `asked` wait for other
    /// revokers; none when it runs now.
    async fn held(
        &self,
        call: &Admitted,
        asked: Asked,
    ) -> Result<Option<ApprovalRecord>, KeyError> {
        self.approvals
            .hold_revocation(&asked, &call.request_hash)
            .await
            .map_err(|e| match e {
                ApprovalError::Key(k) => k,
                other => KeyError::FailedPrecondition(other.to_string()),
            })
    }

    /// Revokes every signature of the request's digest by the key; returns the digest
    /// and the versions whose signature was revoked now.
    async fn revoke_signatures(
        &self,
        r: &pb::RevokeSignatureRequest,
        by: &str,
    ) -> Result<(String, Vec<u32>), ImageError> {
        let image = parse_ref(&r.reference)?;
        let digest = image.parsed.digest().map(str::to_string).ok_or_else(|| {
            ImageError::InvalidArgument(format!(
                "name the image by digest ({}@sha256:...): a signature covers a digest, not a tag",
                image.repository()
            ))
        })?;
        let key = self.keys.get(&r.key)?;
        let versions: Vec<u32> = key.versions.iter().map(|v| v.version).collect();
        let signed = self
            .signer
            .signed_by(&r.key, &versions, &image, &digest)
            .await?;
        if signed.is_empty() {
            return Err(ImageError::Key(KeyError::InvalidArgument(format!(
                "the ledger has no signature of {}@{digest} by key {:?}; nothing to revoke",
                image.repository(),
                r.key
            ))));
        }
        let reason = match r.reason {
            0 => RevocationReason::Cessation,
            n => reason(n)?,
        };
        let mut revoked = Vec::new();
        let mut already = None;
        for version in signed {
            let rec = RevokedSignature {
                key: r.key.clone(),
                version,
                digest: digest.clone(),
                reason,
                revoked_at: crate::clock::now(),
                revoked_by: by.to_string(),
            };
            match self.lists.signatures().record(rec).await {
                Ok(()) => revoked.push(version),
                Err(e @ KeyError::FailedPrecondition(_)) => already = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        if let (Some(e), true) = (already, revoked.is_empty()) {
            return Err(e.into());
        }
        // What was re-made from a revoked signature shares its revocation.
        for version in &revoked {
            let spec = RevokeDerivedSpec {
                key: r.key.clone(),
                version: *version,
                since: None,
                signature: Some(format!("{}@{digest}", image.repository())),
                remove: false,
                reason,
            };
            self.incidents.revoke_derived(spec, by).await?;
        }
        Ok((digest, revoked))
    }
}

/// An incident that ran, or the approval it waits for.
enum Held {
    Ran(Box<crate::revocation::incident::IncidentReport>),
    Pending(Box<ApprovalRecord>),
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
    ) -> Result<Response<pb::RevokeKeyVersionResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.get_ref();
        let result = async {
            let revoke = request(r, call.principal().to_string())?;
            let asked = Asked {
                revoke: revoke.clone(),
                incident: None,
                destroy: r.destroy,
            };
            if let Some(a) = self.held(&call, asked).await? {
                return Ok(pb::RevokeKeyVersionResponse {
                    key: Some(key(&self.keys, &*self.keys.get(&r.name)?)),
                    pending: true,
                    approval_id: a.id,
                    approvals_needed: a.needed,
                });
            }
            let already = self.keys.get(&r.name)?.revoke_effect(&revoke);
            let mut k = match already {
                // Destroying a version revoked so already: the revocation stands.
                Ok(crate::keys::RevokeEffect::Nothing) if r.destroy => self.keys.get(&r.name)?,
                _ => self.incidents.revoke_version(&revoke).await?,
            };
            if r.destroy {
                k = self.keys.destroy_revoked(&r.name, r.version).await?;
            }
            Ok::<_, KeyError>(pb::RevokeKeyVersionResponse {
                key: Some(key(&self.keys, &k)),
                ..Default::default()
            })
        }
        .await;
        call.finish(result).await.map(Response::new)
    }

    async fn incident_revoke(
        &self,
        req: Request<pb::IncidentRevokeRequest>,
    ) -> Result<Response<pb::IncidentReport>, Status> {
        let call = admitted(&req)?;
        let r = req.get_ref();
        let result = async {
            let since = OffsetDateTime::parse(&r.compromised_since, &Rfc3339).map_err(|e| {
                KeyError::InvalidArgument(format!(
                    "--compromised-since {:?} is not an RFC 3339 time (2026-05-01T12:00:00Z): {e}",
                    r.compromised_since
                ))
            })?;
            let req = IncidentRequest {
                name: r.name.clone(),
                version: r.version,
                compromised_since: since,
                by: call.principal().to_string(),
                dry_run: r.dry_run,
                remove_signatures: r.remove_signatures,
                approved_by: Vec::new(),
            };
            if !r.dry_run {
                let asked = Asked {
                    revoke: RevokeRequest {
                        name: req.name.clone(),
                        version: req.version,
                        reason: RevocationReason::KeyCompromise,
                        compromised_since: Some(since),
                        by: req.by.clone(),
                    },
                    incident: Some(req.remove_signatures),
                    destroy: false,
                };
                if let Some(a) = self.held(&call, asked).await? {
                    return Ok(Held::Pending(Box::new(a)));
                }
            }
            self.incidents
                .revoke(&req)
                .await
                .map(|r| Held::Ran(Box::new(r)))
        }
        .await;
        if let Ok(Held::Ran(rep)) = &result
            && !r.dry_run
        {
            tracing::warn!(principal = %call.principal(), key = %r.name, version = r.version, before = rep.signed_before, after = rep.signed_after, job = ?rep.resign_job, "incident: key version revoked");
        }
        call.finish(result).await.map(|held| {
            let rep = match held {
                Held::Ran(rep) => *rep,
                Held::Pending(a) => {
                    return Response::new(pb::IncidentReport {
                        key: r.name.clone(),
                        version: r.version,
                        compromised_since: r.compromised_since.clone(),
                        pending: true,
                        approval_id: a.id,
                        approvals_needed: a.needed,
                        ..Default::default()
                    });
                }
            };
            Response::new(pb::IncidentReport {
                key: r.name.clone(),
                version: r.version,
                compromised_since: rep
                    .compromised_since
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_else(|| r.compromised_since.clone()),
                already_revoked: rep.already_revoked,
                dry_run: r.dry_run,
                signed_before: rep.signed_before,
                signed_after: rep.signed_after,
                after_compromise: rep.after_compromise,
                needs_rotation: rep.needs_rotation,
                rotated_to: rep.rotated_to.unwrap_or(0),
                resign_job_id: rep.resign_job.unwrap_or_default(),
                list_sequence: rep.list_sequence,
                registries_behind: rep.registries_behind,
                remove_job_id: rep.remove_job.unwrap_or_default(),
                audit_seq: rep.audit_seq,
                derived_condemned: rep.derived_condemned,
                derived: rep.derived,
                derived_job_id: rep.derived_job.unwrap_or_default(),
                ..Default::default()
            })
        })
    }

    async fn revoke_signature(
        &self,
        req: Request<pb::RevokeSignatureRequest>,
    ) -> Result<Response<pb::RevokeSignatureResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.get_ref();
        let result = self.revoke_signatures(r, call.principal()).await;
        if let Ok((digest, versions)) = &result {
            tracing::warn!(principal = %call.principal(), key = %r.key, %digest, ?versions, "signature revoked");
            self.lists.issue_after_change().await;
        }
        call.finish(result).await.map(|(digest, versions)| {
            Response::new(pb::RevokeSignatureResponse { digest, versions })
        })
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
            None => self.lists.ensure(crate::clock::now()).await,
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
