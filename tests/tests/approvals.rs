//! The two-person rule: signing requests on keys that need approvals are signed only
//! after enough distinct approvers, never the requester, approve that exact request.

use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign, pending};
use std::path::Path;
use std::process::{Command, Output};

fn as_(d: &DevDaemon, cfg: &Path, args: &[&str]) -> Output {
    d.keyward_as(cfg, args)
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpectedly allowed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_blob_is_signed_only_after_two_distinct_approvers_other_than_the_requester() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "prod", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    let aaron = d.add_principal("aaron", "approver");
    d.ok(&["key", "policy", "set", "prod", "--approvals", "2"]);
    let blob = d.dir.join("release.tar");
    std::fs::write(&blob, b"release bits").unwrap();
    let b = blob.to_str().unwrap();

    let req = pending(&as_(
        &d,
        &alice,
        &["-o", "json", "sign-blob", "--key", "prod", b],
    ));
    assert_eq!(req["pending"], true);
    let id = req["approval_id"].as_str().unwrap().to_string();
    // What the approver sees: key, requester, the exact digest.
    let shown = json(&as_(&d, &ann, &["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["key"], "prod");
    assert_eq!(shown["requester"], "alice");
    assert_eq!(shown["kind"], "blob");
    use sha2::Digest;
    assert_eq!(
        shown["digests"][0],
        hex::encode(sha2::Sha256::digest(b"release bits"))
    );
    assert_eq!(shown["status"], "pending");

    // The requester cannot approve (no role); a signer cannot either.
    assert!(err(&as_(&d, &alice, &["approve", &id])).contains("needs the role approver"));
    let first = json(&as_(&d, &ann, &["-o", "json", "approve", &id]));
    assert_eq!(first["status"], "pending");
    assert_eq!(first["approved_by"][0], "ann");
    assert!(err(&as_(&d, &ann, &["approve", &id])).contains("already approved"));
    let done = json(&as_(&d, &aaron, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    let sig = done["signature"].as_str().unwrap();

    // The signature verifies for the requested blob.
    let public = d.dir.join("prod.pem");
    std::fs::write(&public, d.ok(&["key", "public", "prod"])).unwrap();
    use base64::Engine;
    std::fs::write(
        d.dir.join("sig"),
        base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap(),
    )
    .unwrap();
    let ok = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&public)
        .arg("-signature")
        .arg(d.dir.join("sig"))
        .arg(&blob)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(err(&as_(&d, &aaron, &["approve", &id])).contains("is signed"));
}

#[test]
fn the_requester_may_not_approve_and_sign_wait_returns_the_signature() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k", "--purpose", "blob"]);
    let ann = d.add_principal("ann", "approver");
    d.ok(&[
        "key",
        "policy",
        "set",
        "k",
        "--approvals",
        "1",
        "--approvers",
        "ann",
    ]);
    let other = d.add_principal("otto", "approver");
    // admin requests, then tries to approve its own request.
    let req = pending(&d.keyward(&["-o", "json", "sign-blob", "--key", "k", "/etc/hostname"]));
    let id = req["approval_id"].as_str().unwrap().to_string();
    let e = err(&d.keyward(&["approve", &id]));
    assert!(e.contains("separation of duties"), "{e}");
    let e = err(&as_(&d, &other, &["approve", &id]));
    assert!(
        e.contains("not among the approvers of key \"k\" (ann)"),
        "{e}"
    );

    // --wait blocks until the approval arrives, then prints the signature.
    let cfg = d.client_config();
    let waiter = std::thread::spawn(move || {
        Command::new(keyward_tests::bin("keyward"))
            .env("KEYWARD_CONFIG", cfg)
            .args([
                "-o",
                "json",
                "sign-blob",
                "--wait",
                "--key",
                "k",
                "/etc/hostname",
            ])
            .output()
            .unwrap()
    });
    let pending = loop {
        let l = json(&d.keyward(&["-o", "json", "approvals", "list", "--pending"]));
        if let Some(p) = l
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] != id.as_str())
        {
            break p["id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    json(&as_(&d, &ann, &["-o", "json", "approve", &pending]));
    let out = json(&waiter.join().unwrap());
    assert_eq!(out["approval_id"], pending.as_str(), "{out}");
    assert_eq!(out["approved_by"], serde_json::json!(["ann"]), "{out}");
    let out = &out["signatures"][0];
    assert_eq!(out["key"], "k");
    assert!(out["signature"].as_str().unwrap().len() > 80, "{out}");

    // Denied requests stay denied.
    let denied = json(&as_(
        &d,
        &ann,
        &["-o", "json", "deny", &id, "--reason", "not a release"],
    ));
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["deny_reason"], "not a release");
    assert!(err(&as_(&d, &ann, &["approve", &id])).contains("is denied"));
    let audit = d.ok(&["audit", "export"]);
    assert!(
        audit.contains("\"action\":\"Approve\"") && audit.contains("separation of duties"),
        "{audit}"
    );
}

#[test]
fn an_image_request_signs_the_digest_that_was_approved_even_if_the_tag_moves() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let approved = reg.push_image("app:v1", "approved content");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["key", "create", "img"]);
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "img", "--approvals", "1"]);
    let req = pending(&d.keyward(&[
        "-o", "json", "sign", "--key", "img", "-a", "build=7", &image,
    ]));
    let id = req["approval_id"].as_str().unwrap().to_string();
    let shown = json(&as_(&d, &ann, &["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["reference"], image.as_str());
    assert_eq!(shown["digests"][0], approved.as_str());
    assert_eq!(shown["annotations"]["build"], "7");

    // The tag moves to other content before anyone approves.
    let moved = reg.push_image("app:v1", "something else");
    assert_ne!(moved, approved);
    let done = json(&as_(&d, &ann, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    let public = d.dir.join("img.pem");
    std::fs::write(&public, d.ok(&["key", "public", "img"])).unwrap();
    let verify = |r: &str| {
        Command::new(cosign())
            .args(["verify", "--key"])
            .arg(&public)
            .args(["--insecure-ignore-tlog=true", "--allow-http-registry", r])
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        verify(&format!("{}/app@{approved}", reg.addr)),
        "the approved digest is not signed"
    );
    assert!(!verify(&image), "the moved tag's new content was signed");
}

#[test]
fn an_approval_whose_signing_failed_is_kept_and_signed_once_after_a_restart() {
    let mut reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    let digest = reg.push_image("svc:1", "resumed");
    let image = format!("{}/svc:1", reg.addr);
    d.ok(&["key", "create", "img"]);
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "img", "--approvals", "1"]);
    let req = pending(&d.keyward(&["-o", "json", "sign", "--key", "img", &image]));
    let id = req["approval_id"].as_str().unwrap().to_string();

    // The registry goes away between request and approval: signing fails, the
    // approval is kept as approved with the error.
    reg.stop();
    let a = json(&as_(&d, &ann, &["-o", "json", "approve", &id]));
    assert_eq!(a["status"], "approved", "{a}");
    assert!(a["error"].as_str().unwrap().contains("unreachable"), "{a}");
    assert!(err(&as_(&d, &ann, &["approve", &id])).contains("is approved"));

    // After a restart with the registry back, the approved request is signed, once.
    reg.restart(false);
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    // It resumes once the API serves: callers can watch it finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let a = loop {
        let a = json(&d.keyward(&["-o", "json", "approvals", "show", &id]));
        if a["status"] != "approved" || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(a["status"], "signed", "{a}");
    let m: serde_json::Value =
        serde_json::from_slice(&reg.manifest("svc", &format!("{}.sig", digest.replace(':', "-"))))
            .unwrap();
    assert_eq!(
        m["layers"].as_array().unwrap().len(),
        1,
        "signed twice: {m}"
    );
    let ledger = json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "img"]));
    assert_eq!(ledger.as_array().unwrap().len(), 1);
    assert_eq!(ledger[0]["requester"], "admin");
    // A job did it, and says so.
    let jobs = json(&d.keyward(&["-o", "json", "jobs", "list"]));
    let job = &jobs[0];
    assert_eq!(job["kind"], "resume-approvals", "{jobs}");
    assert_eq!(job["started_by"], "keywardd");
    assert_eq!(job["total"], 1, "{jobs}");
}

#[test]
fn approvers_deciding_at_the_same_moment_neither_lose_an_approval_nor_sign_twice() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "prod", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let approvers: Vec<_> = ["ann", "bob", "cat", "dan"]
        .iter()
        .map(|n| d.add_principal(n, "approver"))
        .collect();
    d.ok(&["key", "policy", "set", "prod", "--approvals", "2"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let req = pending(&as_(
            &d,
            &alice,
            &["-o", "json", "sign-blob", "--key", "prod", "/etc/hostname"],
        ));
        ids.push(req["approval_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        // All four approve at once: two approvals are recorded, one of them signs,
        // the others are told it is decided already.
        let outcomes: Vec<Output> = std::thread::scope(|s| {
            let runs: Vec<_> = approvers
                .iter()
                .map(|cfg| s.spawn(|| as_(&d, cfg, &["-o", "json", "approve", id])))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let ok = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 2, "{} approvals went through", ok);
        for o in outcomes.iter().filter(|o| !o.status.success()) {
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("is signed") || e.contains("is approved"), "{e}");
        }
        let a = json(&d.keyward(&["-o", "json", "approvals", "show", id]));
        assert_eq!(a["status"], "signed", "{a}");
        assert_eq!(a["approved_by"].as_array().unwrap().len(), 2, "{a}");
    }
    let ledger = json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "prod"]));
    assert_eq!(ledger.as_array().unwrap().len(), ids.len(), "{ledger}");
}

#[test]
fn approvals_are_listed_through_an_index_page_by_page_and_a_store_without_it_is_indexed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "prod", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "prod", "--approvals", "1"]);
    let blob = d.dir.join("release.tar");
    std::fs::write(&blob, b"release bits").unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let req = pending(&as_(
            &d,
            &alice,
            &[
                "-o",
                "json",
                "sign-blob",
                "--key",
                "prod",
                blob.to_str().unwrap(),
            ],
        ));
        ids.push(req["approval_id"].as_str().unwrap().to_string());
    }
    json(&as_(&d, &ann, &["-o", "json", "approve", &ids[0]]));
    let listed = |d: &DevDaemon, pending: bool| -> Vec<String> {
        let mut args = vec!["-o", "json", "approvals", "list"];
        if pending {
            args.push("--pending");
        }
        let all: serde_json::Value = serde_json::from_str(&d.ok(&args)).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Newest first; the signed one is not pending any more.
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(&d, false), newest_first);
    assert_eq!(listed(&d, true), newest_first[..2]);
    // One approval per page, each once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let paged = rt.block_on(async {
        let mut c = d.client().await;
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let r = c
                .approvals
                .list_approvals(keyward_client::proto::ListApprovalsRequest {
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.approvals.len() <= 1);
            seen.extend(r.approvals.into_iter().map(|a| a.id));
            if r.next_page_token.is_empty() {
                return seen;
            }
            token = r.next_page_token;
        }
    });
    assert_eq!(paged, newest_first);

    // A store from before the index (its entries and marker gone) is indexed at start.
    d.stop_cleanly();
    let tool = |args: &[&str]| {
        let out = Command::new(keyward_tests::bin("store-tool"))
            .arg(tmp.path().join("data/store"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for k in tool(&["keys", "approval_index", ""]).lines() {
        tool(&["del", "approval_index", k]);
    }
    tool(&["del", "meta", "approval_index"]);
    assert!(tool(&["keys", "approval_index", ""]).is_empty());
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert_eq!(listed(&d, true), newest_first[..2]);
    assert_eq!(listed(&d, false), newest_first);
}
