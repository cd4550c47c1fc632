//! Rotation: a key gets a new active version; the old one verifies and never signs.

use keyward_tests::DevDaemon;

#[test]
fn two_rotations_at_once_make_one_version_each_or_say_why_and_leave_no_hsm_object_behind() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "race", "--purpose", "blob"]);
    let outs = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| d.keyward(&["key", "rotate", "race"])))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let rotated = outs.iter().filter(|o| o.status.success()).count();
    assert!(rotated >= 1, "no rotation succeeded");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("rotated by another request at the same time"),
            "{err}"
        );
    }
    let key: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "race"])).unwrap();
    let versions = key["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1 + rotated, "{key}");
    let active: Vec<_> = versions.iter().filter(|v| v["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{key}");
    assert_eq!(active[0]["version"], 1 + rotated as u64);
    // A rotation that lost deleted the key pair it had generated.
    let on_token = d
        .token_keys()
        .iter()
        .filter(|k| {
            k["label"]
                .as_str()
                .unwrap_or("")
                .starts_with("keyward:race/")
        })
        .count();
    assert_eq!(on_token, versions.len(), "{:?}", d.token_keys());
}

#[test]
fn rotations_during_a_signing_loop_leave_every_signature_verifying_with_the_version_the_ledger_names()
 {
    use keyward_client::proto;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::pkcs8::DecodePublicKey;
    use sha2::Digest;

    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let signed = rt.block_on(async {
        let c = d.client().await;
        let mut tasks = Vec::new();
        for t in 0..4u8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..100u8 {
                    let digest = sha2::Sha256::digest([t, i]).to_vec();
                    let r = c
                        .sign_digest(proto::SignDigestRequest {
                            key: "files".into(),
                            digest_algorithm: "sha256".into(),
                            digest: digest.clone(),
                            ..Default::default()
                        })
                        .await
                        .expect("sign");
                    out.push((r.version, digest, r.signature));
                }
                out
            }));
        }
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            c.rotate_key(proto::RotateKeyRequest {
                name: "files".into(),
            })
            .await
            .expect("rotate");
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let key: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "files"])).unwrap();
    assert_eq!(key["active_version"], 4, "{key}");
    let public = |v: u32| {
        use base64::Engine;
        let pem = d.ok(&["key", "public", "files", "--version", &v.to_string()]);
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        p256::ecdsa::VerifyingKey::from_public_key_der(&der).unwrap()
    };
    let keys: Vec<_> = (1..=4).map(public).collect();
    let mut per_version = [0usize; 5];
    for (version, digest, sig) in &signed {
        let sig = p256::ecdsa::Signature::from_der(sig).unwrap();
        assert!(
            keys[*version as usize - 1]
                .verify_prehash(digest, &sig)
                .is_ok(),
            "a signature said to be by v{version} does not verify with v{version}"
        );
        per_version[*version as usize] += 1;
    }
    assert!(
        per_version.iter().filter(|n| **n > 0).count() > 1,
        "every signature came from one version: the rotations did not land mid-loop"
    );
    // The ledger names, for each signature, the version and fingerprint that made it.
    let ledger: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "signatures", "list", "--key", "files"]))
            .unwrap();
    let mut ledger_per_version = [0usize; 5];
    for e in ledger.as_array().unwrap() {
        let v = e["version"].as_u64().unwrap() as usize;
        assert_eq!(
            e["fingerprint"],
            key["versions"][v - 1]["fingerprint"],
            "{e}"
        );
        ledger_per_version[v] += 1;
    }
    assert_eq!(ledger_per_version, per_version);
}

#[test]
fn rotations_while_images_are_signed_leave_each_image_signed_by_the_version_the_ledger_names() {
    use keyward_tests::campaign::sign_all;
    use keyward_tests::registry::TestRegistry;
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    d.ok(&[
        "key",
        "policy",
        "set",
        "release",
        "--resign-on-rotate",
        "false",
    ]);
    let images = reg.push_many("race/app", 60);
    std::thread::scope(|s| {
        s.spawn(|| sign_all(&d, "release", &images));
        for _ in 0..2 {
            std::thread::sleep(std::time::Duration::from_millis(150));
            d.ok(&["key", "rotate", "release"]);
        }
    });
    let ledger: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "signatures", "list", "--key", "release"]))
            .unwrap();
    let entries = ledger.as_array().unwrap();
    assert_eq!(entries.len(), 60, "{ledger}");
    let mut versions = std::collections::BTreeSet::new();
    for e in entries {
        let (reference, version) = (
            e["reference"].as_str().unwrap(),
            e["version"].as_u64().unwrap(),
        );
        versions.insert(version);
        let v: serde_json::Value =
            serde_json::from_str(&d.ok(&["-o", "json", "verify", "--key", "release", reference]))
                .unwrap();
        let valid = v["valid"].as_array().unwrap();
        assert_eq!(valid.len(), 1, "{v}");
        assert_eq!(valid[0]["version"].as_u64(), Some(version), "{v} / {e}");
        assert_eq!(
            valid[0]["optional"]["dev.keyward/version"],
            version.to_string()
        );
        assert_eq!(valid[0]["valid_when_signed"], true, "{v}");
    }
    assert!(
        versions.len() > 1,
        "all 60 images were signed by one version: {versions:?}"
    );
}
