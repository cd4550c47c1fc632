//! TOTP second factor through the real daemon and CLI, with codes computed by PyPI's
//! pyotp (an independent RFC 6238 implementation).

use keyward_tests::{DevDaemon, otpauth_secret, pyotp, wait_for_fresh_step};
use std::path::Path;

fn mfa_daemon(dir: &Path) -> (DevDaemon, String) {
    DevDaemon::start_with_mfa(dir)
}

#[test]
fn key_management_needs_a_code_and_each_code_is_accepted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, secret) = mfa_daemon(tmp.path());
    wait_for_fresh_step();
    let err = d.fails(&["key", "create", "k1", "--purpose", "blob"]);
    assert!(
        err.contains("MFA required") && err.contains("--otp") && err.contains("unauthenticated"),
        "{err}"
    );
    let previous = pyotp(&secret, -1);
    d.ok(&[
        "key",
        "create",
        "k1",
        "--purpose",
        "blob",
        "--otp",
        &previous,
    ]);
    let err = d.fails(&["key", "create", "k2", "--otp", &previous]);
    assert!(err.contains("already used"), "{err}");
    d.ok(&["key", "create", "k2", "--otp", &pyotp(&secret, 0)]);
    // Signing with a key whose policy does not ask for MFA needs no code.
    d.ok(&["sign-blob", "--key", "k1", "/etc/hostname"]);
    d.ok(&[
        "key",
        "policy",
        "set",
        "k1",
        "--require-mfa",
        "true",
        "--otp",
        &pyotp(&secret, 1),
    ]);
    let err = d.fails(&["sign-blob", "--key", "k1", "/etc/hostname"]);
    assert!(
        err.contains("MFA required") && err.contains("signing with this key"),
        "{err}"
    );

    // The secret is never stored or logged in plaintext, and refusals are audited
    // without the code.
    let log = d.log();
    assert!(!log.contains(&secret), "the TOTP secret was logged");
    let audit = d.ok(&["audit", "export"]);
    assert!(!audit.contains(&secret));
    assert!(audit.contains("already used"), "{audit}");
    assert!(
        !audit.contains(&previous),
        "a code was written to the audit log"
    );
    let raw = std::fs::read_dir(tmp.path().join("data/store")).unwrap();
    for f in raw.flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret in {}",
                f.path().display()
            );
        }
    }
}

#[test]
fn wrong_codes_lock_the_principal_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, secret) = mfa_daemon(tmp.path());
    wait_for_fresh_step();
    let valid: Vec<String> = (-1..=1).map(|k| pyotp(&secret, k)).collect();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    for attempt in 1..=4 {
        let err = d.fails(&["key", "create", "x", "--otp", &wrong]);
        assert!(
            err.contains("wrong one-time code")
                && err.contains(&format!("{} attempts left", 5 - attempt)),
            "{err}"
        );
    }
    let err = d.fails(&["key", "create", "x", "--otp", &wrong]);
    assert!(err.contains("locked") && err.contains("until"), "{err}");
    // Even a right code is refused during the lockout.
    let err = d.fails(&["key", "create", "x", "--otp", &valid[1]]);
    assert!(err.contains("locked"), "{err}");
    let audit = d.ok(&["audit", "export"]);
    assert!(audit.contains("locked"), "the lockout was not audited");
    let err = d.fails(&["key", "create", "x", "--otp", "12ab"]);
    assert!(err.contains("6 digits") || err.contains("locked"), "{err}");
}

#[test]
fn a_new_principal_enrols_and_confirms_its_own_factor() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, admin) = mfa_daemon(tmp.path());
    wait_for_fresh_step();
    let bob = d.dir.join("bob/client.toml");
    d.ok(&[
        "principal",
        "add",
        "bob",
        "--role",
        "signer",
        "--out",
        bob.to_str().unwrap(),
        "--otp",
        &pyotp(&admin, -1),
    ]);
    d.ok(&[
        "key",
        "create",
        "guarded",
        "--purpose",
        "blob",
        "--otp",
        &pyotp(&admin, 0),
    ]);
    d.ok(&[
        "key",
        "policy",
        "set",
        "guarded",
        "--require-mfa",
        "true",
        "--otp",
        &pyotp(&admin, 1),
    ]);

    let o = d.keyward_as(&bob, &["sign-blob", "--key", "guarded", "/etc/hostname"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no MFA enrolment"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.keyward_as(&bob, &["-o", "json", "mfa", "enroll"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let uri: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let uri = uri["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains("issuer=Keyward"),
        "{uri}"
    );
    let secret = otpauth_secret(uri);
    // Not active until confirmed.
    let o = d.keyward_as(
        &bob,
        &[
            "sign-blob",
            "--key",
            "guarded",
            "/etc/hostname",
            "--otp",
            &pyotp(&secret, 0),
        ],
    );
    assert!(!o.status.success());
    let o = d.keyward_as(&bob, &["mfa", "confirm", &pyotp(&secret, -1)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d.keyward_as(
        &bob,
        &[
            "sign-blob",
            "--key",
            "guarded",
            "/etc/hostname",
            "--otp",
            &pyotp(&secret, 0),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_client_library_tells_a_missing_code_from_a_wrong_one() {
    use keyward_client::{Client, ClientConfig, Error, proto};
    let tmp = tempfile::tempdir().unwrap();
    let (d, secret) = mfa_daemon(tmp.path());
    let good = pyotp(&secret, 0);
    // Same length, every digit different: never the right code.
    let wrong: String = good
        .chars()
        .map(|c| char::from(b'0' + (c as u8 - b'0' + 1) % 10))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = ClientConfig::load(&d.client_config()).unwrap();
        let req = || proto::CreateKeyRequest {
            name: "k".into(),
            ..Default::default()
        };
        let c = Client::connect(&cfg).await.unwrap();
        match c.create_key(req()).await {
            Err(Error::MfaRequired(m)) => assert!(m.contains("--otp"), "{m}"),
            other => panic!("expected MfaRequired, got {other:?}"),
        }
        let c = Client::connect_with_otp(&cfg, Some(&wrong)).await.unwrap();
        match c.create_key(req()).await {
            Err(Error::Unauthenticated(m)) => assert!(m.contains("wrong one-time code"), "{m}"),
            other => panic!("expected Unauthenticated, got {other:?}"),
        }
    });
}

#[test]
fn one_code_sent_by_many_requests_at_once_is_accepted_once() {
    use keyward_client::{Client, ClientConfig, Error, proto};
    let tmp = tempfile::tempdir().unwrap();
    let (d, secret) = mfa_daemon(tmp.path());
    wait_for_fresh_step();
    let code = pyotp(&secret, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(async {
        let cfg = ClientConfig::load(&d.client_config()).unwrap();
        let c = Client::connect_with_otp(&cfg, Some(&code)).await.unwrap();
        let calls = (0..8).map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.create_key(proto::CreateKeyRequest {
                    name: format!("race{i}"),
                    ..Default::default()
                })
                .await
            })
        });
        let mut out = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            out.push(call.await.unwrap());
        }
        out
    });
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        accepted, 1,
        "one code was accepted {accepted} times: {results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r, Error::Unauthenticated(m) if m.contains("already used")),
            "{r:?}"
        );
    }
}

#[test]
fn a_keys_require_mfa_covers_approvals_and_policy_changes_when_the_instance_does_not_enforce_mfa() {
    use keyward_tests::{enrol, refused};
    let d = DevDaemon::start();
    wait_for_fresh_step();
    let sam = d.add_principal("sam", "signer");
    let ann = d.add_principal("ann", "approver");
    let sam_secret = enrol(&d, &sam);
    d.ok(&["key", "create", "guarded", "--purpose", "blob"]);
    d.ok(&[
        "key",
        "policy",
        "set",
        "guarded",
        "--approvals",
        "1",
        "--require-mfa",
        "true",
    ]);
    let o = d.keyward_as(
        &sam,
        &[
            "-o",
            "json",
            "sign-blob",
            "--key",
            "guarded",
            "/etc/hostname",
            "--otp",
            &pyotp(&sam_secret, 0),
        ],
    );
    let held = keyward_tests::pending(&o);
    let id = held["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{held}"))
        .to_string();

    // The approver must give a code too, although the instance does not enforce MFA.
    let err = refused(&d.keyward_as(&ann, &["approve", &id]));
    assert!(err.contains("MFA required"), "{err}");
    assert!(err.contains("a key whose policy requires MFA"), "{err}");
    let err = refused(&d.keyward_as(&ann, &["deny", &id, "--reason", "no"]));
    assert!(err.contains("MFA required"), "{err}");
    let ann_secret = enrol(&d, &ann);
    let done = keyward_tests::json_ok(&d.keyward_as(
        &ann,
        &[
            "-o",
            "json",
            "approve",
            &id,
            "--otp",
            &pyotp(&ann_secret, 0),
        ],
    ));
    assert_eq!(done["status"], "signed", "{done}");

    // So must whoever changes the key's policy.
    let err = refused(&d.keyward(&["key", "policy", "set", "guarded", "--approvals", "1"]));
    assert!(err.contains("MFA required"), "{err}");
    let banner = std::fs::read_to_string(d.dir.join("daemon.out")).unwrap();
    let admin = keyward_tests::otpauth_secret(&banner);
    d.ok(&[
        "key",
        "policy",
        "set",
        "guarded",
        "--signers",
        "sam",
        "--otp",
        &pyotp(&admin, 0),
    ]);
    // A key without require_mfa still needs none.
    d.ok(&["key", "create", "plain", "--purpose", "blob"]);
    d.ok(&["key", "policy", "set", "plain", "--approvals", "1"]);
}

#[test]
fn an_admin_lifts_a_lockout_and_resets_a_lost_factor() {
    use keyward_tests::{enrol, refused};
    let d = DevDaemon::start();
    d.ok(&["key", "create", "guarded", "--purpose", "blob"]);
    d.ok(&["key", "policy", "set", "guarded", "--require-mfa", "true"]);
    let bob = d.add_principal("bob", "signer");
    let secret = enrol(&d, &bob);
    wait_for_fresh_step();
    let valid: Vec<String> = (-1..=1).map(|k| pyotp(&secret, k)).collect();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    let sign = |code: &str| {
        d.keyward_as(
            &bob,
            &[
                "sign-blob",
                "--key",
                "guarded",
                "/etc/hostname",
                "--otp",
                code,
            ],
        )
    };
    for _ in 0..5 {
        refused(&sign(&wrong));
    }
    let err = refused(&sign(&valid[1]));
    assert!(err.contains("locked"), "{err}");
    // Only an admin may lift it; bob may not lift his own.
    let o = d.keyward_as(&bob, &["principal", "unlock", "bob"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.ok(&["principal", "unlock", "bob"]);
    let o = sign(&valid[1]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing to lift now: said so.
    let err = d.fails(&["principal", "unlock", "bob"]);
    assert!(err.contains("nothing to change"), "{err}");

    // A lost authenticator: the admin deletes the factor, bob enrols again.
    d.ok(&["mfa", "reset", "bob"]);
    let err = refused(&sign(&pyotp(&secret, 0)));
    assert!(err.contains("no MFA enrolment"), "{err}");
    let fresh = enrol(&d, &bob);
    assert_ne!(fresh, secret);
    let audit = d.ok(&["audit", "export"]);
    for action in ["UnlockPrincipal", "ResetPrincipalMfa"] {
        assert!(
            audit.contains(&format!("\"action\":\"{action}\"")),
            "{action} not audited"
        );
    }
}
