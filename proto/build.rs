//! Compiles the .proto files with protox (pure Rust, no `protoc` needed), and keeps
//! the encoded descriptor set so that the daemon's tests can walk every RPC.

/// Fields of an enum type, and the function in `src/names.rs` that names their values.
const ENUM_FIELDS: &[(&str, &str)] = &[
    (".keyward.v1.KeyVersion.state", "version_state"),
    (".keyward.v1.PublicKey.state", "version_state"),
    (".keyward.v1.VerifiedSignature.state", "version_state"),
    (".keyward.v1.ErrorDetail.reason", "error_reason"),
    (".keyward.v1.Approval.status", "approval_state"),
    (".keyward.v1.Approval.kind", "approval_kind"),
    (".keyward.v1.AuditLine.decision", "audit_decision"),
    (".keyward.v1.Job.state", "job_state"),
    (
        ".keyward.v1.KeyVersion.revocation_reason",
        "revocation_reason",
    ),
    (".keyward.v1.ListJobsRequest.state", "job_state"),
    (".keyward.v1.Approval.revoke_reason", "revocation_reason"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "keyward/v1/keys.proto",
        "keyward/v1/signing.proto",
        "keyward/v1/images.proto",
        "keyward/v1/principals.proto",
        "keyward/v1/audit.proto",
        "keyward/v1/mfa.proto",
        "keyward/v1/approvals.proto",
        "keyward/v1/jobs.proto",
        "keyward/v1/revocations.proto",
        "keyward/v1/trust.proto",
        "keyward/v1/errors.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("keyward_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Messages serialise to JSON as the CLI's `--output json` prints them; a field of an
    // enum type prints the value's short name ("active"), not its number.
    let mut config =
        tonic_prost_build::configure().type_attribute(".keyward.v1", "#[derive(serde::Serialize)]");
    for (field, names) in ENUM_FIELDS {
        config = config.field_attribute(
            field,
            format!("#[serde(serialize_with = \"crate::names::{names}\")]"),
        );
    }
    config
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
