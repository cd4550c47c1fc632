//! Scheduled rotation, with the scheduler's clock moved by the test: a key rotates
//! once its active version reaches the policy's period, not before, by the authority
//! `scheduler`, audited.

mod common;

use common::TestClock;
use keyward_client::proto;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotates_when_its_active_version_reaches_the_period_and_not_before() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(OffsetDateTime::now_utc());
    let (s, scheduler) = common::serve_with_clock(tmp.path(), clock.clone()).await;
    let c = &s.client;
    c.create_key(proto::CreateKeyRequest {
        name: "release".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.create_key(proto::CreateKeyRequest {
        name: "manual".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.set_key_policy(proto::SetKeyPolicyRequest {
        name: "release".into(),
        rotate_every_seconds: Some(90 * 86_400),
        ..Default::default()
    })
    .await
    .unwrap();

    assert!(scheduler.tick().await.is_empty());
    clock.advance_days(89);
    assert!(
        scheduler.tick().await.is_empty(),
        "rotated before its period"
    );
    clock.advance_days(2);
    assert_eq!(scheduler.tick().await, ["release"]);
    assert!(scheduler.tick().await.is_empty(), "rotated twice");
    let key = c
        .get_key(proto::GetKeyRequest {
            name: "release".into(),
        })
        .await
        .unwrap();
    assert_eq!(key.active_version, 2);
    // The new version's period starts when it became active; the key without a
    // schedule never rotates.
    clock.advance_days(30);
    assert!(scheduler.tick().await.is_empty());
    let manual = c
        .get_key(proto::GetKeyRequest {
            name: "manual".into(),
        })
        .await
        .unwrap();
    assert_eq!(manual.active_version, 1);

    // The campaign and the audit log name the scheduler as the authority.
    let jobs = c
        .list_jobs_all(proto::ListJobsRequest::default())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].started_by, "scheduler");
    assert_eq!(jobs[0].key, "release");
    let audit = c
        .export_audit(proto::ExportAuditRequest::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(text.contains("ScheduledRotation"), "{text}");

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
}
