//! What share of the registry's own rate Keyward's image signing reaches: rounds that
//! alternate between signing distinct images through keywardd and running the same
//! request mix straight against the registry, with no daemon and no signing: resolve
//! the tag, look for the signature tag (absent), upload the payload blob (POST and
//! PUT, as distribution 2.8 needs), put the signature manifest, read it back. The
//! same concurrency, keep-alive connections, one local docker-registry. Run with
//! `scripts/bench.sh`, or `cargo bench -p keyward-tests --bench registry_share` after
//! `cargo build --release --bins`.

use keyward_client::{Client, proto};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start, stop};
use support::registry::BenchRegistry;
use support::{env_usize, median, sign_images};

const CONCURRENCY: usize = 16;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The registry requests of signing `image` (`addr/repo:tag`), made directly.
async fn mix(http: &reqwest::Client, config: &(String, usize), image: &str) -> anyhow::Result<()> {
    use sha2::Digest;
    let (addr, rest) = image
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{image}"))?;
    let (repo, tag) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{image}"))?;
    let base = format!("http://{addr}/v2/{repo}");
    let resolved = http
        .get(format!("{base}/manifests/{tag}"))
        .header("Accept", MANIFEST)
        .send()
        .await?
        .error_for_status()?;
    let manifest = resolved.bytes().await?;
    let digest = hex::encode(sha2::Sha256::digest(&manifest));
    let sig = format!("{base}/manifests/sha256-{digest}.sig");
    let absent = http.get(&sig).header("Accept", MANIFEST).send().await?;
    anyhow::ensure!(
        absent.status() == 404,
        "signature tag exists: {}",
        absent.status()
    );
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{addr}/{repo}"}},"image":{{"docker-manifest-digest":"sha256:{digest}"}},"type":"cosign container image signature"}},"optional":{{"dev.keyward/key":"images"}}}}"#
    );
    let payload_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&payload)));
    let session = http
        .post(format!("{base}/blobs/uploads/"))
        .send()
        .await?
        .error_for_status()?;
    let location = session
        .headers()
        .get("Location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("no upload location"))?;
    let location = if location.starts_with("http") {
        location.to_string()
    } else {
        format!("http://{addr}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    http.put(format!("{location}{sep}digest={payload_digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(payload.clone())
        .send()
        .await?
        .error_for_status()?;
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{payload_digest}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"MEUCIQ"}}}}]}}"#,
        config.0,
        config.1,
        payload.len()
    );
    http.put(&sig)
        .header("Content-Type", MANIFEST)
        .body(m)
        .send()
        .await?
        .error_for_status()?;
    http.get(&sig)
        .header("Accept", MANIFEST)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Runs [`mix`] over `images`, CONCURRENCY at a time; images per second.
async fn registry_rate(config: &(String, usize), images: &[String]) -> anyhow::Result<f64> {
    // reqwest is built without a TLS provider of its own (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let (next, images) = (Arc::new(AtomicUsize::new(0)), Arc::new(images.to_vec()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, next, images, config) =
            (http.clone(), next.clone(), images.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(image) = images.get(next.fetch_add(1, Ordering::Relaxed)) {
                mix(&http, &config, image).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(images.len() as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let rounds = env_usize("KEYWARD_BENCH_ROUNDS", 3);
    let per_round = env_usize("KEYWARD_BENCH_IMAGES", 300);
    println!(
        "Keyward image signing against the registry's own rate ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    let registry = BenchRegistry::start(tmp.path())?;
    let signed_images = registry.push_images("signed", rounds * per_round)?;
    let direct_images = registry.push_images("direct", rounds * per_round)?;
    // The config blob every signature manifest names, uploaded once as Keyward does.
    let config =
        br#"{"architecture":"","config":{},"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = support::registry::push_blob(&registry.addr, "direct", config)?;
    let config = (config_digest, config.len());
    let (mut child, cfg, _) = start(&keywardd, &tmp.path().join("daemon"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = Client::connect(&cfg).await?;
        client
            .create_key(proto::CreateKeyRequest {
                name: "images".into(),
                ..Default::default()
            })
            .await?;
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let slice = r * per_round..(r + 1) * per_round;
            let t = Instant::now();
            let n = sign_images(&client, "images", &signed_images[slice.clone()], CONCURRENCY).await?;
            let keyward = n as f64 / t.elapsed().as_secs_f64();
            let direct = registry_rate(&config, &direct_images[slice]).await?;
            ratios.push(keyward / direct);
            ours.push(keyward);
            theirs.push(direct);
        }
        println!(
            "images signed through keywardd: {:.0}/s; the same registry requests without signing: {:.0}/s ({CONCURRENCY} in flight, {per_round} images a round, medians of {rounds} rounds)",
            median(ours),
            median(theirs)
        );
        println!(
            "Keyward / registry = {:.3} (median of the per-round ratios)",
            median(ratios)
        );
        anyhow::Ok(())
    })?;
    stop(&mut child);
    Ok(())
}
