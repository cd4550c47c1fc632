//! `key policy set --revoke-approvals N`: a revocation (or a whole incident) on such a
//! key waits for N other revokers and applies on the last approval; raising N applies
//! at once, lowering it waits for a second key-admin.

use keyward_tests::campaign::wait_job;
use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, json_ok, refused};
use std::path::Path;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

const REVOKE: [&str; 9] = [
    "key",
    "revoke",
    "files",
    "--version",
    "1",
    "--reason",
    "key-compromise",
    "--compromised-since",
    "2026-01-01T00:00:00Z",
];

fn revoke_as(d: &DevDaemon, who: &Path) -> serde_json::Value {
    let args: Vec<&str> = ["-o", "json"]
        .iter()
        .chain(REVOKE.iter())
        .copied()
        .collect();
    keyward_tests::answer(&d.keyward_as(who, &args))
}

fn state(d: &DevDaemon, key: &str) -> String {
    let k = json(&d.ok(&["-o", "json", "key", "show", key]));
    k["versions"][0]["state"].as_str().unwrap().to_string()
}

#[test]
fn a_revocation_waits_for_other_revokers_and_applies_on_the_last_approval() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let file = d.dir.join("notes.txt");
    std::fs::write(&file, b"release notes").unwrap();
    let file = file.to_str().unwrap();
    d.ok(&["key", "policy", "set", "files", "--revoke-approvals", "2"]);
    let policy = json(&d.ok(&["-o", "json", "key", "policy", "show", "files"]));
    assert_eq!(policy["revoke_approvals"], 2, "{policy}");

    let (ir1, ir2, ir3) = (
        d.add_principal("ir1", "revoker"),
        d.add_principal("ir2", "revoker"),
        d.add_principal("ir3", "revoker"),
    );
    let held = revoke_as(&d, &ir1);
    assert_eq!(held["pending"], true, "{held}");
    assert_eq!(held["approvals_needed"], 2, "{held}");
    let id = held["approval_id"].as_str().unwrap().to_string();
    // Nothing is revoked while it waits: the version still signs.
    assert_eq!(state(&d, "files"), "active");
    d.ok(&["sign-blob", "--key", "files", file]);
    let shown = json(&d.ok(&["-o", "json", "approvals", "show", &id]));
    assert_eq!(
        (
            &shown["kind"],
            &shown["revoke_version"],
            &shown["revoke_reason"]
        ),
        (
            &serde_json::json!("revocation"),
            &serde_json::json!(1),
            &serde_json::json!("key-compromise")
        ),
        "{shown}"
    );

    // The requester, an approver of signatures and a signer cannot approve it.
    let err = refused(&d.keyward_as(&ir1, &["approve", &id]));
    assert!(err.contains("separation of duties"), "{err}");
    let ann = d.add_principal("ann", "approver");
    let err = refused(&d.keyward_as(&ann, &["approve", &id]));
    assert!(err.contains("approve revocations"), "{err}");
    let sam = d.add_principal("sam", "signer");
    let err = refused(&d.keyward_as(&sam, &["approve", &id]));
    assert!(err.contains("approve requests"), "{err}");
    assert_eq!(state(&d, "files"), "active");

    let one = json_ok(&d.keyward_as(&ir2, &["-o", "json", "approve", &id]));
    assert_eq!(one["status"], "pending", "{one}");
    assert_eq!(state(&d, "files"), "active");
    let err = refused(&d.keyward_as(&ir2, &["approve", &id]));
    assert!(err.contains("already approved"), "{err}");

    let done = json_ok(&d.keyward_as(&ir3, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    assert!(
        done["outcome"].as_str().unwrap().contains("v1 revoked"),
        "{done}"
    );
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    let v1 = &key["versions"][0];
    assert_eq!(v1["state"], "revoked", "{key}");
    // The requester's revocation, with the requester's authority.
    assert_eq!(v1["revoked_by"], "ir1", "{key}");
    assert_eq!(v1["compromised_since"], "2026-01-01T00:00:00Z", "{key}");
    let err = d.fails(&["sign-blob", "--key", "files", file]);
    assert!(err.contains("no active version"), "{err}");
    // The list verifiers read names it.
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let entries = list["list"]["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["key"] == "files" && e["version"] == 1),
        "{list}"
    );
    // Approving again, or revoking it again through the other door, changes nothing
    // and opens no new approval.
    let err = refused(&d.keyward_as(&ir2, &["approve", &id]));
    assert!(err.contains("no longer be approved"), "{err}");
    let err = refused(&d.keyward_as(&ir2, &REVOKE));
    assert!(err.contains("irreversible"), "{err}");
    let pending = json(&d.ok(&["-o", "json", "approvals", "list", "--pending"]));
    assert_eq!(pending, serde_json::json!([]), "{pending}");
}

#[test]
fn lowering_revoke_approvals_waits_for_a_second_key_admin_and_raising_applies_at_once() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let (sec, sec2) = (
        d.add_principal("sec", "key-admin"),
        d.add_principal("sec2", "key-admin"),
    );
    let (ir1, ir2) = (
        d.add_principal("ir1", "revoker"),
        d.add_principal("ir2", "revoker"),
    );
    let raised = json_ok(&d.keyward_as(
        &sec,
        &[
            "-o",
            "json",
            "key",
            "policy",
            "set",
            "files",
            "--revoke-approvals",
            "1",
        ],
    ));
    assert_eq!(raised["policy"]["revoke_approvals"], 1, "{raised}");

    let lowered = keyward_tests::pending(&d.keyward_as(
        &sec,
        &[
            "-o",
            "json",
            "key",
            "policy",
            "set",
            "files",
            "--revoke-approvals",
            "0",
        ],
    ));
    assert_eq!(lowered["pending"], true, "{lowered}");
    let weakens = lowered["weakens"].to_string();
    assert!(weakens.contains("revoke approvals: 1 -> 0"), "{weakens}");
    let policy_change = lowered["approval_id"].as_str().unwrap().to_string();
    // Until a second key-admin approves, a revocation still waits.
    let held = revoke_as(&d, &ir1);
    assert_eq!(held["pending"], true, "{held}");
    assert_eq!(state(&d, "files"), "active");
    // Who may deny: whoever may decide that kind of request. A signature approver may
    // not deny a revocation, another revoker may; a revoker may not deny the weakening.
    let held_id = held["approval_id"].as_str().unwrap().to_string();
    let ann = d.add_principal("ann", "approver");
    let err = refused(&d.keyward_as(&ann, &["deny", &held_id, "--reason", "no"]));
    assert!(err.contains("needs the role revoker"), "{err}");
    let err = refused(&d.keyward_as(&ir2, &["deny", &policy_change, "--reason", "no"]));
    assert!(err.contains("needs the role key-admin"), "{err}");
    let denied = json_ok(&d.keyward_as(
        &ir2,
        &[
            "-o",
            "json",
            "deny",
            &held_id,
            "--reason",
            "not compromised",
        ],
    ));
    assert_eq!(denied["status"], "denied", "{denied}");
    assert_eq!(state(&d, "files"), "active");
    // A revoker cannot approve the weakening: that takes a key-admin.
    let err = refused(&d.keyward_as(&ir2, &["approve", &policy_change]));
    assert!(err.contains("approve key policy changes"), "{err}");
    json_ok(&d.keyward_as(&sec2, &["-o", "json", "approve", &policy_change]));
    let policy = json(&d.ok(&["-o", "json", "key", "policy", "show", "files"]));
    assert_eq!(policy["revoke_approvals"], 0, "{policy}");

    let now = revoke_as(&d, &ir2);
    assert_eq!(now["key"]["versions"][0]["state"], "revoked", "{now}");
    assert_eq!(state(&d, "files"), "revoked");
    // Out of range is refused with the limit.
    let err = d.fails(&["key", "policy", "set", "files", "--revoke-approvals", "50"]);
    assert!(err.contains("at most 9"), "{err}");
}

#[test]
fn an_incident_on_such_a_key_runs_whole_on_the_last_approval_and_is_signed_in_the_audit_log() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    let digest = reg.push_image("app:v1", "v1");
    d.ok(&["sign", "--key", "img", &format!("{}/app:v1", reg.addr)]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    d.ok(&["key", "policy", "set", "img", "--revoke-approvals", "1"]);
    let (ir1, ir2) = (
        d.add_principal("ir1", "revoker"),
        d.add_principal("ir2", "revoker"),
    );
    let incident = [
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
    // A dry run needs no approval: it changes nothing.
    let plan = json_ok(&d.keyward_as(&ir1, &[&incident[..], &["--dry-run"]].concat()));
    assert_eq!(plan["signed_before"], 1, "{plan}");
    let held = keyward_tests::pending(&d.keyward_as(&ir1, &incident));
    let id = held["approval_id"].as_str().unwrap().to_string();
    assert_eq!(state(&d, "img"), "active");
    let shown = json(&d.ok(&["-o", "json", "approvals", "show", &id]));
    assert_eq!(shown["incident"], true, "{shown}");

    let done = json_ok(&d.keyward_as(&ir2, &["-o", "json", "approve", &id]));
    assert_eq!(done["status"], "signed", "{done}");
    let outcome = done["outcome"].as_str().unwrap();
    assert!(outcome.contains("incident ran"), "{outcome}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "img"]));
    assert_eq!(key["versions"][0]["state"], "revoked", "{key}");
    assert_eq!(key["active_version"], 2, "rotated first: {key}");
    let jobs = json(&d.ok(&["-o", "json", "jobs", "list"]));
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "resign")
        .unwrap_or_else(|| panic!("no re-signing job: {jobs}"));
    let done = wait_job(&d, job["id"].as_str().unwrap(), |_| false);
    assert_eq!(done["done"], 1, "{done}");
    let v = json(&d.ok(&[
        "-o",
        "json",
        "verify",
        "--key",
        "img",
        &format!("{}/app@{digest}", reg.addr),
    ]));
    assert_eq!(v["valid"][0]["version"], 2, "{v}");

    // The report is an audit record of its own, with the approvers, signed by a
    // checkpoint the incident asked for.
    let (record, signed) = incident_record(&d);
    assert_eq!(record["principal"], "ir1", "{record}");
    assert_eq!(record["detail"]["approved_by"][0], "ir2", "{record}");
    assert_eq!(record["detail"]["report"]["signed_before"], 1, "{record}");
    assert!(signed, "no checkpoint covers the incident's record");
    // The export verifies offline; the same export with the report edited does not.
    let key = d.dir.join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    let export = d.ok(&["audit", "export"]);
    let verify = |text: &str| {
        let file = d.dir.join("export.jsonl");
        std::fs::write(&file, text).unwrap();
        d.keyward(&[
            "-o",
            "json",
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--allow-unsigned-tail",
        ])
    };
    let ok = json_ok(&verify(&export));
    assert!(ok["records"].as_u64() > Some(0), "{ok}");
    let edited = export.replace("\"signed_before\":1", "\"signed_before\":0");
    assert_ne!(edited, export, "the report's count is not in the export");
    let err = refused(&verify(&edited));
    assert!(err.contains("record"), "{err}");
}

/// The `IncidentReport` audit record, and whether a checkpoint signs it (waits a
/// few seconds for the checkpoint the incident asks for).
fn incident_record(d: &DevDaemon) -> (serde_json::Value, bool) {
    let mut last = (serde_json::Value::Null, false);
    for _ in 0..50 {
        let lines: Vec<serde_json::Value> = d.ok(&["audit", "export"]).lines().map(json).collect();
        let record = lines
            .iter()
            .find(|l| l["action"] == "IncidentReport")
            .cloned()
            .unwrap_or_default();
        let seq = record["seq"].as_u64().unwrap_or(u64::MAX);
        let signed = lines
            .iter()
            .any(|l| l["type"] == "checkpoint" && l["seq"].as_u64() >= Some(seq));
        last = (record, signed);
        if last.1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    last
}

#[test]
fn an_approval_granted_after_an_earlier_compromise_was_recorded_cannot_move_it_later() {
    use keyward_tests::revoke::revoke_compromised;
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "policy", "set", "files", "--revoke-approvals", "2"]);
    let (ir1, ir2, ir3) = (
        d.add_principal("ir1", "revoker"),
        d.add_principal("ir2", "revoker"),
        d.add_principal("ir3", "revoker"),
    );
    let ask = |who: &Path, since: &str| {
        let out = revoke_compromised(&d, Some(who), ("files", 1), since, &["-o", "json"]);
        keyward_tests::pending(&out)["approval_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Two requests wait: a later compromise, then an earlier one.
    let later = ask(&ir1, "2026-06-01T00:00:00Z");
    let earlier = ask(&ir2, "2026-01-01T00:00:00Z");
    for who in [&ir1, &ir3] {
        json_ok(&d.keyward_as(who, &["-o", "json", "approve", &earlier]));
    }
    // The later one's approvals complete afterwards: it is refused, naming the
    // recorded time, and the record keeps the earlier one.
    json_ok(&d.keyward_as(&ir2, &["-o", "json", "approve", &later]));
    let out = d.keyward_as(&ir3, &["-o", "json", "approve", &later]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("compromised since 2026-01-01T00:00:00Z"),
        "{text}"
    );
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    assert_eq!(
        key["versions"][0]["compromised_since"], "2026-01-01T00:00:00Z",
        "{key}"
    );
}
