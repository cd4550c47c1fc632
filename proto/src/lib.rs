//! Keyward's gRPC protocol, generated from `proto/keyward/v1/*.proto`.

/// Version 1 of the Keyward API.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("keyward.v1");
}
