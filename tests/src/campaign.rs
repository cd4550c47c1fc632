//! Helpers for campaign tests: sign many images at once, wait for a job.

use crate::DevDaemon;
use keyward_client::proto;
use std::time::{Duration, Instant};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON")
}

/// Signs every image with `key` through the typed client, 8 at a time.
pub fn sign_all(d: &DevDaemon, key: &str, images: &[(String, String)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let mut set = tokio::task::JoinSet::new();
        for (reference, _) in images {
            let (c, req) = (
                c.clone(),
                proto::SignImageRequest {
                    key: key.into(),
                    reference: reference.clone(),
                    ..Default::default()
                },
            );
            set.spawn(async move { c.sign_image(req).await });
            if set.len() >= 8 {
                set.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    });
}

/// Polls `jobs show` until the job is over (or `until` says stop); returns the job.
pub fn wait_job(
    d: &DevDaemon,
    id: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Generous: a loaded CI machine is slow to bring a restarted registry's items back.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = json(&d.ok(&["-o", "json", "jobs", "show", id]));
        let over = ["done", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or(""));
        if over || until(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
