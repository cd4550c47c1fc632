//! Verifiers trust a key by its name through the Keyward CA: every signature layer
//! carries its version's certificate (a URI SAN naming the key, the instance's
//! issuer) and the CA, so one unchanged cosign command accepts what every version of
//! the key signed.

use keyward_tests::DevDaemon;
use keyward_tests::registry::TestRegistry;
use keyward_tests::verifiers::{cosign_by_ca, output_text};
use std::path::Path;
use std::process::{Command, Output};

/// `cosign verify` with CA roots and an identity instead of a key.
fn cosign_by_identity(ca: &Path, identity: &str, issuer: &str, image: &str) -> Output {
    cosign_by_ca(ca, None, identity, issuer, image)
}

fn text(o: &Output) -> String {
    output_text(o)
}

/// The issuer the dev instance names: `keyward://ca/` and its CA key's fingerprint.
fn issuer_of(d: &DevDaemon) -> String {
    let pem = d.ok(&["key", "public", "img", "--certificate"]);
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(t.contains("URI:keyward://keys/img"), "{t}");
    let at = t.find("keyward://ca/").unwrap_or_else(|| panic!("{t}"));
    t[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('.')
        .to_string()
}

#[test]
fn one_cosign_command_accepts_every_version_of_a_key_and_nothing_else() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    d.ok(&["key", "create", "other"]);
    d.ok(&["key", "policy", "set", "img", "--resign-on-rotate", "false"]);
    reg.push_image("app-a:v1", "a");
    reg.push_image("app-b:v1", "b");
    reg.push_image("app-c:v1", "c");
    let (a, b, c) = (
        format!("{}/app-a:v1", reg.addr),
        format!("{}/app-b:v1", reg.addr),
        format!("{}/app-c:v1", reg.addr),
    );
    d.ok(&["sign", "--key", "img", &a]);
    let issuer = issuer_of(&d);
    // `key show` names both, and the command that uses them.
    let shown: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "img"])).unwrap();
    assert_eq!(
        shown["certificate_identity"], "keyward://keys/img",
        "{shown}"
    );
    assert_eq!(shown["certificate_oidc_issuer"], issuer.as_str(), "{shown}");
    let shown = d.ok(&["key", "show", "img"]);
    assert!(
        shown.contains(&format!(
            "--certificate-identity keyward://keys/img --certificate-oidc-issuer {issuer}"
        )),
        "{shown}"
    );
    d.ok(&["key", "rotate", "img"]);
    d.ok(&["sign", "--key", "img", &b]);
    d.ok(&["sign", "--key", "other", &c]);
    let ca = d.dir.join("ca.pem");

    // v1 signed A, v2 signed B: the same command accepts both.
    for image in [&a, &b] {
        let o = cosign_by_identity(&ca, "keyward://keys/img", &issuer, image);
        assert!(o.status.success(), "{image}: {}", text(&o));
    }
    // With the TSA's chain, cosign also checks each signature's time-stamp.
    let (status, chain) = d.http_get("/v1/tsa-chain.pem");
    assert!(status.contains("200"), "{status}");
    let tsa_chain = d.dir.join("tsa-chain.pem");
    std::fs::write(&tsa_chain, chain).unwrap();
    for image in [&a, &b] {
        let o = cosign_by_ca(&ca, Some(&tsa_chain), "keyward://keys/img", &issuer, image);
        assert!(o.status.success(), "{image}: {}", text(&o));
    }
    // Another key's identity refuses both; this key's identity refuses the other's image.
    for image in [&a, &b] {
        let o = cosign_by_identity(&ca, "keyward://keys/other", &issuer, image);
        assert!(!o.status.success(), "{image} verified as another key");
        assert!(text(&o).contains("expected identities"), "{}", text(&o));
    }
    let o = cosign_by_identity(&ca, "keyward://keys/img", &issuer, &c);
    assert!(!o.status.success(), "another key's image verified as img");
    assert!(text(&o).contains("expected identities"), "{}", text(&o));
    // Another issuer refuses it.
    let o = cosign_by_identity(&ca, "keyward://keys/img", "keyward://ca/elsewhere", &a);
    assert!(!o.status.success(), "verified under another issuer");
    assert!(text(&o).contains("expected identities"), "{}", text(&o));
    // A CA that is not Keyward's refuses it.
    let foreign = d.dir.join("foreign-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=Not Keyward",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(d.dir.join("foreign-ca.key"))
        .arg("-out")
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let o = cosign_by_identity(&foreign, "keyward://keys/img", &issuer, &a);
    assert!(!o.status.success(), "verified against a foreign CA");
    assert!(text(&o).contains("unknown authority"), "{}", text(&o));
    // A time-stamp checked against another Keyward instance's TSA chain is refused.
    let elsewhere = DevDaemon::start();
    let (_, other_chain) = elsewhere.http_get("/v1/tsa-chain.pem");
    let other = d.dir.join("other-tsa-chain.pem");
    std::fs::write(&other, other_chain).unwrap();
    let o = cosign_by_ca(&ca, Some(&other), "keyward://keys/img", &issuer, &a);
    assert!(
        !o.status.success(),
        "a time-stamp verified against a foreign TSA chain"
    );
    assert!(text(&o).contains("timestamp"), "{}", text(&o));
}

#[test]
fn with_certificates_off_layers_carry_the_signature_alone_and_verify_by_key() {
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_dev(tmp.path(), &["--no-certificates"], &[]).unwrap();
    d.ok(&["key", "create", "img"]);
    let digest = reg.push_image("plain:v1", "plain");
    let image = format!("{}/plain:v1", reg.addr);
    d.ok(&["sign", "--key", "img", &image]);
    let layers = reg.sig_layers("plain", &digest);
    let annotations = layers[0]["annotations"].as_object().unwrap();
    for absent in [
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/rfc3161timestamp",
    ] {
        assert!(!annotations.contains_key(absent), "{absent} in {layers:?}");
    }
    assert!(annotations.contains_key("dev.cosignproject.cosign/signature"));
    let o = keyward_tests::cosign_verify(&d.public_key_file("img"), &image, None);
    assert!(o.status.success(), "{}", text(&o));
    // Without a certificate, a verifier that trusts the CA has nothing to go on.
    let issuer = issuer_of(&d);
    let o = cosign_by_identity(&d.dir.join("ca.pem"), "keyward://keys/img", &issuer, &image);
    assert!(
        !o.status.success(),
        "verified by identity without a certificate"
    );
}
