//! Keyward read as an attacker reads it, past the gate: keys sign only what their
//! purpose, scope and approvals allow (a planted registry object, a removed requester,
//! a lone key-admin, a flood of requests), and local files stay private. Each test
//! tries another door against the real daemon, CLI, registry and cosign.

use keyward_client::proto;
use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign, cosign_verify, json_ok as json, pending, refused};
use std::process::Command;

#[test]
fn an_image_key_cannot_sign_a_forged_payload_and_a_blob_key_cannot_sign_images() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("prod/app:v1", "scoped");
    d.ok(&[
        "key",
        "create",
        "images",
        "--scope",
        &format!("{}/prod/*", reg.addr),
    ]);
    d.ok(&["key", "create", "files", "--purpose", "blob"]);

    // The attacker's payload claims an image outside the key's scope.
    let forged = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/other/repo"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}}}}"#,
        reg.addr
    );
    let payload = d.dir.join("payload.json");
    std::fs::write(&payload, &forged).unwrap();
    let err = refused(&d.keyward(&["sign-blob", "--key", "images", payload.to_str().unwrap()]));
    assert!(
        err.contains("is an image key") && err.contains("--purpose blob"),
        "{err}"
    );
    // Through the RPC directly, with the message itself: the same refusal.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = rt.block_on(async {
        let mut c = d.client().await;
        c.signing
            .sign_digest(proto::SignDigestRequest {
                key: "images".into(),
                message: forged.into_bytes(),
                ..Default::default()
            })
            .await
            .unwrap_err()
    });
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{}", st.message());

    let err = refused(&d.keyward(&[
        "sign",
        "--key",
        "files",
        &format!("{}/prod/app:v1", reg.addr),
    ]));
    assert!(err.contains("is a blob key"), "{err}");

    // Blob signatures are in the ledger with the file the requester named.
    d.ok(&["sign-blob", "--key", "files", payload.to_str().unwrap()]);
    let ledger = json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "files"]));
    let e = &ledger.as_array().unwrap()[0];
    assert_eq!(e["kind"], "blob");
    assert_eq!(e["reference"], "payload.json");
    assert_eq!(e["requester"], "admin");
    assert_eq!(e["version"], 1);
    use sha2::Digest;
    assert_eq!(
        e["digest"],
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(&payload).unwrap()))
        )
    );
}

#[test]
fn an_approver_of_a_blob_sees_the_file_name_and_size() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "files", "--approvals", "1"]);
    let f = d.dir.join("release-1.2.tar");
    std::fs::write(&f, vec![7u8; 1234]).unwrap();
    let req = pending(&d.keyward_as(
        &alice,
        &[
            "-o",
            "json",
            "sign-blob",
            "--key",
            "files",
            f.to_str().unwrap(),
        ],
    ));
    let id = req["approval_id"].as_str().unwrap();
    let shown = json(&d.keyward_as(&ann, &["-o", "json", "approvals", "show", id]));
    assert_eq!(shown["file_name"], "release-1.2.tar");
    assert_eq!(shown["size"], 1234);
    let text = String::from_utf8(d.keyward_as(&ann, &["approvals", "show", id]).stdout).unwrap();
    assert!(text.contains("release-1.2.tar (1234 bytes"), "{text}");
}

#[test]
fn an_attestation_waits_for_the_approvals_its_key_needs_and_signs_what_was_approved() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("svc:1", "attest-approval");
    let image = format!("{}/svc:1", reg.addr);
    d.ok(&["key", "create", "prov"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "prov", "--approvals", "1"]);
    let predicate = d.dir.join("prov.json");
    std::fs::write(&predicate, r#"{"builder":{"id":"https://ci.example.com"}}"#).unwrap();
    let att_tag = format!("{}.att", digest.replace(':', "-"));

    let req = pending(&d.keyward_as(
        &alice,
        &[
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
        ],
    ));
    assert_eq!(req["pending"], true, "{req}");
    let id = req["approval_id"].as_str().unwrap().to_string();
    assert!(
        Command::new("curl")
            .args([
                "-sf",
                &format!("http://{}/v2/svc/manifests/{att_tag}", reg.addr)
            ])
            .status()
            .unwrap()
            .code()
            != Some(0),
        "an attestation was pushed before approval"
    );
    // What the approver sees: the exact statement.
    let shown = json(&d.keyward_as(&ann, &["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["kind"], "attestation");
    assert_eq!(shown["digests"][0], digest.as_str());
    assert_eq!(shown["predicate_type"], "https://slsa.dev/provenance/v0.2");
    use sha2::Digest;
    assert_eq!(
        shown["predicate_digest"],
        hex::encode(sha2::Sha256::digest(std::fs::read(&predicate).unwrap()))
    );
    // The requester cannot approve its own statement.
    let err = refused(&d.keyward_as(&alice, &["approve", &id]));
    assert!(err.contains("needs the role approver"), "{err}");
    let done = json(&d.keyward_as(&ann, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");

    let pem = d.dir.join("prov.pem");
    std::fs::write(&pem, d.ok(&["key", "public", "prov"])).unwrap();
    let v = Command::new(cosign())
        .args(["verify-attestation", "--key"])
        .arg(&pem)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--type",
            "slsaprovenance",
            &image,
        ])
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn a_planted_signature_layer_does_not_make_keyward_skip_signing() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("app:v1", "planted");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["key", "create", "release"]);
    let key: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "release"])).unwrap();
    let fingerprint = key["versions"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();

    // Someone with push rights plants a layer that claims to be release/v1's signature.
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{image}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}}}}"#
    );
    let payload_digest = reg.put_blob("app", payload.as_bytes());
    let config = b"{}";
    let config_digest = reg.put_blob("app", config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": payload_digest, "size": payload.len(),
            "annotations": {
                "dev.cosignproject.cosign/signature": "MEUCIQDfakefakefakefakefakefakefakefakefakefakefakefakefakeAiA=",
                "dev.keyward/fingerprint": fingerprint,
                "dev.keyward/key": "release/v1",
                "dev.keyward/docker-reference": image,
            }
        }]
    });
    reg.put_manifest(
        "app",
        &format!("{}.sig", digest.replace(':', "-")),
        manifest.to_string().as_bytes(),
    );

    let signed = json(&d.keyward(&["-o", "json", "sign", "--key", "release", &image]));
    assert_eq!(
        signed["signatures"][0]["already_signed"], false,
        "a planted layer suppressed signing"
    );
    let pem = d.dir.join("release.pem");
    std::fs::write(&pem, d.ok(&["key", "public", "release"])).unwrap();
    let v = cosign_verify(&pem, &image, None);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // Signing again now really is a no-op: the genuine layer verifies.
    let again = json(&d.keyward(&["-o", "json", "sign", "--key", "release", &image]));
    assert_eq!(again["signatures"][0]["already_signed"], true);
}

#[test]
fn an_approved_request_does_not_sign_for_a_requester_removed_in_the_meantime() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    let aaron = d.add_principal("aaron", "approver");
    d.ok(&["key", "policy", "set", "files", "--approvals", "2"]);
    let req = pending(&d.keyward_as(
        &alice,
        &["-o", "json", "sign-blob", "--key", "files", "/etc/hostname"],
    ));
    let id = req["approval_id"].as_str().unwrap().to_string();
    json(&d.keyward_as(&ann, &["-o", "json", "approve", &id]));
    d.ok(&["principal", "remove", "alice"]);
    let done = json(&d.keyward_as(&aaron, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "refused", "{done}");
    assert!(done["error"].as_str().unwrap().contains("alice"), "{done}");
    assert_eq!(done["signature"], serde_json::Value::Null, "{done}");
    // Nothing in the ledger.
    let ledger = json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "files"]));
    assert!(ledger.as_array().unwrap().is_empty(), "{ledger}");
}

#[test]
fn one_key_admin_alone_cannot_weaken_a_keys_policy() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let kim = d.add_principal("kim", "key-admin");
    let kira = d.add_principal("kira", "key-admin");
    let rita = d.add_principal("rita", "approver");
    d.add_principal("ann", "approver");
    d.add_principal("aaron", "approver");
    // Tightening applies at once.
    let set = json(&d.keyward_as(
        &kim,
        &[
            "-o",
            "json",
            "key",
            "policy",
            "set",
            "files",
            "--approvals",
            "2",
        ],
    ));
    assert_eq!(set["policy"]["approvals"], 2, "{set}");

    // Weakening waits; the key is unchanged meanwhile.
    let req = pending(&d.keyward_as(
        &kim,
        &[
            "-o",
            "json",
            "key",
            "policy",
            "set",
            "files",
            "--approvals",
            "0",
        ],
    ));
    assert_eq!(req["pending"], true, "{req}");
    assert!(
        req["weakens"][0]
            .as_str()
            .unwrap()
            .contains("approvals: 2 -> 0"),
        "{req}"
    );
    let id = req["approval_id"].as_str().unwrap().to_string();
    let key = json(&d.keyward(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["approvals"], 2);
    let shown = json(&d.keyward_as(&kira, &["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["kind"], "policy");

    // Not the requester, and not someone who could not make the change either.
    let err = refused(&d.keyward_as(&kim, &["approve", &id]));
    assert!(err.contains("separation of duties"), "{err}");
    let err = refused(&d.keyward_as(&rita, &["approve", &id]));
    assert!(
        err.contains("approve key policy changes") && err.contains("key-admin"),
        "{err}"
    );
    let done = json(&d.keyward_as(&kira, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    let key = json(&d.keyward(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["approvals"], 0);

    // Each kind of weakening is caught, including "any signer" (turning require_mfa
    // off too: keys::policy's tests; on such a key every change needs a fresh code).
    d.ok(&[
        "key",
        "policy",
        "set",
        "files",
        "--signers",
        "kim",
        "--scope",
        "r/prod/*",
    ]);
    for args in [
        vec!["--signers", ""],
        vec!["--signers", "kim,kira"],
        vec!["--scope", "r/prod/*,r/**"],
        vec!["--scope", ""],
        vec!["--purpose", "image"],
    ] {
        let mut a = vec!["-o", "json", "key", "policy", "set", "files"];
        a.extend(args.iter().copied());
        let r = pending(&d.keyward_as(&kim, &a));
        assert_eq!(r["pending"], true, "{args:?}: {r}");
    }
}

#[test]
fn lists_come_in_pages_and_the_cli_joins_them() {
    let d = DevDaemon::start();
    for i in 0..5 {
        d.ok(&["key", "create", &format!("k{i}"), "--purpose", "blob"]);
        d.ok(&["sign-blob", "--key", &format!("k{i}"), "/etc/hostname"]);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = d.client().await;
        let (mut names, mut token) = (Vec::new(), String::new());
        loop {
            let r = c
                .keys
                .list_keys(proto::ListKeysRequest {
                    page_size: 2,
                    page_token: token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.keys.len() <= 2);
            names.extend(r.keys.into_iter().map(|k| k.name));
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
        assert_eq!(names, ["k0", "k1", "k2", "k3", "k4"]);
        let first = c
            .images
            .list_signatures(proto::ListSignaturesRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.entries.len(), 2);
        assert!(!first.next_page_token.is_empty());
    });
    let keys = json(&d.keyward(&["-o", "json", "key", "list"]));
    assert_eq!(keys.as_array().unwrap().len(), 5);
    let sigs = json(&d.keyward(&["-o", "json", "signatures", "list"]));
    assert_eq!(sigs.as_array().unwrap().len(), 5);
}

#[test]
fn one_principal_cannot_flood_the_approval_queue() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    d.ok(&["key", "policy", "set", "files", "--approvals", "1"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = rt.block_on(async {
        let cfg = keyward_client::ClientConfig::load(&alice).unwrap();
        let mut c = keyward_client::Client::connect(&cfg).await.unwrap();
        let req = |i: u8| proto::SignDigestRequest {
            key: "files".into(),
            digest_algorithm: "sha256".into(),
            digest: vec![i; 32],
            ..Default::default()
        };
        for i in 0..100u8 {
            let r = c.signing.sign_digest(req(i)).await.unwrap().into_inner();
            assert!(r.pending);
        }
        c.signing.sign_digest(req(200)).await.unwrap_err()
    });
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{}", st.message());
    assert!(st.message().contains("at most 100"), "{}", st.message());
    // The admin's own requests are not affected by alice's.
    let r = pending(&d.keyward(&["-o", "json", "sign-blob", "--key", "files", "/etc/hostname"]));
    assert_eq!(r["pending"], true);
}
