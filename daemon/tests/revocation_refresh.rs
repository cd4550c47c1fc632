//! The revocation list is re-issued at half its validity even when nothing changed, so
//! that a verifier can tell a stale list from a current one; before that, asking again
//! returns the same list. A verifier refuses a list past its next_update. (One test:
//! SoftHSM reads its configuration once per process.)

mod common;

use keyward_client::proto;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_reissued_at_half_its_validity_and_a_verifier_refuses_one_past_next_update() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lists = None;
    let s = common::serve(tmp.path(), |app| {
        lists = Some(app.revocations());
        app
    })
    .await;
    let lists = lists.unwrap();
    let now = OffsetDateTime::now_utc();
    let first = lists.ensure(now).await.unwrap();
    let seq = first.list.sequence;
    // A caller whose clock reading came a moment earlier (the refresher, under load)
    // gets the same list, not a re-issue dated before it.
    let earlier = lists
        .ensure(now - time::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(earlier.list.sequence, seq);

    // Eleven hours on (validity 24 h): still fresh, the same list.
    let later = lists.ensure(now + time::Duration::hours(11)).await.unwrap();
    assert_eq!(later.list.sequence, seq);
    assert_eq!(later.document, first.document);

    // Thirteen hours on: re-issued with the next sequence and a later next_update.
    let renewed = lists.ensure(now + time::Duration::hours(13)).await.unwrap();
    assert_eq!(renewed.list.sequence, seq + 1);
    assert!(renewed.list.next_update > first.list.next_update);
    assert_eq!(renewed.list.entries, first.list.entries);

    // What the API serves is the renewed list.
    let served = s
        .client
        .get_revocation_list(proto::GetRevocationListRequest {})
        .await
        .unwrap();
    assert_eq!(served.document, renewed.document);

    // A verifier refuses a list past its next_update, and fails closed.
    let ca = std::fs::read_to_string(tmp.path().join("ca.pem")).unwrap();
    let as_shown = |l: &keyward_daemon::revocation::IssuedList| {
        serde_json::json!({
            "list": serde_json::from_str::<serde_json::Value>(&l.document).unwrap(),
            "signature": l.signature,
        })
        .to_string()
    };
    let current = lists.ensure(now).await.unwrap();
    let mut seen = Default::default();
    keyward_client::revocation::check(as_shown(&current).as_bytes(), &ca, &mut seen, now, None)
        .unwrap();

    // A list issued 25 hours ago (validity 24 h) is past its next_update.
    let old = lists.ensure(now - time::Duration::hours(25)).await.unwrap();
    let err = keyward_client::revocation::check(
        as_shown(&old).as_bytes(),
        &ca,
        &mut Default::default(),
        now,
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("expired") && err.contains("failing closed"),
        "{err}"
    );
    let _ = s.stop.send(());
}
