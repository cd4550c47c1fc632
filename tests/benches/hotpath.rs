//! The signing hot path, in one run on one machine: what the daemon's CPU costs per
//! `SignDigest` against SoftHSM's own CPU per signature (the daemon's from
//! `/proc/PID/stat` over the measured window, the raw loop's from its own), latency at
//! 8 and 64 requests in flight, and the audit log's cost (rounds alternating between a
//! daemon with it and one without). Run with `scripts/bench.sh`, or `cargo bench -p
//! keyward-tests --bench hotpath` after `cargo build --release --bins`.

use keyward_client::{Client, proto};
use std::time::Duration;

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start, start_with, stop};
use support::raw::raw_with_cpu;
use support::{Call, bench_key, cpu_time, env_secs, load_with, median};

/// One measured window: rate, p50, p99, daemon CPU per request.
struct Window {
    rate: f64,
    p50: Duration,
    p99: Duration,
    cpu: Duration,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s, p50 {:.2} ms, p99 {:.2} ms, daemon CPU {:.1} µs per signature",
            self.rate,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.cpu.as_secs_f64() * 1e6
        )
    }
}

/// Loads the daemon `pid` through `client` with `concurrency` requests in flight.
async fn window(
    client: &Client,
    pid: u32,
    concurrency: usize,
    call: Call,
    secs: Duration,
) -> anyhow::Result<Window> {
    let mut cpu = (Duration::ZERO, Duration::ZERO);
    let (rate, p50, p99) = load_with(client, secs, concurrency, call, |open| {
        let now = cpu_time(pid).unwrap_or_default();
        if open { cpu.0 = now } else { cpu.1 = now }
    })
    .await?;
    let requests = rate * secs.as_secs_f64();
    Ok(Window {
        rate,
        p50,
        p99,
        cpu: (cpu.1 - cpu.0).div_f64(requests.max(1.0)),
    })
}

/// `SignDigests` of `size` digests each, `concurrency` requests in flight, for `secs`
/// after a second's warm-up: signatures per second and daemon CPU per signature.
async fn batch_window(
    client: &Client,
    pid: u32,
    concurrency: usize,
    size: usize,
    secs: Duration,
) -> anyhow::Result<(f64, Duration)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (stop, signed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (c, stop, signed) = (client.clone(), stop.clone(), signed.clone());
        tasks.push(tokio::spawn(async move {
            let items: Vec<proto::SignItem> = (0..size)
                .map(|i| proto::SignItem {
                    digest_algorithm: "sha256".into(),
                    digest: vec![i as u8; 32],
                    ..Default::default()
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .sign_digests(proto::SignDigestsRequest {
                        key: "bench".into(),
                        items: items.clone(),
                    })
                    .await?;
                signed.fetch_add(r.signatures.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (n0, cpu0, t) = (
        signed.load(Ordering::Relaxed),
        cpu_time(pid)?,
        std::time::Instant::now(),
    );
    tokio::time::sleep(secs).await;
    let (n1, cpu1, elapsed) = (signed.load(Ordering::Relaxed), cpu_time(pid)?, t.elapsed());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let n = (n1 - n0).max(1);
    Ok((
        n as f64 / elapsed.as_secs_f64(),
        (cpu1 - cpu0).div_f64(n as f64),
    ))
}

fn main() -> anyhow::Result<()> {
    if let Some(child) = support::raw_child_if_asked() {
        return child;
    }
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let secs = env_secs("KEYWARD_BENCH_SECONDS", 5);
    let rounds = support::env_usize("KEYWARD_BENCH_ROUNDS", 3);
    println!(
        "Keyward hot-path benchmark ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    let (raw_rate, raw_cpu) = raw_with_cpu(tmp.path(), 1, 10)?;
    println!(
        "raw cryptoki ECDSA P-256 on SoftHSM, 1 thread: {raw_rate:.0}/s, {:.1} µs CPU per signature",
        raw_cpu.as_secs_f64() * 1e6
    );

    // SoftHSM on as many threads as the daemon's HSM pool (one per core): what a
    // signature costs when two sign at once on this token.
    let cores = std::thread::available_parallelism()?.get();
    let (raw_par_rate, raw_par_cpu) = raw_with_cpu(tmp.path(), cores, 10)?;
    println!(
        "raw cryptoki ECDSA P-256 on SoftHSM, {cores} threads: {raw_par_rate:.0}/s, {:.1} µs CPU per signature",
        raw_par_cpu.as_secs_f64() * 1e6
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut on, on_cfg, _) = start(&keywardd, &tmp.path().join("on"))?;
    let (mut off, off_cfg, _) = start_with(&keywardd, &tmp.path().join("off"), &["--no-audit"])?;
    let (on_pid, off_pid) = (on.id(), off.id());
    rt.block_on(async {
        let (a, b) = (Client::connect(&on_cfg).await?, Client::connect(&off_cfg).await?);
        bench_key(&a).await?;
        bench_key(&b).await?;
        let (mut ratios, mut cpu_ratios, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut batch_rates, mut batch_cpus) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..rounds {
            let w_on = window(&a, on_pid, 64, Call::SignDigest, secs).await?;
            let w_off = window(&b, off_pid, 64, Call::SignDigest, secs).await?;
            ratios.push(w_on.rate / w_off.rate);
            cpu_ratios.push(w_on.cpu.as_secs_f64() / raw_cpu.as_secs_f64());
            shapes.push(w_on.p99.as_secs_f64() / w_on.p50.as_secs_f64());
            last = Some((w_on, w_off));
        }
        let (w_on, w_off) = last.expect("at least one round");
        println!("SignDigest, 64 in flight, audit on (last round): {w_on}");
        println!("SignDigest, 64 in flight, audit off (last round): {w_off}");
        println!(
            "audit on / off = {:.3}; p99 / p50 at 64 = {:.2} (medians of {rounds} alternating rounds)",
            median(ratios),
            median(shapes)
        );
        let par = raw_par_cpu.as_secs_f64() / raw_cpu.as_secs_f64();
        let cpu_ratio = median(cpu_ratios);
        println!(
            "daemon CPU / SoftHSM CPU per signature, audit on: {cpu_ratio:.2} (median of {rounds} rounds; {:.2} against SoftHSM on {cores} threads)",
            cpu_ratio / par
        );
        let w8 = window(&a, on_pid, 8, Call::SignDigest, secs).await?;
        println!("SignDigest, 8 in flight, audit on: {w8}");
        // After the unary rounds: the store's background work after a batch round
        // would land in the next round's window.
        for _ in 0..rounds {
            let (rate, cpu) = batch_window(&a, on_pid, 4, 256, secs).await?;
            batch_rates.push(rate);
            batch_cpus.push(cpu.as_secs_f64());
        }
        let (rate, cpu) = (median(batch_rates), median(batch_cpus));
        println!(
            "SignDigests, 256 per request, 4 in flight, audit on (medians of {rounds} rounds): {rate:.0} signatures/s ({:.2} of the raw one-thread rate), daemon CPU {:.1} µs per signature ({:.2} of SoftHSM's on one thread, {:.2} on {cores})",
            rate / raw_rate,
            cpu * 1e6,
            cpu / raw_cpu.as_secs_f64(),
            cpu / raw_par_cpu.as_secs_f64()
        );
        // The floor under any request: an authenticated call that does no work, on the
        // daemon without the audit log (transport, TLS, gate) and with it (plus one
        // durable record).
        let floor = window(&b, off_pid, 64, Call::WhoAmI, secs).await?;
        let read = window(&a, on_pid, 64, Call::WhoAmI, secs).await?;
        let (floor_cpu, raw) = (floor.cpu.as_secs_f64(), raw_cpu.as_secs_f64());
        println!(
            "WhoAmI, 64 in flight: audit off {:.0}/s, daemon CPU {:.1} µs per request; audit on {:.0}/s, {:.1} µs. An RPC's floor plus SoftHSM's signature: {:.2} of SoftHSM's CPU",
            floor.rate,
            floor_cpu * 1e6,
            read.rate,
            read.cpu.as_secs_f64() * 1e6,
            (floor_cpu + raw) / raw
        );
        anyhow::Ok(())
    })?;
    stop(&mut on);
    stop(&mut off);
    Ok(())
}
