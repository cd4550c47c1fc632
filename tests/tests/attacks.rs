//! Keyward read as an attacker reads it, at the gate: every RPC has a rule, every
//! state change needs the second factor the rule asks for, and every call, refused or
//! not, is on the record. Each test tries another door against the real daemon and CLI.

use keyward_client::proto;
use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, call_raw, json_ok as json, pyotp, refused, wait_for_fresh_step};
use prost::Message;

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
    "KeyService/GetKeyHistory",
    "ImageService/VerifyImage",
    "ImageService/ListSignatures",
    "PrincipalService/ListPrincipals",
    "PrincipalService/GetPrincipal",
    "PrincipalService/WhoAmI",
    "AuditService/ExportAudit",
    "AuditService/AuditPublicKey",
    "AuditService/GetAuditHead",
    "MfaService/Enroll",
    "MfaService/Confirm",
    "ApprovalService/ListApprovals",
    "ApprovalService/GetApproval",
    "JobService/ListJobs",
    "JobService/GetJob",
    "RevocationService/GetRevocationList",
    "RevocationService/GetPublishStatus",
    "TrustService/GetTrust",
];

/// RPCs that sign: they need a code when the key's policy says so.
const KEY_POLICY: &[&str] = &[
    "SigningService/SignDigest",
    "SigningService/SignDigests",
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
                "PrincipalService/UnlockPrincipal" => {
                    let req = proto::UnlockPrincipalRequest {
                        name: "admin".into(),
                    };
                    call_raw(&c, &path, req).await
                }
                "PrincipalService/ResetPrincipalMfa" => {
                    let req = proto::ResetPrincipalMfaRequest {
                        name: "admin".into(),
                    };
                    call_raw(&c, &path, req).await
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
                "JobService/PauseJob" => {
                    call_raw(&c, &path, proto::PauseJobRequest { id: "x".into() }).await
                }
                "JobService/ResumeJob" => {
                    call_raw(&c, &path, proto::ResumeJobRequest { id: "x".into() }).await
                }
                "JobService/CancelJob" => {
                    call_raw(&c, &path, proto::CancelJobRequest { id: "x".into() }).await
                }
                "JobService/RetryJob" => {
                    call_raw(&c, &path, proto::RetryJobRequest { id: "x".into() }).await
                }
                "JobService/Resign" => {
                    call_raw(
                        &c,
                        &path,
                        proto::ResignRequest {
                            key: "x".into(),
                            ..Default::default()
                        },
                    )
                    .await
                }
                "RevocationService/IncidentRevoke" => {
                    call_raw(
                        &c,
                        &path,
                        proto::IncidentRevokeRequest {
                            name: "x".into(),
                            version: 1,
                            compromised_since: "2026-01-01T00:00:00Z".into(),
                            ..Default::default()
                        },
                    )
                    .await
                }
                "RevocationService/RevokeSignature" => {
                    call_raw(
                        &c,
                        &path,
                        proto::RevokeSignatureRequest {
                            reference: "r/x@sha256:00".into(),
                            key: "x".into(),
                            ..Default::default()
                        },
                    )
                    .await
                }
                "RevocationService/RevokeKeyVersion" => {
                    call_raw(
                        &c,
                        &path,
                        proto::RevokeKeyVersionRequest {
                            name: "x".into(),
                            version: 1,
                            reason: proto::RevocationReason::KeyCompromise as i32,
                            ..Default::default()
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
    assert_eq!(refused_paths.len(), 18, "{refused_paths:?}");
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
