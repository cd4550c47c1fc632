//! Finished approvals older than `[approvals] keep` (30 days by default) leave the
//! current list for the archive at the scheduler's tick, one transaction each, and
//! `approvals list --archived` still lists them; pending ones stay.

mod common;

use common::TestClock;
use keyward_client::proto;
use sha2::Digest;
use time::{Duration, OffsetDateTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_approvals_move_to_the_archive_after_keep_and_pending_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(OffsetDateTime::now_utc());
    let (s, scheduler) = common::serve_with_clock(tmp.path(), clock.clone()).await;
    let c = &s.client;
    c.create_key(proto::CreateKeyRequest {
        name: "files".into(),
        purpose: "blob".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.set_key_policy(proto::SetKeyPolicyRequest {
        name: "files".into(),
        set_approvals: true,
        approvals: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let ask = || async {
        c.sign_digest(proto::SignDigestRequest {
            key: "files".into(),
            digest_algorithm: "sha256".into(),
            digest: sha2::Sha256::digest(b"release").to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .approval_id
    };
    let old = ask().await;
    let list = |archived: bool| async move {
        c.list_approvals_all(proto::ListApprovalsRequest {
            archived,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.status))
        .collect::<Vec<_>>()
    };
    // Two hours on, the first request has expired (finished); a new one waits.
    keyward_daemon::clock::set_offset(Duration::hours(2));
    let waiting = ask().await;
    assert_eq!(list(false).await.len(), 2);

    // Before keep is over nothing moves; after it, the finished one does.
    clock.advance_days(29);
    scheduler.tick().await;
    assert_eq!(list(false).await.len(), 2);
    assert!(list(true).await.is_empty());
    clock.advance_days(2);
    scheduler.tick().await;
    let current = list(false).await;
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(current[0].0, waiting);
    let archived = list(true).await;
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(archived[0].0, old);
    assert_eq!(archived[0].1, proto::ApprovalState::Expired as i32);
    // A second tick moves nothing twice.
    scheduler.tick().await;
    assert_eq!(list(true).await.len(), 1);

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
}
