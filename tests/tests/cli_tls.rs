//! TLS failures, tried as they happen: each says what is wrong and what to do,
//! instead of "transport error".

use keyward_tests::DevDaemon;
use std::process::Output;

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A client.toml in `dir` for `endpoint` with these files.
fn client_toml(
    dir: &std::path::Path,
    endpoint: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> std::path::PathBuf {
    let cfg = keyward_client::ClientConfig {
        endpoint: endpoint.to_string(),
        server_name: Some("localhost".into()),
        ca_cert: ca.to_path_buf(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let path = dir.join(format!(
        "client-{}.toml",
        std::fs::read_dir(dir).unwrap().count()
    ));
    std::fs::write(&path, cfg.to_toml("test")).unwrap();
    path
}

#[test]
fn tls_failures_say_what_is_wrong_and_what_to_do() {
    let d = DevDaemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let (ca, admin_cert, admin_key) = (
        d.dir.join("ca.pem"),
        d.dir.join("admin.crt"),
        d.dir.join("admin.key"),
    );
    let sam = d.add_principal("sam", "signer");
    let sam_key = sam.parent().unwrap().join("sam.key");
    assert!(sam_key.exists(), "{}", sam_key.display());
    // Certificates of no Keyward CA: one expired, one current.
    let write_self_signed = |name: &str, not_after: time::OffsetDateTime| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["mallory".to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
        params.not_after = not_after;
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            tmp.path().join(format!("{name}.crt")),
            tmp.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let now = time::OffsetDateTime::now_utc();
    let (old_cert, old_key) = write_self_signed("expired", now - time::Duration::days(1));
    let (other_cert, other_key) = write_self_signed("other", now + time::Duration::days(30));

    for (endpoint, cert, key, status, says) in [
        (
            d.endpoint.replace("https://", "http://"),
            &admin_cert,
            &admin_key,
            2,
            "plain HTTP; keywardd speaks only mutual TLS: use https://",
        ),
        (d.endpoint.clone(), &old_cert, &old_key, 4, "expired at"),
        (
            d.endpoint.clone(),
            &other_cert,
            &other_key,
            4,
            "not issued by the Keyward CA",
        ),
        (
            d.endpoint.clone(),
            &admin_cert,
            &sam_key,
            4,
            "does not belong to the certificate",
        ),
    ] {
        let cfg = client_toml(tmp.path(), &endpoint, cert, key, &ca);
        let o = d.keyward_as(&cfg, &["whoami"]);
        assert_eq!(code(&o), Some(status), "{says}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{says}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("transport error (Unknown)"),
            "{}",
            stderr(&o)
        );
    }
    // A removed principal's certificate is refused at the handshake: the message
    // says so rather than "transport error".
    d.ok(&["principal", "remove", "sam"]);
    let o = d.keyward_as(&sam, &["whoami"]);
    assert_eq!(code(&o), Some(4), "{}", stderr(&o));
}
