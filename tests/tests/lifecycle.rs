//! Lifecycle integrity: Keyward's own automation (rotation campaigns, `keyward
//! resign`, incidents) never brings back a signature a revocation condemned. Each
//! test tries the guarantee through another door.

use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;
use keyward_tests::revoke::{self, incident, time};
use keyward_tests::{DevDaemon, cosign_verify};
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// The ledger's image signatures by `key` (every version), by ledger id.
fn ledger(d: &DevDaemon, key: &str) -> HashMap<String, serde_json::Value> {
    revoke::ledger(d, key)
        .into_iter()
        .filter(|e| e["kind"] == "signature")
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect()
}

/// The failures (skipped and failed items) of a job, with their reasons.
fn reasons(job: &serde_json::Value) -> Vec<(String, String)> {
    job["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["image"].as_str().unwrap_or_default().to_string(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_rotation_campaign_does_not_copy_a_signature_revoked_on_its_own() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 3);
    sign_all(&d, "rel", &images);
    let (bad_ref, bad) = &images[0];
    d.ok(&[
        "signatures",
        "revoke",
        "--key",
        "rel",
        &format!("{}/team/app@{bad}", reg.addr),
    ]);

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
    let job = wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    assert_eq!(
        (job["done"].as_u64(), job["skipped"].as_u64()),
        (Some(2), Some(1)),
        "{job}"
    );
    let why = reasons(&job);
    assert!(why[0].0.ends_with(bad.as_str()), "{why:?}");
    assert!(why[0].1.contains("was revoked"), "{why:?}");

    // The revoked signature was not copied to v2: v2 has not signed the image, and a
    // verifier trusting only v2 refuses it while accepting the others.
    assert_eq!(reg.sig_layers("team/app", bad).len(), 1);
    let v2 = d.public_key_file("rel");
    assert!(!cosign_verify(&v2, bad_ref, None).status.success());
    for (reference, _) in &images[1..] {
        let out = cosign_verify(&v2, reference, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = d.keyward(&["verify", "--key", "rel", bad_ref]);
    assert!(!out.status.success(), "the revoked signature verifies");
}

#[test]
fn re_signing_a_compromised_version_re_makes_only_what_it_signed_before_the_compromise() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 2);
    let (before, after) = (&images[0], &images[1]);
    sign_all(&d, "rel", std::slice::from_ref(before));
    sign_all(&d, "rel", std::slice::from_ref(after));
    // The compromise began with the second signature (its ledger time, to the ns).
    let since = ledger(&d, "rel")
        .into_values()
        .find(|e| e["digest"] == after.1.as_str())
        .unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();

    let ir = d.add_principal("ir", "revoker");
    let out = incident(&d, Some(&ir), ("rel", 1), &since, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["rotated_to"], 2, "{report}");
    let job = wait_job(&d, report["resign_job_id"].as_str().unwrap(), |_| false);
    assert_eq!(job["done"], 1, "{job}");

    // A key-admin asks to re-sign everything v1 signed, with no time bound: the
    // recorded compromise bounds it anyway.
    let admin = d.add_principal("ka", "key-admin");
    let out = d.keyward_as(
        &admin,
        &[
            "-o",
            "json",
            "resign",
            "--key",
            "rel",
            "--from-version",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = json(&String::from_utf8_lossy(&out.stdout))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["skipped"], 1, "{job}");
    let why = reasons(&job);
    assert!(why[0].0.ends_with(after.1.as_str()), "{why:?}");
    assert!(
        why[0].1.contains("after key \"rel\" v1 was compromised"),
        "{why:?}"
    );
    assert_eq!(
        reg.sig_layers("team/app", &after.1).len(),
        1,
        "v2 signed the attacker's image"
    );
    assert_eq!(reg.sig_layers("team/app", &before.1).len(), 2);
    let v2 = d.public_key_file("rel");
    assert!(!cosign_verify(&v2, &after.0, None).status.success());
    assert!(cosign_verify(&v2, &before.0, None).status.success());
}

#[test]
fn a_revocation_landing_while_a_campaign_runs_is_honoured_from_the_next_item_on() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 300);
    sign_all(&d, "rel", &images);
    // The compromise began at the median signature.
    let mut times: Vec<OffsetDateTime> = ledger(&d, "rel")
        .values()
        .map(|e| time(e["time"].as_str().unwrap()))
        .collect();
    times.sort();
    let since = times[150].format(&Rfc3339).unwrap();

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    wait_job(&d, &id, |j| j["done"].as_u64() >= Some(40));
    d.ok(&["jobs", "pause", &id]);
    let paused = settled(&d, &id);
    assert!(paused["done"].as_u64() < Some(300), "{paused}");
    // What v2 re-made before the revocation.
    let before: Vec<String> = ledger(&d, "rel")
        .into_values()
        .filter(|e| e["version"] == 2)
        .map(|e| e["derived_from"].as_str().unwrap().to_string())
        .collect();
    let out = incident(&d, None, ("rel", 1), &since, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.ok(&["jobs", "resume", &id]);
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");

    let all = ledger(&d, "rel");
    let since = time(&since);
    let (mut good, mut kept_good) = (0, 0);
    for e in all.values().filter(|e| e["version"] == 1) {
        let v2 = all
            .values()
            .find(|n| n["version"] == 2 && n["derived_from"] == e["id"]);
        if time(e["time"].as_str().unwrap()) < since {
            good += 1;
            kept_good += usize::from(v2.is_some());
        } else if let Some(n) = v2 {
            assert!(
                before.iter().any(|b| b == e["id"].as_str().unwrap()),
                "v2 re-made a condemned signature after the revocation: {n}"
            );
        }
    }
    assert_eq!((good, kept_good), (150, 150), "nothing good is lost");
    let condemned = reasons(&job)
        .iter()
        .filter(|(_, r)| r.contains("was compromised"))
        .count();
    assert!(condemned > 0, "{job}");
    assert_eq!(
        job["done"].as_u64().unwrap() + job["skipped"].as_u64().unwrap(),
        300,
        "{job}"
    );
}

/// A paused job once the items it had in flight are committed (its counts stop moving).
fn settled(d: &DevDaemon, id: &str) -> serde_json::Value {
    let count =
        |j: &serde_json::Value| ["done", "skipped", "failed"].map(|k| j[k].as_u64().unwrap_or(0));
    let mut last = wait_job(d, id, |j| j["state"] == "paused");
    let mut same = 0;
    while same < 3 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = json(&d.ok(&["-o", "json", "jobs", "show", id]));
        same = if count(&now) == count(&last) {
            same + 1
        } else {
            0
        };
        last = now;
    }
    last
}

#[test]
fn a_later_compromise_is_refused_through_every_door_and_a_repeat_runs_nothing() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 2);
    sign_all(&d, "rel", &images);
    d.ok(&["key", "policy", "set", "rel", "--revoke-approvals", "2"]);
    let (ir1, ir2, ir3) = (
        d.add_principal("ir1", "revoker"),
        d.add_principal("ir2", "revoker"),
        d.add_principal("ir3", "revoker"),
    );
    let (early, later) = ("2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z");
    let incident =
        |who: &std::path::Path, since: &str| incident(&d, Some(who), ("rel", 1), since, &[]);
    let held = keyward_tests::pending(&incident(&ir1, early));
    let id = held["approval_id"].as_str().unwrap().to_string();
    d.ok(&["-o", "json", "approvals", "show", &id]);
    keyward_tests::json_ok(&d.keyward_as(&ir2, &["-o", "json", "approve", &id]));
    let done = keyward_tests::json_ok(&d.keyward_as(&ir3, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    let jobs_before = json(&d.ok(&["-o", "json", "jobs", "list"]));

    // A lone revoker asks for a later compromise: refused at the door, naming the
    // recorded time, with no approval filed and nothing run.
    let err = keyward_tests::refused(&incident(&ir1, later));
    assert!(
        err.contains("compromised since 2026-01-01T00:00:00Z"),
        "{err}"
    );
    let err = keyward_tests::refused(&revoke::revoke_compromised(
        &d,
        Some(&ir1),
        ("rel", 1),
        later,
        &[],
    ));
    assert!(
        err.contains("compromised since 2026-01-01T00:00:00Z"),
        "{err}"
    );
    let pending = json(&d.ok(&["-o", "json", "approvals", "list", "--pending"]));
    assert_eq!(pending, serde_json::json!([]), "{pending}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "rel"]));
    assert_eq!(key["versions"][0]["compromised_since"], early, "{key}");

    // The same incident again changes nothing: it says so, files no approval and
    // starts no job.
    let again = keyward_tests::json_ok(&incident(&ir1, early));
    assert_eq!(again["already_revoked"], true, "{again}");
    assert_eq!(again["pending"], false, "{again}");
    assert_eq!(again["compromised_since"], early, "{again}");
    let jobs_after = json(&d.ok(&["-o", "json", "jobs", "list"]));
    assert_eq!(
        jobs_before.as_array().map(Vec::len),
        jobs_after.as_array().map(Vec::len),
        "{jobs_after}"
    );
    // The audited reports name the recorded compromise only.
    let audit = d.ok(&["audit", "export"]);
    assert!(!audit.contains("2026-06-01"), "{audit}");
}

#[test]
fn a_rotation_campaign_re_makes_attestations_so_the_new_key_verifies_the_provenance() {
    use keyward_tests::cosign;
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 1);
    let image = &images[0].0;
    sign_all(&d, "rel", &images);
    let predicate = d.dir.join("provenance.json");
    std::fs::write(
        &predicate,
        r#"{"builder":{"id":"https://ci.example.com"},"buildType":"https://example.com/make"}"#,
    )
    .unwrap();
    d.ok(&[
        "attest",
        "--key",
        "rel",
        "--type",
        "slsaprovenance",
        "--predicate",
        predicate.to_str().unwrap(),
        image,
    ]);
    let verify_attestation = |key: &std::path::Path| {
        std::process::Command::new(cosign())
            .args(["verify-attestation", "--key"])
            .arg(key)
            .args([
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                "--type",
                "slsaprovenance",
                image,
            ])
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap()
    };
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
    let job = wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    assert_eq!(
        (job["done"].as_u64(), job["total"].as_u64()),
        (Some(2), Some(2)),
        "{job}"
    );
    let v2 = d.public_key_file("rel");
    let out = verify_attestation(&v2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The statement is the one v1 attested, unchanged; the ledger links it.
    let entries = json(&d.ok(&[
        "-o",
        "json",
        "signatures",
        "list",
        "--key",
        "rel",
        "--version",
        "2",
    ]));
    let att = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "attestation")
        .unwrap_or_else(|| panic!("{entries}"));
    assert!(!att["derived_from"].as_str().unwrap().is_empty(), "{att}");
    // Running the campaign again makes no second copy.
    let again = json(&d.ok(&[
        "-o",
        "json",
        "resign",
        "--key",
        "rel",
        "--from-version",
        "1",
    ]));
    wait_job(&d, again["id"].as_str().unwrap(), |_| false);
    let att_layers = |digest: &str| {
        let m = reg.manifest(
            "team/app",
            &format!("sha256-{}.att", digest.trim_start_matches("sha256:")),
        );
        serde_json::from_slice::<serde_json::Value>(&m).unwrap()["layers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(att_layers(&images[0].1), 2);
}
