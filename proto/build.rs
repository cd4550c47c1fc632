//! Compiles the .proto files with protox (pure Rust, no `protoc` needed), and keeps
//! the encoded descriptor set so that the daemon's tests can walk every RPC.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "keyward/v1/keys.proto",
        "keyward/v1/signing.proto",
        "keyward/v1/images.proto",
        "keyward/v1/principals.proto",
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
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
