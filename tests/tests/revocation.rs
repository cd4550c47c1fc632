//! Revoking key versions: who may, what a revoked version can no longer do, and what a
//! revocation accepts afterwards.

use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, refused};
use std::time::{Duration, Instant};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn blob(d: &DevDaemon) -> String {
    let f = d.dir.join("payload.txt");
    std::fs::write(&f, b"release notes").unwrap();
    f.to_str().unwrap().to_string()
}

#[test]
fn only_a_revoker_revokes_and_from_then_on_the_version_never_signs() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let file = blob(&d);
    d.ok(&["sign-blob", "--key", "files", &file]);

    let revoke = [
        "key",
        "revoke",
        "files",
        "--version",
        "1",
        "--reason",
        "key-compromise",
        "--compromised-since",
        "2026-01-01T00:00:00Z",
    ];
    for (name, role) in [("ci", "signer"), ("sec", "key-admin"), ("aud", "auditor")] {
        let who = d.add_principal(name, role);
        let err = refused(&d.keyward_as(&who, &revoke));
        assert!(err.contains("revoke key versions"), "{role}: {err}");
    }
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["versions"][0]["state"], "active", "{key}");

    let ir = d.add_principal("ir", "revoker");
    let out = d.keyward_as(&ir, &revoke);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("files v1 revoked"), "{text}");
    assert!(text.contains("keyward key rotate files"), "{text}");

    let err = d.fails(&["sign-blob", "--key", "files", &file]);
    assert!(err.contains("no active version"), "{err}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    let v1 = &key["versions"][0];
    assert_eq!(v1["state"], "revoked", "{key}");
    assert_eq!(v1["revocation_reason"], "key-compromise", "{key}");
    assert_eq!(v1["revoked_by"], "ir", "{key}");
    assert_eq!(v1["compromised_since"], "2026-01-01T00:00:00Z", "{key}");
    // The CA-signed history tells verifiers the version's time in service ended when
    // the compromise began.
    let history = json(&d.ok(&["-o", "json", "key", "history", "files"]));
    let h1 = &history["versions"][0];
    assert_eq!(h1["state"], "revoked", "{history}");
    assert_eq!(h1["valid_until"], "2026-01-01T00:00:00Z", "{history}");
    let audit = d.ok(&["audit", "export"]);
    assert!(
        audit.contains("\"action\":\"RevokeKeyVersion\"") && audit.contains("files/v1"),
        "{audit}"
    );

    // A rotation makes a new version; the revoked one stays revoked.
    d.ok(&["key", "rotate", "files"]);
    d.ok(&["sign-blob", "--key", "files", &file]);
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["versions"][0]["state"], "revoked", "{key}");
    assert_eq!(key["versions"][1]["state"], "active", "{key}");
    // It survives a restart.
    let mut d = d;
    d.stop();
    let d = DevDaemon::start_in(&d.dir).unwrap();
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["versions"][0]["state"], "revoked", "{key}");
}

#[test]
fn a_revocation_is_irreversible_and_can_only_move_compromised_since_earlier() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "rotate", "files"]);
    let revoke = |version: &str, reason: &str, since: Option<&str>| {
        let mut args = vec![
            "-o",
            "json",
            "key",
            "revoke",
            "files",
            "--version",
            version,
            "--reason",
            reason,
        ];
        if let Some(s) = since {
            args.extend(["--compromised-since", s]);
        }
        d.keyward(&args)
    };
    let err = refused(&revoke("9", "superseded", None));
    assert!(err.contains("has no version 9"), "{err}");
    let err = refused(&revoke("0", "superseded", None));
    assert!(err.contains("name the version"), "{err}");
    let err = refused(&revoke("1", "superseded", Some("2026-01-01T00:00:00Z")));
    assert!(err.contains("goes with --reason key-compromise"), "{err}");
    let err = refused(&revoke("1", "key-compromise", Some("2999-01-01T00:00:00Z")));
    assert!(err.contains("in the future"), "{err}");
    let err = refused(&revoke("1", "key-compromise", Some("last tuesday")));
    assert!(err.contains("RFC 3339"), "{err}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    assert_eq!(key["versions"][0]["state"], "retired", "{key}");

    let since = "2026-03-01T00:00:00Z";
    let out = revoke("1", "key-compromise", Some(since));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same again, a later time, no time, another reason: refused, nothing changes.
    for (reason, again) in [
        ("key-compromise", Some(since)),
        ("key-compromise", Some("2026-04-01T00:00:00Z")),
        ("key-compromise", None),
        ("superseded", None),
    ] {
        let err = refused(&revoke("1", reason, again));
        assert!(err.contains("irreversible"), "{err}");
        assert!(err.contains("compromised since 2026-03-01"), "{err}");
    }
    // Earlier is accepted.
    let out = revoke("1", "key-compromise", Some("2026-02-01T00:00:00Z"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(answer["pending"], false, "{answer}");
    let key = &answer["key"];
    assert_eq!(
        key["versions"][0]["compromised_since"],
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(key["versions"][0]["state"], "revoked");
    // The active version is untouched.
    assert_eq!(key["versions"][1]["state"], "active", "{key}");
}

#[test]
fn no_signature_started_after_the_revocation_returned_succeeds() {
    use keyward_client::proto;

    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (results, returned) = rt.block_on(async {
        let c = d.client().await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, stop) = (c.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = c
                        .sign_digest(proto::SignDigestRequest {
                            key: "files".into(),
                            digest: vec![7; 32],
                            ..Default::default()
                        })
                        .await;
                    out.push((started, r.map_err(|e| e.to_string())));
                }
                out
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.revoke_key_version(proto::RevokeKeyVersionRequest {
            name: "files".into(),
            version: 1,
            reason: proto::RevocationReason::Superseded as i32,
            ..Default::default()
        })
        .await
        .expect("revoke");
        let returned = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, returned)
    });
    let before = results.iter().filter(|(t, r)| *t < returned && r.is_ok());
    assert!(
        before.count() > 0,
        "nothing was signed before the revocation"
    );
    let after: Vec<_> = results.iter().filter(|(t, _)| *t > returned).collect();
    assert!(!after.is_empty());
    for (_, r) in &after {
        let err = r
            .as_ref()
            .expect_err("a signature started after the revocation");
        assert!(err.contains("no active version"), "{err}");
    }
}

#[test]
fn a_revoked_versions_image_signatures_no_longer_verify() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    d.ok(&["key", "policy", "set", "img", "--resign-on-rotate", "false"]);
    reg.push_image("app:v1", "content");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["sign", "--key", "img", &image]);
    d.ok(&["key", "rotate", "img"]);
    let ok = json(&d.ok(&["-o", "json", "verify", "--key", "img", &image]));
    assert_eq!(ok["valid"][0]["version"], 1, "{ok}");

    d.ok(&[
        "key",
        "revoke",
        "img",
        "--version",
        "1",
        "--reason",
        "superseded",
    ]);
    let out = d.keyward(&["-o", "json", "verify", "--key", "img", &image]);
    assert!(
        !out.status.success(),
        "a revoked version's signature verified"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("revoked"), "{text}");
}

#[test]
fn an_approval_granted_after_the_revocation_signs_nothing() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "prod", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "prod", "--approvals", "1"]);
    let file = blob(&d);
    let out = d.keyward_as(&alice, &["-o", "json", "sign-blob", "--key", "prod", &file]);
    let req = keyward_tests::pending(&out);
    let id = req["approval_id"].as_str().unwrap().to_string();

    d.ok(&[
        "key",
        "revoke",
        "prod",
        "--version",
        "1",
        "--reason",
        "key-compromise",
    ]);
    let out = d.keyward_as(&ann, &["-o", "json", "approve", &id]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("\"status\":\"signed\""), "{text}");
    let shown = json(&d.ok(&["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["status"], "refused", "{shown}");
    assert!(
        shown["error"]
            .as_str()
            .unwrap()
            .contains("no active version"),
        "{shown}"
    );
    assert!(
        shown["signature"].as_str().unwrap_or("").is_empty(),
        "{shown}"
    );
}

#[test]
fn a_revoked_signature_no_longer_verifies_while_its_key_signs_and_verifies_other_images() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    let bad = reg.push_image("app:bad", "a build that must not run");
    let good = reg.push_image("app:good", "a good build");
    for tag in ["bad", "good"] {
        d.ok(&["sign", "--key", "img", &format!("{}/app:{tag}", reg.addr)]);
    }
    let by_digest = format!("{}/app@{bad}", reg.addr);

    // A tag is not enough; a signer may not; an image the key never signed is refused.
    let err = d.fails(&[
        "signatures",
        "revoke",
        &format!("{}/app:bad", reg.addr),
        "--key",
        "img",
    ]);
    assert!(err.contains("name the image by digest"), "{err}");
    let ci = d.add_principal("ci", "signer");
    let err = refused(&d.keyward_as(&ci, &["signatures", "revoke", &by_digest, "--key", "img"]));
    assert!(err.contains("revoke signatures"), "{err}");
    let other = reg.push_image("app:other", "never signed");
    let err = d.fails(&[
        "signatures",
        "revoke",
        &format!("{}/app@{other}", reg.addr),
        "--key",
        "img",
    ]);
    assert!(err.contains("nothing to revoke"), "{err}");

    let ir = d.add_principal("ir", "revoker");
    let out = d.keyward_as(&ir, &["signatures", "revoke", &by_digest, "--key", "img"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("by v1"));

    let out = d.keyward(&["verify", "--key", "img", &format!("{}/app:bad", reg.addr)]);
    assert!(!out.status.success(), "a revoked signature verified");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("was revoked at"), "{text}");
    d.ok(&["verify", "--key", "img", &format!("{}/app:good", reg.addr)]);
    let again = reg.push_image("app:next", "the next build");
    d.ok(&["sign", "--key", "img", &format!("{}/app:next", reg.addr)]);
    d.ok(&[
        "verify",
        "--key",
        "img",
        &format!("{}/app@{again}", reg.addr),
    ]);
    assert_ne!(good, again);

    // The list names it; revoking it again says it was.
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let s = &list["list"]["signatures"][0];
    assert_eq!(
        (s["key"].as_str(), s["version"].as_u64()),
        (Some("img"), Some(1)),
        "{list}"
    );
    assert_eq!(s["digest"], bad.as_str(), "{list}");
    assert_eq!(s["reason"], "cessation", "{list}");
    let err = d.fails(&["signatures", "revoke", &by_digest, "--key", "img"]);
    assert!(err.contains("revoked already"), "{err}");
}
