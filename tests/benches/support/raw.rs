//! Raw signing on SoftHSM through cryptoki: what the daemon's rate is compared with.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use super::env_secs;
use std::time::Instant;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const RAW_SECONDS: u64 = 3;

/// Raw signing rate in a child process with its own SoftHSM token (SoftHSM reads
/// SOFTHSM2_CONF at load time, so the token's configuration goes in the child's env).
pub fn raw(tmp: &Path, threads: usize, keys: u16) -> anyhow::Result<f64> {
    Ok(raw_with_cpu(tmp, threads, keys)?.0)
}

/// Raw signing rate and the CPU time (user + system, the whole process) per signature.
pub fn raw_with_cpu(
    tmp: &Path,
    threads: usize,
    keys: u16,
) -> anyhow::Result<(f64, std::time::Duration)> {
    let dir = tmp.join(format!("raw{threads}-{keys}"));
    let conf = keyward_tests::softhsm_token(&dir, "raw", "1234", "5678");
    let out = Command::new(std::env::current_exe()?)
        .arg("--raw-child")
        .arg(&dir)
        .arg(threads.to_string())
        .arg(keys.to_string())
        .env("SOFTHSM2_CONF", &conf)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "raw child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut parts = text.split_whitespace();
    let rate: f64 = parts.next().unwrap_or_default().parse()?;
    let cpu_ns: f64 = parts.next().unwrap_or_default().parse()?;
    Ok((rate, std::time::Duration::from_secs_f64(cpu_ns / 1e9)))
}

pub fn raw_child(_dir: &Path, threads: usize, keys: u16) -> anyhow::Result<()> {
    let ctx = Pkcs11::new(MODULE)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx.get_slots_with_token()?.into_iter().find(|s| {
        ctx.get_token_info(*s)
            .map(|i| i.label().trim_end() == "raw")
            .unwrap_or(false)
    });
    let slot = slot.ok_or_else(|| anyhow::anyhow!("no raw token"))?;
    let login = ctx.open_rw_session(slot)?;
    login.login(UserType::User, Some(&AuthPin::new("1234".into())))?;
    let mut key = None;
    for i in 0..keys {
        let (_, private) = login.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                Attribute::Id(i.to_be_bytes().to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Id(i.to_be_bytes().to_vec()),
            ],
        )?;
        key = Some(private);
    }
    let key = key.ok_or_else(|| anyhow::anyhow!("no key"))?;
    let secs = env_secs("KEYWARD_BENCH_RAW_SECONDS", RAW_SECONDS);
    let ctx = Arc::new(ctx);
    let cpu_before = super::cpu_time(std::process::id())?;
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let ctx = ctx.clone();
                s.spawn(move || -> anyhow::Result<u64> {
                    let session = ctx.open_rw_session(slot)?;
                    let digest = [0x5au8; 32];
                    let t = Instant::now();
                    let mut n = 0;
                    while t.elapsed() < secs {
                        session.sign(&Mechanism::Ecdsa, key, &digest)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").unwrap_or(0))
            .sum()
    });
    let cpu = super::cpu_time(std::process::id())? - cpu_before;
    println!(
        "{} {}",
        total as f64 / secs.as_secs_f64(),
        cpu.as_secs_f64() * 1e9 / total.max(1) as f64
    );
    Ok(())
}
