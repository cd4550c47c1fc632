//! The signed audit head: an export cut back to an earlier checkpoint (hiding the
//! revocation, the incident) is refused by a verifier holding a later head, and every
//! revocation list names the head at its issue.

use keyward_tests::revoke::revoke_compromised;
use keyward_tests::{DevDaemon, refused};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn an_export_cut_short_is_refused_against_a_later_signed_head() {
    let d = DevDaemon::start();
    let p = |n: &str| d.dir.join(n).to_str().unwrap().to_string();
    std::fs::write(p("audit.pem"), d.ok(&["audit", "public-key"])).unwrap();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    // What an attacker keeps: an export from before the revocation.
    std::fs::write(p("early.jsonl"), d.ok(&["audit", "export"])).unwrap();
    d.ok(&["key", "rotate", "files"]);
    let out = revoke_compromised(&d, None, ("files", 1), "2026-01-01T00:00:00Z", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = json(&d.ok(&["-o", "json", "audit", "head"]));
    let seq = head["head"]["seq"].as_u64().unwrap();
    assert!(
        head["signature"].as_str().is_some_and(|s| !s.is_empty()),
        "{head}"
    );
    std::fs::write(p("head.json"), head.to_string()).unwrap();
    let verify = |file: &str, head: &str| {
        d.keyward(&[
            "audit",
            "verify",
            &p(file),
            "--key",
            &p("audit.pem"),
            "--head",
            &p(head),
        ])
    };

    // The early export verifies on its own, but not against the later head.
    d.ok(&[
        "audit",
        "verify",
        &p("early.jsonl"),
        "--key",
        &p("audit.pem"),
    ]);
    let err = refused(&verify("early.jsonl", "head.json"));
    assert!(
        err.contains("the export ends at record") && err.contains(&format!("is record {seq}")),
        "{err}"
    );
    // A whole export reaches the head.
    std::fs::write(p("all.jsonl"), d.ok(&["audit", "export"])).unwrap();
    let out = verify("all.jsonl", "head.json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An edited head does not verify.
    let mut forged = head.clone();
    forged["head"]["seq"] = (seq - 3).into();
    std::fs::write(p("forged.json"), forged.to_string()).unwrap();
    let err = refused(&verify("all.jsonl", "forged.json"));
    assert!(err.contains("signature does not verify"), "{err}");

    // The same head over HTTP, for verifiers without credentials.
    let (status, body) = d.http_get("/v1/audit/head");
    assert!(status.contains("200"), "{status} {body}");
    let served = json(&body);
    assert!(served["head"]["seq"].as_u64() >= Some(seq), "{served}");
    std::fs::write(p("served.json"), body).unwrap();
    std::fs::write(p("all.jsonl"), d.ok(&["audit", "export"])).unwrap();
    let out = verify("all.jsonl", "served.json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The revocation list issued by the revocation names a head the export holds.
    let list = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let listed = &list["list"]["audit_head"];
    let at = listed["seq"].as_u64().unwrap();
    let export = d.ok(&["audit", "export"]);
    let record = export
        .lines()
        .map(json)
        .find(|l| l["seq"] == at && l["type"] == "record")
        .unwrap_or_else(|| panic!("record {at} missing"));
    assert_eq!(record["hash"], listed["hash"], "{list}");
}
