//! Re-signing campaigns: a rotation re-signs, with the new version, every image the old
//! one signed, so verifiers that trust only the new key keep accepting them.

use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign_verify};
use std::time::{Duration, Instant};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn copy(from: &std::path::Path, to: &str) -> std::path::PathBuf {
    let p = from.with_file_name(to);
    std::fs::copy(from, &p).unwrap();
    p
}

#[test]
fn a_rotation_re_signs_what_the_old_version_signed_and_skips_an_image_that_is_gone() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("team/app", 6);
    sign_all(&d, "release", &images);
    let v1 = copy(&d.public_key_file("release"), "v1.pem");
    let gone = images[5].1.clone();
    reg.delete_manifest("team/app", &gone);

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    assert_eq!(rotated["key"]["active_version"], 2, "{rotated}");
    assert_eq!(
        rotated["key"]["versions"][0]["state"], "retiring",
        "{rotated}"
    );
    let id = rotated["job_id"]
        .as_str()
        .expect("a campaign job")
        .to_string();
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "resign");
    assert_eq!(job["total"], 6);
    assert_eq!(job["done"], 5);
    assert_eq!(job["skipped"], 1);
    assert_eq!(job["failed"], 0);
    assert_eq!(job["started_by"], "admin");
    let f = &job["failures"][0];
    assert!(f["image"].as_str().unwrap().ends_with(&gone), "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("no longer in the registry"),
        "{f}"
    );
    assert_eq!(f["state"], "skipped");

    // The old version is retired once its campaign is done.
    let key = json(&d.ok(&["-o", "json", "key", "show", "release"]));
    assert_eq!(key["versions"][0]["state"], "retired", "{key}");
    let v2 = d.public_key_file("release");
    for (reference, digest) in &images[..5] {
        assert_eq!(reg.sig_layers("team/app", digest).len(), 2, "{reference}");
        // A verifier that trusts only the new key accepts the image, for the identity
        // the original signature named (tag included); the old signature stays.
        let out = cosign_verify(&v2, reference, None);
        assert!(
            out.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let payload = json(String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(
            payload[0]["critical"]["identity"]["docker-reference"],
            reference.as_str()
        );
        assert_eq!(payload[0]["optional"]["dev.keyward/version"], "2");
        assert_eq!(payload[0]["optional"]["dev.keyward/requester"], "admin");
        assert!(cosign_verify(&v1, reference, None).status.success());
    }

    // Each re-signature is audited, with the rotation's authority.
    let audit = d.ok(&["audit", "export"]);
    let resigned: Vec<serde_json::Value> = audit
        .lines()
        .map(json)
        .filter(|r| r["action"] == "Resign" && r["decision"] == "allowed")
        .collect();
    assert_eq!(resigned.len(), 5, "{audit}");
    assert!(resigned.iter().all(|r| r["principal"] == "admin"));
    assert!(
        resigned
            .iter()
            .any(|r| r["target"].as_str().unwrap().ends_with(&images[0].1))
    );

    // Re-running the campaign finds every signature made: nothing is added twice.
    let again = d.ok(&[
        "resign",
        "--key",
        "release",
        "--from-version",
        "1",
        "--wait",
    ]);
    assert!(
        again.contains("5 of 6 done, 1 skipped, 0 failed"),
        "{again}"
    );
    for (_, digest) in &images[..5] {
        assert_eq!(reg.sig_layers("team/app", digest).len(), 2);
    }
    let listed = json(&d.ok(&["-o", "json", "jobs", "list", "--state", "done"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

#[test]
fn campaign_and_rotation_inputs_that_make_no_sense_are_refused_with_the_reason() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let err = d.fails(&["key", "policy", "set", "release", "--rotate-every", "0d"]);
    assert!(err.contains("period of 0"), "{err}");
    let err = d.fails(&[
        "key",
        "policy",
        "set",
        "release",
        "--rotate-every",
        "30d",
        "--overlap",
        "60d",
    ]);
    assert!(
        err.contains("overlap (60d) is longer than the rotation period (30d)"),
        "{err}"
    );
    let err = d.fails(&[
        "key",
        "policy",
        "set",
        "release",
        "--rotate-every",
        "ninety",
    ]);
    assert!(err.contains("e.g. 90d"), "{err}");
    let shown = json(&d.ok(&[
        "-o",
        "json",
        "key",
        "policy",
        "set",
        "release",
        "--rotate-every",
        "90d",
        "--overlap",
        "30d",
    ]));
    let shown = &shown["policy"];
    assert_eq!(shown["rotation"]["every_seconds"], 90 * 86_400, "{shown}");
    assert_eq!(shown["rotation"]["resign"], true);
    let err = d.fails(&["resign", "--key", "release"]);
    assert!(err.contains("only one version"), "{err}");
    let err = d.fails(&["resign", "--key", "release", "--from-version", "1"]);
    assert!(err.contains("is the active version"), "{err}");
    let err = d.fails(&["resign", "--key", "files"]);
    assert!(err.contains("blob key"), "{err}");
    let err = d.fails(&["jobs", "show", "job-0000"]);
    assert!(err.contains("not found"), "{err}");
    // A blob key's rotation starts no campaign and retires the old version at once.
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "files"]));
    assert!(rotated["job_id"].is_null(), "{rotated}");
    assert_eq!(rotated["key"]["versions"][0]["state"], "retired");
    // The annotation prefix Keyward writes is not for requests.
    let err = d.fails(&[
        "sign",
        "--key",
        "release",
        "-a",
        "dev.keyward/version=9",
        "127.0.0.1:1/x:y",
    ]);
    assert!(err.contains("reserved"), "{err}");
}

#[test]
fn after_the_overlap_the_old_versions_layers_go_where_the_new_version_signed_and_the_ledger_notes_it()
 {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    d.ok(&[
        "key",
        "policy",
        "set",
        "release",
        "--overlap",
        "0s",
        "--prune-after-overlap",
        "true",
    ]);
    let images = reg.push_many("prune/app", 3);
    let outside = reg.push_many("other/app", 1);
    sign_all(&d, "release", &images);
    sign_all(&d, "release", &outside);
    let v1 = copy(&d.public_key_file("release"), "v1.pem");
    // other/app leaves the key's scope: the campaign skips it, so v2 never signs it
    // and its v1 signature must stay.
    let scope = format!("{}/prune/*", reg.addr);
    d.ok(&["key", "policy", "set", "release", "--scope", &scope]);

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    let campaign = wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    assert_eq!(
        (campaign["done"].as_u64(), campaign["skipped"].as_u64()),
        (Some(3), Some(1)),
        "{campaign}"
    );
    // The scheduler (every second in dev) starts the prune once v1 is retired.
    let deadline = Instant::now() + Duration::from_secs(30);
    let prune = loop {
        let jobs = json(&d.ok(&["-o", "json", "jobs", "list"]));
        if let Some(j) = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "prune")
        {
            break j["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no prune started: {jobs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let job = wait_job(&d, &prune, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["started_by"], "scheduler");
    assert_eq!(
        (job["done"].as_u64(), job["skipped"].as_u64()),
        (Some(3), Some(1)),
        "{job}"
    );
    assert!(
        job["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("has not signed this image"),
        "{job}"
    );

    let v2 = d.public_key_file("release");
    for (reference, digest) in &images {
        let layers = reg.sig_layers("prune/app", digest);
        assert_eq!(layers.len(), 1, "{reference}");
        assert_eq!(layers[0]["annotations"]["dev.keyward/key"], "release/v2");
        assert!(cosign_verify(&v2, reference, None).status.success());
        assert!(
            !cosign_verify(&v1, reference, None).status.success(),
            "v1's signature is still there"
        );
    }
    assert_eq!(reg.sig_layers("other/app", &outside[0].1).len(), 1);
    assert!(
        cosign_verify(&v1, &outside[0].0, None).status.success(),
        "the only signature was pruned"
    );
    // The ledger notes each removal once.
    let ledger = json(&d.ok(&[
        "-o",
        "json",
        "signatures",
        "list",
        "--key",
        "release",
        "--version",
        "1",
    ]));
    let pruned = ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "prune")
        .count();
    assert_eq!(pruned, 3, "{ledger}");
}
