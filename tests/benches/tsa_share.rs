//! Signing while the unauthenticated time-stamping endpoint is saturated: the HTTP
//! TSA has its own HSM session, queue and one low-priority thread, so callers of it
//! cannot crowd signing out. `SignDigest` (64 in flight) is measured in alternating
//! rounds with the endpoint idle and with 16 clients stamping as fast as it answers;
//! the goal is saturated / idle >= 0.9. Run after `cargo build --release --bins`.

use keyward_client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[allow(dead_code)]
mod support;
use support::daemon::{http_addr, keywardd, start, stop};
use support::{env_secs, env_usize, load, median};

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let dir = tmp.path().join("daemon");
    let (mut child, cfg, _) = start(&keywardd, &dir)?;
    let addr = http_addr(&dir)?;
    let data = tmp.path().join("data");
    std::fs::write(&data, b"stamp me")?;
    let query = tmp.path().join("q.tsq");
    let made = std::process::Command::new("openssl")
        .args(["ts", "-query", "-sha256", "-cert", "-data"])
        .arg(&data)
        .arg("-out")
        .arg(&query)
        .status()?;
    anyhow::ensure!(made.success(), "openssl ts -query failed");
    let query = std::fs::read(&query)?;
    let (secs, rounds) = (
        env_secs("KEYWARD_BENCH_SECONDS", 5),
        env_usize("KEYWARD_BENCH_ROUNDS", 3),
    );
    println!(
        "Keyward TSA share benchmark ({} cores, {rounds} rounds of {}s each way)",
        std::thread::available_parallelism()?.get(),
        secs.as_secs()
    );
    // reqwest is built without a TLS provider of its own (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (idle, busy, stamped, refused) = rt.block_on(async {
        let client = Client::connect(&cfg).await?;
        support::bench_key(&client).await?;
        let (mut idle, mut busy) = (Vec::new(), Vec::new());
        let (stamped, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut stamp_secs = 0.0;
        for _ in 0..rounds {
            idle.push(load(&client, secs).await?.0);
            let stop = Arc::new(AtomicBool::new(false));
            let mut stampers = Vec::new();
            for _ in 0..16 {
                let (stop, q, url) = (
                    stop.clone(),
                    query.clone(),
                    format!("http://{addr}/v1/timestamp"),
                );
                let (ok, no) = (stamped.clone(), refused.clone());
                stampers.push(tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = http
                            .post(&url)
                            .header("content-type", "application/timestamp-query")
                            .body(q.clone())
                            .send()
                            .await;
                        match r.map(|r| r.status().as_u16()) {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => no.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = stamped.load(Ordering::Relaxed);
            busy.push(load(&client, secs).await?.0);
            stamp_secs += (stamped.load(Ordering::Relaxed) - before) as f64 / secs.as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            for s in stampers {
                let _ = s.await;
            }
        }
        let stamps = stamp_secs / rounds as f64;
        anyhow::Ok((idle, busy, stamps, refused.load(Ordering::Relaxed)))
    })?;
    stop(&mut child);
    let (i, b) = (median(idle.clone()), median(busy.clone()));
    println!("SignDigest, TSA endpoint idle:      {i:.0}/s (rounds {idle:.0?})");
    println!(
        "SignDigest, TSA endpoint saturated: {b:.0}/s (rounds {busy:.0?}); meanwhile {stamped:.0} stamps/s served, {refused} asks answered 503"
    );
    println!("saturated / idle: {:.2} (goal >= 0.9)", b / i);
    Ok(())
}
