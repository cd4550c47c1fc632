//! Re-signing campaigns: the rate of a campaign re-signing N images (default 2,000) on
//! a local registry, against signing the same images fresh through `SignImage` at the
//! same concurrency (16) in the same run; and the daemon's peak RSS during a campaign
//! of N images against one of N/10 (items stream from the ledger: nothing holds every
//! image). Each campaign runs in a daemon started for it on a store where its images
//! were signed, and the peak is the process's since that start (VmHWM). The N/10
//! campaign runs twice: on a store filled to N signatures by another key (the goal's
//! comparison: same store size) and on a store of its own images only. Run with
//! `scripts/bench.sh` (or `cargo bench -p keyward-tests --bench resign` after
//! `cargo build --release --bins`).

use keyward_client::{Client, proto};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start, stop};
use support::registry::BenchRegistry;
use support::sign_images;

/// The campaign's concurrency: the daemon's default `[jobs] concurrency`.
const CONCURRENCY: usize = 16;

/// The process's peak resident set since the last reset, in KiB.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// Rotates `key` and waits for its campaign; returns images re-signed and seconds.
async fn campaign(client: &Client, key: &str) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let r = client
        .rotate_key(proto::RotateKeyRequest { name: key.into() })
        .await?;
    anyhow::ensure!(!r.job_id.is_empty(), "the rotation started no campaign");
    loop {
        let j = client
            .get_job(proto::GetJobRequest {
                id: r.job_id.clone(),
            })
            .await?;
        match proto::JobState::try_from(j.state) {
            Ok(proto::JobState::Done) => return Ok((j.done, t.elapsed().as_secs_f64())),
            Ok(proto::JobState::Running | proto::JobState::Queued) => {}
            _ => anyhow::bail!("campaign ended {}: {:?}", j.state, j.failures.first()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let n: usize = std::env::var("KEYWARD_BENCH_RESIGN_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "Keyward re-signing benchmark ({} cores, {n} images, {} store)",
        std::thread::available_parallelism()?.get(),
        support::daemon::engine()
    );
    let registry = BenchRegistry::start(tmp.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    // "small-full": other images signed by another key fill the small campaign's store
    // to the big one's size, so that the memory figure compares campaigns, not store
    // sizes; "small" runs on a store of its own images only.
    for (name, count, others) in [
        ("small-full", n / 10, n - n / 10),
        ("small", n / 10, 0),
        ("big", n, 0),
    ] {
        let images = registry.push_images(name, count)?;
        let ballast = match others {
            0 => Vec::new(),
            _ => registry.push_images(&format!("{name}-other"), others)?,
        };
        let dir = tmp.path().join(name);
        // Sign the images fresh, then restart: the campaign's daemon starts on a
        // store that holds its images' signatures.
        let (mut child, cfg, _) = start(&keywardd, &dir)?;
        let fresh = rt.block_on(async {
            let client = Client::connect(&cfg).await?;
            if !ballast.is_empty() {
                client
                    .create_key(proto::CreateKeyRequest {
                        name: "other".into(),
                        ..Default::default()
                    })
                    .await?;
                sign_images(&client, "other", &ballast, CONCURRENCY).await?;
            }
            client
                .create_key(proto::CreateKeyRequest {
                    name: "release".into(),
                    ..Default::default()
                })
                .await?;
            let t = Instant::now();
            let done = sign_images(&client, "release", &images, CONCURRENCY).await?;
            anyhow::Ok(done as f64 / t.elapsed().as_secs_f64())
        });
        stop(&mut child);
        let (mut child, cfg, _) = start(&keywardd, &dir)?;
        let pid = child.id();
        let at_start = peak_rss(pid)?;
        let done = rt.block_on(async {
            let client = Client::connect(&cfg).await?;
            campaign(&client, "release").await
        });
        let rss = peak_rss(pid);
        stop(&mut child);
        let (fresh, (done, secs), rss) = (fresh?, done?, rss?);
        println!(
            "{count} images, store of {} signatures: fresh {fresh:.0} images/s ({CONCURRENCY} SignImage in flight); campaign {:.0} images/s ({done} in {secs:.2}s), campaign / fresh = {:.2}; daemon peak RSS {:.1} MiB ({:.1} MiB when it was ready)",
            count + others,
            done as f64 / secs,
            done as f64 / secs / fresh,
            rss as f64 / 1024.0,
            at_start as f64 / 1024.0
        );
        runs.push((fresh, done as f64 / secs, rss, rss.saturating_sub(at_start)));
    }
    let (full, small, big) = (runs[0], runs[1], runs[2]);
    let m = n / 10;
    println!(
        "campaign / fresh with {n} images: {:.2} (goal >= 0.9); peak RSS, {n}-image / {m}-image campaign on stores of {n} signatures: {:.2} (goal <= 1.1; growth from ready to peak: {:.2}); on stores of their own images only: {:.2}",
        big.1 / big.0,
        big.2 as f64 / full.2 as f64,
        big.3 as f64 / full.3.max(1) as f64,
        big.2 as f64 / small.2 as f64,
    );
    Ok(())
}
