//! What the CLI says of blob keys and blob signatures: how to verify a file (not an
//! image), and which file a ledger row signed.

use keyward_tests::DevDaemon;
use keyward_tests::verifiers::openssl_verifies;

#[test]
fn a_blob_key_shows_how_to_verify_a_file_and_its_rows_name_the_file() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "files", "--purpose", "blob"]);
    let shown = d.ok(&["key", "show", "files"]);
    assert!(
        shown.contains("openssl dgst -sha256 -verify files.pem"),
        "{shown}"
    );
    assert!(!shown.contains("cosign verify"), "{shown}");
    let out = d.dir.join("trust");
    let t: serde_json::Value = serde_json::from_str(&d.ok(&[
        "-o",
        "json",
        "trust",
        "export",
        out.to_str().unwrap(),
        "--key",
        "files",
    ]))
    .unwrap();
    let command = t["cosign_command"].as_str().unwrap();
    assert!(
        command.starts_with("keyward key public files > files.pem && openssl"),
        "{t}"
    );

    // The command it prints is the one that verifies.
    let file = d.dir.join("release.tar");
    std::fs::write(&file, vec![7u8; 1234]).unwrap();
    let b64 = d.ok(&["sign-blob", "--key", "files", file.to_str().unwrap()]);
    use base64::Engine;
    let sig = d.dir.join("SIG");
    std::fs::write(
        &sig,
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap();
    let pem = d.dir.join("files.pem");
    std::fs::write(&pem, d.ok(&["key", "public", "files"])).unwrap();
    assert!(openssl_verifies("ecdsa-p256", &pem, &sig, &file));

    let rows = d.ok(&["signatures", "list"]);
    assert!(rows.contains("release.tar (1234 bytes, sha256:"), "{rows}");
    assert!(!rows.contains("/@sha256"), "{rows}");
}
