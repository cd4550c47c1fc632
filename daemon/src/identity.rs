//! Who is calling: the principal named by the caller's mTLS client certificate.

use tonic::{Request, Status};
use x509_cert::der::Decode;
use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The common name of the client certificate.
    pub name: String,
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

/// tonic interceptor: takes the principal from the verified client certificate (TLS
/// has already checked it against the Keyward CA) and puts it into the request.
pub fn authenticate(mut req: Request<()>) -> Result<Request<()>, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by the Keyward CA is required")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated("a client certificate issued by the Keyward CA is required")
    })?;
    let name = common_name(leaf.as_ref())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Status::unauthenticated("the client certificate has no common name"))?;
    req.extensions_mut().insert(Principal { name });
    Ok(req)
}

/// The principal of a request that passed [`authenticate`].
pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated principal"))
}
