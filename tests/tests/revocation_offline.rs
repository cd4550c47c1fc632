//! A verifier checking revocation lists offline (`keyward revocations verify`): what it
//! accepts, and each list it must refuse, with the reason.

use keyward_tests::revoke::revoke_compromised;
use keyward_tests::{DevDaemon, refused};
use std::path::Path;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn save(d: &DevDaemon, path: &Path) -> u64 {
    let shown = d.ok(&["-o", "json", "revocations", "show"]);
    std::fs::write(path, &shown).unwrap();
    json(&shown)["list"]["sequence"].as_u64().unwrap()
}

/// A daemon whose key "files" v1 was revoked as compromised, then its compromise moved
/// earlier: the two lists saved as `older.json` and `newer.json` in `work`, with their
/// sequences.
fn two_lists(work: &Path) -> (DevDaemon, u64, u64) {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "rotate", "files"]);
    let revoke = |since: &str| {
        let out = revoke_compromised(&d, None, ("files", 1), since, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    revoke("2026-03-01T00:00:00Z");
    let older = save(&d, &work.join("older.json"));
    revoke("2026-02-01T00:00:00Z");
    let newer = save(&d, &work.join("newer.json"));
    (d, older, newer)
}

#[test]
fn a_verifier_accepts_a_current_list_and_refuses_replayed_forged_foreign_stale_and_huge_ones() {
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let (d, older, newer) = two_lists(work.path());
    let ca = d.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    assert!(newer > older);
    let p_state = p("state.json");
    let verify = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "revocations",
            "verify",
            file,
            "--ca",
            ca,
            "--state",
            &p_state,
        ];
        args.extend(extra);
        d.keyward(&args)
    };

    // A current list verifies, and its sequence is remembered.
    let out = verify(&p("newer.json"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("revocation list {newer}")), "{text}");
    assert!(text.contains("1 revoked versions"), "{text}");
    let state = json(&std::fs::read_to_string(&p_state).unwrap());
    assert_eq!(
        state.as_object().unwrap().values().next().unwrap()["sequence"],
        newer
    );

    // The older list, replayed after the newer one was seen.
    let err = refused(&verify(&p("older.json"), &[]));
    assert!(err.contains("replayed"), "{err}");
    assert!(
        err.contains(&format!("older than sequence {newer}")),
        "{err}"
    );

    // A list edited to drop its entries.
    let mut forged = json(&std::fs::read_to_string(p("newer.json")).unwrap());
    forged["list"]["entries"] = serde_json::json!([]);
    std::fs::write(p("forged.json"), forged.to_string()).unwrap();
    let err = refused(&verify(&p("forged.json"), &[]));
    assert!(err.contains("signature does not verify"), "{err}");

    // Another Keyward CA's list.
    let other = DevDaemon::start();
    save(&other, Path::new(&p("foreign.json")));
    let err = refused(&verify(&p("foreign.json"), &[]));
    assert!(err.contains("not by the CA given"), "{err}");

    // Older than the verifier's own bound.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let err = refused(&verify(&p("newer.json"), &["--max-staleness", "1s"]));
    assert!(err.contains("--max-staleness"), "{err}");

    // Endless data.
    let mut huge = std::fs::read(p("newer.json")).unwrap();
    huge.resize(1024 * 1024 + 1, b' ');
    std::fs::write(p("huge.json"), huge).unwrap();
    let err = refused(&verify(&p("huge.json"), &[]));
    assert!(err.contains("over the 1 MiB"), "{err}");
}

#[test]
fn verify_offline_refuses_a_revoked_versions_signature_from_a_published_list_and_a_replayed_one() {
    use keyward_tests::registry::TestRegistry;
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let lists = format!("{}/org/keyward-revocations", reg.addr);
    let d = DevDaemon::start_dev(tmp.path(), &["--publish-revocations", &lists], &[]).unwrap();
    let ca = d.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    d.ok(&["key", "create", "img"]);
    d.ok(&["key", "policy", "set", "img", "--resign-on-rotate", "false"]);
    reg.push_image("app:v1", "content");
    let image = format!("{}/app:v1", reg.addr);
    d.ok(&["sign", "--key", "img", &image]);
    d.ok(&["key", "rotate", "img"]);
    std::fs::write(
        p("history.json"),
        d.ok(&["-o", "json", "key", "history", "img"]),
    )
    .unwrap();
    save(&d, Path::new(&p("before.json")));
    let state = p("state.json");
    let offline = |list: &str| {
        // No daemon involved: a configuration that points nowhere.
        keyward_tests::keyward_with(
            Path::new("/nonexistent/client.toml"),
            &[
                "-o",
                "json",
                "verify",
                "--key",
                "img",
                &image,
                "--offline",
                "--ca",
                ca,
                "--key-history",
                &p("history.json"),
                "--revocations",
                list,
                "--state",
                &state,
            ],
        )
    };
    let out = offline(&p("before.json"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["valid"], serde_json::json!([{ "version": 1 }]), "{v}");

    d.ok(&[
        "key",
        "revoke",
        "img",
        "--version",
        "1",
        "--reason",
        "key-compromise",
    ]);
    let newest = save(&d, Path::new(&p("after.json")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while json(&d.ok(&["-o", "json", "revocations", "status"]))["targets"][0]["published_sequence"]
        .as_u64()
        < Some(newest)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the list was not published"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Pulled from the registry the daemon publishes to.
    let out = offline(&lists);
    assert!(
        !out.status.success(),
        "a revoked version's signature verified offline"
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("which the revocation list revokes (key-compromise"),
        "{text}"
    );
    // The list from before the revocation is now a replay.
    let err = refused(&offline(&p("before.json")));
    assert!(err.contains("replayed"), "{err}");
    // A history edited to trust a key it does not name is refused.
    let mut h = json(&std::fs::read_to_string(p("history.json")).unwrap());
    h["versions"][0]["state"] = "active".into();
    std::fs::write(p("history.json"), h.to_string()).unwrap();
    let err = refused(&offline(&p("after.json")));
    assert!(
        err.contains("key history's signature does not verify"),
        "{err}"
    );
}

#[test]
fn a_verifier_refuses_a_list_that_does_not_follow_the_one_it_accepted_or_drops_an_entry() {
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let (d, a, b) = two_lists(work.path());
    let ca = d.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    assert_eq!(b, a + 1);
    let listed = json(&std::fs::read_to_string(p("newer.json")).unwrap());
    assert_eq!(
        listed["list"]["previous"].as_str().map(str::len),
        Some(64),
        "{listed}"
    );
    let verify = |file: &str, state: &str| {
        d.keyward(&["revocations", "verify", file, "--ca", ca, "--state", state])
    };

    // In order, each list follows the one before.
    let state = p("state.json");
    for f in ["older.json", "newer.json"] {
        let out = verify(&p(f), &state);
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A verifier that accepted another list with a's sequence (a forked history).
    let mut seen = json(&std::fs::read_to_string(&state).unwrap());
    let issuer = seen.as_object().unwrap().keys().next().unwrap().clone();
    let mut accepted_a = |hash: &str, extra: Option<serde_json::Value>| {
        let a_list = json(&std::fs::read_to_string(p("older.json")).unwrap())["list"].clone();
        let mut entries = a_list["entries"].clone();
        if let Some(e) = extra {
            entries.as_array_mut().unwrap().push(e);
        }
        seen[&issuer] = serde_json::json!({
            "sequence": a, "hash": hash, "entries": entries, "signatures": a_list["signatures"],
        });
        let f = p("forked.json");
        std::fs::write(&f, seen.to_string()).unwrap();
        f
    };
    let err = refused(&verify(
        &p("newer.json"),
        &accepted_a(&"0".repeat(64), None),
    ));
    assert!(err.contains(&format!("does not follow list {a}")), "{err}");
    // A verifier that accepted a list naming a version b no longer names.
    let good = listed["list"]["previous"].as_str().unwrap().to_string();
    let ghost = serde_json::json!({
        "key": "ghost", "version": 9, "fingerprint": "00", "reason": "key-compromise",
        "revoked_at": "2026-01-01T00:00:00Z", "compromised_since": null,
    });
    let err = refused(&verify(&p("newer.json"), &accepted_a(&good, Some(ghost))));
    assert!(
        err.contains("drops what list") && err.contains("\"ghost\""),
        "{err}"
    );
}
