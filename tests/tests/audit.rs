//! The audit log through the real daemon and CLI: every decision recorded, exported,
//! and verified offline; any edit, drop or reordering is caught and named.

use keyward_tests::DevDaemon;
use std::path::{Path, PathBuf};

fn lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(d: &DevDaemon, file: &Path, key: &Path) -> Result<String, String> {
    let o = d.keyward(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn every_decision_is_recorded_and_an_export_verifies_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "rel", "--purpose", "blob"]);
    d.ok(&["sign-blob", "--key", "rel", "/etc/hostname"]);
    d.fails(&["key", "show", "missing"]);
    let signer = d.dir.join("people/sam.toml");
    d.ok(&[
        "principal",
        "add",
        "sam",
        "--role",
        "signer",
        "--out",
        signer.to_str().unwrap(),
    ]);
    let o = d.keyward_as(&signer, &["key", "create", "nope"]);
    assert!(!o.status.success());
    let o = d.keyward_as(&signer, &["audit", "export"]);
    assert!(!o.status.success(), "a signer read the audit log");
    d.ok(&["principal", "remove", "sam"]);
    let o = d.keyward_as(&signer, &["key", "list"]);
    assert!(!o.status.success());
    let key = d.dir.join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    // Shutdown signs the chain head one last time.
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let export = d.ok(&["audit", "export"]);
    let recs = lines(&export);
    let records: Vec<_> = recs.iter().filter(|r| r["type"] == "record").collect();
    // `audit tail --decision denied` shows the refusals, only them.
    let denied = lines(&d.ok(&[
        "-o",
        "json",
        "audit",
        "tail",
        "-n",
        "1000",
        "--decision",
        "denied",
    ]));
    let want = records.iter().filter(|r| r["decision"] == "denied").count();
    assert!(want >= 3, "{export}");
    assert_eq!(denied.len(), want, "{denied:?}");
    assert!(
        denied.iter().all(|r| r["decision"] == "denied"),
        "{denied:?}"
    );
    let find = |action: &str, decision: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["decision"] == decision)
            .unwrap_or_else(|| panic!("no {decision} {action} record in {export}"))
    };
    let create = find("CreateKey", "allowed");
    assert_eq!(create["principal"], "admin");
    assert_eq!(create["target"], "rel");
    assert_eq!(create["request_hash"].as_str().unwrap().len(), 64);
    assert_eq!(find("SignDigest", "allowed")["target"], "rel");
    // A blob signature's one record is its outcome: the answer waits for it.
    let signs: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "SignDigest")
        .collect();
    assert_eq!(signs.len(), 1, "{signs:?}");
    assert!(
        find("GetKey", "failed")["reason"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    let denied = find("CreateKey", "denied");
    assert_eq!(denied["principal"], "sam");
    assert!(denied["reason"].as_str().unwrap().contains("key-admin"));
    assert_eq!(find("ExportAudit", "denied")["principal"], "sam");
    assert!(
        find("Authenticate", "denied")["reason"]
            .as_str()
            .unwrap()
            .contains("removed")
    );
    // Sequence numbers are consecutive and chained.
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], (i + 1) as u64);
        if i > 0 {
            assert_eq!(r["prev_hash"], records[i - 1]["hash"]);
        }
    }
    assert!(
        recs.iter().any(|r| r["type"] == "checkpoint"),
        "no checkpoint after shutdown: {export}"
    );

    let file = write(
        tmp.path(),
        "audit.jsonl",
        &export.lines().map(String::from).collect::<Vec<_>>(),
    );
    let ok = verify(&d, &file, &key).unwrap();
    assert!(
        ok.contains("hash chain intact") && ok.contains("checkpoint signatures verified"),
        "{ok}"
    );
}

#[test]
fn edited_dropped_or_reordered_records_fail_verification_naming_the_first_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    for i in 0..4 {
        d.ok(&["key", "create", &format!("k{i}")]);
    }
    let key = tmp.path().join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let original: Vec<String> = d
        .ok(&["audit", "export"])
        .lines()
        .map(String::from)
        .collect();
    let good = write(tmp.path(), "good.jsonl", &original);
    verify(&d, &good, &key).unwrap();
    let pos = |seq: u64| {
        original
            .iter()
            .position(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["type"] == "record" && v["seq"] == seq
            })
            .unwrap()
    };

    // Edit record 2.
    let mut edited = original.clone();
    edited[pos(2)] = edited[pos(2)].replace("\"admin\"", "\"mallory\"");
    let err = verify(&d, &write(tmp.path(), "e.jsonl", &edited), &key).unwrap_err();
    assert!(err.contains("record 2") && err.contains("edited"), "{err}");

    // Edit record 2 and recompute its hash: the next record's link breaks.
    let mut v: serde_json::Value = serde_json::from_str(&original[pos(2)]).unwrap();
    v["principal"] = "mallory".into();
    let mut without = v.clone();
    without.as_object_mut().unwrap().remove("hash");
    use sha2::Digest;
    v["hash"] = hex::encode(sha2::Sha256::digest(serde_json::to_vec(&without).unwrap())).into();
    let mut rehashed = original.clone();
    rehashed[pos(2)] = v.to_string();
    let err = verify(&d, &write(tmp.path(), "r.jsonl", &rehashed), &key).unwrap_err();
    assert!(
        err.contains("record 3") && err.contains("prev_hash"),
        "{err}"
    );

    // Drop record 3.
    let mut dropped = original.clone();
    dropped.remove(pos(3));
    let err = verify(&d, &write(tmp.path(), "d.jsonl", &dropped), &key).unwrap_err();
    assert!(
        err.contains("record 4") && err.contains("expected record 3"),
        "{err}"
    );

    // Swap records 2 and 3.
    let mut swapped = original.clone();
    swapped.swap(pos(2), pos(3));
    let err = verify(&d, &write(tmp.path(), "s.jsonl", &swapped), &key).unwrap_err();
    assert!(
        err.contains("record 3") && err.contains("expected record 2"),
        "{err}"
    );

    // Another key does not verify the checkpoints.
    let other = DevDaemon::start();
    let other_key = tmp.path().join("other.pem");
    std::fs::write(&other_key, other.ok(&["audit", "public-key"])).unwrap();
    let err = verify(&d, &good, &other_key).unwrap_err();
    assert!(
        err.contains("checkpoint") && err.contains("does not verify"),
        "{err}"
    );
}

fn verify_with(d: &DevDaemon, file: &Path, key: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = d.keyward(&args);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn an_export_cut_at_the_front_or_stripped_of_checkpoints_does_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    for i in 0..3 {
        d.ok(&["key", "create", &format!("k{i}")]);
    }
    let key = tmp.path().join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    let export: Vec<String> = d
        .ok(&["audit", "export"])
        .lines()
        .map(String::from)
        .collect();
    // The export signs the head first: it verifies without any flag.
    let last: serde_json::Value = serde_json::from_str(export.last().unwrap()).unwrap();
    assert_eq!(last["type"], "checkpoint", "{last}");
    verify(&d, &write(tmp.path(), "all.jsonl", &export), &key).unwrap();

    // The beginning cut off: records 1..3 gone, the rest still chains and is signed.
    let cut: Vec<String> = export
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"].as_u64().unwrap() > 3
        })
        .cloned()
        .collect();
    let err = verify(&d, &write(tmp.path(), "cut.jsonl", &cut), &key).unwrap_err();
    assert!(err.contains("does not start at record 1"), "{err}");

    // Checkpoints removed: the chain is intact but nothing vouches for it.
    let unsigned: Vec<String> = export
        .iter()
        .filter(|l| !l.contains("\"checkpoint\""))
        .cloned()
        .collect();
    let file = write(tmp.path(), "unsigned.jsonl", &unsigned);
    let err = verify(&d, &file, &key).unwrap_err();
    assert!(
        err.contains("covered by no checkpoint") && err.contains("--allow-unsigned-tail"),
        "{err}"
    );
    let ok = verify_with(&d, &file, &key, &["--allow-unsigned-tail"]).unwrap();
    assert!(ok.contains("not yet covered by a checkpoint"), "{ok}");

    // A tail without its last checkpoint.
    let mut tail = export.clone();
    tail.pop();
    let err = verify(&d, &write(tmp.path(), "tail.jsonl", &tail), &key).unwrap_err();
    assert!(err.contains("covered by no checkpoint"), "{err}");
}

#[test]
fn an_export_since_a_time_verifies_from_the_record_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "early"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = d.ok(&["-o", "json", "key", "show", "early"]);
    let created: serde_json::Value = serde_json::from_str(&since).unwrap();
    let t = time_after(created["created_at"].as_str().unwrap());
    d.ok(&["key", "create", "late"]);
    let key = tmp.path().join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    let export: Vec<String> = d
        .ok(&["audit", "export", "--since", &t])
        .lines()
        .map(String::from)
        .collect();
    let anchor: serde_json::Value = serde_json::from_str(&export[0]).unwrap();
    assert_eq!(anchor["type"], "anchor", "{anchor}");
    let from = anchor["seq"].as_u64().unwrap() + 1;
    assert!(from > 1);
    let file = write(tmp.path(), "since.jsonl", &export);
    let err = verify(&d, &file, &key).unwrap_err();
    assert!(err.contains(&format!("--from {from}")), "{err}");
    verify_with(&d, &file, &key, &["--from", &from.to_string()]).unwrap();
    // A forged anchor breaks the chain at the first record.
    let mut forged = export.clone();
    forged[0] =
        serde_json::json!({"type": "anchor", "seq": from - 1, "hash": "ab".repeat(32)}).to_string();
    let err = verify_with(
        &d,
        &write(tmp.path(), "forged.jsonl", &forged),
        &key,
        &["--from", &from.to_string()],
    )
    .unwrap_err();
    assert!(err.contains("prev_hash"), "{err}");
}

/// One second after an RFC 3339 time (whole seconds, UTC).
fn time_after(t: &str) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{t} + 1 second"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
