//! `keyward incident revoke`: a leaked version handled in one command, in order, with
//! a dry run that changes nothing and a re-run that finishes without doing anything
//! twice.

use keyward_tests::DevDaemon;
use keyward_tests::campaign::wait_job;
use keyward_tests::registry::TestRegistry;
use std::time::Duration;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn an_incident_revokes_rotates_re_signs_what_came_before_the_compromise_and_reports() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    let sign = |tag: &str| {
        let digest = reg.push_image(&format!("app:{tag}"), tag);
        d.ok(&["sign", "--key", "img", &format!("{}/app:{tag}", reg.addr)]);
        digest
    };
    let before: Vec<String> = ["b1", "b2", "b3"].iter().map(|t| sign(t)).collect();
    std::thread::sleep(Duration::from_millis(1100));
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let after: Vec<String> = ["a1", "a2"].iter().map(|t| sign(t)).collect();
    let incident = |dry: bool| {
        let mut args = vec![
            "-o",
            "json",
            "incident",
            "revoke",
            "--key",
            "img",
            "--version",
            "1",
            "--compromised-since",
            &since,
        ];
        if dry {
            args.push("--dry-run");
        }
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let ir = d.add_principal("ir", "revoker");
    let run = |dry: bool| {
        let args = incident(dry);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = d.keyward_as(&ir, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&String::from_utf8_lossy(&out.stdout))
    };

    // The dry run counts and changes nothing.
    let plan = run(true);
    assert_eq!(
        (
            plan["signed_before"].as_u64(),
            plan["signed_after"].as_u64()
        ),
        (Some(3), Some(2)),
        "{plan}"
    );
    assert_eq!(plan["needs_rotation"], true, "{plan}");
    assert_eq!(
        plan["after_compromise"].as_array().unwrap().len(),
        2,
        "{plan}"
    );
    let key = json(&d.ok(&["-o", "json", "key", "show", "img"]));
    assert_eq!(key["versions"][0]["state"], "active", "{key}");
    assert_eq!(key["versions"].as_array().unwrap().len(), 1, "{key}");

    // The incident: revoked, rotated first, what came before re-signed with v2.
    let report = run(false);
    assert_eq!(report["rotated_to"], 2, "{report}");
    assert!(report["audit_seq"].as_u64() > Some(0), "{report}");
    let job = report["resign_job_id"].as_str().unwrap().to_string();
    assert!(!job.is_empty(), "{report}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "img"]));
    assert_eq!(key["versions"][0]["state"], "revoked", "{key}");
    assert_eq!(
        key["versions"][0]["compromised_since"],
        since.as_str(),
        "{key}"
    );
    let done = wait_job(&d, &job, |_| false);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["done"], 3, "{done}");
    for digest in &before {
        let v = json(&d.ok(&[
            "-o",
            "json",
            "verify",
            "--key",
            "img",
            &format!("{}/app@{digest}", reg.addr),
        ]));
        assert_eq!(v["valid"][0]["version"], 2, "{v}");
    }
    // What was signed after the compromise is not re-signed and no longer verifies.
    for digest in &after {
        let out = d.keyward(&[
            "verify",
            "--key",
            "img",
            &format!("{}/app@{digest}", reg.addr),
        ]);
        assert!(
            !out.status.success(),
            "an image signed after the compromise verified"
        );
        assert_eq!(reg.sig_layers("app", digest).len(), 1);
    }
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(
        list["list"]["entries"][0]["compromised_since"],
        since.as_str()
    );
    let audit = d.ok(&["audit", "export"]);
    assert!(audit.contains("\"action\":\"IncidentRevoke\""), "{audit}");

    // Running it again finishes nothing twice: no rotation, no second signature.
    let again = run(false);
    assert_eq!(again["rotated_to"], 0, "{again}");
    if let Some(id) = again["resign_job_id"].as_str().filter(|s| !s.is_empty()) {
        wait_job(&d, id, |_| false);
    }
    for digest in &before {
        assert_eq!(reg.sig_layers("app", digest).len(), 2, "signed twice");
    }
}

#[test]
fn an_incident_killed_while_re_signing_finishes_after_a_restart_with_nothing_signed_twice() {
    use keyward_tests::campaign::sign_all;
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "img"]);
    let images = reg.push_many("bulk/app", 200);
    sign_all(&d, "img", &images);
    std::thread::sleep(Duration::from_millis(1100));
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let report = json(&d.ok(&[
        "-o",
        "json",
        "incident",
        "revoke",
        "--key",
        "img",
        "--version",
        "1",
        "--compromised-since",
        &since,
    ]));
    let id = report["resign_job_id"].as_str().unwrap().to_string();
    let seen = wait_job(&d, &id, |j| j["done"].as_u64().unwrap_or(0) >= 10);
    d.kill9();
    assert!(
        seen["done"].as_u64().unwrap() < 200,
        "done before the kill: {seen}"
    );

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let job = wait_job(&d, &id, |_| false);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(200), Some(0)),
        "{job}"
    );
    for (reference, digest) in &images {
        let mut by: Vec<String> = reg
            .sig_layers("bulk/app", digest)
            .iter()
            .map(|l| {
                l["annotations"]["dev.keyward/key"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        by.sort();
        assert_eq!(by, ["img/v1", "img/v2"], "{reference}");
    }
    let key = json(&d.ok(&["-o", "json", "key", "show", "img"]));
    assert_eq!(key["versions"][0]["state"], "revoked", "{key}");
    assert_eq!(key["versions"][1]["state"], "active", "{key}");
}

#[test]
fn remove_signatures_takes_the_versions_layers_off_what_it_signed_after_the_compromise_only() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    let sign = |tag: &str| {
        let digest = reg.push_image(&format!("app:{tag}"), tag);
        d.ok(&["sign", "--key", "img", &format!("{}/app:{tag}", reg.addr)]);
        digest
    };
    let before = sign("b1");
    std::thread::sleep(Duration::from_millis(1100));
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let after = [sign("a1"), sign("a2")];
    let report = json(&d.ok(&[
        "-o",
        "json",
        "incident",
        "revoke",
        "--key",
        "img",
        "--version",
        "1",
        "--compromised-since",
        &since,
        "--remove-signatures",
    ]));
    let remove = report["remove_job_id"].as_str().unwrap().to_string();
    assert!(!remove.is_empty(), "{report}");
    let job = wait_job(&d, &remove, |_| false);
    assert_eq!(
        (job["state"].as_str(), job["done"].as_u64()),
        (Some("done"), Some(2)),
        "{job}"
    );
    wait_job(&d, report["resign_job_id"].as_str().unwrap(), |_| false);
    for digest in &after {
        assert!(
            reg.sig_layers("app", digest).is_empty(),
            "a signature made after the compromise is still there"
        );
    }
    // What came before keeps its (revoked) v1 layer next to v2's.
    assert_eq!(reg.sig_layers("app", &before).len(), 2);
    let notes = d.ok(&[
        "-o",
        "json",
        "signatures",
        "list",
        "--key",
        "img",
        "--version",
        "1",
    ]);
    assert_eq!(notes.matches("\"kind\":\"prune\"").count(), 2, "{notes}");
}
