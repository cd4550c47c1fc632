//! tonic services. This is the one place where domain errors become `tonic::Status`:
//! callers get a clear, safe message; the log gets the detail.

mod keys;
mod signing;

pub use keys::KeyApi;
pub use signing::SigningApi;

use crate::hsm::HsmError;
use crate::keys::KeyError;
use crate::metrics::Metrics;
use tonic::{Code, Status};

/// Maps a key error to the status the caller sees.
pub fn status(e: &KeyError) -> Status {
    let code = match e {
        KeyError::NotFound(_) | KeyError::VersionNotFound { .. } => Code::NotFound,
        KeyError::AlreadyExists(_) => Code::AlreadyExists,
        KeyError::InvalidArgument(_) => Code::InvalidArgument,
        KeyError::NoActiveVersion(_) => Code::FailedPrecondition,
        KeyError::Hsm(h) | KeyError::Pki(crate::pki::PkiError::Hsm(h)) => match h {
            HsmError::Unsupported { .. } | HsmError::InvalidInput(_) => Code::InvalidArgument,
            HsmError::OutOfSpace(_) => Code::ResourceExhausted,
            HsmError::KeyNotFound(_) => Code::Internal,
            HsmError::PoolClosed => Code::Unavailable,
            HsmError::WrongPin(_) | HsmError::Config(_) | HsmError::Device { .. } => {
                Code::Unavailable
            }
        },
        KeyError::Store(_) | KeyError::Pki(_) => Code::Internal,
    };
    let message = match code {
        // Device and storage details stay in the log.
        Code::Internal => format!("internal error: {}", short(e)),
        Code::Unavailable => "the HSM is unavailable; see the daemon log".to_string(),
        _ => e.to_string(),
    };
    Status::new(code, message)
}

fn short(e: &KeyError) -> &'static str {
    match e {
        KeyError::Store(_) => "the store failed; nothing was changed",
        KeyError::Pki(_) => "a certificate could not be issued; nothing was changed",
        _ => "the HSM lost a key object that the store lists; see the daemon log",
    }
}

/// Logs and counts the outcome of a request.
pub(crate) fn finish<T>(
    metrics: &Metrics,
    method: &'static str,
    principal: &str,
    result: Result<T, KeyError>,
) -> Result<T, Status> {
    match result {
        Ok(v) => {
            metrics.request(method, Code::Ok);
            Ok(v)
        }
        Err(e) => {
            let st = status(&e);
            if matches!(st.code(), Code::Internal | Code::Unavailable) {
                tracing::error!(method, principal, error = %e, "request failed");
            } else {
                tracing::info!(method, principal, error = %e, "request refused");
            }
            metrics.request(method, st.code());
            Err(st)
        }
    }
}
