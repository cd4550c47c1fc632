//! Image signing against the real distribution registry, checked by cosign.

use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign, cosign_verify};
use std::process::Command;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn cosign_accepts_our_signatures_and_rejects_everything_else() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("team/app:v1", "app one");
    let other_digest = reg.push_image("team/app:v2", "app two");
    let image = format!("{}/team/app:v1", reg.addr);
    let unsigned = format!("{}/team/app:v2", reg.addr);
    d.ok(&["key", "create", "release"]);
    d.ok(&["key", "create", "stranger"]);
    let (release, stranger) = (d.public_key_file("release"), d.public_key_file("stranger"));

    let signed = json(&d.ok(&[
        "-o", "json", "sign", "--key", "release", "-a", "build=42", &image,
    ]));
    assert_eq!(signed["signatures"][0]["digest"], digest.as_str());
    assert_eq!(signed["signatures"][0]["already_signed"], false);

    // Accepted with the right key; the payload names the reference as requested.
    let ok = cosign_verify(&release, &image, None);
    assert!(
        ok.status.success(),
        "cosign rejected our signature: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let payload = json(String::from_utf8_lossy(&ok.stdout).trim());
    assert_eq!(
        payload[0]["critical"]["identity"]["docker-reference"],
        image.as_str()
    );
    assert_eq!(
        payload[0]["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(payload[0]["optional"]["build"], "42");
    // By digest too.
    assert!(
        cosign_verify(&release, &format!("{}/team/app@{digest}", reg.addr), None)
            .status
            .success()
    );

    // Rejected with another key, and for an unsigned image.
    assert!(!cosign_verify(&stranger, &image, None).status.success());
    assert!(!cosign_verify(&release, &unsigned, None).status.success());
    let err = d.fails(&["verify", "--key", "release", &unsigned]);
    assert!(err.contains("no valid signature"), "{err}");
    let v = json(&d.ok(&["-o", "json", "verify", "--key", "release", &image]));
    assert_eq!(v["valid"][0]["version"], 1);
    assert_eq!(v["valid"][0]["state"], "active");

    // A signature does not verify for another image: copy v1's signature manifest
    // onto v2's signature tag.
    let sig_manifest = reg.manifest("team/app", &format!("{}.sig", digest.replace(':', "-")));
    reg.put_manifest(
        "team/app",
        &format!("{}.sig", other_digest.replace(':', "-")),
        &sig_manifest,
    );
    assert!(
        !cosign_verify(&release, &unsigned, None).status.success(),
        "v1's signature verified for v2"
    );
    let v = json(&d.ok(&["-o", "json", "verify", "--key", "release", &image]));
    assert_eq!(v["valid"].as_array().unwrap().len(), 1);
    let err = d.fails(&["verify", "--key", "release", &unsigned]);
    assert!(err.contains("no valid signature"), "{err}");
}

#[test]
fn a_tampered_payload_is_rejected_and_a_second_signature_keeps_the_first() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("app:v1", "tamper");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["key", "create", "one"]);
    d.ok(&["key", "create", "two", "--algorithm", "ed25519"]);
    let (one, two) = (d.public_key_file("one"), d.public_key_file("two"));
    d.ok(&["sign", "--key", "one", &image]);
    d.ok(&["sign", "--key", "two", &image]);
    assert_eq!(reg.sig_layers("app", &digest).len(), 2);
    assert!(
        cosign_verify(&one, &image, None).status.success(),
        "first signature lost"
    );
    assert!(
        cosign_verify(&two, &image, None).status.success(),
        "ed25519 signature rejected"
    );

    // Signing again with the same key version adds nothing.
    let again = json(&d.ok(&["-o", "json", "sign", "--key", "one", &image]));
    assert_eq!(again["signatures"][0]["already_signed"], true);
    assert_eq!(reg.sig_layers("app", &digest).len(), 2);

    // Tamper: rewrite key one's payload (another docker-reference) keeping its signature.
    let mut ls = reg.sig_layers("app", &digest);
    let payload = reg.blob("app", ls[0]["digest"].as_str().unwrap());
    let forged = String::from_utf8(payload)
        .unwrap()
        .replace("app:v1", "app:evil")
        .into_bytes();
    let forged_digest = reg.put_blob("app", &forged);
    ls[0]["digest"] = forged_digest.into();
    ls[0]["size"] = forged.len().into();
    let mut m: serde_json::Value =
        serde_json::from_slice(&reg.manifest("app", &format!("{}.sig", digest.replace(':', "-"))))
            .unwrap();
    m["layers"] = serde_json::Value::Array(ls);
    reg.put_manifest(
        "app",
        &format!("{}.sig", digest.replace(':', "-")),
        m.to_string().as_bytes(),
    );
    assert!(
        !cosign_verify(&one, &image, None).status.success(),
        "cosign accepted a tampered payload"
    );
    let err = d.fails(&["verify", "--key", "one", &image]);
    assert!(err.contains("no valid signature"), "{err}");
    assert!(cosign_verify(&two, &image, None).status.success());
}

#[test]
fn attestations_verify_with_cosign_for_their_predicate_type() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("svc:1.0", "attested");
    let image = format!("{}/svc:1.0", reg.addr);
    d.ok(&["key", "create", "prov"]);
    let key = d.public_key_file("prov");
    let predicate = d.dir.join("provenance.json");
    std::fs::write(
        &predicate,
        r#"{"builder":{"id":"https://ci.example.com"},"buildType":"https://example.com/make"}"#,
    )
    .unwrap();
    let out = json(&d.ok(&[
        "-o",
        "json",
        "attest",
        "--key",
        "prov",
        "--type",
        "slsaprovenance",
        "--predicate",
        predicate.to_str().unwrap(),
        &image,
    ]));
    assert_eq!(out["predicate_type"], "https://slsa.dev/provenance/v0.2");

    let verify = |ty: &str| {
        Command::new(cosign())
            .args(["verify-attestation", "--key"])
            .arg(&key)
            .args([
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                "--type",
                ty,
                &image,
            ])
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap()
    };
    let ok = verify("slsaprovenance");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        !verify("spdx").status.success(),
        "an slsa attestation passed as spdx"
    );

    let err = d.fails(&[
        "attest",
        "--key",
        "prov",
        "--type",
        "sbom",
        "--predicate",
        predicate.to_str().unwrap(),
        &image,
    ]);
    assert!(
        err.contains("unknown predicate type") && err.contains("cyclonedx"),
        "{err}"
    );
    std::fs::write(&predicate, "not json").unwrap();
    let err = d.fails(&[
        "attest",
        "--key",
        "prov",
        "--predicate",
        predicate.to_str().unwrap(),
        &image,
    ]);
    assert!(err.contains("not valid JSON"), "{err}");
}

#[test]
fn recursive_signing_covers_the_index_and_every_platform() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let (index, platforms) = reg.push_index("multi:latest", "multi", &["amd64", "arm64"]);
    d.ok(&["key", "create", "k"]);
    let key = d.public_key_file("k");
    let image = format!("{}/multi:latest", reg.addr);

    let signed = json(&d.ok(&["-o", "json", "sign", "--key", "k", &image]));
    let signed = &signed["signatures"];
    assert_eq!(signed.as_array().unwrap().len(), 1);
    assert_eq!(signed[0]["digest"], index.as_str());
    let signed = json(&d.ok(&["-o", "json", "sign", "--recursive", "--key", "k", &image]));
    let digests: Vec<_> = signed["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(digests.len(), 3, "{signed}");
    for p in &platforms {
        assert!(digests.contains(p));
        assert!(
            cosign_verify(&key, &format!("{}/multi@{p}", reg.addr), None)
                .status
                .success(),
            "platform {p}"
        );
    }
    assert!(cosign_verify(&key, &image, None).status.success());
}

#[test]
fn an_rsa_pkcs1_image_signature_verifies_with_cosign_by_key_and_by_identity() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("rsa:v1", "rsa");
    let image = format!("{}/rsa:v1", reg.addr);
    d.ok(&["key", "create", "rsa", "--algorithm", "rsa-pkcs1-3072"]);
    d.ok(&["sign", "--key", "rsa", &image]);
    let o = cosign_verify(&d.public_key_file("rsa"), &image, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&d.ok(&["-o", "json", "verify", "--key", "rsa", &image]));
    assert_eq!(v["valid"].as_array().unwrap().len(), 1, "{v}");
    // By the CA and the key's name, its time-stamp checked.
    let trust = d.dir.join("trust");
    let shown = json(&d.ok(&[
        "-o",
        "json",
        "trust",
        "export",
        trust.to_str().unwrap(),
        "--key",
        "rsa",
    ]));
    let o = keyward_tests::verifiers::cosign_by_ca(
        &trust.join("ca.pem"),
        Some(&trust.join("tsa-chain.pem")),
        shown["certificate_identity"].as_str().unwrap(),
        shown["certificate_oidc_issuer"].as_str().unwrap(),
        &image,
    );
    assert!(
        o.status.success(),
        "{}",
        keyward_tests::verifiers::output_text(&o)
    );
    // Another key's public key refuses it.
    d.ok(&["key", "create", "other", "--algorithm", "rsa-pkcs1-3072"]);
    let o = cosign_verify(&d.public_key_file("other"), &image, None);
    assert!(!o.status.success(), "verified with another RSA key");
    // Keyward's own verifier agrees: no signature by "other" on the image.
    let err = d.fails(&["verify", "--key", "other", &image]);
    assert!(err.contains("no valid signature"), "{err}");
}
