//! tonic services behind the gate (`gate.rs`), which checks the rule table
//! (`rules.rs`) before any handler runs. This is the one place where domain errors
//! become `tonic::Status`: callers get a clear, safe message; the log gets the detail.

mod approvals;
mod audit;
pub mod gate;
mod images;
mod jobs;
mod keys;
mod mfa;
mod outcome;
mod page;
mod principals;
mod revocations;
pub mod rules;
mod signing;
mod trust;

pub use approvals::ApprovalApi;
pub use audit::AuditApi;
pub use gate::{Gate, GateLayer};
pub use images::ImageApi;
pub use jobs::JobApi;
pub use keys::KeyApi;
pub use mfa::MfaApi;
pub use outcome::Observer;
pub use principals::PrincipalApi;
pub use revocations::RevocationApi;
pub use signing::SigningApi;
pub use trust::TrustApi;

use crate::hsm::HsmError;
use crate::keys::KeyError;
use crate::oci::RegistryError;
use crate::signing::ImageError;
use crate::store::integrity::IntegrityError;
use tonic::{Code, Status};

/// Maps a key error to the status the caller sees.
pub fn status(e: &KeyError) -> Status {
    let code = match e {
        KeyError::NotFound(_) | KeyError::VersionNotFound { .. } => Code::NotFound,
        KeyError::AlreadyExists(_) => Code::AlreadyExists,
        KeyError::InvalidArgument(_) => Code::InvalidArgument,
        KeyError::NoActiveVersion(_) | KeyError::FailedPrecondition(_) => Code::FailedPrecondition,
        KeyError::Conflict(_) => Code::Aborted,
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
        KeyError::Refused { .. } => Code::DataLoss,
        KeyError::Integrity(i) => match i {
            IntegrityError::Tampered { .. } => Code::DataLoss,
            IntegrityError::Hsm(_) => Code::Unavailable,
            IntegrityError::Store(_) => Code::Internal,
        },
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

/// Maps an image-signing error to the status the caller sees.
pub fn image_status(e: &ImageError) -> Status {
    match e {
        ImageError::Key(k) => status(k),
        ImageError::InvalidArgument(m) => Status::invalid_argument(m.clone()),
        ImageError::PermissionDenied(m) => Status::permission_denied(m.clone()),
        ImageError::Store(_) => Status::internal("internal error: the signature ledger failed"),
        ImageError::Registry(r) => {
            let code = match r {
                RegistryError::InvalidReference { .. } => Code::InvalidArgument,
                RegistryError::NotFound(_) => Code::NotFound,
                RegistryError::Auth { .. } => Code::Unauthenticated,
                RegistryError::Unavailable { .. } => Code::Unavailable,
                RegistryError::DigestMismatch { .. } => Code::DataLoss,
                RegistryError::Protocol { .. } => Code::Unavailable,
                RegistryError::TooLarge { .. } => Code::FailedPrecondition,
                RegistryError::Timeout { .. } => Code::DeadlineExceeded,
            };
            Status::new(code, r.to_string())
        }
    }
}

/// Errors that become a gRPC status.
pub trait ToStatus: std::fmt::Display {
    /// The status the caller sees.
    fn to_status(&self) -> Status;
}

impl ToStatus for KeyError {
    fn to_status(&self) -> Status {
        status(self)
    }
}

impl ToStatus for ImageError {
    fn to_status(&self) -> Status {
        image_status(self)
    }
}
