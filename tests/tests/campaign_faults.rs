//! Campaigns under faults: a daemon killed mid-way, a registry that goes down, a
//! registry that refuses the daemon's credentials.

use keyward_tests::DevDaemon;
use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// How many signature layers of `digest` each key version made.
fn layers_by_version(reg: &TestRegistry, repo: &str, digest: &str) -> Vec<String> {
    let mut v: Vec<String> = reg
        .sig_layers(repo, digest)
        .iter()
        .map(|l| {
            l["annotations"]["dev.keyward/key"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_campaign_killed_mid_way_finishes_after_a_restart_with_every_image_signed_once() {
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("bulk/app", 300);
    sign_all(&d, "release", &images);
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    let before = wait_job(&d, &id, |j| j["done"].as_u64().unwrap_or(0) >= 20);
    d.kill9();
    assert!(
        before["done"].as_u64().unwrap() < 300,
        "the campaign finished before the kill: {before}"
    );

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (
            job["total"].as_u64(),
            job["done"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some(300), Some(300), Some(0)),
        "{job}"
    );
    for (reference, digest) in &images {
        assert_eq!(
            layers_by_version(&reg, "bulk/app", digest),
            ["release/v1", "release/v2"],
            "{reference}"
        );
    }
    // The ledger holds each new signature once.
    let v2 = json(&d.ok(&[
        "-o",
        "json",
        "signatures",
        "list",
        "--key",
        "release",
        "--version",
        "2",
    ]));
    let mut digests: Vec<&str> = v2
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    digests.sort();
    digests.dedup();
    assert_eq!(
        v2.as_array().unwrap().len(),
        300,
        "duplicates in the ledger"
    );
    assert_eq!(digests.len(), 300);
    let key = json(&d.ok(&["-o", "json", "key", "show", "release"]));
    assert_eq!(key["versions"][0]["state"], "retired", "{key}");
}

#[test]
fn a_registry_down_mid_campaign_holds_back_its_items_and_fails_none() {
    let mut reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("team/app", 200);
    sign_all(&d, "release", &images);
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    let before = wait_job(&d, &id, |j| j["done"].as_u64().unwrap_or(0) >= 5);
    // Killing docker-registry in the middle of a push can leave that object torn (it
    // then answers 500 for it for ever): take it down between pushes, by pausing the
    // job until its items in flight are over, then let the job run into the outage.
    d.ok(&["jobs", "pause", &id]);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    reg.stop();
    d.ok(&["jobs", "resume", &id]);
    assert!(before["done"].as_u64().unwrap() < 200, "{before}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let during = json(&d.ok(&["-o", "json", "jobs", "show", &id]));
    assert_eq!(during["state"], "running", "{during}");
    assert_eq!(during["failed"], 0, "{during}");
    reg.restart(false);
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(200), Some(0)),
        "{job}"
    );
    assert!(
        d.log().contains("registry down"),
        "the daemon did not say why it waited"
    );
}

#[test]
fn an_object_the_registry_keeps_failing_fails_its_item_alone_with_the_reason() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("team/app", 12);
    sign_all(&d, "release", &images);
    let (_, torn) = &images[5];
    reg.tear_manifest("team/app", torn);
    let status = reg.curl_status(&format!("/v2/team/app/manifests/{torn}"));
    assert!(status >= 500, "the torn manifest answers {status}");

    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    let job = wait_job(&d, &id, |_| false);
    // The registry answered every other object: it was not down, and the one object
    // it kept failing is failed after its attempts, with the registry's answer.
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(11), Some(1)),
        "{job}"
    );
    let failure = &job["failures"][0];
    let image = failure["image"].as_str().unwrap();
    assert!(image.ends_with(torn.as_str()), "{failure}");
    let reason = failure["reason"].as_str().unwrap();
    assert!(reason.contains("500"), "{reason}");
    assert!(reason.contains("gave up after 6 attempts"), "{reason}");
    assert!(
        !d.log().contains("registry down"),
        "a single failing object marked the registry down"
    );
    for (i, (_, digest)) in images.iter().enumerate() {
        if i != 5 {
            assert_eq!(layers_by_version(&reg, "team/app", digest).len(), 2);
        }
    }
}

#[test]
fn a_registry_refusing_the_credentials_fails_its_items_and_retry_finishes_them() {
    let mut reg = TestRegistry::start_with_auth("ci", "good-pass");
    let docker = reg.docker_config();
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_with(tmp.path(), &[("DOCKER_CONFIG", docker.as_path())]).unwrap();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("team/app", 4);
    sign_all(&d, "release", &images);

    reg.set_password("rotated-elsewhere");
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "release"]));
    let id = rotated["job_id"].as_str().unwrap().to_string();
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["failed"], 4, "{job}");
    let reason = job["failures"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("refused authentication"), "{reason}");
    // While it failed, the old version stays retiring: it still has images to re-sign.
    let key = json(&d.ok(&["-o", "json", "key", "show", "release"]));
    assert_eq!(key["versions"][0]["state"], "retiring", "{key}");
    let err = d.fails(&["jobs", "watch", &id]);
    assert!(err.contains("keyward jobs retry"), "{err}");

    // The credentials are fixed; retry finishes the job.
    reg.set_password("good-pass");
    d.ok(&["jobs", "retry", &id]);
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(4), Some(0)),
        "{job}"
    );
    let key = json(&d.ok(&["-o", "json", "key", "show", "release"]));
    assert_eq!(key["versions"][0]["state"], "retired", "{key}");
    for (_, digest) in &images {
        assert_eq!(reg.sig_layers("team/app", digest).len(), 2);
    }
}
