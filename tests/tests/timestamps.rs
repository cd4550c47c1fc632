//! Keyward's RFC 3161 time-stamping authority over HTTP, checked by `openssl ts`:
//! replies verify against the Keyward CA, and a query it cannot stamp is refused with
//! the reason.

use keyward_tests::DevDaemon;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

/// POSTs `body` to `path`; returns the status code and the body.
fn post(addr: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&resp[..at]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, resp[at + 4..].to_vec())
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn openssl_verifies_keywards_time_stamps_against_the_ca_and_a_bad_query_is_named() {
    let d = DevDaemon::start();
    let dir = d.dir.clone();
    std::fs::write(dir.join("artifact.txt"), b"what was signed").unwrap();
    let (status, chain) = d.http_get("/v1/tsa-chain.pem");
    assert!(status.contains("200"), "{status}");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    std::fs::write(dir.join("tsa-chain.pem"), &chain).unwrap();

    for (query, with_cert) in [("with-cert.tsq", true), ("without.tsq", false)] {
        let mut args = vec![
            "ts",
            "-query",
            "-data",
            "artifact.txt",
            "-sha256",
            "-out",
            query,
        ];
        if with_cert {
            args.push("-cert");
        }
        let o = openssl(&dir, &args);
        assert!(o.status.success(), "{}", text(&o));
        let q = std::fs::read(dir.join(query)).unwrap();
        let (code, reply) = post(
            &d.http_addr,
            "/v1/timestamp",
            "application/timestamp-query",
            &q,
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
        let reply_file = format!("{query}.tsr");
        std::fs::write(dir.join(&reply_file), &reply).unwrap();
        // The reply names the TSA's certificate (ESS signing-certificate-v2); openssl
        // checks it, the signature, the imprint and the nonce against the query.
        let o = openssl(
            &dir,
            &[
                "ts",
                "-verify",
                "-in",
                &reply_file,
                "-queryfile",
                query,
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa-chain.pem",
            ],
        );
        assert!(text(&o).contains("Verification: OK"), "{}", text(&o));
        // Another file's digest does not verify against it.
        std::fs::write(dir.join("other.txt"), b"something else").unwrap();
        let o = openssl(
            &dir,
            &[
                "ts",
                "-verify",
                "-in",
                &reply_file,
                "-data",
                "other.txt",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "tsa-chain.pem",
            ],
        );
        assert!(!text(&o).contains("Verification: OK"), "{}", text(&o));
    }
    // The TSA's certificate: timeStamping, critical, from the Keyward CA.
    let o = openssl(&dir, &["x509", "-in", "tsa-chain.pem", "-noout", "-text"]);
    let t = text(&o);
    assert!(
        t.contains("X509v3 Extended Key Usage: critical") && t.contains("Time Stamping"),
        "{t}"
    );

    // A SHA-256 imprint of 20 bytes: refused, saying so.
    let mut imprint = vec![0x30, 0x0d, 0x06, 0x09];
    imprint.extend([
        0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    ]);
    let mut q = vec![0x02, 0x01, 0x01, 0x30, 15 + 22];
    q.extend(&imprint);
    q.extend([0x04, 20]);
    q.extend([7u8; 20]);
    let mut query = vec![0x30, q.len() as u8];
    query.extend(q);
    let (code, body) = post(
        &d.http_addr,
        "/v1/timestamp",
        "application/timestamp-query",
        &query,
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("20 bytes") && body.contains("sha256"),
        "{body}"
    );
    // Not a query at all, and the wrong content type.
    let (code, body) = post(
        &d.http_addr,
        "/v1/timestamp",
        "application/timestamp-query",
        b"hi",
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _) = post(&d.http_addr, "/v1/timestamp", "text/plain", b"hi");
    assert_eq!(code, 415);
}

#[test]
fn an_instance_can_keep_its_tsa_off_http_and_still_publish_its_chain() {
    let d = keyward_tests::served::ServedDaemon::start("\n[tsa]\nhttp_concurrency = 0\n");
    let (code, body) = post(
        &d.http_addr,
        "/v1/timestamp",
        "application/timestamp-query",
        b"\x30\x00",
    );
    assert_eq!(code, 404);
    let why = String::from_utf8_lossy(&body);
    assert!(why.contains("http_concurrency = 0"), "{why}");
    // Its chain is still published for verifiers.
    let (status, chain) = d.http_get("/v1/tsa-chain.pem");
    assert!(
        status.contains("200") && chain.contains("BEGIN CERTIFICATE"),
        "{status}"
    );
}
