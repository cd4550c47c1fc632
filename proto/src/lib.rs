//! Keyward's gRPC protocol, generated from `proto/keyward/v1/*.proto`.

/// Version 1 of the Keyward API.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("keyward.v1");
}

/// The encoded `FileDescriptorSet` of every .proto file: lists each service and method.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keyward_descriptor.bin"));
