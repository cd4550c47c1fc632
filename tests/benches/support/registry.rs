//! A local docker-registry for the benchmarks, with distinct small images pushed
//! straight over HTTP (one manifest each, sharing their blobs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running registry; killed and its storage removed on drop.
pub struct BenchRegistry {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: Child,
    dir: PathBuf,
}

impl BenchRegistry {
    /// Starts a registry with its storage under `tmp` (or, with
    /// KEYWARD_BENCH_REGISTRY_DIR, there: e.g. /dev/shm, to take the disk out of the
    /// registry's cost).
    pub fn start(tmp: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir = std::env::var_os("KEYWARD_BENCH_REGISTRY_DIR")
            .map(|d| Path::new(&d).join(format!("keyward-bench-registry-{}", std::process::id())))
            .unwrap_or_else(|| tmp.join("registry"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("config.yml"),
            // Debian's stock configuration (filesystem storage, in-memory blob-descriptor
            // cache), quiet logs.
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{cache: {{blobdescriptor: inmemory}}, filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        while std::net::TcpStream::connect(&addr).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { addr, child, dir })
    }

    /// Pushes `count` distinct images `repo:i0`, `repo:i1`, ...; returns their references.
    pub fn push_images(&self, repo: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let addr = &self.addr;
        let layer = push_blob(addr, repo, b"bench layer")?;
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        let config_digest = push_blob(addr, repo, config)?;
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":11}}],"annotations":{{"n":"{i}"}}}}"#,
                config.len()
            );
            let (status, r) = http(
                addr,
                "PUT",
                &format!("/v2/{repo}/manifests/i{i}"),
                "application/vnd.oci.image.manifest.v1+json",
                m.as_bytes(),
            )?;
            anyhow::ensure!(status == 201, "manifest push: {r}");
            out.push(format!("{addr}/{repo}:i{i}"));
        }
        Ok(out)
    }
}

impl Drop for BenchRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request to the registry; returns status and headers.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, resp))
}

pub fn push_blob(addr: &str, repo: &str, data: &[u8]) -> anyhow::Result<String> {
    use sha2::Digest;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
    let (_, head) = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "application/octet-stream",
        b"",
    )?;
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .ok_or_else(|| anyhow::anyhow!("no upload location: {head}"))?
        .trim()
        .to_string();
    let path = location
        .split_once(addr)
        .map(|(_, p)| p.to_string())
        .unwrap_or(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, r) = http(
        addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        "application/octet-stream",
        data,
    )?;
    anyhow::ensure!(status == 201, "blob upload: {r}");
    Ok(digest)
}
