//! cosign verifying the way a platform team's cluster does: by the Keyward CA, the
//! key's identity and the instance's issuer, checking time-stamps against the TSA's
//! chain.

use crate::cosign;
use std::path::Path;
use std::process::{Command, Output};

/// `cosign verify` with CA roots and an identity instead of a key, checking each
/// signature's time-stamp against `tsa_chain` when given.
pub fn cosign_by_ca(
    ca: &Path,
    tsa_chain: Option<&Path>,
    identity: &str,
    issuer: &str,
    image: &str,
) -> Output {
    let mut cmd = Command::new(cosign());
    cmd.arg("verify");
    if let Some(chain) = tsa_chain {
        cmd.arg("--timestamp-certificate-chain").arg(chain);
    }
    cmd.arg("--ca-roots")
        .arg(ca)
        .args([
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            issuer,
            "--insecure-ignore-sct",
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            image,
        ])
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("run cosign")
}

/// A command's standard output and error, together.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
