//! Driving a job: pause stops it after the items in flight, resume goes on where it
//! stopped, cancel ends it for good; watch follows it; who may do what.

use keyward_tests::DevDaemon;
use keyward_tests::campaign::{sign_all, wait_job};
use keyward_tests::registry::TestRegistry;
use std::time::Duration;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn count(j: &serde_json::Value, what: &str) -> u64 {
    j[what].as_u64().unwrap_or(0)
}

#[test]
fn pause_holds_a_campaign_resume_finishes_it_and_cancel_ends_one_for_good() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release"]);
    d.ok(&["key", "create", "other"]);
    let images = reg.push_many("jobs/app", 200);
    sign_all(&d, "release", &images);
    sign_all(&d, "other", &images[..100]);

    let id = json(&d.ok(&["-o", "json", "key", "rotate", "release"]))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_job(&d, &id, |j| count(j, "done") >= 10);
    let paused = json(&d.ok(&["-o", "json", "jobs", "pause", &id]));
    assert_eq!(paused["state"], "paused", "{paused}");
    // Items in flight finish; then nothing moves.
    std::thread::sleep(Duration::from_millis(800));
    let a = json(&d.ok(&["-o", "json", "jobs", "show", &id]));
    std::thread::sleep(Duration::from_millis(800));
    let b = json(&d.ok(&["-o", "json", "jobs", "show", &id]));
    assert_eq!(b["state"], "paused");
    assert_eq!(count(&a, "done"), count(&b, "done"), "a paused job went on");
    assert!(count(&b, "done") < 200, "{b}");
    // A signer may not drive jobs; an auditor may read them.
    let signer = d.add_principal("sam", "signer");
    let o = d.keyward_as(&signer, &["jobs", "resume", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("may not resume jobs"));
    let auditor = d.add_principal("ada", "auditor");
    assert!(
        d.keyward_as(&auditor, &["jobs", "show", &id])
            .status
            .success()
    );

    d.ok(&["jobs", "resume", &id]);
    // watch follows it to the end: JSON lines, the last one done.
    let lines = d.ok(&["-o", "json", "jobs", "watch", &id]);
    let last = json(lines.lines().last().unwrap());
    assert_eq!(last["state"], "done", "{lines}");
    assert_eq!(count(&last, "done"), 200);
    for (_, digest) in &images {
        let v2 = reg
            .sig_layers("jobs/app", digest)
            .iter()
            .filter(|l| l["annotations"]["dev.keyward/key"] == "release/v2")
            .count();
        assert_eq!(v2, 1, "{digest}");
    }

    // Cancel: the job ends, unfinished items stay unsigned, the version stays retiring.
    let id2 = json(&d.ok(&["-o", "json", "key", "rotate", "other"]))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    d.ok(&["jobs", "pause", &id2]);
    let cancelled = json(&d.ok(&["-o", "json", "jobs", "cancel", &id2]));
    assert_eq!(cancelled["state"], "cancelled");
    std::thread::sleep(Duration::from_millis(500));
    let after = json(&d.ok(&["-o", "json", "jobs", "show", &id2]));
    assert_eq!(after["state"], "cancelled");
    let err = d.fails(&["jobs", "resume", &id2]);
    assert!(err.contains("only a paused job can be resumed"), "{err}");
    let key = json(&d.ok(&["-o", "json", "key", "show", "other"]));
    assert_eq!(key["versions"][0]["state"], "retiring", "{key}");
    let listed = json(&d.ok(&["-o", "json", "jobs", "list", "--state", "cancelled"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn jobs_are_listed_newest_first_one_page_of_records_at_a_time() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let rotated = json(&d.ok(&["-o", "json", "key", "rotate", "k"]));
        ids.push(rotated["job_id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let listed = json(&d.ok(&["-o", "json", "jobs", "list"]));
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let paged = rt.block_on(async {
        let c = d.client().await;
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let r = c
                .jobs
                .clone()
                .list_jobs(keyward_client::proto::ListJobsRequest {
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.jobs.len() <= 1);
            seen.extend(r.jobs.into_iter().map(|j| j.id));
            if r.next_page_token.is_empty() {
                return seen;
            }
            token = r.next_page_token;
        }
    });
    assert_eq!(paged, ids);
}
