//! Starting and stopping `keywardd dev` for the benchmarks.

use keyward_client::ClientConfig;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release `keywardd` next to the benchmark binary.
pub fn keywardd() -> anyhow::Result<std::path::PathBuf> {
    let target = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let keywardd = target.join("keywardd");
    anyhow::ensure!(
        keywardd.exists(),
        "{} missing: run cargo build --release --bins first",
        keywardd.display()
    );
    Ok(keywardd)
}

/// The store engine every bench daemon runs on: `KEYWARD_BENCH_STORE_ENGINE` (`redb`,
/// `sled`), else the daemon's default for a new instance.
fn engine_set() -> Option<String> {
    std::env::var("KEYWARD_BENCH_STORE_ENGINE").ok()
}

/// The store engine's name, to print.
pub fn engine() -> String {
    engine_set().unwrap_or_else(|| "redb (the default)".into())
}

/// Starts `keywardd dev` in `dir`; returns the process, its client configuration and
/// how long it took to be ready.
pub fn start(keywardd: &Path, dir: &Path) -> anyhow::Result<(Child, ClientConfig, Duration)> {
    start_with(keywardd, dir, &[])
}

pub fn start_with(
    keywardd: &Path,
    dir: &Path,
    extra: &[&str],
) -> anyhow::Result<(Child, ClientConfig, Duration)> {
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("client.toml"));
    let t = Instant::now();
    let mut child = Command::new(keywardd)
        .args(["dev", "--dir"])
        .arg(dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(extra)
        .args(
            engine_set()
                .iter()
                .flat_map(|e| ["--store-engine", e.as_str()]),
        )
        .env("KEYWARD_LOG", "warn")
        .env_remove("SOFTHSM2_CONF")
        .stdout(Stdio::from(std::fs::File::create(dir.join("daemon.out"))?))
        .spawn()?;
    while !dir.join("client.toml").exists() {
        if let Some(s) = child.try_wait()? {
            anyhow::bail!("keywardd exited: {s}");
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(120), "keywardd not ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready = t.elapsed();
    Ok((child, ClientConfig::load(&dir.join("client.toml"))?, ready))
}

pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The HTTP listener's address of the daemon started in `dir` (from its banner).
pub fn http_addr(dir: &Path) -> anyhow::Result<String> {
    let banner = std::fs::read_to_string(dir.join("daemon.out"))?;
    banner
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no HTTP address in the banner"))
}
