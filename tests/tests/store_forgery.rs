//! Someone who can write the store files but not use the HSM: every record that grants
//! power carries a MAC made inside the HSM, so edited, forged, moved or MAC-stripped
//! records are refused, and a store from before record MACs is migrated exactly once.
//! The first check runs on each store engine.

use keyward_tests::revoke::revoke_compromised;
use keyward_tests::{DevDaemon, bin, pyotp, refused, wait_for_fresh_step};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn store_tool(dir: &Path, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new(bin("store-tool"))
        .arg(dir.join("data/store"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "store-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn a_key_record_pointed_at_the_ca_key_is_refused() {
    key_record_pointed_at_the_ca_key("sled");
}

#[test]
fn a_key_record_pointed_at_the_ca_key_is_refused_on_redb() {
    key_record_pointed_at_the_ca_key("redb");
}

fn key_record_pointed_at_the_ca_key(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_on_engine(tmp.path(), engine).unwrap();
    d.ok(&["key", "create", "k", "--purpose", "blob"]);
    d.ok(&["key", "create", "other", "--purpose", "blob"]);
    d.stop_cleanly();
    let ca = json(&store_tool(tmp.path(), &["get", "meta", "ca"], None));
    let mut rec = json(&store_tool(tmp.path(), &["get", "keys", "k"], None));
    rec["versions"][0]["hsm_id"] = ca["hsm_id"].clone();
    store_tool(tmp.path(), &["forge", "keys", "k"], Some(&rec.to_string()));

    let d = DevDaemon::start_on_engine(tmp.path(), engine).unwrap();
    let err = refused(&d.keyward(&["sign-blob", "--key", "k", "/etc/hostname"]));
    assert!(err.contains("failed its integrity check"), "{err}");
    d.ok(&["sign-blob", "--key", "other", "/etc/hostname"]);
    assert!(d.log().contains("key record refused"), "{}", d.log());
    let audit = d.ok(&["audit", "export"]);
    assert!(
        audit.contains("\"action\":\"RefuseRecord\"") && audit.contains("\"target\":\"k\""),
        "{audit}"
    );
}

#[test]
fn one_principals_second_factor_copied_onto_another_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, admin) = DevDaemon::start_with_mfa(tmp.path());
    wait_for_fresh_step();
    let bob = d.dir.join("bob/client.toml");
    d.ok(&[
        "principal",
        "add",
        "bob",
        "--role",
        "admin",
        "--out",
        bob.to_str().unwrap(),
        "--otp",
        &pyotp(&admin, -1),
    ]);
    let o = d.keyward_as(&bob, &["-o", "json", "mfa", "enroll"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let uri = json(&String::from_utf8_lossy(&o.stdout));
    let secret = keyward_tests::otpauth_secret(uri["otpauth_uri"].as_str().unwrap());
    assert!(
        d.keyward_as(&bob, &["mfa", "confirm", &pyotp(&secret, -1)])
            .status
            .success()
    );
    d.stop_cleanly();
    // Bob knows his own code; he copies his sealed factor onto the admin's record.
    store_tool(tmp.path(), &["copy", "mfa", "bob", "admin"], None);
    let d = DevDaemon::start_dev(
        tmp.path(),
        &["--require-mfa"],
        &[("DOCKER_CONFIG", &tmp.path().join("none"))],
    )
    .unwrap();
    let err = refused(&d.keyward(&["key", "create", "x", "--otp", &pyotp(&secret, 0)]));
    assert!(err.contains("failed its integrity check"), "{err}");
}

#[test]
fn an_approval_edited_to_approved_is_never_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    d.ok(&["key", "policy", "set", "files", "--approvals", "1"]);
    let o = d.keyward_as(
        &alice,
        &["-o", "json", "sign-blob", "--key", "files", "/etc/hostname"],
    );
    let id = keyward_tests::pending(&o)["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    d.stop_cleanly();
    let mut rec = json(&store_tool(tmp.path(), &["get", "approvals", &id], None));
    rec["status"] = "approved".into();
    rec["approved_by"] = serde_json::json!(["mallory"]);
    store_tool(
        tmp.path(),
        &["forge", "approvals", &id],
        Some(&rec.to_string()),
    );

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    // Approved requests resume once the API serves; wait until that pass is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log().contains("left unsigned by a restart") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = refused(&d.keyward(&["approvals", "show", &id]));
    assert!(err.contains("failed its integrity check"), "{err}");
    let ledger = json(&d.ok(&["-o", "json", "signatures", "list"]));
    assert!(
        ledger.as_array().unwrap().is_empty(),
        "a forged approval signed: {ledger}"
    );
    assert!(d.log().contains("approval record refused"), "{}", d.log());
}

#[test]
fn a_store_from_before_record_macs_is_migrated_once_and_never_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "k", "--purpose", "blob"]);
    d.add_principal("bob", "signer");
    d.stop_cleanly();
    // Make it look like a store written before record MACs existed.
    for tree in ["keys", "principals", "mfa", "approvals"] {
        store_tool(tmp.path(), &["strip", tree], None);
    }
    store_tool(tmp.path(), &["del", "meta", "mac_key"], None);
    let pin = std::fs::read_to_string(tmp.path().join("pin")).unwrap();
    for label in ["keyward:records", "keyward:records-migrated"] {
        let o = d.pkcs11_tool(&[
            "--login",
            "--pin",
            pin.trim(),
            "--delete-object",
            "--type",
            "secrkey",
            "--label",
            label,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["sign-blob", "--key", "k", "/etc/hostname"]);
    let shown = json(&d.ok(&["-o", "json", "principal", "show", "bob"]));
    assert_eq!(shown["roles"][0], "signer");
    let audit = d.ok(&["audit", "export"]);
    assert!(
        audit.contains("\"action\":\"MigrateRecords\""),
        "the migration was not audited"
    );
    d.stop_cleanly();

    // Once migrated, a record stripped of its MAC is refused, not migrated again...
    store_tool(tmp.path(), &["strip", "keys"], None);
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    let err = refused(&d.keyward(&["sign-blob", "--key", "k", "/etc/hostname"]));
    assert!(err.contains("failed its integrity check"), "{err}");
    d.stop_cleanly();
    // ...and a store that forgot its MAC key does not start: the HSM remembers.
    store_tool(tmp.path(), &["del", "meta", "mac_key"], None);
    let err = DevDaemon::start_in(tmp.path())
        .err()
        .expect("started without its MAC key record");
    assert!(err.contains("the store has no record of it"), "{err}");
}

#[test]
fn a_campaign_item_edited_to_name_another_image_is_refused_and_that_image_never_signed() {
    use keyward_tests::campaign::{sign_all, wait_job};
    use keyward_tests::registry::TestRegistry;
    let mut reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "release"]);
    let images = reg.push_many("forge/app", 3);
    let victim = reg.push_many("victim/app", 1).remove(0);
    sign_all(&d, "release", &images);
    // With the registry away the campaign lists its items but cannot run them.
    reg.stop();
    let id = json(&d.ok(&["-o", "json", "key", "rotate", "release"]))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_job(&d, &id, |j| j["listed"] == true);
    d.stop_cleanly();

    // Someone with write access to the store points one item at an unsigned image,
    // keeping the record's MAC.
    let keys = store_tool(tmp.path(), &["keys", "job_items", &format!("{id}/")], None);
    let item_key = keys.lines().next().expect("an item").to_string();
    let mut item = json(&store_tool(
        tmp.path(),
        &["get", "job_items", &item_key],
        None,
    ));
    item["reference"] = victim.0.clone().into();
    item["digest"] = victim.1.clone().into();
    item["registry"] = reg.addr.clone().into();
    store_tool(
        tmp.path(),
        &["forge", "job_items", &item_key],
        Some(&item.to_string()),
    );

    reg.restart(false);
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !d.log().contains("job item refused") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The forged item is never run: the victim image has no signature, and the two
    // untouched items are re-signed.
    let done = wait_job(&d, &id, |_| false);
    assert_eq!(done["done"], 2, "{done}");
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("integrity check"),
        "{done}"
    );
    let err = d.fails(&["verify", "--key", "release", &victim.0]);
    assert!(err.contains("no valid signature"), "{err}");
    let ledger = json(&d.ok(&["-o", "json", "signatures", "list", "--key", "release"]));
    assert!(
        ledger
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["repository"] != "victim/app"),
        "the forged item was signed: {ledger}"
    );
}

#[test]
fn a_revoked_version_hidden_by_editing_its_record_stops_new_lists_instead_of_dropping_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "k", "--purpose", "blob"]);
    d.ok(&["key", "rotate", "k"]);
    let out = revoke_compromised(&d, None, ("k", 1), "2026-01-01T00:00:00Z", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(before["list"]["entries"][0]["key"], "k", "{before}");
    d.stop_cleanly();
    // Someone with the store files makes v1 look never revoked.
    let mut rec = json(&store_tool(tmp.path(), &["get", "keys", "k"], None));
    rec["versions"][0]["state"] = "retired".into();
    rec["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("revocation");
    store_tool(tmp.path(), &["forge", "keys", "k"], Some(&rec.to_string()));

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    // No list is issued without it: the last signed one is still served, /healthz
    // says which record, and the audit log has it.
    let (status, body) = d.http_get("/healthz");
    assert!(status.contains("503"), "{status} {body}");
    let health = json(&body);
    let why = health["subsystems"]["revocation"].as_str().unwrap();
    assert!(
        why.contains("fail closed") && why.contains("key record \"k\""),
        "{health}"
    );
    assert_eq!(health["subsystems"]["audit"], "ok", "{health}");
    let after = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(
        after, before,
        "a list without the revoked version was issued"
    );
    let (_, served) = d.http_get("/v1/revocations.json");
    assert!(served.contains("\"key\":\"k\""), "{served}");
    let audit = d.ok(&["audit", "export"]);
    assert!(audit.contains("IssueRevocationList"), "{audit}");
    assert!(d.log().contains("fail closed"), "{}", d.log());
}

#[test]
fn a_ledger_row_planted_in_the_store_is_never_turned_into_a_signature() {
    use keyward_tests::campaign::{sign_all, wait_job};
    use keyward_tests::registry::TestRegistry;
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "k"]);
    let images = reg.push_many("team/app", 2);
    sign_all(&d, "k", &images[..1]);
    d.stop_cleanly();
    // Someone with the store files copies the row of A's signature as one of B's: a
    // later row, with the index entry a listing would find it by.
    let rows = store_tool(tmp.path(), &["keys", "ledger", ""], None);
    let row = rows.lines().next().unwrap().to_string();
    let mut e = json(&store_tool(tmp.path(), &["get", "ledger", &row], None));
    e.as_object_mut().unwrap().remove("mac");
    e["digest"] = images[1].1.clone().into();
    e["reference"] = images[1].0.clone().into();
    // The same second (so the key's index finds it), another counter than any row's.
    let planted = format!("{}-ffffffffffff", &row[..24]);
    assert_ne!(planted, row);
    store_tool(
        tmp.path(),
        &["put", "ledger", &planted],
        Some(&e.to_string()),
    );
    let index = store_tool(tmp.path(), &["keys", "ledger_by_key", ""], None);
    assert!(!index.is_empty());

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let listed = json(&d.ok(&["-o", "json", "signatures", "list", "--key", "k"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "k"]));
    let job = wait_job(&d, rotated["job_id"].as_str().unwrap(), |_| false);
    assert_eq!(
        (job["total"].as_u64(), job["done"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    let b_sig = format!(
        "/v2/team/app/manifests/sha256-{}.sig",
        images[1].1.trim_start_matches("sha256:")
    );
    assert_eq!(reg.curl_status(&b_sig), 404, "the planted row was signed");
    assert_eq!(reg.sig_layers("team/app", &images[0].1).len(), 2);
    assert!(d.log().contains("ledger row was refused"), "{}", d.log());
}
