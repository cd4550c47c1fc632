//! One-time codes for tests: the secret a daemon printed, and codes computed by PyPI's
//! pyotp, an implementation independent of Keyward's.

use std::process::Command;
use std::time::Duration;

/// The `secret=` of an otpauth URI.
pub fn otpauth_secret(text: &str) -> String {
    let uri = text
        .split_whitespace()
        .find(|w| w.starts_with("otpauth://"))
        .expect("an otpauth:// URI");
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret= in the URI")
        .to_string()
}

/// The TOTP code for `secret` (base32) `steps` time steps from now, computed by
/// PyPI's pyotp: an implementation independent of Keyward's.
pub fn pyotp(secret: &str, steps: i64) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(time.time() + 30 * int(sys.argv[2])))",
            secret,
            &steps.to_string(),
        ])
        .output()
        .expect("python3 with pyotp (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the current 30 s TOTP step has at least 5 s left, so that a test's
/// codes for the previous, current and next step stay valid while it runs.
pub fn wait_for_fresh_step() {
    loop {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        if secs % 30 < 24 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Enrols and confirms a second factor for the principal of `config`; returns its
/// secret (base32).
pub fn enrol(d: &crate::DevDaemon, config: &std::path::Path) -> String {
    let run = |args: &[&str]| d.keyward_as(config, args);
    let o = run(&["-o", "json", "mfa", "enroll"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let secret = otpauth_secret(v["otpauth_uri"].as_str().expect("otpauth_uri"));
    let o = run(&["mfa", "confirm", &pyotp(&secret, -1)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    secret
}
