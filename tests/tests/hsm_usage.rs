//! Private keys on the HSM sign and do nothing else: made so, corrected at start-up
//! when an older object can do more, and a version revoked as compromised cannot sign
//! on the HSM itself, whatever a caller of the module tries.

use keyward_tests::revoke::revoke_compromised;
use keyward_tests::{DevDaemon, token_keys};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn usage(k: &serde_json::Value) -> [bool; 4] {
    ["sign", "decrypt", "unwrap", "derive"].map(|a| k[a].as_bool().unwrap_or(true))
}

fn by_id<'a>(keys: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    keys.iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no private key {id}"))
}

#[test]
fn private_keys_only_sign_and_a_compromised_version_cannot_sign_on_the_hsm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "k"]);
    d.ok(&["key", "rotate", "k"]);
    // The CA, the audit and time-stamping keys and both versions: sign only.
    let keys = d.token_keys();
    assert!(keys.len() >= 5, "{keys:?}");
    for k in &keys {
        assert_eq!(usage(k), [true, false, false, false], "{k}");
    }

    // An object that can do more (made by an older release, or edited while the daemon
    // was down) is corrected at the next start, and the log says so.
    let shown = json(&d.ok(&["-o", "json", "key", "show", "k"]));
    let (v1, v2) = (
        shown["versions"][0]["hsm_id"].as_str().unwrap().to_string(),
        shown["versions"][1]["hsm_id"].as_str().unwrap().to_string(),
    );
    d.stop_cleanly();
    let granted = token_keys(tmp.path(), &["--grant-usage", &v2]);
    assert_eq!(usage(by_id(&granted, &v2)), [true, true, true, true]);
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    assert!(d.log().contains("corrected to sign only"), "{}", d.log());
    assert_eq!(
        usage(by_id(&d.token_keys(), &v2)),
        [true, false, false, false]
    );

    // Revoked as compromised: the object itself can no longer sign.
    let out = revoke_compromised(&d, None, ("k", 1), "2026-01-01T00:00:00Z", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = d.token_keys();
    assert_eq!(usage(by_id(&keys, &v1)), [false, false, false, false]);
    assert_eq!(usage(by_id(&keys, &v2)), [true, false, false, false]);
    let data = tmp.path().join("data.bin");
    std::fs::write(&data, [7u8; 32]).unwrap();
    let sign_with = |id: &str| {
        d.pkcs11_tool(&[
            "--login",
            "--pin",
            &d.pin(),
            "--sign",
            "--mechanism",
            "ECDSA",
            "--id",
            id,
            "--input-file",
            data.to_str().unwrap(),
        ])
    };
    let out = sign_with(&v2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sign_with(&v1);
    assert!(!out.status.success(), "the compromised object signed");
    // It stays so across a restart, and nothing is named as still able to sign.
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert!(!d.log().contains("can still sign"), "{}", d.log());
    assert!(!usage(by_id(&d.token_keys(), &v1))[0]);
}

#[test]
fn a_revoked_version_can_be_destroyed_and_stays_on_every_revocation_list() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    d.ok(&["key", "rotate", "k"]);
    let revoke =
        |extra: &[&str]| revoke_compromised(&d, None, ("k", 1), "2026-01-01T00:00:00Z", extra);
    assert!(revoke(&[]).status.success());
    let shown = json(&d.ok(&["-o", "json", "key", "show", "k"]));
    let v1 = shown["versions"][0]["hsm_id"].as_str().unwrap().to_string();
    assert!(d.token_keys().iter().any(|k| k["id"] == v1.as_str()));
    // Revoked already as asked: --destroy takes the object away, nothing else changes.
    let out = revoke(&["--destroy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("HSM object is destroyed"));
    assert!(
        !d.token_keys().iter().any(|k| k["id"] == v1.as_str()),
        "the object is still there"
    );
    let shown = json(&d.ok(&["-o", "json", "key", "show", "k"]));
    assert_eq!(shown["versions"][0]["state"], "destroyed", "{shown}");
    assert_eq!(
        shown["versions"][0]["compromised_since"], "2026-01-01T00:00:00Z",
        "{shown}"
    );
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(list["list"]["entries"][0]["version"], 1, "{list}");
    // The active version cannot be destroyed without being revoked in the same breath.
    let audit = d.ok(&["audit", "export"]);
    assert!(audit.matches("RevokeKeyVersion").count() >= 2, "{audit}");
}
