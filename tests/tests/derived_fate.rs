//! A derived signature shares the fate of its original: when a signature is condemned
//! after a campaign re-made it (its version compromised since before it was made, or
//! it was revoked on its own), the re-signature is revoked in the same list and, with
//! `--remove-signatures`, taken off the image.

use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;
use keyward_tests::revoke::{incident, revoke_compromised, time};
use keyward_tests::{DevDaemon, cosign_verify, json_ok};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// The ledger time of `key`'s signature of `digest` by `version`.
fn signed_at(d: &DevDaemon, key: &str, version: u32, digest: &str) -> String {
    let all = json(&d.ok(&["-o", "json", "signatures", "list", "--key", key]));
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["digest"] == digest && e["version"] == version && e["kind"] == "signature")
        .unwrap_or_else(|| panic!("no signature of {digest}: {all}"))["time"]
        .as_str()
        .unwrap()
        .to_string()
}

fn signature_revoked(d: &DevDaemon, key: &str, version: u32, digest: &str) -> bool {
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    list["list"]["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["key"] == key && s["version"] == version && s["digest"] == digest)
}

#[test]
fn an_incident_after_a_rotation_condemns_the_re_signatures_of_the_attackers_images() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 2);
    let ((good_ref, good), (bad_ref, bad)) = (&images[0], &images[1]);
    sign_all(&d, "rel", std::slice::from_ref(&images[0]));
    sign_all(&d, "rel", std::slice::from_ref(&images[1]));
    let since = signed_at(&d, "rel", 1, bad);
    // The rotation's campaign re-signs both with v2 before anyone knows.
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
    let job = wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    assert_eq!(job["done"], 2, "{job}");
    let v2 = d.public_key_file("rel");
    assert!(cosign_verify(&v2, bad_ref, None).status.success());

    let ir = d.add_principal("ir", "revoker");
    let incident = |dry: bool| {
        let extra: &[&str] = if dry {
            &["--remove-signatures", "--dry-run"]
        } else {
            &["--remove-signatures"]
        };
        json_ok(&incident(&d, Some(&ir), ("rel", 1), &since, extra))
    };
    // The dry run names the re-signature of the attacker's image, and only it.
    let plan = incident(true);
    assert_eq!(plan["derived_condemned"], 1, "{plan}");
    let named = plan["derived"][0].as_str().unwrap();
    assert!(
        named.contains(bad.as_str()) && named.ends_with("by rel v2"),
        "{plan}"
    );

    let report = incident(false);
    assert_eq!(report["derived_condemned"], 1, "{report}");
    for job in ["derived_job_id", "remove_job_id"] {
        let id = report[job]
            .as_str()
            .unwrap_or_else(|| panic!("{job}: {report}"));
        let done = wait_job(&d, id, |_| false);
        assert_eq!(done["state"], "done", "{done}");
    }
    // v2's re-signature of the attacker's image is revoked in the list, refused by
    // Keyward's verifier and gone from the image, so cosign with v2 refuses it too.
    assert!(signature_revoked(&d, "rel", 2, bad));
    assert!(!signature_revoked(&d, "rel", 2, good));
    assert!(reg.sig_layers("team/app", bad).is_empty());
    assert!(!cosign_verify(&v2, bad_ref, None).status.success());
    assert!(
        !d.keyward(&["verify", "--key", "rel", bad_ref])
            .status
            .success()
    );
    // What v1 signed before the compromise keeps verifying with v2.
    assert!(cosign_verify(&v2, good_ref, None).status.success());
    d.ok(&["verify", "--key", "rel", good_ref]);
}

#[test]
fn a_compromise_condemns_re_signatures_however_many_rotations_away() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("team/app", 2);
    sign_all(&d, "rel", std::slice::from_ref(&images[0]));
    sign_all(&d, "rel", std::slice::from_ref(&images[1]));
    let (good, (bad_ref, bad)) = (&images[0].1, &images[1]);
    let since = signed_at(&d, "rel", 1, bad);
    // Two rotations: v2 re-makes v1's signatures, v3 re-makes v2's.
    for _ in 0..2 {
        let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
        wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    }
    assert_eq!(reg.sig_layers("team/app", bad).len(), 3);
    // A plain revocation as compromised (no incident) condemns both re-signatures.
    let out = revoke_compromised(&d, None, ("rel", 1), &since, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = json(&d.ok(&["-o", "json", "jobs", "list", "--state", "queued"]));
    let running = json(&d.ok(&["-o", "json", "jobs", "list", "--state", "running"]));
    for j in jobs
        .as_array()
        .unwrap()
        .iter()
        .chain(running.as_array().unwrap())
    {
        wait_job(&d, j["id"].as_str().unwrap(), |_| false);
    }
    let all = json(&d.ok(&["-o", "json", "jobs", "list"]));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "revoke-derived"),
        "{all}"
    );
    for v in [2, 3] {
        assert!(signature_revoked(&d, "rel", v, bad), "v{v}");
        assert!(!signature_revoked(&d, "rel", v, good), "v{v}");
    }
    assert!(
        !d.keyward(&["verify", "--key", "rel", bad_ref])
            .status
            .success()
    );
    d.ok(&["verify", "--key", "rel", &images[0].0]);
}

#[test]
fn a_daemon_killed_while_a_revocation_lands_mid_campaign_re_signs_nothing_condemned_and_loses_nothing()
 {
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "rel"]);
    let images = reg.push_many("bulk/app", 200);
    sign_all(&d, "rel", &images);
    let all = json(&d.ok(&["-o", "json", "signatures", "list", "--key", "rel"]));
    let mut times: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_str().unwrap().to_string())
        .collect();
    times.sort_by_key(|t| time(t));
    let since = times[100].clone();

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "rel"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    wait_job(&d, &id, |j| j["done"].as_u64() >= Some(30));
    let out = incident(&d, None, ("rel", 1), &since, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.kill9();

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let jobs = json(&d.ok(&["-o", "json", "jobs", "list"]));
    for j in jobs.as_array().unwrap() {
        let done = wait_job(&d, j["id"].as_str().unwrap(), |_| false);
        assert_eq!(done["state"], "done", "{done}");
    }
    let since = time(&since);
    let ledger = json(&d.ok(&["-o", "json", "signatures", "list", "--key", "rel"]));
    let entries = ledger.as_array().unwrap();
    let v1: Vec<&serde_json::Value> = entries.iter().filter(|e| e["version"] == 1).collect();
    assert_eq!(v1.len(), 200);
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let revoked = |digest: &str| {
        list["list"]["signatures"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["version"] == 2 && s["digest"] == digest)
    };
    let mut good = 0;
    for e in v1 {
        let digest = e["digest"].as_str().unwrap();
        let remade = entries
            .iter()
            .find(|n| n["version"] == 2 && n["derived_from"] == e["id"]);
        let layers = reg.sig_layers("bulk/app", digest).len();
        if time(e["time"].as_str().unwrap()) < since {
            // Nothing good is lost: re-made once, and that stands.
            good += 1;
            assert!(remade.is_some(), "{digest} was not re-signed");
            assert!(
                !revoked(digest),
                "{digest}: a good re-signature was revoked"
            );
            assert_eq!(layers, 2, "{digest}");
        } else if remade.is_some() {
            // Re-made before the revocation landed: it shares the original's fate.
            assert!(revoked(digest), "{digest}: a condemned re-signature stands");
        } else {
            assert_eq!(layers, 1, "{digest}");
        }
    }
    assert_eq!(good, 100);
}
