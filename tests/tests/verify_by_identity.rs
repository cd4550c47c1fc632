//! `keyward verify --identity`: an image's signatures checked without the daemon by
//! the Keyward CA, a key's identity, the instance's issuer and the TSA's chain, as
//! cosign does, and against the signed revocation list. Every version's signature
//! counts; another identity, issuer, CA or TSA does not; a revoked version does not.

use keyward_tests::registry::TestRegistry;
use keyward_tests::verifiers::key_and_two_images;
use keyward_tests::{DevDaemon, keyward_with};
use std::path::Path;
use std::process::Output;

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_image_verifies_by_ca_and_identity_offline_for_every_version_and_nothing_else() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let (a, b) = key_and_two_images(&d, &reg);
    d.ok(&["sign", "--key", "img", &a]);
    d.ok(&["key", "rotate", "img"]);
    d.ok(&["sign", "--key", "img", &b]);
    d.ok(&["trust", "export", &p("trust"), "--key", "img"]);
    let list = p("list.json");
    std::fs::write(&list, d.ok(&["-o", "json", "revocations", "show"])).unwrap();
    let (ca, chain) = (p("trust/ca.pem"), p("trust/tsa-chain.pem"));
    let state = p("state.json");
    // No daemon involved: a configuration that points nowhere.
    let verify = |image: &str, extra: &[&str]| {
        let mut args = vec![
            "-o",
            "json",
            "verify",
            image,
            "--ca",
            &ca,
            "--revocations",
            &list,
            "--state",
            &state,
        ];
        args.extend(extra);
        keyward_with(Path::new("/nonexistent/client.toml"), &args)
    };
    let me = ["--identity", "keyward://keys/img"];
    for (image, version) in [(&a, 1), (&b, 2)] {
        for extra in [&me[..], &[&me[..], &["--tsa-chain", &chain]].concat()] {
            let o = verify(image, extra);
            assert!(o.status.success(), "{image} {extra:?}: {}", stderr(&o));
            assert_eq!(
                json(&o)["valid"],
                serde_json::json!([{ "version": version }]),
                "{image}"
            );
        }
    }
    // The default issuer is the one the instance derives from its CA; naming it
    // explicitly is the same, naming another is refused.
    let exported: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "trust", "export", &p("trust")])).unwrap();
    let issuer = exported["certificate_oidc_issuer"].as_str().unwrap();
    let o = verify(&a, &[&me[..], &["--issuer", issuer]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify(
        &a,
        &[&me[..], &["--issuer", "keyward://ca/elsewhere"]].concat(),
    );
    assert!(!o.status.success(), "verified under another issuer");
    assert!(
        json(&o)["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{}",
        json(&o)
    );

    // Another key's identity: refused, and the reason names what the certificate says.
    let o = verify(&a, &["--identity", "keyward://keys/other"]);
    assert!(!o.status.success(), "verified as another key");
    assert!(stderr(&o).contains("no valid signature"), "{}", stderr(&o));
    assert!(
        json(&o)["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("keyward://keys/img"),
        "{}",
        json(&o)
    );

    // Another instance's CA, another instance's TSA chain: refused. (With our list the
    // list itself is refused; with the other instance's list, each layer is.)
    let other = DevDaemon::start();
    other.ok(&["trust", "export", &p("other")]);
    std::fs::write(
        p("other-list.json"),
        other.ok(&["-o", "json", "revocations", "show"]),
    )
    .unwrap();
    let other_ca = |list: &str| {
        let args = [
            "-o",
            "json",
            "verify",
            &a,
            "--identity",
            "keyward://keys/img",
            "--ca",
            &p("other/ca.pem"),
            "--revocations",
            list,
            "--state",
            &p("other-state.json"),
        ];
        keyward_with(Path::new("/nonexistent/client.toml"), &args)
    };
    let o = other_ca(&list);
    assert!(!o.status.success(), "verified against another CA");
    assert!(stderr(&o).contains("not by the CA given"), "{}", stderr(&o));
    let o = other_ca(&p("other-list.json"));
    assert!(!o.status.success(), "verified against another CA");
    assert!(
        json(&o)["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not from the given CA"),
        "{}",
        json(&o)
    );
    let o = verify(
        &a,
        &[&me[..], &["--tsa-chain", &p("other/tsa-chain.pem")]].concat(),
    );
    assert!(
        !o.status.success(),
        "a time-stamp verified against another TSA"
    );
    assert!(
        json(&o)["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("time-stamp"),
        "{}",
        json(&o)
    );

    // v1 revoked: its signature stops counting; v2's still counts.
    d.ok(&[
        "key",
        "revoke",
        "img",
        "--version",
        "1",
        "--reason",
        "superseded",
    ]);
    std::fs::write(&list, d.ok(&["-o", "json", "revocations", "show"])).unwrap();
    let o = verify(&a, &me);
    assert!(
        !o.status.success(),
        "a revoked version's signature verified"
    );
    assert!(
        json(&o)["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("revokes"),
        "{}",
        json(&o)
    );
    let o = verify(&b, &me);
    assert!(o.status.success(), "{}", stderr(&o));
}
