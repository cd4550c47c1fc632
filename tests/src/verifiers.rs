//! cosign verifying the way a platform team's cluster does: by the Keyward CA, the
//! key's identity and the instance's issuer, checking time-stamps against the TSA's
//! chain.

use crate::registry::TestRegistry;
use crate::{DevDaemon, cosign};
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

/// Key `img` (its rotations re-sign nothing, so each image keeps the version that
/// signed it) and two images pushed to `reg`; their references (app-a, app-b).
pub fn key_and_two_images(d: &DevDaemon, reg: &TestRegistry) -> (String, String) {
    d.ok(&["key", "create", "img"]);
    d.ok(&["key", "policy", "set", "img", "--resign-on-rotate", "false"]);
    reg.push_image("app-a:v1", "a");
    reg.push_image("app-b:v1", "b");
    (
        format!("{}/app-a:v1", reg.addr),
        format!("{}/app-b:v1", reg.addr),
    )
}

/// openssl's verdict on a signature made by `keyward sign-blob`.
pub fn openssl_verifies(
    algorithm: &str,
    public: &std::path::Path,
    sig: &std::path::Path,
    file: &std::path::Path,
) -> bool {
    let mut cmd = std::process::Command::new("openssl");
    match algorithm {
        "ed25519" => cmd
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(public)
            .arg("-in")
            .arg(file)
            .arg("-sigfile")
            .arg(sig),
        "rsa-pss-3072" => cmd
            .args([
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-verify",
            ])
            .arg(public)
            .arg("-signature")
            .arg(sig)
            .arg(file),
        "ecdsa-p384" => cmd
            .args(["dgst", "-sha384", "-verify"])
            .arg(public)
            .arg("-signature")
            .arg(sig)
            .arg(file),
        _ => cmd
            .args(["dgst", "-sha256", "-verify"])
            .arg(public)
            .arg("-signature")
            .arg(sig)
            .arg(file),
    };
    cmd.output().unwrap().status.success()
}
