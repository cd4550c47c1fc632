//! `keyward.v1.TrustService`: what a verifier needs to trust keys by name (the CA, the
//! time-stamping authority's chain, the issuer, a key's identity), for
//! `keyward trust export`.

use super::gate::admitted;
use crate::keys::KeyRegistry;
use crate::pki::timestamps::Tsa;
use keyward_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves trust material.
#[derive(Debug, Clone)]
pub struct TrustApi {
    keys: Arc<KeyRegistry>,
    tsa: Arc<Tsa>,
}

impl TrustApi {
    /// A service over the keys (their CA and identities) and the TSA.
    pub fn new(keys: Arc<KeyRegistry>, tsa: Arc<Tsa>) -> Self {
        Self { keys, tsa }
    }
}

#[tonic::async_trait]
impl pb::trust_service_server::TrustService for TrustApi {
    async fn get_trust(
        &self,
        req: Request<pb::GetTrustRequest>,
    ) -> Result<Response<pb::Trust>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let mut trust = pb::Trust {
            ca_certificate_pem: self.keys.ca().certificate_pem.clone(),
            tsa_chain_pem: self.tsa.chain_pem(),
            certificate_oidc_issuer: self.keys.issuer().unwrap_or_default().to_string(),
            ..Default::default()
        };
        let result = if r.key.is_empty() {
            Ok(trust)
        } else {
            self.keys.get(&r.key).map(|k| {
                trust.certificate_identity = self
                    .keys
                    .identity_of(&k.name)
                    .map(|(identity, _)| identity)
                    .unwrap_or_default();
                trust.key = k.name.clone();
                trust
            })
        };
        call.finish(result).await.map(Response::new)
    }
}
