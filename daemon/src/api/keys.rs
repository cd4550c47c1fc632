//! `keyward.v1.KeyService`.

use super::Observer;
use super::gate::{Admitted, admitted};
use super::page;
use crate::approvals::Approvals;
use crate::authz::{Action, Principals};
use crate::hsm::public_key::spki_pem;
use crate::jobs::{Jobs, rotation};
use crate::keys::{
    KeyError, KeyRecord, KeyRegistry, KeyVersion, PolicyChange, Purpose, RevocationReason,
    VersionState, weakenings,
};
use crate::signing::ledger::SignatureLedger;
use keyward_proto::v1 as pb;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Serves key management.
#[derive(Debug, Clone)]
pub struct KeyApi {
    keys: Arc<KeyRegistry>,
    principals: Arc<Principals>,
    approvals: Arc<Approvals>,
    jobs: Arc<Jobs>,
    ledger: SignatureLedger,
    obs: Observer,
}

impl KeyApi {
    /// A service over the registry; weakening policy changes wait in `approvals`.
    pub fn new(
        keys: Arc<KeyRegistry>,
        principals: Arc<Principals>,
        approvals: Arc<Approvals>,
        jobs: Arc<Jobs>,
        ledger: SignatureLedger,
        obs: Observer,
    ) -> Self {
        Self {
            keys,
            principals,
            approvals,
            jobs,
            ledger,
            obs,
        }
    }

    /// Applies a change that only tightens the policy; one that weakens it waits for
    /// a second key-admin or admin.
    async fn change_policy(
        &self,
        call: &Admitted,
        name: &str,
        change: PolicyChange,
    ) -> Result<pb::PolicyChangeResponse, KeyError> {
        if let Some(scope) = &change.scope {
            crate::keys::validate_scope(scope).map_err(KeyError::InvalidArgument)?;
        }
        let current = self.keys.get(name)?;
        let weakens = weakenings(&current, &change);
        if weakens.is_empty() {
            let k = self.keys.set_policy(name, change).await?;
            tracing::info!(principal = %call.principal(), key = %k.name, signers = ?k.signers, scope = ?k.scope, approvals = k.approvals, "key policy set");
            return Ok(pb::PolicyChangeResponse {
                key: Some(key(&self.keys, &k)),
                ..Default::default()
            });
        }
        let a = self
            .approvals
            .request_policy(
                call.principal(),
                name,
                change,
                weakens.clone(),
                &call.request_hash,
            )
            .await
            .map_err(|e| KeyError::InvalidArgument(e.to_string()))?;
        tracing::info!(principal = %call.principal(), key = %name, approval = %a.id, weakens = ?weakens, "policy change weakens the key's policy; it waits for a second key-admin");
        Ok(pb::PolicyChangeResponse {
            key: Some(key(&self.keys, &current)),
            pending: true,
            approval_id: a.id,
            weakens,
        })
    }
}

fn ts(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// The API view of a revocation reason.
pub fn reason_view(r: RevocationReason) -> pb::RevocationReason {
    match r {
        RevocationReason::KeyCompromise => pb::RevocationReason::KeyCompromise,
        RevocationReason::Superseded => pb::RevocationReason::Superseded,
        RevocationReason::Cessation => pb::RevocationReason::Cessation,
    }
}

/// The API view of a version state.
pub fn state(s: VersionState) -> pb::VersionState {
    match s {
        VersionState::Pending => pb::VersionState::Pending,
        VersionState::Active => pb::VersionState::Active,
        VersionState::Retired => pb::VersionState::Retired,
        VersionState::Retiring => pb::VersionState::Retiring,
        VersionState::Revoked => pb::VersionState::Revoked,
        VersionState::Destroyed => pb::VersionState::Destroyed,
    }
}

fn version(v: &KeyVersion) -> pb::KeyVersion {
    pb::KeyVersion {
        version: v.version,
        state: state(v.state) as i32,
        hsm_id: v.hsm_id.clone(),
        fingerprint: v.fingerprint.clone(),
        created_at: ts(Some(v.created_at)),
        activated_at: ts(v.activated_at),
        retired_at: ts(v.retired_at),
        revocation_reason: v
            .revocation
            .as_ref()
            .map_or(pb::RevocationReason::Unspecified, |r| reason_view(r.reason))
            as i32,
        revoked_at: ts(v.revocation.as_ref().map(|r| r.revoked_at)),
        revoked_by: v
            .revocation
            .as_ref()
            .map(|r| r.revoked_by.clone())
            .unwrap_or_default(),
        compromised_since: ts(v.revocation.as_ref().and_then(|r| r.compromised_since)),
        certificate_not_after: ts(crate::keys::certificates::not_after(&v.certificate_pem).ok()),
        ..Default::default()
    }
}

/// The API view of a key record.
pub fn key(keys: &KeyRegistry, r: &KeyRecord) -> pb::Key {
    let (certificate_identity, certificate_oidc_issuer) =
        keys.identity_of(&r.name).unwrap_or_default();
    pb::Key {
        certificate_identity,
        certificate_oidc_issuer,
        name: r.name.clone(),
        algorithm: r.algorithm.to_string(),
        backend: r.backend.clone(),
        created_at: ts(Some(r.created_at)),
        active_version: r.active().map(|v| v.version).unwrap_or(0),
        versions: r.versions.iter().map(version).collect(),
        scope: r.scope.clone(),
        signers: r.signers.clone(),
        require_mfa: r.require_mfa,
        approvers: r.approvers.clone(),
        approvals: r.approvals,
        purpose: r.purpose.as_str().to_string(),
        rotation: Some(pb::RotationPolicy {
            every_seconds: r.rotation.every_seconds,
            overlap_seconds: r.rotation.overlap_seconds,
            resign: r.rotation.resign,
            prune_after_overlap: r.rotation.prune_after_overlap,
        }),
        revoke_approvals: r.revoke_approvals,
    }
}

impl KeyApi {
    /// `require_mfa` on a key promises that every signature needs a one-time code. It
    /// is refused while no principal who may sign with the key has a confirmed second
    /// factor: such a policy could only be stored, never met.
    async fn mfa_possible(&self, key: &str, signers: &[String]) -> Result<(), KeyError> {
        let candidates: Vec<String> = if signers.is_empty() {
            self.principals
                .list()
                .iter()
                .filter(|p| p.removed_at.is_none() && p.allow(Action::Sign, "sign").is_ok())
                .map(|p| p.name.clone())
                .collect()
        } else {
            signers.to_vec()
        };
        for name in &candidates {
            let enrolled = self.obs.mfa.enrolled(name).await.map_err(|e| {
                KeyError::InvalidArgument(format!("cannot read second factors: {e}"))
            })?;
            if enrolled {
                return Ok(());
            }
        }
        Err(KeyError::InvalidArgument(format!(
            "key {key:?} cannot require a one-time code: none of the principals who may sign with it ({}) has a second factor. A signer runs `keyward mfa enroll` and `keyward mfa confirm CODE` first",
            if candidates.is_empty() {
                "nobody".to_string()
            } else {
                candidates.join(", ")
            }
        )))
    }
}

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyApi {
    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = match Purpose::parse(&r.purpose) {
            Ok(purpose) => {
                self.keys
                    .create(&r.name, &r.algorithm, &r.backend, r.scope, purpose)
                    .await
            }
            Err(e) => Err(KeyError::InvalidArgument(e)),
        };
        if let Ok(k) = &result {
            tracing::info!(principal = %call.principal(), key = %k.name, algorithm = %k.algorithm, backend = %k.backend, "key created");
        }
        call.finish(result)
            .await
            .map(|k| Response::new(key(&self.keys, &k)))
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let (keys, next_page_token) = page::page(
            self.keys.list(),
            |k| k.name.clone(),
            &r.page_token,
            page::size(r.page_size),
        );
        call.finish::<(), KeyError>(Ok(())).await?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(|k| key(&self.keys, k)).collect(),
            next_page_token,
        }))
    }

    async fn get_key(&self, req: Request<pb::GetKeyRequest>) -> Result<Response<pb::Key>, Status> {
        let call = admitted(&req)?;
        let result = async {
            let k = self.keys.get(&req.get_ref().name)?;
            let mut view = key(&self.keys, &k);
            let active = k.active().map(|v| v.version);
            for v in &mut view.versions {
                let (signed, co_signed) = self
                    .ledger
                    .version_counts(&k.name, v.version, active)
                    .await?;
                (v.images_signed, v.co_signed) = (signed, co_signed);
            }
            Ok::<_, KeyError>(view)
        }
        .await;
        call.finish(result).await.map(Response::new)
    }

    async fn get_key_history(
        &self,
        req: Request<pb::GetKeyHistoryRequest>,
    ) -> Result<Response<pb::KeyHistory>, Status> {
        let call = admitted(&req)?;
        let result = self.keys.history(&req.get_ref().name).await;
        call.finish(result).await.map(|h| {
            Response::new(pb::KeyHistory {
                document: h.document,
                signature: h.signature,
                ca_certificate_pem: self.keys.ca().certificate_pem.clone(),
            })
        })
    }

    async fn rotate_key(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let call = admitted(&req)?;
        let name = &req.get_ref().name;
        let now = crate::clock::now();
        let result = rotation::rotate(&self.keys, &self.jobs, name, call.principal(), now).await;
        if let Ok((r, job)) = &result {
            tracing::info!(principal = %call.principal(), key = %name, active = r.version, previous = ?r.previous, job = ?job.as_ref().map(|j| &j.id), "key rotated");
        }
        call.finish(result).await.map(|(r, job)| {
            Response::new(pb::RotateKeyResponse {
                key: Some(key(&self.keys, &r.key)),
                job_id: job.map(|j| j.id).unwrap_or_default(),
            })
        })
    }

    async fn get_public_key(
        &self,
        req: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::PublicKey>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = self.keys.get(&r.name).and_then(|k| {
            let v = match r.version {
                None => k
                    .active()
                    .ok_or_else(|| KeyError::NoActiveVersion(k.name.clone()))?,
                Some(n) => k.version(n).ok_or_else(|| KeyError::VersionNotFound {
                    name: k.name.clone(),
                    version: n,
                })?,
            };
            Ok(pb::PublicKey {
                name: k.name.clone(),
                version: v.version,
                algorithm: k.algorithm.to_string(),
                public_key_pem: spki_pem(&v.public_key),
                certificate_pem: v.certificate_pem.clone(),
                ca_certificate_pem: self.keys.ca().certificate_pem.clone(),
                fingerprint: v.fingerprint.clone(),
                state: state(v.state) as i32,
            })
        });
        call.finish(result).await.map(Response::new)
    }

    async fn list_backends(
        &self,
        req: Request<pb::ListBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let call = admitted(&req)?;
        let backends = self.keys.backends();
        let list = backends
            .iter()
            .map(|(name, pool)| {
                let caps = pool.backend().capabilities();
                pb::Backend {
                    name: name.clone(),
                    kind: pool.backend().kind().to_string(),
                    algorithms: caps.algorithms.iter().map(|a| a.to_string()).collect(),
                    is_default: name == backends.default_name(),
                    features: caps.features,
                    missing: caps
                        .missing
                        .into_iter()
                        .map(|(what, why)| format!("{what}: {why}"))
                        .collect(),
                }
            })
            .collect();
        call.finish::<(), KeyError>(Ok(())).await?;
        Ok(Response::new(pb::ListBackendsResponse { backends: list }))
    }

    async fn set_key_scope(
        &self,
        req: Request<pb::SetKeyScopeRequest>,
    ) -> Result<Response<pb::PolicyChangeResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let change = PolicyChange {
            scope: Some(r.scope),
            ..Default::default()
        };
        let result = self.change_policy(&call, &r.name, change).await;
        call.finish(result).await.map(Response::new)
    }

    async fn set_key_policy(
        &self,
        req: Request<pb::SetKeyPolicyRequest>,
    ) -> Result<Response<pb::PolicyChangeResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = async {
            let purpose = if r.set_purpose {
                Some(Purpose::parse(&r.purpose).map_err(KeyError::InvalidArgument)?)
            } else {
                None
            };
            let mut named: Vec<&String> = Vec::new();
            if r.set_signers {
                named.extend(&r.signers);
            }
            if r.set_approvers {
                named.extend(&r.approvers);
            }
            for s in named {
                if self.principals.get(s).is_err() {
                    return Err(KeyError::InvalidArgument(format!(
                        "no principal named {s:?}; add it first (keyward principal add)"
                    )));
                }
            }
            if r.set_require_mfa && r.require_mfa {
                let signers = if r.set_signers {
                    r.signers.clone()
                } else {
                    self.keys.get(&r.name)?.signers.clone()
                };
                self.mfa_possible(&r.name, &signers).await?;
            }
            let change = PolicyChange {
                signers: r.set_signers.then_some(r.signers.clone()),
                scope: r.set_scope.then_some(r.scope.clone()),
                require_mfa: r.set_require_mfa.then_some(r.require_mfa),
                approvers: r.set_approvers.then_some(r.approvers.clone()),
                approvals: r.set_approvals.then_some(r.approvals),
                purpose,
                rotate_every: match (r.clear_rotate_every, r.rotate_every_seconds) {
                    (true, Some(_)) => {
                        return Err(KeyError::InvalidArgument(
                            "give a rotation period or remove the schedule, not both".into(),
                        ));
                    }
                    (true, None) => Some(None),
                    (false, every) => every.map(Some),
                },
                overlap: r.overlap_seconds,
                resign_on_rotate: r.resign_on_rotate,
                prune_after_overlap: r.prune_after_overlap,
                revoke_approvals: r.revoke_approvals,
            };
            self.change_policy(&call, &r.name, change).await
        }
        .await;
        call.finish(result).await.map(Response::new)
    }
}
