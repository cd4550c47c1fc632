//! What verifiers learn about a key's versions: a history signed by the Keyward CA,
//! one PEM per version to trust, and which version signed an image, when.

use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign_verify};
use std::process::Command;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn the_history_is_signed_by_the_ca_and_its_pem_files_verify_what_each_version_signed() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("hist/app", 3);
    sign_all(&d, "release", &images[..2]);
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    d.ok(&["sign", "--key", "release", &images[2].0]);

    let work = tempfile::tempdir().unwrap();
    let h = json(&d.ok(&[
        "-o",
        "json",
        "key",
        "history",
        "release",
        "--pem-dir",
        work.path().join("pems").to_str().unwrap(),
    ]));
    assert_eq!(h["key"], "release");
    let v = h["versions"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{h}");
    assert_eq!(
        (v[0]["version"].as_u64(), v[0]["state"].as_str()),
        (Some(1), Some("retired"))
    );
    assert_eq!(
        (v[1]["version"].as_u64(), v[1]["state"].as_str()),
        (Some(2), Some("active"))
    );
    assert!(
        v[0]["valid_until"].is_string() && v[1]["valid_until"].is_null(),
        "{h}"
    );
    assert!(
        v[1]["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // The signature covers the canonical document: a verifier that trusts the CA
    // checks it with openssl; a changed document fails.
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(h["signature"].as_str().unwrap())
        .unwrap();
    let mut doc = h.clone();
    doc.as_object_mut().unwrap().remove("signature");
    let p = |n: &str| work.path().join(n);
    std::fs::write(p("sig.der"), sig).unwrap();
    std::fs::write(p("doc.json"), serde_json::to_string(&doc).unwrap()).unwrap();
    let ca = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(d.dir.join("ca.pem"))
        .output()
        .unwrap();
    std::fs::write(p("ca.pub"), ca.stdout).unwrap();
    let verify = |file: &str| {
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(p("ca.pub"))
            .arg("-signature")
            .arg(p("sig.der"))
            .arg(p(file))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        verify("doc.json"),
        "the CA's signature of the history does not verify"
    );
    doc["versions"][0]["state"] = "active".into();
    std::fs::write(p("forged.json"), serde_json::to_string(&doc).unwrap()).unwrap();
    assert!(!verify("forged.json"), "a changed history verified");

    // One PEM per version to trust; each verifies what that version signed.
    let (v1, v2) = (p("pems/release-v1.pem"), p("pems/release-v2.pem"));
    assert!(cosign_verify(&v1, &images[0].0, None).status.success());
    assert!(cosign_verify(&v2, &images[0].0, None).status.success());
    assert!(!cosign_verify(&v1, &images[2].0, None).status.success());
    assert!(cosign_verify(&v2, &images[2].0, None).status.success());

    // verify says which version signed, when, and that it was in service then.
    let out = json(&d.ok(&["-o", "json", "verify", "--key", "release", &images[0].0]));
    let mut found: Vec<(u64, bool)> = out["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["version"].as_u64().unwrap(),
                s["valid_when_signed"] == true,
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, [(1, true), (2, true)], "{out}");
    assert!(
        out["valid"][0]["signed_at"].as_str().unwrap().len() > 10,
        "{out}"
    );

    // key show counts, per version, what it signed and what the active one co-signed.
    let key = json(&d.ok(&["-o", "json", "key", "show", "release"]));
    assert_eq!(key["versions"][0]["images_signed"], 2, "{key}");
    assert_eq!(key["versions"][0]["co_signed"], 2, "{key}");
    assert_eq!(key["versions"][1]["images_signed"], 3, "{key}");
    let text = d.ok(&["key", "show", "release"]);
    assert!(
        text.contains("signed 2 images; v2 has co-signed 2 of them"),
        "{text}"
    );
}
