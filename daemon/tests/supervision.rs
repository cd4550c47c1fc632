//! A panic is contained where it happens: a job kind made to panic (a debug build's
//! test hook) fails its items, said in the job, the metrics and the audit log, and the
//! scheduler goes on rotating every key, that one's too.

mod common;

use common::TestClock;
use keyward_client::proto;
use keyward_tests::registry::TestRegistry;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_kind_that_panics_does_not_stop_rotation_of_any_key() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let clock = TestClock::at(OffsetDateTime::now_utc());
    let mut scheduler = None;
    let s = common::serve(tmp.path(), |app| {
        let (app, sch) = app
            .with_panicking_job_kind("resign")
            .with_clock(clock.clone());
        scheduler = Some(sch);
        app
    })
    .await;
    let scheduler = scheduler.unwrap();
    let c = &s.client;
    for name in ["a", "b"] {
        c.create_key(proto::CreateKeyRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        c.set_key_policy(proto::SetKeyPolicyRequest {
            name: name.into(),
            rotate_every_seconds: Some(90 * 86_400),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let images = reg.push_many("team/app", 1);
    c.sign_image(proto::SignImageRequest {
        key: "a".into(),
        reference: images[0].0.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    clock.advance_days(91);
    let mut rotated = scheduler.tick().await;
    rotated.sort();
    assert_eq!(rotated, ["a", "b"]);
    // a's campaign has one item, whose work panics: the item fails with the reason.
    let job = loop {
        let jobs = c
            .list_jobs_all(proto::ListJobsRequest::default())
            .await
            .unwrap();
        let a = jobs.into_iter().find(|j| j.key == "a").unwrap();
        let a = c
            .get_job(proto::GetJobRequest { id: a.id.clone() })
            .await
            .unwrap();
        if a.failed == 1 {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reason = &job.failures[0].reason;
    assert!(reason.contains("panicked"), "{reason}");
    assert!(reason.contains("made to panic"), "{reason}");

    // Both keys rotate again at the next period.
    clock.advance_days(91);
    let mut rotated = scheduler.tick().await;
    rotated.sort();
    assert_eq!(rotated, ["a", "b"]);
    for name in ["a", "b"] {
        let key = c
            .get_key(proto::GetKeyRequest { name: name.into() })
            .await
            .unwrap();
        assert_eq!(key.active_version, 3, "{name}");
    }
    let (_, metrics) = keyward_tests::http_get(&s.running.http_addr.to_string(), "/metrics");
    assert!(
        metrics.contains("keyward_task_restarts_total{task=\"job-item\"}"),
        "{metrics}"
    );
    let audit = c
        .export_audit(proto::ExportAuditRequest::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(text.contains("made to panic"), "{text}");

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
}
