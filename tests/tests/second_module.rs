//! One instance, two HSMs: the CA on SoftHSM, RSA keys on opencryptoki 3.8's software
//! token (RSA, AES-CBC and HMAC; no EC, no AES-GCM). What each token can do is read
//! from its mechanism list, not assumed; each key signs on its own token, through
//! rotation, a restart and reconciliation. (`portability.rs` runs an instance on each
//! module alone.) The opencryptoki token is system-wide: these tests run one at a
//! time (nextest group `opencryptoki`), each on a fresh token.

use keyward_tests::modules::Module;
use keyward_tests::registry::TestRegistry;
use keyward_tests::served::ServedDaemon;
use keyward_tests::verifiers::openssl_verifies;
use keyward_tests::{cosign_verify, refused};
use std::path::Path;

const OCK: Module = Module::OpenCryptoki;

/// The labels of the private keys on the opencryptoki token.
fn ock_keys() -> String {
    OCK.private_keys(Path::new("/nonexistent"))
}

#[test]
fn init_refuses_an_instance_key_algorithm_the_token_lacks_before_making_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywardd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n{}[ca]\nalgorithm = \"ecdsa-p256\"\n",
            OCK.fresh_backend(tmp.path(), "ock")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(keyward_tests::bin("keywardd"))
        .args(["init", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("ops"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "init made ECDSA keys on an RSA-only token"
    );
    // The token was found (its clock did not make it unreadable); the refusal names
    // what it offers and what to do.
    assert!(!err.contains("parsing string as integer"), "{err}");
    assert!(
        err.contains("[ca] algorithm = ecdsa-p256 but backend ock cannot make ecdsa-p256 keys (it offers: rsa-pss-3072, rsa-pkcs1-3072, rsa-pkcs1-4096)"),
        "{err}"
    );
    assert!(
        ock_keys().trim().is_empty(),
        "init left keys behind: {}",
        ock_keys()
    );
}

#[test]
fn one_instance_two_hsms_each_key_signs_on_its_own_token() {
    let pins = tempfile::tempdir().unwrap();
    let mut d = ServedDaemon::start(&format!(
        "{}[mfa]\nrequired = false\n",
        OCK.fresh_backend(pins.path(), "ock")
    ));

    // What each token can do, as its mechanism list says.
    let backends: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "backends"])).unwrap();
    let ock = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ock")
        .unwrap();
    assert_eq!(
        ock["algorithms"],
        serde_json::json!(["rsa-pss-3072", "rsa-pkcs1-3072", "rsa-pkcs1-4096"]),
        "{ock}"
    );
    let missing = ock["missing"].to_string();
    assert!(
        missing.contains("ecdsa-p256: no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA"),
        "{missing}"
    );
    assert_eq!(
        ock["features"],
        serde_json::json!([
            "instance keys (CA, audit, time-stamping): rsa-pkcs1-3072",
            "sealing (aes-cbc-pad + hmac-sha256)",
            "record MACs (hmac-sha256)"
        ]),
        "{ock}"
    );
    let hsm = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "hsm")
        .unwrap();
    assert!(
        hsm["algorithms"].to_string().contains("ecdsa-p256"),
        "{hsm}"
    );
    assert!(
        d.ok(&["backends"])
            .contains("cannot: ecdsa-p256: no CKM_EC_KEY_PAIR_GEN")
    );

    // An algorithm the token lacks is refused for that backend, with why.
    let why = refused(&d.keyward(&[
        "key",
        "create",
        "ec",
        "--backend",
        "ock",
        "--algorithm",
        "ecdsa-p256",
    ]));
    assert!(
        why.contains("not supported by backend ock: it has no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA (supported: rsa-pss-3072, rsa-pkcs1-3072, rsa-pkcs1-4096)"),
        "{why}"
    );

    // An RSA key on opencryptoki, an EC key on SoftHSM: each signs on its own token.
    let args = ["--purpose", "blob"];
    d.ok(&[
        &[
            "key",
            "create",
            "rk",
            "--backend",
            "ock",
            "--algorithm",
            "rsa-pss-3072",
        ][..],
        &args,
    ]
    .concat());
    d.ok(&[&["key", "create", "ek"][..], &args].concat());
    assert!(ock_keys().contains("keyward:rk/v1"), "{}", ock_keys());
    assert!(!ock_keys().contains("keyward:ek/v1"), "{}", ock_keys());
    let soft = String::from_utf8_lossy(
        &d.pkcs11_tool(&["--list-objects", "--type", "privkey"])
            .stdout,
    )
    .into_owned();
    assert!(
        soft.contains("keyward:ek/v1") && !soft.contains("keyward:rk"),
        "{soft}"
    );

    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("artifact");
    std::fs::write(&file, b"built on two HSMs\n").unwrap();
    for rotate in [false, true] {
        if rotate {
            d.ok(&["key", "rotate", "rk"]);
            assert!(ock_keys().contains("keyward:rk/v2"), "{}", ock_keys());
        }
        let public = work.path().join("rk.pem");
        std::fs::write(&public, d.ok(&["key", "public", "rk"])).unwrap();
        let sig = work.path().join("rk.sig");
        let b64 = d.ok(&["sign-blob", "--key", "rk", file.to_str().unwrap()]);
        use base64::Engine;
        std::fs::write(
            &sig,
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap(),
        )
        .unwrap();
        assert!(
            openssl_verifies("rsa-pss-3072", &public, &sig, &file),
            "openssl rejected rk's signature"
        );
    }
    d.ok(&["sign-blob", "--key", "ek", file.to_str().unwrap()]);

    // An image signed on opencryptoki with RSA PKCS#1 v1.5 (CKM_RSA_PKCS over a
    // DigestInfo Keyward builds: the module has no CKM_SHA256_RSA_PKCS), checked by cosign.
    let reg = TestRegistry::start();
    reg.push_image("ock:v1", "ock");
    let image = format!("{}/ock:v1", reg.addr);
    d.ok(&[
        "key",
        "create",
        "ri",
        "--backend",
        "ock",
        "--algorithm",
        "rsa-pkcs1-3072",
    ]);
    d.ok(&["sign", "--key", "ri", &image]);
    let public = work.path().join("ri.pem");
    std::fs::write(&public, d.ok(&["key", "public", "ri"])).unwrap();
    let o = cosign_verify(&public, &image, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ock_keys().contains("keyward:ri/v1"), "{}", ock_keys());

    // A restart finds every key on its own token again, and reconciliation has nothing
    // to report.
    d.restart();
    d.ok(&["sign-blob", "--key", "rk", file.to_str().unwrap()]);
    d.ok(&["sign-blob", "--key", "ek", file.to_str().unwrap()]);
    reg.push_image("ock:v2", "ock2");
    d.ok(&["sign", "--key", "ri", &format!("{}/ock:v2", reg.addr)]);
    assert!(!d.log().contains("HSM object is missing"), "{}", d.log());
    // An object deleted behind Keyward's back on opencryptoki is named at the next start.
    let missing = d.delete_key_and_restart(OCK, "ri/v1");
    assert!(
        missing.contains("ri/v1") && missing.contains("ock"),
        "{missing}"
    );
    reg.push_image("ock:v3", "ock3");
    let v3 = format!("{}/ock:v3", reg.addr);
    let why = refused(&d.keyward(&["sign", "--key", "ri", &v3]));
    assert!(
        why.contains("key \"ri\" version 1: its object is missing from backend ock"),
        "{why}"
    );
}
