//! Incident response at scale: `IncidentRevoke` on a key version that signed N images
//! (default 1,000; 80% before the compromise), published to 3 registries. Prints the
//! total time and its phases: the request (revoke, count the ledger, rotate, start the
//! campaign, issue the list), the list reaching every registry, and the campaign
//! re-signing what came before the compromise. Run with `scripts/bench.sh` (or
//! `cargo bench -p keyward-tests --bench incident` after `cargo build --release --bins`).

use keyward_client::{Client, proto};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start_with, stop};
use support::registry::BenchRegistry;
use support::sign_images;

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let n: usize = std::env::var("KEYWARD_BENCH_INCIDENT_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let regs = (0..3)
        .map(|i| BenchRegistry::start(&tmp.path().join(format!("r{i}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let before = regs[0].push_images("team/before", n * 4 / 5)?;
    let after = regs[0].push_images("team/after", n - n * 4 / 5)?;
    let targets: Vec<String> = regs
        .iter()
        .map(|r| format!("{}/org/keyward-revocations", r.addr))
        .collect();
    let mut extra = Vec::new();
    for t in &targets {
        extra.extend(["--publish-revocations", t.as_str()]);
    }
    let (mut child, cfg, _) = start_with(&keywardd, &tmp.path().join("daemon"), &extra)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let c = Client::connect(&cfg).await?;
        c.create_key(proto::CreateKeyRequest {
            name: "leaky".into(),
            ..Default::default()
        })
        .await?;
        sign_images(&c, "leaky", &before, 16).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let since = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        sign_images(&c, "leaky", &after, 16).await?;

        let t = Instant::now();
        let report = c
            .incident_revoke(proto::IncidentRevokeRequest {
                name: "leaky".into(),
                version: 1,
                compromised_since: since,
                dry_run: false,
                remove_signatures: false,
            })
            .await?;
        let request = t.elapsed();
        let (mut published, mut resigned) = (None, None);
        while published.is_none() || resigned.is_none() {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600),
                "incident not done in 600 s"
            );
            if published.is_none() {
                let s = c
                    .get_publish_status(proto::GetPublishStatusRequest {})
                    .await?;
                if s.targets
                    .iter()
                    .all(|x| x.published_sequence >= report.list_sequence)
                {
                    published = Some(t.elapsed());
                }
            }
            if resigned.is_none() {
                let j = c
                    .get_job(proto::GetJobRequest {
                        id: report.resign_job_id.clone(),
                    })
                    .await?;
                match proto::JobState::try_from(j.state) {
                    Ok(proto::JobState::Done) => resigned = Some((t.elapsed(), j.done)),
                    Ok(proto::JobState::Running | proto::JobState::Queued) => {}
                    _ => anyhow::bail!("the campaign ended {}", j.state),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok((
            report,
            request,
            published.unwrap_or_default(),
            resigned.unwrap_or_default(),
        ))
    });
    stop(&mut child);
    let (report, request, published, (resigned, done)) = result?;
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "incident on {n} signed images ({} before the compromise, {} after): request {:.2}s (revoke, count, rotate to v{}, start the campaign, issue list {}); list on 3 registries at {:.2}s; {done} images re-signed at {:.2}s ({:.0} images/s); total {:.2}s",
        report.signed_before,
        report.signed_after,
        s(request),
        report.rotated_to,
        report.list_sequence,
        s(published),
        s(resigned),
        done as f64 / s(resigned - request).max(0.001),
        s(resigned.max(published)),
    );
    Ok(())
}
