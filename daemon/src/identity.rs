//! Who is calling: the principal named by the caller's mTLS client certificate, checked
//! against the registered principals on every request.

use crate::authz::{Action, PrincipalRecord, Principals};
use sha2::Digest;
use std::sync::Arc;
use tonic::{Request, Status};
use x509_cert::der::Decode;
use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The principal's name (the certificate's common name).
    pub name: String,
    /// Its registration: roles and state.
    pub record: Arc<PrincipalRecord>,
}

impl Principal {
    /// Whether the caller may do `action`; the error says which role is missing.
    pub fn allow(&self, action: Action, what: &str) -> Result<(), Status> {
        self.record
            .allow(action, what)
            .map_err(Status::permission_denied)
    }
}

const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

/// The common name in a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == COMMON_NAME {
                if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
            }
        }
    }
    None
}

/// tonic interceptor: TLS has already checked the client certificate against the
/// Keyward CA; this finds the registered, not removed principal it belongs to and puts
/// it into the request.
#[derive(Clone)]
pub struct Authenticator {
    principals: Arc<Principals>,
    audit: Arc<crate::audit::AuditLog>,
}

impl Authenticator {
    /// An interceptor over the registered principals; refusals go to the audit log.
    pub fn new(principals: Arc<Principals>, audit: Arc<crate::audit::AuditLog>) -> Self {
        Self { principals, audit }
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate issued by the Keyward CA is required")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("a client certificate issued by the Keyward CA is required")
        })?;
        let name = common_name(leaf.as_ref())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Status::unauthenticated("the client certificate has no common name"))?;
        let fingerprint = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
        let record = self
            .principals
            .authenticate(&name, &fingerprint)
            .map_err(|why| {
                tracing::info!(principal = %name, reason = %why, "request refused at authentication");
                // The caller is refused either way; the record is written in the
                // background (an interceptor cannot wait).
                let (audit, who, reason) = (self.audit.clone(), name.clone(), why.clone());
                tokio::spawn(async move {
                    let _ = audit
                        .append(crate::audit::Entry {
                            principal: &who,
                            action: "Authenticate",
                            target: "",
                            decision: "denied",
                            reason: &reason,
                            request_hash: "",
                        })
                        .await;
                });
                Status::unauthenticated(why)
            })?;
        req.extensions_mut().insert(Principal { name, record });
        Ok(req)
    }
}

/// The principal of a request that passed the [`Authenticator`].
pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated principal"))
}
