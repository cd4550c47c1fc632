//! The same instance story on two real PKCS#11 modules, from the same code: SoftHSM2,
//! which offers every mechanism Keyward uses, and opencryptoki 3.8's software token,
//! which offers RSA, AES-CBC and HMAC but no EC and no AES-GCM (and reports its clock
//! in a form PKCS#11 does not allow). On each, with nothing but that token: init and
//! serve (the instance's own keys and sealing follow what the token offers), a key of
//! every algorithm it supports signing what openssl verifies, images that cosign
//! verifies by key and by the Keyward CA with time-stamps, a rotation, a second factor
//! sealed and opened in the token, a signed audit log, a restart that keeps every key,
//! and reconciliation naming an object deleted behind Keyward's back.
//!
//! opencryptoki's token is system-wide: its test runs alone (nextest group
//! `opencryptoki`), on a token made fresh by `scripts/opencryptoki.sh`.

use keyward_tests::modules::Module;
use keyward_tests::registry::TestRegistry;
use keyward_tests::served::ServedDaemon;
use keyward_tests::verifiers::{cosign_by_ca, openssl_verifies, output_text};
use keyward_tests::{cosign_verify, keyward_with, pyotp, refused, run_ok};
use std::path::Path;
use std::process::Command;

/// What the module must offer, and the instance keys and sealing it must get.
fn expected(module: Module) -> (Vec<&'static str>, &'static str, &'static str) {
    match module {
        Module::SoftHsm => (
            vec![
                "ecdsa-p256",
                "ecdsa-p384",
                "ed25519",
                "rsa-pss-3072",
                "rsa-pkcs1-3072",
                "rsa-pkcs1-4096",
            ],
            "ecdsa-p256",
            "sealing (aes-gcm)",
        ),
        Module::OpenCryptoki => (
            vec!["rsa-pss-3072", "rsa-pkcs1-3072", "rsa-pkcs1-4096"],
            "rsa-pkcs1-3072",
            "sealing (aes-cbc-pad + hmac-sha256)",
        ),
    }
}

/// Signs `file` with `key`; whether openssl accepts the signature for `algorithm`.
fn blob_verifies(d: &ServedDaemon, work: &Path, key: &str, algorithm: &str, file: &Path) -> bool {
    use base64::Engine;
    let public = work.join(format!("{key}.pem"));
    std::fs::write(&public, d.ok(&["key", "public", key])).unwrap();
    let b64 = d.ok(&["sign-blob", "--key", key, file.to_str().unwrap()]);
    let sig = work.join(format!("{key}.sig"));
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    std::fs::write(&sig, der).unwrap();
    openssl_verifies(algorithm, &public, &sig, file)
}

fn portable(module: Module) {
    let mut d = ServedDaemon::start_on(module, "[mfa]\nrequired = false\n");
    let (algorithms, instance, sealing) = expected(module);
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();

    // What the token can do, read from its mechanism list.
    let backends: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "backends"])).unwrap();
    let hsm = &backends[0];
    assert_eq!(hsm["name"], "hsm", "{backends}");
    assert_eq!(hsm["algorithms"], serde_json::json!(algorithms), "{hsm}");
    let features = hsm["features"].to_string();
    assert!(
        features.contains(&format!(
            "instance keys (CA, audit, time-stamping): {instance}"
        )) && features.contains(sealing),
        "{hsm}"
    );

    // The CA's key is of the kind the token offers, and signs the CA certificate.
    d.ok(&["trust", "export", &p("trust")]);
    let ca_text = run_ok(Command::new("openssl").args([
        "x509",
        "-noout",
        "-text",
        "-in",
        &p("trust/ca.pem"),
    ]));
    let (key_kind, signed_with) = match instance {
        "ecdsa-p256" => ("id-ecPublicKey", "ecdsa-with-SHA256"),
        _ => ("rsaEncryption", "sha256WithRSAEncryption"),
    };
    assert!(
        ca_text.contains(&format!("Public Key Algorithm: {key_kind}"))
            && ca_text.contains(&format!("Signature Algorithm: {signed_with}")),
        "{ca_text}"
    );

    // A key created without an algorithm gets one the token offers that suits its
    // purpose.
    d.ok(&["key", "create", "plain"]);
    let plain: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "plain"])).unwrap();
    let want = match module {
        Module::SoftHsm => "ecdsa-p256",
        Module::OpenCryptoki => "rsa-pkcs1-3072",
    };
    assert_eq!(plain["algorithm"], want, "{plain}");

    // A key of every algorithm the token supports, each signature checked by openssl.
    let file = work.path().join("artifact");
    std::fs::write(&file, format!("built on {module:?}\n")).unwrap();
    for a in &algorithms {
        let key = format!("blob-{a}");
        d.ok(&["key", "create", &key, "--algorithm", a, "--purpose", "blob"]);
        assert!(
            blob_verifies(&d, work.path(), &key, a, &file),
            "openssl rejected a {a} signature"
        );
    }

    // Images, one per image algorithm, verified by cosign by key, and by the Keyward
    // CA and the key's identity with time-stamps checked against the TSA's chain.
    let reg = TestRegistry::start();
    let exported: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "trust", "export", &p("trust")])).unwrap();
    let issuer = exported["certificate_oidc_issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let (ca, chain) = (p("trust/ca.pem"), p("trust/tsa-chain.pem"));
    let images: Vec<&str> = algorithms
        .iter()
        .copied()
        .filter(|a| *a != "rsa-pss-3072")
        .collect();
    for a in &images {
        let key = format!("img-{a}");
        d.ok(&["key", "create", &key, "--algorithm", a]);
        d.ok(&["key", "policy", "set", &key, "--resign-on-rotate", "false"]);
        reg.push_image(&format!("{key}:v1"), a);
        let image = format!("{}/{key}:v1", reg.addr);
        d.ok(&["sign", "--key", &key, &image]);
        let public = work.path().join(format!("{key}.pem"));
        std::fs::write(&public, d.ok(&["key", "public", &key])).unwrap();
        let o = cosign_verify(&public, &image, None);
        assert!(o.status.success(), "{a} by key: {}", output_text(&o));
        let identity = format!("keyward://keys/{key}");
        let o = cosign_by_ca(
            Path::new(&ca),
            Some(Path::new(&chain)),
            &identity,
            &issuer,
            &image,
        );
        assert!(o.status.success(), "{a} by CA: {}", output_text(&o));
    }

    // A rotation: the new version signs on the same token; both images still verify,
    // with cosign and offline with Keyward's own verifier against the signed list.
    let key = format!("img-{}", images[0]);
    let before = d.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert!(!String::from_utf8_lossy(&before.stdout).contains(&format!("keyward:{key}/v2")));
    d.ok(&["key", "rotate", &key]);
    assert!(
        module
            .private_keys(&d.dir)
            .contains(&format!("keyward:{key}/v2"))
    );
    reg.push_image(&format!("{key}:v2"), "rotated");
    let (first, second) = (
        format!("{}/{key}:v1", reg.addr),
        format!("{}/{key}:v2", reg.addr),
    );
    d.ok(&["sign", "--key", &key, &second]);
    let list = p("list.json");
    std::fs::write(&list, d.ok(&["-o", "json", "revocations", "show"])).unwrap();
    let history = p("history.json");
    std::fs::write(&history, d.ok(&["-o", "json", "key", "history", &key])).unwrap();
    let identity = format!("keyward://keys/{key}");
    for (image, version) in [(&first, 1), (&second, 2)] {
        let o = keyward_with(
            Path::new("/nonexistent/client.toml"),
            &[
                "-o",
                "json",
                "verify",
                "--key",
                &key,
                image,
                "--offline",
                "--ca",
                &ca,
                "--key-history",
                &history,
                "--revocations",
                &list,
                "--state",
                &p("s1.json"),
            ],
        );
        assert!(o.status.success(), "{image}: {}", output_text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["valid"],
            serde_json::json!([{ "version": version }]),
            "{v}"
        );
        let o = cosign_by_ca(
            Path::new(&ca),
            Some(Path::new(&chain)),
            &identity,
            &issuer,
            image,
        );
        assert!(o.status.success(), "{image}: {}", output_text(&o));
        let o = keyward_with(
            Path::new("/nonexistent/client.toml"),
            &[
                "-o",
                "json",
                "verify",
                image,
                "--identity",
                &identity,
                "--ca",
                &ca,
                "--tsa-chain",
                &chain,
                "--revocations",
                &list,
                "--state",
                &p("s2.json"),
            ],
        );
        assert!(o.status.success(), "{image}: {}", output_text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["valid"],
            serde_json::json!([{ "version": version }]),
            "{v}"
        );
    }

    // The CA's CRL, signed in the token, verifies with openssl.
    run_ok(
        Command::new("curl")
            .args(["-sSf", "-o", &p("crl.der")])
            .arg(format!("http://{}/v1/crl.der", d.http_addr)),
    );
    let o = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-in",
            &p("crl.der"),
            "-CAfile",
            &ca,
            "-noout",
        ])
        .output()
        .unwrap();
    assert!(output_text(&o).contains("verify OK"), "{}", output_text(&o));

    // A second factor sealed in the token at init opens there: a key that needs MFA
    // signs with the admin's code, and not without one.
    d.ok(&[
        "key",
        "policy",
        "set",
        "blob-rsa-pkcs1-3072",
        "--require-mfa",
        "true",
    ]);
    let why = refused(&d.keyward(&["sign-blob", "--key", "blob-rsa-pkcs1-3072", &p("artifact")]));
    assert!(why.contains("MFA required"), "{why}");
    let code = pyotp(&d.admin_secret, 0);
    d.ok(&[
        "sign-blob",
        "--key",
        "blob-rsa-pkcs1-3072",
        &p("artifact"),
        "--otp",
        &code,
    ]);

    // The token's secret keys (sealing and record MACs) cannot be read, derived from
    // or used to wrap; without AES-GCM the sealing key has its HMAC half.
    let o = d.pkcs11_tool(&["--list-objects", "--type", "secrkey"]);
    let secrets = String::from_utf8_lossy(&o.stdout).into_owned();
    let usages: Vec<&str> = secrets.lines().filter(|l| l.contains("Usage:")).collect();
    assert!(usages.len() >= 3, "{secrets}");
    assert!(
        usages
            .iter()
            .all(|u| !u.contains("derive") && !u.contains("wrap")),
        "{secrets}"
    );
    assert_eq!(
        secrets.matches("never extractable").count(),
        usages.len(),
        "{secrets}"
    );
    let halves = match module {
        Module::SoftHsm => 1,
        Module::OpenCryptoki => 2,
    };
    assert_eq!(
        secrets.matches("label:      keyward:mfa").count(),
        halves,
        "{secrets}"
    );

    // A restart (which signs the audit log's head) keeps every key on the token.
    d.restart();
    for a in &algorithms {
        if *a != "rsa-pkcs1-3072" {
            d.ok(&["sign-blob", "--key", &format!("blob-{a}"), &p("artifact")]);
        }
    }
    reg.push_image(&format!("{key}:v3"), "after restart");
    d.ok(&["sign", "--key", &key, &format!("{}/{key}:v3", reg.addr)]);
    assert!(!d.log().contains("HSM object is missing"), "{}", d.log());

    // The audit log verifies offline with the audit key, checkpoints signed in the token.
    std::fs::write(p("audit.pem"), d.ok(&["audit", "public-key"])).unwrap();
    std::fs::write(p("audit.jsonl"), d.ok(&["audit", "export"])).unwrap();
    let o = keyward_with(
        Path::new("/nonexistent/client.toml"),
        &[
            "-o",
            "json",
            "audit",
            "verify",
            &p("audit.jsonl"),
            "--key",
            &p("audit.pem"),
            "--allow-unsigned-tail",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["checkpoints"].as_u64().unwrap() >= 1, "{v}");

    // An object deleted behind Keyward's back is named at the next start, and signing
    // with it says which version is gone and where.
    let victim = format!("img-{}", images.last().unwrap());
    let missing = d.delete_key_and_restart(module, &format!("{victim}/v1"));
    assert!(missing.contains(&format!("{victim}/v1")), "{missing}");
    reg.push_image("gone:v1", "gone");
    let why = refused(&d.keyward(&["sign", "--key", &victim, &format!("{}/gone:v1", reg.addr)]));
    assert!(
        why.contains(&format!(
            "key \"{victim}\" version 1: its object is missing from backend hsm"
        )),
        "{why}"
    );
}

#[test]
fn the_instance_story_on_softhsm() {
    portable(Module::SoftHsm);
}

#[test]
fn the_instance_story_on_opencryptoki() {
    portable(Module::OpenCryptoki);
}
