//! Who is calling: the principal named by the caller's mTLS client certificate. The
//! gate (`api/gate.rs`) checks it against the registered principals on every request.

use crate::authz::{Action, PrincipalRecord};
use std::sync::Arc;
use tonic::Status;
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
