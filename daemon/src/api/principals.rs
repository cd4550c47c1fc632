//! `keyward.v1.PrincipalService`.

use super::gate::admitted;
use super::page;
use crate::authz::{PrincipalError, PrincipalRecord, Principals, pem_fingerprint};
use crate::hsm::{Algorithm, HsmPool};
use crate::keys::KeyError;
use crate::pki::{self, CaRecord, PkiError, Subject};
use keyward_proto::v1 as pb;
use p256::pkcs8::DecodePublicKey;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use tonic::{Code, Request, Response, Status};

/// Serves principal management.
pub struct PrincipalApi {
    principals: Arc<Principals>,
    ca: Arc<CaRecord>,
    keys: Arc<crate::keys::KeyRegistry>,
    mfa: Arc<crate::mfa::Mfa>,
}

impl PrincipalApi {
    /// A service over the principals; certificates are issued by the CA.
    pub fn new(
        principals: Arc<Principals>,
        ca: Arc<CaRecord>,
        keys: Arc<crate::keys::KeyRegistry>,
        mfa: Arc<crate::mfa::Mfa>,
    ) -> Self {
        Self {
            principals,
            ca,
            keys,
            mfa,
        }
    }

    /// An admitted request that changes `name`'s second factor: the change, logged
    /// as `done`, and its outcome.
    async fn second_factor_call<R, F, Fut>(
        &self,
        req: &Request<R>,
        name: &str,
        change: F,
        done: &str,
    ) -> Result<Response<pb::Principal>, Status>
    where
        F: FnOnce(Arc<crate::mfa::Mfa>, String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, crate::mfa::MfaError>>,
    {
        let call = admitted(req)?;
        let result = self.second_factor(name, change).await;
        if result.is_ok() {
            tracing::info!(principal = %call.principal(), target = %name, "{done}");
        }
        call.finish(result).await.map(|p| Response::new(view(&p)))
    }

    /// A change of `name`'s second factor by `change`, reported as the principal.
    async fn second_factor<F, Fut>(
        &self,
        name: &str,
        change: F,
    ) -> Result<Arc<PrincipalRecord>, PrincipalError>
    where
        F: FnOnce(Arc<crate::mfa::Mfa>, String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, crate::mfa::MfaError>>,
    {
        let p = self.principals.get(name)?;
        if p.removed_at.is_some() {
            return Err(PrincipalError::FailedPrecondition(format!(
                "principal {name:?} was removed"
            )));
        }
        match change(self.mfa.clone(), name.to_string()).await {
            Ok(true) => Ok(p),
            Ok(false) => Err(PrincipalError::FailedPrecondition(format!(
                "principal {name:?} has nothing to change: no lockout or no second factor"
            ))),
            Err(crate::mfa::MfaError::Store(e)) => Err(PrincipalError::Store(e)),
            Err(e) => Err(PrincipalError::FailedPrecondition(e.to_string())),
        }
    }

    fn ca_pool(&self) -> Result<&HsmPool, KeyError> {
        self.keys.backends().get(&self.ca.backend)
    }
}

/// The API view of a principal.
pub fn view(p: &PrincipalRecord) -> pb::Principal {
    pb::Principal {
        name: p.name.clone(),
        roles: p.roles.iter().map(|r| r.as_str().to_string()).collect(),
        created_at: p.created_at.format(&Rfc3339).unwrap_or_default(),
        created_by: p.created_by.clone(),
        removed: p.removed_at.is_some(),
        removed_at: p
            .removed_at
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default(),
        certificate_fingerprint: p.certificate_fingerprint.clone(),
    }
}

impl super::ToStatus for PrincipalError {
    fn to_status(&self) -> Status {
        let code = match self {
            PrincipalError::NotFound(_) => Code::NotFound,
            PrincipalError::AlreadyExists(_) => Code::AlreadyExists,
            PrincipalError::InvalidArgument(_) => Code::InvalidArgument,
            PrincipalError::FailedPrecondition(_) => Code::FailedPrecondition,
            PrincipalError::Store(_) | PrincipalError::Integrity(_) => {
                tracing::error!(error = %self, "principal change failed");
                return Status::internal("internal error: the store failed; nothing was changed");
            }
        };
        Status::new(code, self.to_string())
    }
}

impl std::fmt::Debug for PrincipalApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalApi").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl pb::principal_service_server::PrincipalService for PrincipalApi {
    async fn add_principal(
        &self,
        req: Request<pb::AddPrincipalRequest>,
    ) -> Result<Response<pb::AddPrincipalResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let roles = match self.principals.check_new(&r.name, &r.roles) {
            Ok(roles) => roles,
            Err(e) => return call.finish(Err(e)).await,
        };
        if p256::PublicKey::from_public_key_der(&r.public_key).is_err() {
            let e = PrincipalError::InvalidArgument(
                "public_key must be a DER SubjectPublicKeyInfo of a P-256 key".into(),
            );
            return call.finish(Err(e)).await;
        }
        let pool = match self.ca_pool() {
            Ok(p) => p,
            Err(e) => return call.finish(Err(e)).await,
        };
        let (ca, name, spki) = (self.ca.clone(), r.name.clone(), r.public_key.clone());
        let issued: Result<String, PkiError> = pool
            .run("issue-client", move |s| {
                pki::issue(s, &ca, Subject::Client(&name), &spki, Algorithm::EcdsaP256)
            })
            .await;
        let cert = match issued {
            Ok(c) => c,
            Err(e) => return call.finish(Err(KeyError::from(e))).await,
        };
        let fingerprint = pem_fingerprint(&cert)
            .ok_or_else(|| Status::internal("internal error: issued an unreadable certificate"))?;
        let added = self
            .principals
            .add(&r.name, roles, fingerprint, call.principal())
            .await;
        if let Ok(p) = &added {
            tracing::info!(principal = %call.principal(), added = %p.name, roles = ?p.roles, "principal added");
        }
        let p = call.finish(added).await?;
        Ok(Response::new(pb::AddPrincipalResponse {
            principal: Some(view(&p)),
            certificate_pem: cert,
            ca_certificate_pem: self.ca.certificate_pem.clone(),
        }))
    }

    async fn list_principals(
        &self,
        req: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let (principals, next_page_token) = page::page(
            self.principals.list(),
            |p| p.name.clone(),
            &r.page_token,
            page::size(r.page_size),
        );
        call.finish::<(), PrincipalError>(Ok(())).await?;
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: principals.iter().map(|p| view(p)).collect(),
            next_page_token,
        }))
    }

    async fn get_principal(
        &self,
        req: Request<pb::GetPrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let call = admitted(&req)?;
        let result = self.principals.get(&req.get_ref().name);
        call.finish(result).await.map(|p| Response::new(view(&p)))
    }

    async fn remove_principal(
        &self,
        req: Request<pb::RemovePrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let call = admitted(&req)?;
        let result = self.principals.remove(&req.get_ref().name).await;
        if let Ok(p) = &result {
            tracing::info!(principal = %call.principal(), removed = %p.name, "principal removed");
        }
        call.finish(result).await.map(|p| Response::new(view(&p)))
    }

    async fn unlock_principal(
        &self,
        req: Request<pb::UnlockPrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let name = req.get_ref().name.clone();
        let change = |mfa: Arc<crate::mfa::Mfa>, n: String| async move { mfa.unlock(&n).await };
        self.second_factor_call(&req, &name, change, "MFA lockout lifted")
            .await
    }

    async fn reset_principal_mfa(
        &self,
        req: Request<pb::ResetPrincipalMfaRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let name = req.get_ref().name.clone();
        let change = |mfa: Arc<crate::mfa::Mfa>, n: String| async move { mfa.reset(&n).await };
        self.second_factor_call(&req, &name, change, "second factor deleted")
            .await
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let call = admitted(&req)?;
        call.finish::<_, PrincipalError>(Ok(view(&call.who.record)))
            .await
            .map(Response::new)
    }
}
