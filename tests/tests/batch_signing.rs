//! `keyward sign-blob FILE...` and `SignDigests`: many files signed in one request,
//! each signature one openssl accepts, each in the ledger and in the audit log under
//! its own record; and the batch door tried as an attacker would: every check of
//! SignDigest (signer list, purpose, second factor, approvals) holds, and a batch with
//! one bad item signs nothing.

use keyward_client::proto;
use keyward_tests::verifiers::openssl_verifies;
use keyward_tests::{DevDaemon, json_ok as json, refused};
use std::path::PathBuf;

fn files(dir: &std::path::Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("artifact-{i}.tar"));
            std::fs::write(&p, format!("artifact number {i}\n")).unwrap();
            p
        })
        .collect()
}

fn ledger(d: &DevDaemon) -> Vec<serde_json::Value> {
    json(&d.keyward(&["-o", "json", "signatures", "list", "--key", "files"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn several_files_sign_in_one_request_each_verified_recorded_and_audited() {
    let d = DevDaemon::start();
    let work = tempfile::tempdir().unwrap();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let public = d.public_key_file("files");
    let paths = files(work.path(), 5);
    let mut args = vec!["-o", "json", "sign-blob", "--key", "files"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = json(&d.keyward(&args));
    assert_eq!(out["pending"], false, "{out}");
    let signed = out["signatures"].as_array().unwrap();
    assert_eq!(signed.len(), 5, "{out}");
    for (p, s) in paths.iter().zip(signed) {
        assert_eq!(s["file"], p.to_str().unwrap(), "{s}");
        assert_eq!(s["version"], 1);
        use base64::Engine;
        let sig = work.path().join("sig");
        let der = base64::engine::general_purpose::STANDARD
            .decode(s["signature"].as_str().unwrap())
            .unwrap();
        std::fs::write(&sig, der).unwrap();
        assert!(
            openssl_verifies("ecdsa-p256", &public, &sig, p),
            "openssl rejected the signature of {}",
            p.display()
        );
    }
    // Text output: one line per file, the signature then the file.
    let text = d.ok(&[&["sign-blob", "--key", "files"][..], &args[5..]].concat());
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines().next().unwrap().ends_with("artifact-0.tar"),
        "{text}"
    );

    // Ten signatures in the ledger, each naming its file and digest.
    let entries = ledger(&d);
    assert_eq!(entries.len(), 10, "{entries:?}");
    use sha2::Digest;
    for p in &paths {
        let digest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
        );
        let name = p.file_name().unwrap().to_str().unwrap();
        let found = entries
            .iter()
            .filter(|e| e.to_string().contains(&digest) && e.to_string().contains(name))
            .count();
        assert_eq!(found, 2, "{digest} {name}: {entries:?}");
        // And one audit record per signature, naming what was signed.
        let audit = d.ok(&["audit", "export"]);
        let records = audit
            .lines()
            .filter(|l| l.contains("SignDigests") && l.contains(&digest))
            .count();
        assert_eq!(records, 2, "{digest}");
    }
}

#[test]
fn the_batch_door_keeps_every_check_and_a_bad_item_signs_nothing() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "create", "images"]);
    let mallory = d.add_principal("mallory", "signer");
    d.ok(&["key", "policy", "set", "files", "--signers", "admin"]);
    let work = tempfile::tempdir().unwrap();
    let paths = files(work.path(), 2);
    let names: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let sign = |key: &'static str| [&["sign-blob", "--key", key][..], &names].concat();

    // Not on the key's signer list: nothing signed.
    let why = refused(&d.keyward_as(&mallory, &sign("files")));
    assert!(
        why.contains("is not among the signers of key \"files\""),
        "{why}"
    );
    // An image key does not sign files, in batches either.
    let why = refused(&d.keyward(&sign("images")));
    assert!(why.contains("purpose"), "{why}");
    assert!(ledger(&d).is_empty());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(d.client());
    let item = |digest: Vec<u8>| proto::SignItem {
        digest_algorithm: "sha256".into(),
        digest,
        file_name: "f".into(),
        ..Default::default()
    };
    let batch = |items: Vec<proto::SignItem>| {
        rt.block_on(c.sign_digests(proto::SignDigestsRequest {
            key: "files".into(),
            items,
        }))
    };
    // One malformed item among good ones: the batch is refused, naming it.
    let e = batch(vec![
        item(vec![1; 32]),
        item(vec![2; 31]),
        item(vec![3; 32]),
    ])
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("item 1: a sha256 digest is 32 bytes, got 31; nothing was signed"),
        "{e}"
    );
    let e = batch(vec![
        item(vec![1; 32]),
        proto::SignItem {
            message: b"both".to_vec(),
            ..item(vec![4; 32])
        },
    ])
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("item 1: send either a digest or a message"),
        "{e}"
    );
    let e = batch(Vec::new()).unwrap_err();
    assert!(e.to_string().contains("no items"), "{e}");
    let e = batch((0..1001).map(|i| item(vec![i as u8; 32])).collect()).unwrap_err();
    assert!(e.to_string().contains("at most 1000"), "{e}");
    assert!(ledger(&d).is_empty(), "a refused batch signed something");
    let ok = batch(vec![item(vec![1; 32]), item(vec![2; 32])]).unwrap();
    assert_eq!(ok.signatures.len(), 2);
    assert_eq!(ledger(&d).len(), 2);

    // A key that needs approvals signs one request at a time, through SignDigest.
    d.ok(&[
        "key",
        "policy",
        "set",
        "files",
        "--approvals",
        "1",
        "--approvers",
        "admin",
    ]);
    let e = batch(vec![item(vec![5; 32])]).unwrap_err();
    assert!(
        e.to_string()
            .contains("needs 1 approvals per signature, so it does not sign batches"),
        "{e}"
    );
    // Dropping the approvals weakens the policy: it waits for a second key-admin.
    d.held(&["key", "policy", "set", "files", "--approvals", "0"]);

    // A key that needs a second factor: a batch without a code is refused at the gate.
    // (The admin of `keywardd dev` has one.)
    d.ok(&["key", "policy", "set", "files", "--require-mfa", "true"]);
    let why = refused(&d.keyward(&sign("files")));
    assert!(why.contains("MFA required"), "{why}");
    assert_eq!(ledger(&d).len(), 2);
}
