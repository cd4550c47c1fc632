//! The revocation list is re-issued at half its validity even when nothing changed, so
//! that a verifier can tell a stale list from a current one; before that, asking again
//! returns the same list.

mod common;

use keyward_client::proto;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_reissued_at_half_its_validity_and_not_before() {
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
    let _ = s.stop.send(());
}
