//! Load generation for the signing benchmark, and rounds that alternate between
//! daemons so that a noisy machine's drift hits every daemon alike.

pub mod daemon;
pub mod raw;
pub mod registry;

/// A count from the environment, or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median (the upper one of an even count); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the raw-signing child when the benchmark was started as one (`--raw-child DIR
/// THREADS KEYS`, see [`raw::raw`]); `None` otherwise.
pub fn raw_child_if_asked() -> Option<anyhow::Result<()>> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--raw-child")?;
    let arg = |k: usize| args.get(i + k).cloned().unwrap_or_default();
    Some((|| {
        raw::raw_child(
            std::path::Path::new(&arg(1)),
            arg(2).parse()?,
            arg(3).parse()?,
        )
    })())
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) of stat(5), counted from the state (field 3).
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

use keyward_client::{Client, proto};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A duration in seconds from the environment, or the default.
pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Creates the blob-signing key "bench" that [`load`] signs with.
pub async fn bench_key(client: &Client) -> anyhow::Result<()> {
    client
        .keys
        .clone()
        .create_key(proto::CreateKeyRequest {
            name: "bench".into(),
            purpose: "blob".into(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Requests in flight.
pub const CONCURRENCY: usize = 64;

/// 64 requests in flight over 4 connections for `secs`; returns rate, p50, p99.
pub async fn load(client: &Client, secs: Duration) -> anyhow::Result<(f64, Duration, Duration)> {
    load_with(client, secs, CONCURRENCY, Call::SignDigest, |_| ()).await
}

/// The request a load sends.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// `SignDigest` with key "bench".
    SignDigest,
    /// `WhoAmI`: an authenticated request that does no work of its own.
    WhoAmI,
}

/// `concurrency` requests in flight over 4 connections for `secs`; `measured` is
/// called when the measured window opens (true) and closes (false). Returns rate,
/// p50, p99 of the window.
pub async fn load_with(
    client: &Client,
    secs: Duration,
    concurrency: usize,
    call: Call,
    mut measured: impl FnMut(bool),
) -> anyhow::Result<(f64, Duration, Duration)> {
    let mut clients = vec![client.clone()];
    let cfg_endpoint = client.clone();
    for _ in 1..4 {
        clients.push(cfg_endpoint.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut c = clients[i % clients.len()].clone();
        let (stop, measuring) = (stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match call {
                    Call::SignDigest => {
                        c.signing
                            .sign_digest(proto::SignDigestRequest {
                                key: "bench".into(),
                                digest_algorithm: "sha256".into(),
                                digest: vec![0x5a; 32],
                                ..Default::default()
                            })
                            .await?;
                    }
                    Call::WhoAmI => {
                        c.principals.who_am_i(proto::WhoAmIRequest {}).await?;
                    }
                }
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed());
                }
            }
            Ok::<_, tonic::Status>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    measuring.store(true, Ordering::Relaxed);
    measured(true);
    let t = Instant::now();
    tokio::time::sleep(secs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t.elapsed();
    measured(false);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok((
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    ))
}

/// Median rate, p50 and p99 of a daemon over the rounds, the number of rounds, and
/// the median of its per-round ratio to the first daemon.
pub type Measured = (f64, Duration, Duration, usize, f64);

/// Runs [`load`] against each daemon in turn, `rounds` times; the first client is the
/// reference the ratios are taken against.
pub async fn interleaved(
    clients: &[Client],
    rounds: usize,
    secs: Duration,
) -> anyhow::Result<Vec<Measured>> {
    let rounds = rounds.max(1);
    let mut runs: Vec<Vec<(f64, Duration, Duration)>> = vec![Vec::new(); clients.len()];
    for _ in 0..rounds {
        for (c, out) in clients.iter().zip(runs.iter_mut()) {
            out.push(load(c, secs).await?);
        }
    }
    Ok(runs
        .iter()
        .map(|r| {
            let mut by_rate = r.clone();
            by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mid = by_rate[by_rate.len() / 2];
            let ratio = median(r.iter().zip(&runs[0]).map(|(a, b)| b.0 / a.0).collect());
            (mid.0, mid.1, mid.2, rounds, ratio)
        })
        .collect())
}

/// Signs every image with `key`, `concurrency` requests in flight; returns how many.
pub async fn sign_images(
    client: &Client,
    key: &str,
    images: &[String],
    concurrency: usize,
) -> anyhow::Result<usize> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let images = Arc::new(images.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (c, next, images, key) = (
            client.clone(),
            next.clone(),
            images.clone(),
            key.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(reference) = images.get(i) else {
                    return anyhow::Ok(n);
                };
                c.sign_image(proto::SignImageRequest {
                    key: key.clone(),
                    reference: reference.clone(),
                    ..Default::default()
                })
                .await?;
                n += 1;
            }
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    Ok(done)
}
