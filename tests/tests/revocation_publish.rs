//! Revocation lists published to registries as OCI artifacts, through outages and a
//! daemon killed while a registry was down.

use keyward_tests::DevDaemon;
use keyward_tests::registry::TestRegistry;
use std::path::Path;
use std::time::{Duration, Instant};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

const REPO: &str = "org/keyward-revocations";

fn start(dir: &Path, regs: &[&TestRegistry]) -> DevDaemon {
    let targets: Vec<String> = regs.iter().map(|r| format!("{}/{REPO}", r.addr)).collect();
    let mut args = Vec::new();
    for t in &targets {
        args.extend(["--publish-revocations", t.as_str()]);
    }
    DevDaemon::start_dev(dir, &args, &[]).unwrap()
}

/// `revocations status` once `done` holds for it (or after 60 s).
fn status_when(d: &DevDaemon, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = json(&d.ok(&["-o", "json", "revocations", "status"]));
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn holds(s: &serde_json::Value, i: usize) -> u64 {
    s["targets"][i]["published_sequence"].as_u64().unwrap_or(0)
}

fn current(s: &serde_json::Value) -> u64 {
    s["current_sequence"].as_u64().unwrap_or(0)
}

/// The list a registry serves under `tag`, after checking the artifact's shape.
fn published_list(reg: &TestRegistry, tag: &str) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest(REPO, tag)).unwrap();
    assert_eq!(
        m["artifactType"], "application/vnd.keyward.revocations.v1+json",
        "{m}"
    );
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.keyward.revocations.v1+json",
            "application/vnd.keyward.revocations.signature.v1+base64",
            "application/pkix-crl"
        ]
    );
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    serde_json::from_slice(&reg.blob(REPO, digest)).unwrap()
}

fn revoke(d: &DevDaemon, since: &str) {
    d.ok(&[
        "key",
        "revoke",
        "files",
        "--version",
        "1",
        "--reason",
        "key-compromise",
        "--compromised-since",
        since,
    ]);
}

#[test]
fn one_of_three_registries_down_during_revocations_gets_every_missed_list_when_it_is_back() {
    let a = TestRegistry::start();
    let mut b = TestRegistry::start();
    let c = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path(), &[&a, &b, &c]);
    let all_hold = |s: &serde_json::Value| (0..3).all(|i| holds(s, i) == current(s));
    let s = status_when(&d, |s| current(s) > 0 && all_hold(s));
    assert!(current(&s) > 0 && all_hold(&s), "{s}");

    b.stop();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "rotate", "files"]);
    revoke(&d, "2026-03-01T00:00:00Z");
    revoke(&d, "2026-02-01T00:00:00Z");
    let shown = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let newest = shown["list"]["sequence"].as_u64().unwrap();
    // The two registries that are up have the newest list at once.
    let s = status_when(&d, |s| holds(s, 0) == newest && holds(s, 2) == newest);
    assert_eq!((holds(&s, 0), holds(&s, 2)), (newest, newest), "{s}");
    assert_eq!(published_list(&a, "latest"), shown["list"]);
    assert_eq!(published_list(&c, "latest"), shown["list"]);
    // The one that is down is behind, and says why.
    let s = status_when(&d, |s| {
        !s["targets"][1]["last_error"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    });
    assert!(holds(&s, 1) < newest, "{s}");
    let err = s["targets"][1]["last_error"].as_str().unwrap();
    assert!(err.contains("unreachable"), "{err}");
    let text = d.ok(&["revocations", "status"]);
    assert!(text.contains("behind"), "{text}");

    // Back: it gets every list it missed, and `latest` is the newest; nobody re-ran
    // a command.
    let missed_from = holds(&s, 1) + 1;
    b.restart(false);
    let s = status_when(&d, |s| holds(s, 1) == newest);
    assert_eq!(holds(&s, 1), newest, "{s}");
    assert!(s["targets"][1]["last_error"].is_null() || s["targets"][1]["last_error"] == "");
    for seq in missed_from..=newest {
        let l = published_list(&b, &format!("seq-{seq}"));
        assert_eq!(l["sequence"], seq, "{l}");
    }
    assert_eq!(published_list(&b, "latest"), shown["list"]);
}

#[test]
fn a_list_issued_while_its_registry_was_down_arrives_after_the_daemon_is_killed_and_restarted() {
    let mut reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = start(tmp.path(), &[&reg]);
    status_when(&d, |s| current(s) > 0 && holds(s, 0) == current(s));
    reg.stop();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    revoke(&d, "2026-03-01T00:00:00Z");
    let newest = json(&d.ok(&["-o", "json", "revocations", "show"]))["list"]["sequence"]
        .as_u64()
        .unwrap();
    d.kill9();
    reg.restart(false);
    let d = start(tmp.path(), &[&reg]);
    let s = status_when(&d, |s| holds(s, 0) >= newest);
    assert!(holds(&s, 0) >= newest, "{s}");
    let l = published_list(&reg, &format!("seq-{newest}"));
    assert_eq!(l["entries"][0]["key"], "files", "{l}");
    assert_eq!(l["entries"][0]["reason"], "key-compromise", "{l}");
}
