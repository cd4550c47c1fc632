//! Revocation reaching verifiers: the time from `RevokeKeyVersion` returning to the new
//! list being fetchable, with its CA signature checked, from each of 3 loopback
//! registries the daemon publishes to (goal: under 1 s). Each round revokes again with
//! an earlier `compromised_since`, which issues a new list. Run with `scripts/bench.sh`
//! (or `cargo bench -p keyward-tests --bench revocation` after
//! `cargo build --release --bins`).

use keyward_client::{Client, proto};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::daemon::{keywardd, start_with, stop};
use support::registry::BenchRegistry;

const REPO: &str = "org/keyward-revocations";

/// A GET with an `Accept` header; the body when the answer is 200.
fn get(addr: &str, path: &str, accept: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let ok = resp.starts_with(b"HTTP/1.1 200");
    let body = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| resp[i + 4..].to_vec());
    Ok(if ok { body } else { None })
}

/// Whether `addr` serves, under `latest`, a list of at least `sequence` whose
/// signature by the CA verifies.
fn holds(addr: &str, sequence: u64, ca: &p256::ecdsa::VerifyingKey) -> anyhow::Result<bool> {
    let Some(m) = get(
        addr,
        &format!("/v2/{REPO}/manifests/latest"),
        "application/vnd.oci.image.manifest.v1+json",
    )?
    else {
        return Ok(false);
    };
    let m: serde_json::Value = serde_json::from_slice(&m)?;
    let seq: u64 = m["annotations"]["dev.keyward/sequence"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if seq < sequence {
        return Ok(false);
    }
    let blob = |i: usize| -> anyhow::Result<Vec<u8>> {
        let digest = m["layers"][i]["digest"].as_str().unwrap_or_default();
        get(addr, &format!("/v2/{REPO}/blobs/{digest}"), "*/*")?
            .ok_or_else(|| anyhow::anyhow!("layer {i} missing"))
    };
    let (list, sig) = (blob(0)?, blob(1)?);
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(&sig)?;
    let sig = p256::ecdsa::Signature::from_der(&der)?;
    ca.verify(&list, &sig)
        .map_err(|e| anyhow::anyhow!("a published list's signature does not verify: {e}"))?;
    Ok(true)
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let keywardd = keywardd()?;
    let rounds: usize = std::env::var("KEYWARD_BENCH_REVOKE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let regs = (0..3)
        .map(|i| BenchRegistry::start(&tmp.path().join(format!("r{i}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets: Vec<String> = regs.iter().map(|r| format!("{}/{REPO}", r.addr)).collect();
    let mut extra = Vec::new();
    for t in &targets {
        extra.extend(["--publish-revocations", t.as_str()]);
    }
    let dir = tmp.path().join("daemon");
    let (mut child, cfg, _) = start_with(&keywardd, &dir, &extra)?;
    let pem = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(dir.join("ca.pem"))
        .output()?;
    let b64: String = std::str::from_utf8(&pem.stdout)?
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let ca = {
        use base64::Engine;
        p256::ecdsa::VerifyingKey::from_public_key_der(
            &base64::engine::general_purpose::STANDARD.decode(b64)?,
        )?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let c = Client::connect(&cfg).await?;
        c.create_key(proto::CreateKeyRequest {
            name: "leaky".into(),
            purpose: "blob".into(),
            ..Default::default()
        })
        .await?;
        c.rotate_key(proto::RotateKeyRequest {
            name: "leaky".into(),
        })
        .await?;
        let base = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let mut times = Vec::new();
        for round in 0..rounds {
            let since = base - time::Duration::minutes(round as i64);
            let since = since.format(&time::format_description::well_known::Rfc3339)?;
            c.revoke_key_version(proto::RevokeKeyVersionRequest {
                name: "leaky".into(),
                version: 1,
                reason: proto::RevocationReason::KeyCompromise as i32,
                compromised_since: since,
                ..Default::default()
            })
            .await?;
            let returned = Instant::now();
            let list = c
                .get_revocation_list(proto::GetRevocationListRequest {})
                .await?;
            let doc: serde_json::Value = serde_json::from_str(&list.document)?;
            let sequence = doc["sequence"].as_u64().unwrap_or(0);
            let mut pending: Vec<&str> = regs.iter().map(|r| r.addr.as_str()).collect();
            let mut last = Duration::ZERO;
            while !pending.is_empty() {
                anyhow::ensure!(
                    returned.elapsed() < Duration::from_secs(30),
                    "the list did not reach {pending:?} within 30 s"
                );
                let mut still = Vec::new();
                for addr in pending {
                    if holds(addr, sequence, &ca)? {
                        last = returned.elapsed();
                    } else {
                        still.push(addr);
                    }
                }
                pending = still;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            println!(
                "round {}: list {sequence} fetchable and verified from 3 registries {:.0} ms after the revocation returned",
                round + 1,
                last.as_secs_f64() * 1000.0
            );
            times.push(last);
        }
        anyhow::Ok(times)
    });
    stop(&mut child);
    let mut times = result?;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revocation to list fetchable from 3 registries over {} rounds: median {:.0} ms, max {:.0} ms (goal < 1000 ms)",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
