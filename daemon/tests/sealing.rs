//! Sealed secrets (TOTP seeds) as an attacker with write access to the store sees
//! them: on a token with AES-GCM (SoftHSM) and on one without, where Keyward seals
//! with AES-CBC-PAD then HMAC-SHA-256 inside the HSM (opencryptoki's soft token). A
//! sealed secret opens only unchanged and only for the owner it was sealed for: no
//! flipped byte, truncation, extension or other binding opens it, and the plaintext
//! never appears in what is stored.
//!
//! opencryptoki's token is system-wide: its test is in the nextest group
//! `opencryptoki`, on a token made fresh by `scripts/opencryptoki.sh`.

use keyward_daemon::dev::{DevLayout, SOFTHSM_MODULE};
use keyward_daemon::hsm::Backend;
use keyward_daemon::hsm::pkcs11::{PinSource, Pkcs11Backend, Pkcs11Settings, ensure_token};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &[u8] = b"JBSWY3DPEHPK3PXP JBSWY3DP";

fn attempts_never_open(backend: &Pkcs11Backend, etm: bool) {
    let mut s = backend.open_session().unwrap();
    let key = s.generate_sealing_key("sealing-test").unwrap();
    let sealed = s.seal(&key, SECRET, b"alice").unwrap();
    assert_eq!(s.unseal(&key, &sealed, b"alice").unwrap(), SECRET);
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET));
    assert_ne!(s.seal(&key, SECRET, b"alice").unwrap(), sealed, "IV reused");
    if etm {
        // 0x01, a 16-octet IV, the padded ciphertext, a 32-octet HMAC.
        let padded = (SECRET.len() / 16 + 1) * 16;
        assert_eq!(sealed[0], 1);
        assert_eq!(sealed.len(), 1 + 16 + padded + 32);
    } else {
        // A 12-octet IV, the ciphertext, a 16-octet tag.
        assert_eq!(sealed.len(), 12 + SECRET.len() + 16);
    }
    for other in [&b"bob"[..], b"", b"alice\0"] {
        assert!(
            s.unseal(&key, &sealed, other).is_err(),
            "opened for {other:?}"
        );
    }
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x01;
        assert!(s.unseal(&key, &t, b"alice").is_err(), "byte {i} flipped");
    }
    for n in [0, 1, 17, sealed.len() - 32, sealed.len() - 1] {
        assert!(
            s.unseal(&key, &sealed[..n], b"alice").is_err(),
            "cut to {n}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(s.unseal(&key, &longer, b"alice").is_err(), "extended");
    // Still opens: nothing above disturbed the key.
    assert_eq!(s.unseal(&key, &sealed, b"alice").unwrap(), SECRET);
}

fn settings(module: &str, label: &str, pin: PinSource) -> Pkcs11Settings {
    Pkcs11Settings {
        name: "hsm".into(),
        module: PathBuf::from(module),
        token_label: label.into(),
        pin,
    }
}

#[test]
fn a_secret_sealed_with_aes_gcm_opens_only_unchanged_and_for_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = DevLayout::create(tmp.path()).unwrap();
    layout.write_softhsm_conf().unwrap();
    // This test's process reads no other environment concurrently.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", layout.softhsm_conf());
        std::env::set_var("SEALING_PIN", "1234");
    }
    ensure_token(Path::new(SOFTHSM_MODULE), "sealing", "5678", "1234", true).unwrap();
    let b = Pkcs11Backend::open(settings(
        SOFTHSM_MODULE,
        "sealing",
        PinSource::Env("SEALING_PIN".into()),
    ))
    .unwrap();
    attempts_never_open(&b, false);
}

#[test]
fn a_secret_sealed_without_gcm_on_opencryptoki_opens_only_unchanged_and_for_its_owner() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/opencryptoki.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("KEYWARD_OCK_PIN", "24681357")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    let pin = tmp.path().join("pin");
    std::fs::write(&pin, "24681357").unwrap();
    let b = Pkcs11Backend::open(settings(
        "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
        "keyward",
        PinSource::File(pin),
    ))
    .unwrap();
    assert!(
        b.capabilities()
            .features
            .contains(&"sealing (aes-cbc-pad + hmac-sha256)".to_string())
    );
    attempts_never_open(&b, true);
}
