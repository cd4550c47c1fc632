//! An active version's certificate is renewed before it ends (same public key, a
//! new certificate), by the scheduler, audited; a key rotating on schedule keeps its
//! certificate to the planned retirement plus the overlap; a revoked version's every
//! certificate, the renewed-away one too, is on the CRL.

mod common;

use common::TestClock;
use keyward_client::proto;
use std::process::{Command, Stdio};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn openssl(args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `serial=HEX` of a PEM certificate.
fn serial(pem: &str) -> String {
    openssl(&["x509", "-noout", "-serial"], pem.as_bytes())
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_certificate_is_renewed_before_it_ends_and_every_one_of_a_revoked_version_is_on_the_crl()
 {
    let tmp = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc();
    let clock = TestClock::at(start);
    let (s, scheduler) = common::serve_with_clock(tmp.path(), clock.clone()).await;
    let c = &s.client;
    for name in ["plain", "scheduled"] {
        c.create_key(proto::CreateKeyRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    c.set_key_policy(proto::SetKeyPolicyRequest {
        name: "scheduled".into(),
        rotate_every_seconds: Some(90 * 86_400),
        overlap_seconds: Some(7 * 86_400),
        resign_on_rotate: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    let certificate = |name: &'static str| async move {
        c.get_public_key(proto::GetPublicKeyRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
    };
    let end = |name: &'static str| async move {
        let k = c
            .get_key(proto::GetKeyRequest { name: name.into() })
            .await
            .unwrap();
        let v = k
            .versions
            .iter()
            .find(|v| v.version == k.active_version)
            .unwrap();
        OffsetDateTime::parse(&v.certificate_not_after, &Rfc3339).unwrap()
    };
    let first = certificate("plain").await;
    assert!(
        scheduler.renew().await.is_empty(),
        "renewed a fresh certificate"
    );

    // 300 days on, the default year has 65 days left: renewed for another year, same key.
    *clock.0.lock().unwrap() = start + Duration::days(300);
    assert_eq!(
        scheduler.tick().await,
        ["scheduled"],
        "the scheduled key rotates at 90 days"
    );
    assert_eq!(
        scheduler.renew().await,
        Vec::<String>::new(),
        "renewed twice"
    );
    let renewed = certificate("plain").await;
    assert_ne!(renewed.certificate_pem, first.certificate_pem);
    assert_eq!(renewed.public_key_pem, first.public_key_pem);
    assert_eq!(renewed.fingerprint, first.fingerprint);
    let plain_end = end("plain").await;
    assert!(
        (plain_end - (start + Duration::days(665))).abs() < Duration::minutes(1),
        "{plain_end}"
    );
    // The scheduled key's new version lasts to its planned retirement plus the overlap.
    let scheduled_end = end("scheduled").await;
    let want = start + Duration::days(300 + 90 + 7);
    assert!(
        (scheduled_end - want).abs() < Duration::minutes(1),
        "{scheduled_end}, want {want}"
    );
    let audit = c
        .export_audit(proto::ExportAuditRequest::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(text.contains("RenewCertificate"), "{text}");
    assert!(text.contains("plain/v1"), "{text}");

    // Revoked: both of v1's certificates are on the CRL.
    c.revoke_key_version(proto::RevokeKeyVersionRequest {
        name: "plain".into(),
        version: 1,
        reason: proto::RevocationReason::Superseded as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}/v1/crl.der", s.running.http_addr);
    let crl = Command::new("curl").args(["-sf", &url]).output().unwrap();
    assert!(crl.status.success(), "GET {url}");
    let listed = openssl(&["crl", "-inform", "DER", "-noout", "-text"], &crl.stdout);
    for pem in [&first.certificate_pem, &renewed.certificate_pem] {
        let serial = serial(pem);
        assert!(
            listed.contains(&serial),
            "{serial} is not on the CRL:\n{listed}"
        );
    }

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
}
