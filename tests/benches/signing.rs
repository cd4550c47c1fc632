//! Signing throughput: raw cryptoki ECDSA P-256 on SoftHSM (1 and 2 threads) against
//! `SignDigest` through keywardd over mTLS with 64 concurrent requests, with 10 and with
//! 3,000 keys on the token. Run with `scripts/bench.sh` (or `cargo bench -p
//! keyward-tests` after `cargo build --release --bins`).

use keyward_client::{Client, ClientConfig, proto};
use std::path::Path;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start, start_with, stop};
use support::raw::raw;
use support::registry::BenchRegistry;
use support::{CONCURRENCY, env_secs, load, sign_images};

const DAEMON_SECONDS: u64 = 5;

fn main() -> anyhow::Result<()> {
    if let Some(child) = support::raw_child_if_asked() {
        return child;
    }
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;

    println!(
        "Keyward signing benchmark ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    let raw1 = raw(tmp.path(), 1, 10)?;
    let raw2 = raw(tmp.path(), 2, 10)?;
    println!(
        "raw cryptoki ECDSA P-256 (SoftHSM, cached handle): 1 thread {raw1:.0}/s, 2 threads {raw2:.0}/s"
    );

    let dir = tmp.path().join("daemon");
    let (mut child, cfg, ready) = start(&keywardd, &dir)?;
    println!(
        "keywardd dev ready in {:.2}s (10 keys on the token)",
        ready.as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (r10, p50_10, p99_10) = rt.block_on(async {
        let client = Client::connect(&cfg).await?;
        let mut c = client.clone();
        for i in 0..8 {
            c.keys
                .create_key(proto::CreateKeyRequest {
                    name: format!("filler{i}"),
                    ..Default::default()
                })
                .await?;
        }
        support::bench_key(&c).await?;
        load(&client, env_secs("KEYWARD_BENCH_SECONDS", DAEMON_SECONDS)).await
    })?;
    report(
        "daemon SignDigest, 10 keys",
        r10,
        p50_10,
        p99_10,
        raw1,
        raw2,
    );

    // What recording every request costs, and what this daemon costs against an
    // earlier one (KEYWARD_BENCH_BASELINE): the same load in alternating rounds, each
    // daemon started on an empty directory so that all carry the same history.
    stop(&mut child);
    let (mut on, on_cfg, _) = start(&keywardd, &tmp.path().join("on"))?;
    let mut others = vec![(
        "audit log off",
        start_with(&keywardd, &tmp.path().join("off"), &["--no-audit"])?,
    )];
    if let Some(baseline) = std::env::var_os("KEYWARD_BENCH_BASELINE") {
        others.push((
            "baseline keywardd, audit on",
            start(Path::new(&baseline), &tmp.path().join("baseline"))?,
        ));
    }
    let rates = rt.block_on(async {
        let mut clients = Vec::new();
        for other_cfg in std::iter::once(&on_cfg).chain(others.iter().map(|(_, (_, c, _))| c)) {
            let c = Client::connect(other_cfg).await?;
            support::bench_key(&c).await?;
            clients.push(c);
        }
        let rounds = std::env::var("KEYWARD_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        support::interleaved(
            &clients,
            rounds,
            env_secs("KEYWARD_BENCH_SECONDS", DAEMON_SECONDS),
        )
        .await
    })?;
    println!(
        "daemon SignDigest, audit on: {:.0}/s (median of {} rounds, p50 {:.2} ms, p99 {:.2} ms)",
        rates[0].0,
        rates[0].3,
        rates[0].1.as_secs_f64() * 1e3,
        rates[0].2.as_secs_f64() * 1e3
    );
    for ((what, (mut other, _, _)), r) in others.into_iter().zip(&rates[1..]) {
        stop(&mut other);
        println!(
            "daemon SignDigest, {what}: {:.0}/s (p50 {:.2} ms, p99 {:.2} ms); {} = {:.3} (median of the per-round ratios)",
            r.0,
            r.1.as_secs_f64() * 1e3,
            r.2.as_secs_f64() * 1e3,
            if what.starts_with("audit") {
                "audit on / off"
            } else {
                "current / baseline"
            },
            r.4
        );
    }
    stop(&mut on);
    // KEYWARD_BENCH_QUICK stops after the 10-key phases (for quick comparisons).
    if std::env::var_os("KEYWARD_BENCH_QUICK").is_some() {
        return Ok(());
    }
    let (mut child, cfg, _) = start(&keywardd, &dir)?;

    let started = Instant::now();
    rt.block_on(async {
        let client = Client::connect(&cfg).await?;
        let mut tasks = Vec::new();
        for t in 0..4 {
            let mut c = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..2990).step_by(4) {
                    c.keys
                        .create_key(proto::CreateKeyRequest {
                            name: format!("bulk{i}"),
                            ..Default::default()
                        })
                        .await?;
                }
                Ok::<_, tonic::Status>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    println!(
        "created 2,990 more keys through the daemon in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let (r3k, p50_3k, p99_3k) = rt.block_on(async {
        let client = Client::connect(&cfg).await?;
        load(&client, env_secs("KEYWARD_BENCH_SECONDS", DAEMON_SECONDS)).await
    })?;
    report(
        "daemon SignDigest, 3,000 keys",
        r3k,
        p50_3k,
        p99_3k,
        raw1,
        raw2,
    );
    println!("rate with 3,000 keys / rate with 10 keys: {:.3}", r3k / r10);
    stop(&mut child);
    let raw1_3k = raw(tmp.path(), 1, 3000)?;
    println!(
        "raw cryptoki, 1 thread, 3,000 keys on the token: {raw1_3k:.0}/s ({:.3} of the 10-key raw rate)",
        raw1_3k / raw1
    );
    let (mut child, cfg, _) = start(&keywardd, &dir)?;
    // Last: image signing writes to the store, and sled's background work afterwards
    // would weigh on the raw-signing phases.
    let (images, secs) = rt.block_on(image_bench(&cfg, tmp.path()))?;
    println!(
        "images signed (cosign format, pushed to a local docker-registry, 16 concurrent): {images} in {secs:.2}s = {:.0} images/s (raw signing: {raw1:.0}/s on 1 thread)",
        images as f64 / secs
    );
    stop(&mut child);

    let (mut child, _, ready) = start(&keywardd, &dir)?;
    println!(
        "keywardd dev restart ready in {:.2}s (3,000 keys on the token)",
        ready.as_secs_f64()
    );
    stop(&mut child);
    Ok(())
}

/// Pushes distinct images to a local registry, then signs them through the daemon with
/// 16 requests in flight.
async fn image_bench(cfg: &ClientConfig, tmp: &Path) -> anyhow::Result<(usize, f64)> {
    let registry = BenchRegistry::start(tmp)?;
    let count: usize = std::env::var("KEYWARD_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let images = registry.push_images("bench", count)?;
    let client = Client::connect(cfg).await?;
    client
        .create_key(proto::CreateKeyRequest {
            name: "images".into(),
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let done = sign_images(&client, "images", &images, 16).await?;
    Ok((done, start.elapsed().as_secs_f64()))
}

fn report(what: &str, rate: f64, p50: Duration, p99: Duration, raw1: f64, raw2: f64) {
    println!(
        "{what}: {rate:.0}/s with {CONCURRENCY} concurrent, p50 {:.2} ms, p99 {:.2} ms; daemon/raw = {:.2} (vs 1 thread), {:.2} (vs 2 threads)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        rate / raw1,
        rate / raw2
    );
}
