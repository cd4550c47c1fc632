//! Keyward read as an attacker reads it: each test tries to get around a guarantee
//! through another door (another RPC, a planted registry object, a second principal,
//! a method the client does not have) against the real daemon, CLI, registry and
//! cosign.

use keyward_client::proto;
use keyward_tests::registry::TestRegistry;
use keyward_tests::{
    DevDaemon, call_raw, cosign, cosign_verify, json_ok as json, pyotp, refused,
    wait_for_fresh_step,
};
use prost::Message;
use std::process::Command;

/// Every RPC in the protos, as `/package.Service/Method`.
fn rpcs() -> Vec<String> {
    let fds = prost_types_decode();
    let mut out = Vec::new();
    for (package, service, method) in fds {
        out.push(format!("/{package}.{service}/{method}"));
    }
    out
}

/// (package, service, method) from the compiled descriptor set, read with prost's
/// own wire format so that the test needs no descriptor crate.
fn prost_types_decode() -> Vec<(String, String, String)> {
    #[derive(Clone, PartialEq, Message)]
    struct Set {
        #[prost(message, repeated, tag = "1")]
        file: Vec<File>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct File {
        #[prost(string, tag = "2")]
        package: String,
        #[prost(message, repeated, tag = "6")]
        service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Service {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, repeated, tag = "2")]
        method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Method {
        #[prost(string, tag = "1")]
        name: String,
    }
    let set = Set::decode(keyward_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for f in set.file {
        for s in f.service {
            for m in s.method {
                out.push((f.package.clone(), s.name.clone(), m.name));
            }
        }
    }
    out
}

/// RPCs that read, or that enrol the caller's own factor: no code is needed.
const NO_CODE: &[&str] = &[
    "KeyService/ListKeys",
    "KeyService/GetKey",
    "KeyService/GetPublicKey",
    "KeyService/ListBackends",
    "ImageService/VerifyImage",
    "ImageService/ListSignatures",
    "PrincipalService/ListPrincipals",
    "PrincipalService/GetPrincipal",
    "PrincipalService/WhoAmI",
    "AuditService/ExportAudit",
    "AuditService/AuditPublicKey",
    "MfaService/Enroll",
    "MfaService/Confirm",
    "ApprovalService/ListApprovals",
    "ApprovalService/GetApproval",
];

/// RPCs that sign: they need a code when the key's policy says so.
const KEY_POLICY: &[&str] = &[
    "SigningService/SignDigest",
    "ImageService/SignImage",
    "ImageService/AttestImage",
];

fn short(path: &str) -> &str {
    path.trim_start_matches("/keyward.v1.")
}

#[test]
fn every_rpc_that_changes_state_is_refused_without_a_one_time_code() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _secret) = DevDaemon::start_with_mfa(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused_paths = rt.block_on(async {
        let c = d.client().await;
        let mut refused = Vec::new();
        for path in rpcs() {
            let m = short(&path);
            if NO_CODE.contains(&m) || KEY_POLICY.contains(&m) {
                continue;
            }
            let result = match m {
                "KeyService/CreateKey" => {
                    call_raw(
                        &c,
                        &path,
                        proto::CreateKeyRequest {
                            name: "x".into(),
                            ..Default::default()
                        },
                    )
                    .await
                }
                "KeyService/RotateKey" => {
                    call_raw(&c, &path, proto::RotateKeyRequest { name: "x".into() }).await
                }
                "KeyService/SetKeyScope" => {
                    call_raw(
                        &c,
                        &path,
                        proto::SetKeyScopeRequest {
                            name: "x".into(),
                            scope: vec![],
                        },
                    )
                    .await
                }
                "KeyService/SetKeyPolicy" => {
                    call_raw(
                        &c,
                        &path,
                        proto::SetKeyPolicyRequest {
                            name: "x".into(),
                            set_approvals: true,
                            ..Default::default()
                        },
                    )
                    .await
                }
                "PrincipalService/AddPrincipal" => {
                    call_raw(
                        &c,
                        &path,
                        proto::AddPrincipalRequest {
                            name: "mallory".into(),
                            roles: vec!["admin".into()],
                            ..Default::default()
                        },
                    )
                    .await
                }
                "PrincipalService/RemovePrincipal" => {
                    call_raw(
                        &c,
                        &path,
                        proto::RemovePrincipalRequest {
                            name: "admin".into(),
                        },
                    )
                    .await
                }
                "ApprovalService/Approve" => {
                    call_raw(&c, &path, proto::ApproveRequest { id: "x".into() }).await
                }
                "ApprovalService/Deny" => {
                    call_raw(
                        &c,
                        &path,
                        proto::DenyRequest {
                            id: "x".into(),
                            reason: "r".into(),
                        },
                    )
                    .await
                }
                other => panic!(
                    "{other} is new: decide whether it needs a one-time code and add it here"
                ),
            };
            let st = result.expect_err(&path);
            assert_eq!(
                st.code(),
                tonic::Code::Unauthenticated,
                "{path}: {}",
                st.message()
            );
            assert!(
                st.message().contains("MFA required"),
                "{path}: {}",
                st.message()
            );
            refused.push(path);
        }
        refused
    });
    assert_eq!(refused_paths.len(), 8, "{refused_paths:?}");
    // Each refusal is on the record, without any secret.
    let audit = d.ok(&["audit", "export"]);
    for p in &refused_paths {
        let name = p.rsplit('/').next().unwrap();
        assert!(
            audit.lines().any(
                |l| l.contains(&format!("\"action\":\"{name}\"")) && l.contains("MFA required")
            ),
            "no audited refusal for {name}"
        );
    }
    // Nothing was done.
    assert!(!d.ok(&["principal", "list"]).contains("mallory"));
}

#[test]
fn principal_management_needs_the_admins_second_factor_not_only_its_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, secret) = DevDaemon::start_with_mfa(tmp.path());
    wait_for_fresh_step();
    let out = d.dir.join("eve/client.toml");
    let o = d.keyward(&[
        "principal",
        "add",
        "eve",
        "--role",
        "admin",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(refused(&o).contains("MFA required"));
    assert!(
        !out.exists(),
        "a client identity was written for a refused principal"
    );
    d.ok(&[
        "principal",
        "add",
        "bob",
        "--role",
        "signer",
        "--out",
        d.dir.join("bob/client.toml").to_str().unwrap(),
        "--otp",
        &pyotp(&secret, -1),
    ]);
    let o = d.keyward(&["principal", "remove", "bob"]);
    assert!(refused(&o).contains("MFA required"));
    d.ok(&["principal", "remove", "bob", "--otp", &pyotp(&secret, 0)]);
}

#[test]
fn a_keys_require_mfa_holds_even_where_the_instance_does_not_enforce_mfa() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("app:v1", "mfa");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "create", "images"]);
    for k in ["files", "images"] {
        d.ok(&["key", "policy", "set", k, "--require-mfa", "true"]);
    }
    let err = refused(&d.keyward(&["sign-blob", "--key", "files", "/etc/hostname"]));
    assert!(
        err.contains("MFA required") && err.contains("signing with this key"),
        "{err}"
    );
    let err = refused(&d.keyward(&["sign", "--key", "images", &image]));
    assert!(err.contains("MFA required"), "{err}");
    let predicate = d.dir.join("p.json");
    std::fs::write(&predicate, "{}").unwrap();
    let err = refused(&d.keyward(&[
        "attest",
        "--key",
        "images",
        "--predicate",
        predicate.to_str().unwrap(),
        &image,
    ]));
    assert!(err.contains("MFA required"), "{err}");

    // A policy no signer could meet is refused rather than stored.
    d.add_principal("bob", "signer");
    d.ok(&["key", "create", "bobs", "--purpose", "blob"]);
    let err = refused(&d.keyward(&[
        "key",
        "policy",
        "set",
        "bobs",
        "--signers",
        "bob",
        "--require-mfa",
        "true",
    ]));
    assert!(
        err.contains("cannot require a one-time code") && err.contains("keyward mfa enroll"),
        "{err}"
    );
    let shown = json(&d.keyward(&["-o", "json", "key", "show", "bobs"]));
    assert_eq!(
        shown["signers"],
        serde_json::json!([]),
        "the refused policy was stored"
    );
}

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
    let req = json(&d.keyward_as(
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

    let req = json(&d.keyward_as(
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
        signed[0]["already_signed"], false,
        "a planted layer suppressed signing"
    );
    let pem = d.dir.join("release.pem");
    std::fs::write(&pem, d.ok(&["key", "public", "release"])).unwrap();
    let v = cosign_verify(&pem, &image, None);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // Signing again now really is a no-op: the genuine layer verifies.
    let again = json(&d.keyward(&["-o", "json", "sign", "--key", "release", &image]));
    assert_eq!(again[0]["already_signed"], true);
}

#[test]
fn methods_without_a_rule_are_refused_and_every_call_is_audited() {
    let d = DevDaemon::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let st = call_raw(
            &c,
            "/keyward.v1.KeyService/DestroyEverything",
            proto::ListKeysRequest::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unimplemented, "{}", st.message());
        assert!(st.message().contains("no access rule"), "{}", st.message());
    });
    d.ok(&["whoami"]);
    d.ok(&["key", "create", "w"]);
    let audit = d.ok(&["audit", "export"]);
    // Write-ahead: the intent is on the record before the outcome.
    let at = |decision: &str| {
        audit
            .lines()
            .position(|l| {
                l.contains("\"action\":\"CreateKey\"")
                    && l.contains("\"target\":\"w\"")
                    && l.contains(&format!("\"decision\":\"{decision}\""))
            })
            .unwrap_or_else(|| panic!("no {decision} record for CreateKey: {audit}"))
    };
    assert!(at("intent") < at("allowed"));
    assert!(audit.contains("DestroyEverything"), "{audit}");
    assert!(
        audit.lines().any(|l| l.contains("\"action\":\"WhoAmI\"")),
        "WhoAmI was not audited"
    );
}

#[test]
fn verify_image_needs_a_role_that_may_verify() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("app:v1", "verify-role");
    d.ok(&["key", "create", "release"]);
    let rita = d.add_principal("rita", "revoker");
    let err = refused(&d.keyward_as(
        &rita,
        &[
            "verify",
            "--key",
            "release",
            &format!("{}/app:v1", reg.addr),
        ],
    ));
    assert!(
        err.contains("may not verify images") && err.contains("permission denied"),
        "{err}"
    );
}

#[test]
fn a_refused_authentication_is_on_the_record_before_the_caller_hears_of_it() {
    let d = DevDaemon::start();
    let bob = d.add_principal("bob", "signer");
    d.ok(&["principal", "remove", "bob"]);
    let err = refused(&d.keyward_as(&bob, &["key", "list"]));
    assert!(err.contains("was removed"), "{err}");
    // No wait: the record is durable before the refusal was sent.
    let audit = d.ok(&["audit", "export"]);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"Authenticate\"")
                && l.contains("\"principal\":\"bob\"")
                && l.contains("denied")),
        "{audit}"
    );
}

#[test]
fn an_enrolled_principal_learns_why_it_cannot_enrol_again() {
    let d = DevDaemon::start();
    // keywardd dev enrols its admin when it creates the instance.
    let err = refused(&d.keyward(&["mfa", "enroll"]));
    assert!(err.contains("already enrolled"), "{err}");
    assert!(!err.contains("see the daemon log"), "{err}");
}

#[test]
fn an_approved_request_does_not_sign_for_a_requester_removed_in_the_meantime() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    let aaron = d.add_principal("aaron", "approver");
    d.ok(&["key", "policy", "set", "files", "--approvals", "2"]);
    let req = json(&d.keyward_as(
        &alice,
        &["-o", "json", "sign-blob", "--key", "files", "/etc/hostname"],
    ));
    let id = req["approval_id"].as_str().unwrap().to_string();
    json(&d.keyward_as(&ann, &["-o", "json", "approve", &id]));
    d.ok(&["principal", "remove", "alice"]);
    let done = json(&d.keyward_as(&aaron, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "refused", "{done}");
    assert!(done["error"].as_str().unwrap().contains("alice"), "{done}");
    assert_eq!(done["signature"], "");
    // Nothing in the ledger.
    let ledger = json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "files"]));
    assert!(ledger.as_array().unwrap().is_empty(), "{ledger}");
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keywardd_dev_refuses_a_directory_someone_else_controls() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // Another local user pre-created the directory, hoping to receive the PIN.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = DevDaemon::start_in(&theirs)
        .err()
        .expect("a foreign directory was accepted");
    assert!(err.contains("belongs to user id 65534"), "{err}");
    assert!(!theirs.join("pin").exists());

    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = DevDaemon::start_in(&open)
        .err()
        .expect("a world-writable directory was accepted");
    assert!(err.contains("may be written by other users"), "{err}");
    assert!(!open.join("pin").exists());
}

#[test]
fn state_on_disk_is_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inst");
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(keyward_tests::bin("keywardd"))
        .args(["dev", "--dir"])
        .arg(&dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env_remove("SOFTHSM2_CONF")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = keyward_tests::ChildGuard(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("client.toml").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(tmp.path().join("log")).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for d in [dir.clone(), dir.join("data"), dir.join("data/store")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in ["pin", "so-pin", "admin.key", "client.toml", "keywardd.toml"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    for e in std::fs::read_dir(dir.join("data/store")).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }
}

#[test]
fn the_cli_tightens_a_key_file_it_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let d = DevDaemon::start();
    let out = d.dir.join("people/carol");
    std::fs::create_dir_all(&out).unwrap();
    let key = out.join("carol.key");
    std::fs::write(&key, "old").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.ok(&[
        "principal",
        "add",
        "carol",
        "--role",
        "signer",
        "--out",
        out.join("client.toml").to_str().unwrap(),
    ]);
    assert_eq!(mode(&key), 0o600);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
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
            "--require-mfa",
            "true",
        ],
    ));
    assert_eq!(set["approvals"], 2, "{set}");

    // Weakening waits; the key is unchanged meanwhile.
    let req = json(&d.keyward_as(
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

    // Each kind of weakening is caught, including "any signer".
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
        vec!["--require-mfa", "false"],
        vec!["--purpose", "image"],
    ] {
        let mut a = vec!["-o", "json", "key", "policy", "set", "files"];
        a.extend(args.iter().copied());
        let r = json(&d.keyward_as(&kim, &a));
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
    let r = json(&d.keyward(&["-o", "json", "sign-blob", "--key", "files", "/etc/hostname"]));
    assert_eq!(r["pending"], true);
}
