//! What the daemon answered survives a crash: signatures handed out under load are in
//! the ledger and the audit log after `kill -9` and a restart, and the log verifies;
//! on each store engine; an instance is never reopened, empty, with the other engine;
//! and a sled instance moved to redb keeps everything.

use keyward_client::audit::{Decision, Line};
use keyward_client::proto;
use keyward_tests::DevDaemon;

#[test]
fn every_signature_answered_before_a_kill_9_is_in_the_ledger_and_the_audit_log() {
    answered_signatures_survive_a_kill_9("sled");
}

#[test]
fn every_signature_answered_before_a_kill_9_is_in_the_ledger_and_the_audit_log_on_redb() {
    answered_signatures_survive_a_kill_9("redb");
}

fn answered_signatures_survive_a_kill_9(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_on_engine(tmp.path(), engine).unwrap();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let pid = d.pid().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answered = rt.block_on(async {
        let client = d.client().await;
        let mut tasks = Vec::new();
        for t in 0..16u8 {
            let mut c = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u32;
                for i in 0..=u8::MAX {
                    let r = c
                        .signing
                        .sign_digest(proto::SignDigestRequest {
                            key: "files".into(),
                            digest_algorithm: "sha256".into(),
                            digest: vec![t ^ i; 32],
                            ..Default::default()
                        })
                        .await;
                    if r.is_err() {
                        break;
                    }
                    ok += 1;
                }
                ok
            }));
        }
        // Crash while the load runs: the daemon gets no chance to flush anything.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    d.kill9();
    assert!(answered > 0, "nothing was signed before the crash");
    assert!(answered < 16 * 256, "the load finished before the crash");

    let d = DevDaemon::start_on_engine(tmp.path(), engine).unwrap();
    let ledger: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "signatures", "list", "--key", "files"]))
            .unwrap();
    let recorded = ledger.as_array().unwrap().len() as u32;
    assert!(
        recorded >= answered,
        "{answered} signatures answered, {recorded} in the ledger"
    );
    let export = d.ok(&["audit", "export"]);
    let outcomes = export
        .lines()
        .filter(|l| {
            l.contains("\"action\":\"SignDigest\"") && l.contains("\"decision\":\"allowed\"")
        })
        .count() as u32;
    assert!(
        outcomes >= answered,
        "{answered} answered, {outcomes} outcome records"
    );
    // A reply-only signature's one record is its outcome, committed with its ledger
    // entry before the answer: no intent records for it, and nothing but outcomes.
    for line in export.lines() {
        let Line::Record(rec) = serde_json::from_str(line).unwrap() else {
            continue;
        };
        if rec.action == "SignDigest" {
            assert_eq!(rec.decision, Decision::Allowed, "{rec:?}");
        }
    }
    let key = tmp.path().join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    verifies_offline(&d, tmp.path(), &export, &key);
}

#[test]
fn a_data_directory_is_never_reopened_empty_with_the_other_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_on_engine(tmp.path(), "redb").unwrap();
    d.ok(&["key", "create", "kept", "--purpose", "blob"]);
    d.stop_cleanly();
    let err = DevDaemon::start_on_engine(tmp.path(), "sled")
        .err()
        .expect("a redb instance started on sled");
    assert!(
        err.contains("holds a redb store") && err.contains("engine = \"redb\""),
        "{err}"
    );
    // Nothing was created beside it, and the keys are where they were.
    assert!(!tmp.path().join("data/store/db").exists());
    let d = DevDaemon::start_on_engine(tmp.path(), "redb").unwrap();
    assert!(d.ok(&["key", "list"]).contains("kept"));
}

#[test]
fn a_sled_instance_moves_to_redb_with_its_keys_signatures_and_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_on_engine(tmp.path(), "sled").unwrap();
    d.ok(&["key", "create", "kept", "--purpose", "blob"]);
    for _ in 0..3 {
        d.ok(&["sign-blob", "--key", "kept", "/etc/hostname"]);
    }
    let signed = |d: &DevDaemon| -> Vec<serde_json::Value> {
        let list = d.ok(&["-o", "json", "signatures", "list", "--key", "kept"]);
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let before = signed(&d);
    assert_eq!(before.len(), 3);
    let key = tmp.path().join("audit.pem");
    std::fs::write(&key, d.ok(&["audit", "public-key"])).unwrap();
    // The daemon still runs: its store is locked and nothing moves.
    let config = tmp.path().join("keywardd.toml");
    let migrate = || {
        std::process::Command::new(keyward_tests::bin("keywardd"))
            .args(["migrate-store", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let o = migrate();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by another keywardd"), "{err}");
    d.stop_cleanly();
    let o = migrate();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("The store is now redb"), "{out}");
    // Started with no engine named, the instance runs on redb and has it all.
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert!(tmp.path().join("data/store/keyward.redb").exists());
    assert!(!tmp.path().join("data/store/db").exists());
    assert_eq!(signed(&d), before);
    d.ok(&["sign-blob", "--key", "kept", "/etc/hostname"]);
    assert_eq!(signed(&d).len(), 4);
    let export = d.ok(&["audit", "export"]);
    assert!(export.contains("\"action\":\"CreateKey\""), "{export}");
    verifies_offline(&d, tmp.path(), &export, &key);
}

/// `keyward audit verify` accepts `export` with the audit public key in `key`.
fn verifies_offline(d: &DevDaemon, dir: &std::path::Path, export: &str, key: &std::path::Path) {
    let file = dir.join("audit.jsonl");
    std::fs::write(&file, export).unwrap();
    d.ok(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
}
