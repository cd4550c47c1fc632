//! Keyward's gRPC protocol, generated from `proto/keyward/v1/*.proto`.

/// Version 1 of the Keyward API.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("keyward.v1");
}

pub mod names;

/// The encoded `FileDescriptorSet` of every .proto file: lists each service and method.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keyward_descriptor.bin"));

/// The gRPC status details that mark a refusal as "a one-time code is needed", so that
/// a client can ask for one without reading the message.
pub fn mfa_required_details() -> Vec<u8> {
    prost::Message::encode_to_vec(&v1::ErrorDetail {
        reason: v1::ErrorReason::MfaRequired as i32,
    })
}
