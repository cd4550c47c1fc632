//! The signed revocation list: what it names, who signed it, how its sequence moves,
//! and where verifiers fetch it.

use keyward_tests::DevDaemon;
use std::path::Path;
use std::process::Command;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// Whether `signature` (base64 DER) by the CA in `ca_pem` verifies `document`.
fn ca_signed(work: &Path, ca_pem: &Path, document: &str, signature: &str) -> bool {
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    std::fs::write(work.join("sig.der"), sig).unwrap();
    std::fs::write(work.join("doc.json"), document).unwrap();
    let ca = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(ca_pem)
        .output()
        .unwrap();
    std::fs::write(work.join("ca.pub"), ca.stdout).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(work.join("ca.pub"))
        .arg("-signature")
        .arg(work.join("sig.der"))
        .arg(work.join("doc.json"))
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_list_names_each_revoked_version_is_signed_by_the_ca_and_only_grows_its_sequence() {
    let work = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    let empty = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let first = empty["list"]["sequence"].as_u64().unwrap();
    assert!(first >= 1, "{empty}");
    assert_eq!(empty["list"]["entries"], serde_json::json!([]), "{empty}");

    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    d.ok(&["key", "rotate", "files"]);
    let key = json(&d.ok(&["-o", "json", "key", "show", "files"]));
    d.ok(&[
        "key",
        "revoke",
        "files",
        "--version",
        "1",
        "--reason",
        "key-compromise",
        "--compromised-since",
        "2026-03-01T00:00:00Z",
    ]);
    // The list is issued before the revocation returns.
    let shown = json(&d.ok(&["-o", "json", "revocations", "show"]));
    let list = &shown["list"];
    assert!(list["sequence"].as_u64().unwrap() > first, "{shown}");
    let entry = &list["entries"][0];
    assert_eq!(entry["key"], "files", "{shown}");
    assert_eq!(entry["version"], 1, "{shown}");
    assert_eq!(entry["fingerprint"], key["versions"][0]["fingerprint"]);
    assert_eq!(entry["reason"], "key-compromise");
    assert_eq!(entry["compromised_since"], "2026-03-01T00:00:00Z");
    assert_eq!(list["entries"].as_array().unwrap().len(), 1, "{shown}");
    let issued = time::OffsetDateTime::parse(
        list["issued_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let next = time::OffsetDateTime::parse(
        list["next_update"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(next - issued, time::Duration::hours(24), "{shown}");

    // The CA signed the canonical JSON; a changed list does not verify.
    let ca = d.dir.join("ca.pem");
    let document = serde_json::to_string(list).unwrap();
    let signature = shown["signature"].as_str().unwrap();
    assert!(ca_signed(work.path(), &ca, &document, signature));
    let mut forged = list.clone();
    forged["entries"] = serde_json::json!([]);
    let forged = serde_json::to_string(&forged).unwrap();
    assert!(!ca_signed(work.path(), &ca, &forged, signature));

    // Verifiers fetch the same bytes over plain HTTP.
    let (head, body) = d.http_get("/v1/revocations.json");
    assert!(head.contains("200"), "{head}");
    assert_eq!(body, document);
    let (_, sig) = d.http_get("/v1/revocations.json.sig");
    assert_eq!(sig, signature);

    // Moving the compromise earlier issues a new list; a restart keeps it.
    d.ok(&[
        "key",
        "revoke",
        "files",
        "--version",
        "1",
        "--reason",
        "key-compromise",
        "--compromised-since",
        "2026-02-01T00:00:00Z",
    ]);
    let moved = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(
        moved["list"]["sequence"].as_u64(),
        Some(list["sequence"].as_u64().unwrap() + 1),
        "{moved}"
    );
    assert_eq!(
        moved["list"]["entries"][0]["compromised_since"],
        "2026-02-01T00:00:00Z"
    );
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let after = json(&d.ok(&["-o", "json", "revocations", "show"]));
    assert_eq!(
        after, moved,
        "a restart changed a list that was still fresh"
    );
}

/// `openssl ARGS`; its status, standard output and standard error.
fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl").args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_crl_makes_openssl_reject_a_revoked_versions_certificate_and_accept_the_others() {
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).to_str().unwrap().to_string();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "img"]);
    d.ok(&["key", "rotate", "img"]);
    d.ok(&[
        "key",
        "revoke",
        "img",
        "--version",
        "1",
        "--reason",
        "key-compromise",
        "--compromised-since",
        "2026-03-01T00:00:00Z",
    ]);
    let history = json(&d.ok(&["-o", "json", "key", "history", "img"]));
    for (i, v) in ["v1", "v2"].iter().enumerate() {
        let cert = history["versions"][i]["certificate"].as_str().unwrap();
        std::fs::write(p(&format!("{v}.pem")), cert).unwrap();
    }
    let sequence = json(&d.ok(&["-o", "json", "revocations", "show"]))["list"]["sequence"]
        .as_u64()
        .unwrap();
    let fetched = Command::new("curl")
        .args(["-sSf", "-o", &p("crl.der")])
        .arg(format!("http://{}/v1/crl.der", d.http_addr))
        .status()
        .unwrap();
    assert!(fetched.success());
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("crl.der"),
        "-out",
        &p("crl.pem"),
    ]);
    assert!(ok, "{out}");
    let ca = d.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    // Signed by the CA, numbered like the list, with the reason and the compromise.
    let (ok, out) = openssl(&["crl", "-in", &p("crl.pem"), "-CAfile", ca, "-noout"]);
    assert!(ok && out.contains("verify OK"), "{out}");
    let (_, text) = openssl(&["crl", "-in", &p("crl.pem"), "-noout", "-text"]);
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Invalidity Date"), "{text}");
    let number = text
        .split("X509v3 CRL Number:")
        .nth(1)
        .and_then(|t| t.split_whitespace().next());
    assert_eq!(number, Some(sequence.to_string().as_str()), "{text}");
    let verify = |cert: &str| {
        openssl(&[
            "verify",
            "-crl_check",
            "-CRLfile",
            &p("crl.pem"),
            "-CAfile",
            ca,
            &p(cert),
        ])
    };
    let (ok, out) = verify("v1.pem");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify("v2.pem");
    assert!(ok, "{out}");

    // Every version's certificate names the daemon's CRL; openssl fetches it from
    // there by itself.
    let url = format!("http://{}/v1/crl.der", d.http_addr);
    let (_, text) = openssl(&["x509", "-in", &p("v1.pem"), "-noout", "-text"]);
    assert!(text.contains(&format!("URI:{url}")), "{text}");
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        ca,
        &p("v1.pem"),
    ]);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
}
