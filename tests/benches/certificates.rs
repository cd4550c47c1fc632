//! What certificates and time-stamps in every layer cost: `keyward sign` through two
//! daemons in one run, one whose layers carry the version's certificate, the CA and an
//! RFC 3161 time-stamp from its TSA (the default), one whose layers carry the signature
//! alone (`keywardd dev --no-certificates`). Rounds of distinct images alternate
//! between them (the order flips every round) so that a noisy machine's drift hits
//! both alike; the figure is the median of the per-round ratios. Goal: with / without
//! at least 0.9. Run after `cargo build --release --bins` with
//! `cargo bench -p keyward-tests --bench certificates`.

use keyward_client::{Client, proto};
use std::process::Command;
use std::time::Instant;

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start, start_with, stop};
use support::registry::BenchRegistry;
use support::{env_usize, median, sign_images};

/// The signature manifest of `image` (`registry/repo:tag`), as the registry holds it.
fn signature_manifest(registry: &str, image: &str) -> anyhow::Result<String> {
    let (repo, tag) = image
        .trim_start_matches(&format!("{registry}/"))
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{image}: no tag"))?;
    let get = |reference: &str, head: bool| {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ]);
        if head {
            cmd.args(["-I"]);
        }
        cmd.arg(format!("http://{registry}/v2/{repo}/manifests/{reference}"))
            .output()
    };
    let head = String::from_utf8(get(tag, true)?.stdout)?;
    let digest = head
        .lines()
        .find_map(|l| l.strip_prefix("Docker-Content-Digest: "))
        .ok_or_else(|| anyhow::anyhow!("{image}: no digest"))?
        .trim()
        .replace(':', "-");
    Ok(String::from_utf8(
        get(&format!("{digest}.sig"), false)?.stdout,
    )?)
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let per_round = env_usize("KEYWARD_BENCH_IMAGES", 300);
    let rounds = env_usize("KEYWARD_BENCH_ROUNDS", 5).max(1);
    println!(
        "Keyward certificate and time-stamp cost ({} cores): {rounds} rounds of {per_round} images per daemon, 16 concurrent",
        std::thread::available_parallelism()?.get()
    );
    let registry = BenchRegistry::start(tmp.path())?;
    let (mut with, with_cfg, _) = start(&keywardd, &tmp.path().join("with"))?;
    let (mut without, without_cfg, _) = start_with(
        &keywardd,
        &tmp.path().join("without"),
        &["--no-certificates"],
    )?;
    let images = registry.push_images("bench", per_round * rounds * 2 + 2)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rates = rt.block_on(async {
        let mut clients = Vec::new();
        for cfg in [&with_cfg, &without_cfg] {
            let c = Client::connect(cfg).await?;
            c.create_key(proto::CreateKeyRequest {
                name: "images".into(),
                ..Default::default()
            })
            .await?;
            clients.push(c);
        }
        let mut rates = vec![Vec::new(), Vec::new()];
        let mut batches = images[2..].chunks(per_round);
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let batch = batches.next().unwrap_or_default();
                let t = Instant::now();
                let n = sign_images(&clients[i], "images", batch, 16).await?;
                rates[i].push(n as f64 / t.elapsed().as_secs_f64());
            }
        }
        // One image each, to show what the layers carry.
        for (c, image) in clients.iter().zip(&images[..2]) {
            sign_images(c, "images", std::slice::from_ref(image), 1).await?;
        }
        anyhow::Ok(rates)
    })?;
    stop(&mut with);
    stop(&mut without);
    for (image, (what, carries)) in images[..2].iter().zip([("with", true), ("without", false)]) {
        let m = signature_manifest(&registry.addr, image)?;
        for annotation in [
            "dev.sigstore.cosign/certificate",
            "dev.sigstore.cosign/rfc3161timestamp",
        ] {
            anyhow::ensure!(
                m.contains(annotation) == carries,
                "the daemon {what} certificates: {annotation} is {} its layer",
                if carries { "missing from" } else { "in" }
            );
        }
    }
    let ratios: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(a, b)| a / b).collect();
    println!(
        "with certificates and time-stamps: {:.0} images/s (rounds: {})",
        median(rates[0].clone()),
        rates[0]
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "signature alone:                   {:.0} images/s (rounds: {})",
        median(rates[1].clone()),
        rates[1]
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "with / without = {:.3} (median of the per-round ratios; goal >= 0.9)",
        median(ratios)
    );
    Ok(())
}
