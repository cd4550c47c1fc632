//! Keys in HSMs through the real daemon and CLI, checked with openssl and cryptoki.

use keyward_client::proto;
use keyward_tests::verifiers::openssl_verifies;
use keyward_tests::{DevDaemon, run_ok};
use std::process::Command;

fn write(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

#[test]
fn every_algorithm_signs_and_openssl_verifies_signature_and_certificate() {
    let d = DevDaemon::start();
    let work = tempfile::tempdir().unwrap();
    let blob = write(work.path(), "artifact.tar", b"an artifact to sign\n");
    let other = write(work.path(), "other.tar", b"a different artifact\n");
    for alg in [
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
        "rsa-pss-3072",
        "rsa-pkcs1-3072",
        "rsa-pkcs1-4096",
    ] {
        let name = format!("k-{alg}");
        let created: serde_json::Value = serde_json::from_str(&d.ok(&[
            "-o",
            "json",
            "key",
            "create",
            &name,
            "--purpose",
            "blob",
            "--algorithm",
            alg,
        ]))
        .unwrap();
        assert_eq!(created["algorithm"], alg);
        assert_eq!(created["versions"][0]["state"], "active");

        let public = write(
            work.path(),
            &format!("{alg}.pem"),
            d.ok(&["key", "public", &name]).as_bytes(),
        );
        let cert = write(
            work.path(),
            &format!("{alg}.crt"),
            d.ok(&["key", "public", &name, "--certificate"]).as_bytes(),
        );
        let sig = write(
            work.path(),
            &format!("{alg}.sig"),
            &b64(&d.ok(&["sign-blob", "--key", &name, blob.to_str().unwrap()])),
        );

        assert!(
            openssl_verifies(alg, &public, &sig, &blob),
            "{alg}: openssl rejected our signature"
        );
        assert!(
            !openssl_verifies(alg, &public, &sig, &other),
            "{alg}: signature verified for another file"
        );
        let verdict = run_ok(
            Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(d.dir.join("ca.pem"))
                .arg(&cert),
        );
        assert!(verdict.contains(": OK"), "{alg}: {verdict}");
        let text = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in"])
                .arg(&cert),
        );
        assert!(
            text.contains("Code Signing"),
            "{alg}: certificate lacks code-signing EKU: {text}"
        );
        // The certificate certifies exactly the key that signs.
        let cert_pub = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(&cert),
        );
        assert_eq!(cert_pub, std::fs::read_to_string(&public).unwrap(), "{alg}");
    }
}

#[test]
fn private_keys_are_sensitive_and_never_extractable_on_the_token() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "prod", "--algorithm", "ecdsa-p256"]);
    d.ok(&["key", "create", "ed", "--algorithm", "ed25519"]);
    let keys = d.token_keys();
    let ours: Vec<_> = keys
        .iter()
        .filter(|k| k["label"].as_str().unwrap_or("").starts_with("keyward:"))
        .collect();
    // The CA key, the audit key, the time-stamping key and the two signing keys.
    assert_eq!(ours.len(), 5, "{keys:?}");
    for k in ours {
        assert_eq!(k["sensitive"], true, "{k}");
        assert_eq!(k["extractable"], false, "{k}");
        assert_eq!(k["never_extractable"], true, "{k}");
        assert_eq!(k["always_sensitive"], true, "{k}");
        assert!(
            k.get("value_len").is_none_or(|v| v == 0),
            "private value readable: {k}"
        );
    }
}

#[test]
fn rotation_retires_the_old_version_which_still_verifies_but_never_signs() {
    let d = DevDaemon::start();
    let work = tempfile::tempdir().unwrap();
    let blob = write(work.path(), "a", b"payload");
    d.ok(&["key", "create", "release", "--purpose", "blob"]);
    let v1_pub = write(
        work.path(),
        "v1.pem",
        d.ok(&["key", "public", "release"]).as_bytes(),
    );
    d.ok(&["sign-blob", "--key", "release", blob.to_str().unwrap()]);
    let rotated: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "rotate", "release"])).unwrap();
    let rotated = &rotated["key"];
    assert_eq!(rotated["active_version"], 2);
    assert_eq!(rotated["versions"][0]["state"], "retired");
    assert!(
        rotated["versions"][0]["retired_at"].is_string(),
        "{rotated}"
    );
    assert_eq!(rotated["versions"][1]["state"], "active");

    // The retired version's public key is still served, for verifiers.
    let v1_again = d.ok(&["key", "public", "release", "--version", "1"]);
    assert_eq!(v1_again, std::fs::read_to_string(&v1_pub).unwrap());
    let v2_pub = write(
        work.path(),
        "v2.pem",
        d.ok(&["key", "public", "release"]).as_bytes(),
    );
    assert_ne!(
        std::fs::read(&v1_pub).unwrap(),
        std::fs::read(&v2_pub).unwrap()
    );

    let sig = write(
        work.path(),
        "sig",
        &b64(&d.ok(&["sign-blob", "--key", "release", blob.to_str().unwrap()])),
    );
    assert!(openssl_verifies("ecdsa-p256", &v2_pub, &sig, &blob));
    assert!(
        !openssl_verifies("ecdsa-p256", &v1_pub, &sig, &blob),
        "the retired version signed"
    );
    // What each version signed, from the ledger's index by key and version.
    let listed = |extra: &[&str]| -> Vec<u64> {
        let mut args = vec!["-o", "json", "signatures", "list", "--key", "release"];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&d.ok(&args)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(listed(&[]), [1, 2]);
    assert_eq!(listed(&["--version", "1"]), [1]);
    assert_eq!(listed(&["--version", "2"]), [2]);
    let err = d.fails(&["signatures", "list", "--version", "1"]);
    assert!(err.contains("--key"), "{err}");
    let err = d.fails(&["key", "public", "release", "--version", "7"]);
    assert!(
        err.contains("no version 7") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn keys_survive_a_restart_on_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&[
        "key",
        "create",
        "keep",
        "--purpose",
        "blob",
        "--algorithm",
        "ecdsa-p384",
    ]);
    let before = d.ok(&["key", "public", "keep"]);
    let ca_before = std::fs::read_to_string(tmp.path().join("ca.pem")).unwrap();
    d.stop_cleanly();

    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert_eq!(d.ok(&["key", "public", "keep"]), before);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ca.pem")).unwrap(),
        ca_before,
        "the CA changed"
    );
    let blob = write(tmp.path(), "blob", b"after restart");
    let public = write(tmp.path(), "keep.pem", before.as_bytes());
    let sig = write(
        tmp.path(),
        "sig",
        &b64(&d.ok(&["sign-blob", "--key", "keep", blob.to_str().unwrap()])),
    );
    assert!(openssl_verifies("ecdsa-p384", &public, &sig, &blob));
    assert!(!d.log().contains("missing"), "{}", d.log());
    assert!(!d.log().contains("not in the store"), "{}", d.log());
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let d = DevDaemon::start();
    let err = d.fails(&["key", "show", "nope"]);
    assert!(
        err.contains("key \"nope\" not found") && err.contains("(not found)"),
        "{err}"
    );
    let err = d.fails(&["key", "create", "x", "--algorithm", "ecdsa-p521"]);
    assert!(
        err.contains(
            "ecdsa-p256, ecdsa-p384, ed25519, rsa-pss-3072, rsa-pkcs1-3072, rsa-pkcs1-4096"
        ),
        "{err}"
    );
    let err = d.fails(&["key", "create", "Bad/Name"]);
    assert!(err.contains("invalid key name"), "{err}");
    let err = d.fails(&["key", "create", "x", "--backend", "cloudhsm"]);
    assert!(
        err.contains("unknown backend \"cloudhsm\"") && err.contains("softhsm"),
        "{err}"
    );
    d.ok(&["key", "create", "dup", "--purpose", "blob"]);
    let err = d.fails(&["key", "create", "dup"]);
    assert!(err.contains("already exists"), "{err}");
    let err = d.fails(&["sign-blob", "--key", "ghost", "/etc/hostname"]);
    assert!(err.contains("\"ghost\" not found"), "{err}");

    // Nothing half-made: only the CA, audit and time-stamping keys and "dup" exist.
    let list: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(d.token_keys().len(), 4);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = d.client().await;
        let st = c
            .signing
            .sign_digest(proto::SignDigestRequest {
                key: "dup".into(),
                digest_algorithm: "sha256".into(),
                digest: vec![0; 31],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert!(
            st.message().contains("sha256 digest is 32 bytes, got 31"),
            "{}",
            st.message()
        );
        let st = c
            .signing
            .sign_digest(proto::SignDigestRequest {
                key: "dup".into(),
                digest_algorithm: "md5".into(),
                digest: vec![0; 16],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            st.message().contains("sha256, sha384, sha512"),
            "{}",
            st.message()
        );
        c.keys
            .create_key(proto::CreateKeyRequest {
                name: "ed".into(),
                algorithm: "ed25519".into(),
                purpose: "blob".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let st = c
            .signing
            .sign_digest(proto::SignDigestRequest {
                key: "ed".into(),
                digest_algorithm: "sha256".into(),
                digest: vec![0; 32],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert!(st.message().contains("pure EdDSA"), "{}", st.message());
    });
}

#[test]
fn keys_created_under_full_signing_load_leave_no_half_written_objects() {
    let mut d = DevDaemon::start();
    d.ok(&["key", "create", "hot", "--purpose", "blob"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (signed, created) = rt.block_on(async {
        let client = d.client().await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut signers = Vec::new();
        for _ in 0..16 {
            let mut c = client.clone();
            let stop = stop.clone();
            signers.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.signing
                        .sign_digest(proto::SignDigestRequest {
                            key: "hot".into(),
                            digest_algorithm: "sha256".into(),
                            digest: vec![7; 32],
                            ..Default::default()
                        })
                        .await
                        .expect("signing failed under load");
                    n += 1;
                }
                n
            }));
        }
        let mut c = client.clone();
        let mut created = 0;
        for i in 0..30 {
            c.keys
                .create_key(proto::CreateKeyRequest {
                    name: format!("k{i}"),
                    ..Default::default()
                })
                .await
                .expect("key creation failed under load");
            created += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut signed = 0;
        for s in signers {
            signed += s.await.unwrap();
        }
        (signed, created)
    });
    assert_eq!(created, 30);
    assert!(
        signed > 100,
        "only {signed} signatures ran alongside key creation"
    );
    let keys = d.token_keys();
    assert_eq!(
        keys.len(),
        34,
        "CA + audit + time-stamping + hot + 30 keys expected: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k["id"].as_str().is_some_and(|i| !i.is_empty())),
        "half-written object: {keys:?}"
    );
    // After the load, SIGTERM drains the servers and stops the daemon cleanly.
    d.stop_cleanly();
}

#[test]
fn health_and_metrics_report_requests_and_signatures() {
    let d = DevDaemon::start();
    let (status, body) = d.http_get("/healthz");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("ok"));
    d.ok(&["key", "create", "m", "--purpose", "blob"]);
    d.ok(&["sign-blob", "--key", "m", "/etc/hostname"]);
    d.ok(&["sign-blob", "--key", "m", "/etc/hostname"]);
    let (_, metrics) = d.http_get("/metrics");
    assert!(
        metrics.contains("keyward_signatures_total{key=\"m\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyward_requests_total{method=\"CreateKey\",code=\"Ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "keyward_hsm_operation_seconds_count{backend=\"softhsm\",operation=\"sign\"}"
        ),
        "{metrics}"
    );
}
