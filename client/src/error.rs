//! What a call to keywardd can fail with, sorted by what the caller can do about it.

use keyward_proto::v1 as pb;
use prost::Message;
use tonic::Code;

/// A failed call or connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// The daemon could not be reached.
    #[error("cannot connect to keywardd at {endpoint}: {detail}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// Why it failed.
        detail: String,
    },
    /// The action needs a one-time code: retry with one (`--otp`).
    #[error("{0} (unauthenticated)")]
    MfaRequired(String),
    /// Who the caller is was not accepted (certificate, wrong code, lockout).
    #[error("{0} (unauthenticated)")]
    Unauthenticated(String),
    /// The caller may not do this (role, signer list, scope, purpose).
    #[error("{0} (permission denied)")]
    PermissionDenied(String),
    /// What the request names does not exist.
    #[error("{0} (not found)")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("{0} (invalid argument)")]
    InvalidArgument(String),
    /// It exists already.
    #[error("{0} (already exists)")]
    AlreadyExists(String),
    /// The state does not allow it now (enrolled already, approval decided).
    #[error("{0} (failed precondition)")]
    FailedPrecondition(String),
    /// A limit was reached (pending requests, sizes).
    #[error("{0} (resource exhausted)")]
    ResourceExhausted(String),
    /// The daemon or something it needs (HSM, registry, audit log) cannot serve now.
    #[error("{0} (unavailable)")]
    Unavailable(String),
    /// A stored record failed its integrity check.
    #[error("{0} (data integrity)")]
    DataLoss(String),
    /// Anything else the daemon answered.
    #[error("{message} ({code:?})")]
    Other {
        /// The gRPC code.
        code: Code,
        /// The daemon's message.
        message: String,
    },
}

/// The reason a refusal carries in its status details, if any.
pub fn reason(st: &tonic::Status) -> pb::ErrorReason {
    pb::ErrorDetail::decode(st.details())
        .ok()
        .and_then(|d| pb::ErrorReason::try_from(d.reason).ok())
        .unwrap_or(pb::ErrorReason::Unspecified)
}

impl From<tonic::Status> for Error {
    fn from(st: tonic::Status) -> Self {
        let m = st.message().to_string();
        match st.code() {
            Code::Unauthenticated if reason(&st) == pb::ErrorReason::MfaRequired => {
                Error::MfaRequired(m)
            }
            Code::Unauthenticated => Error::Unauthenticated(m),
            Code::PermissionDenied => Error::PermissionDenied(m),
            Code::NotFound => Error::NotFound(m),
            Code::InvalidArgument => Error::InvalidArgument(m),
            Code::AlreadyExists => Error::AlreadyExists(m),
            Code::FailedPrecondition => Error::FailedPrecondition(m),
            Code::ResourceExhausted => Error::ResourceExhausted(m),
            Code::Unavailable => Error::Unavailable(m),
            Code::DataLoss => Error::DataLoss(m),
            code => Error::Other { code, message: m },
        }
    }
}
