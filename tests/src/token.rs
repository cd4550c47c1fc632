//! SoftHSM tokens from outside the daemon: made as an operator would, and read (or
//! edited) with cryptoki in another process.

use crate::{SOFTHSM_MODULE, bin, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes `dir/softhsm2.conf` and initialises a SoftHSM token labelled `label` in
/// `dir/tokens`, as an operator would with softhsm2-util; returns the conf path.
pub fn softhsm_token(dir: &Path, label: &str, pin: &str, so_pin: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("tokens")).expect("mkdir tokens");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            dir.join("tokens").display()
        ),
    )
    .expect("write softhsm2.conf");
    run_ok(
        Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                so_pin,
            ])
            .env("SOFTHSM2_CONF", &conf),
    );
    conf
}

/// The private keys on the dev token in `dir` (see `pkcs11-keys`), after `extra`
/// arguments (`--grant-usage ID`) took effect.
pub fn token_keys(dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(bin("pkcs11-keys"))
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .args([SOFTHSM_MODULE, "keyward-dev"])
        .arg(dir.join("pin"))
        .args(extra)
        .output()
        .expect("run pkcs11-keys");
    assert!(
        out.status.success(),
        "pkcs11-keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pkcs11-keys JSON")
}
