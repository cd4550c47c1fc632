//! A version's certificate ends at its planned retirement plus the overlap; what it
//! signed while valid keeps verifying after it expires, through the signature's
//! time-stamp, and not without it. The whole daemon runs 30 days in the past (its
//! clock), so the certificate has expired by the real time cosign checks against.

mod common;

use keyward_client::offline::by_identity;
use keyward_client::proto;
use keyward_tests::registry::TestRegistry;
use keyward_tests::verifiers::{cosign_by_ca, output_text};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const STAMP: &str = "dev.sigstore.cosign/rfc3161timestamp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_version_certificate_verifies_through_its_time_stamp_and_not_without() {
    keyward_daemon::clock::set_offset(Duration::days(-30));
    let tmp = tempfile::tempdir().unwrap();
    let mut lists = None;
    let s = common::serve(tmp.path(), |app| {
        lists = Some(app.revocations());
        app
    })
    .await;
    let c = &s.client;
    let registry = TestRegistry::start();
    let digest = registry.push_image("app/expired:1", "expired");
    let image = format!("{}/app/expired@{digest}", registry.addr);

    c.create_key(proto::CreateKeyRequest {
        name: "release".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Without a schedule a version's certificate lasts the default year.
    let v1 = c
        .get_key(proto::GetKeyRequest {
            name: "release".into(),
        })
        .await
        .unwrap();
    let v1_end = OffsetDateTime::parse(&v1.versions[0].certificate_not_after, &Rfc3339).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(v1_end > now + Duration::days(300), "{v1_end}");
    // Rotating daily with an hour's overlap: v2's certificate ends 25 hours after its
    // activation, 30 days ago.
    c.set_key_policy(proto::SetKeyPolicyRequest {
        name: "release".into(),
        rotate_every_seconds: Some(86_400),
        overlap_seconds: Some(3_600),
        resign_on_rotate: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    let rotated = c
        .rotate_key(proto::RotateKeyRequest {
            name: "release".into(),
        })
        .await
        .unwrap();
    let key = rotated.key.unwrap();
    let v2 = key.versions.iter().find(|v| v.version == 2).unwrap();
    let activated = OffsetDateTime::parse(&v2.activated_at, &Rfc3339).unwrap();
    let v2_end = OffsetDateTime::parse(&v2.certificate_not_after, &Rfc3339).unwrap();
    // (Certified as it was generated, a moment before it became active.)
    let off = (v2_end - activated - Duration::hours(25)).abs();
    assert!(
        off < Duration::seconds(10),
        "{v2_end} is not 25 h after {activated}"
    );
    assert!(v2_end < now - Duration::days(28), "{v2_end} has not passed");

    let signed = c
        .sign_image(proto::SignImageRequest {
            key: "release".into(),
            reference: image.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(signed.signed[0].version, 2);

    let dir = tmp.path();
    let ca = dir.join("ca.pem");
    let chain = dir.join("tsa-chain.pem");
    let http = format!("{}", s.running.http_addr);
    let (status, body) = keyward_tests::http_get(&http, "/v1/tsa-chain.pem");
    assert!(status.contains("200"), "{status}");
    std::fs::write(&chain, body).unwrap();
    let (identity, issuer) = (&key.certificate_identity, &key.certificate_oidc_issuer);

    // The certificate has expired; the time-stamp says the signature was made while
    // it was valid.
    let o = cosign_by_ca(&ca, Some(&chain), identity, issuer, &image);
    assert!(o.status.success(), "{}", output_text(&o));
    // Without the TSA's chain cosign ignores the time-stamp and sees only the expiry.
    let o = cosign_by_ca(&ca, None, identity, issuer, &image);
    assert!(
        !o.status.success(),
        "an expired certificate verified without a time-stamp"
    );
    assert!(output_text(&o).contains("expired"), "{}", output_text(&o));

    // Keyward's own offline verifier by CA and identity agrees (with a revocation list
    // issued at the real time, so that it is current).
    let issued = lists
        .unwrap()
        .ensure(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let list = dir.join("list.json");
    let shown = serde_json::json!({
        "list": serde_json::from_str::<serde_json::Value>(&issued.document).unwrap(),
        "signature": issued.signature,
    });
    std::fs::write(&list, shown.to_string()).unwrap();
    let (ca_pem, chain_pem) = (
        std::fs::read_to_string(&ca).unwrap(),
        std::fs::read_to_string(&chain).unwrap(),
    );
    let offline = |tsa: bool| {
        let who = by_identity::TrustedIdentity {
            ca_pem: &ca_pem,
            identity,
            issuer: Some(issuer),
            tsa_chain_pem: tsa.then_some(chain_pem.as_str()),
        };
        let (image, list) = (image.clone(), list.to_str().unwrap().to_string());
        async move {
            let mut seen = Default::default();
            by_identity::verify(&image, &who, &list, &mut seen, None)
                .await
                .unwrap()
        }
    };
    let r = offline(true).await;
    assert_eq!(r.valid, [2], "{:?}", r.rejected);
    let r = offline(false).await;
    assert!(r.valid.is_empty());
    assert!(
        r.rejected[0].contains("was not valid at"),
        "{:?}",
        r.rejected
    );

    // The same signature with its time-stamp removed (a registry object rewritten):
    // refused, even with the chain.
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&registry.manifest("app/expired", &tag)).unwrap();
    let annotations = manifest["layers"][0]["annotations"]
        .as_object_mut()
        .unwrap();
    assert!(
        annotations.remove(STAMP).is_some(),
        "no time-stamp to remove"
    );
    let url = format!("http://{}/v2/app/expired/manifests/{tag}", registry.addr);
    let body = serde_json::to_vec(&manifest).unwrap();
    let put = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .arg("--data-binary")
        .arg("@-")
        .arg(&url)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            use std::io::Write;
            p.stdin.take().unwrap().write_all(&body)?;
            p.wait()
        })
        .unwrap();
    assert!(put.success(), "could not rewrite the signature manifest");
    let o = cosign_by_ca(&ca, Some(&chain), identity, issuer, &image);
    assert!(
        !o.status.success(),
        "an expired certificate verified without its time-stamp"
    );
    assert!(
        output_text(&o).contains("expected a signed timestamp to verify an expired certificate"),
        "{}",
        output_text(&o)
    );
    let r = offline(true).await;
    assert!(r.valid.is_empty());
    assert!(r.rejected[0].contains("no time-stamp"), "{:?}", r.rejected);

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
}
