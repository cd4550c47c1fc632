//! A real distribution registry (`docker-registry`) on 127.0.0.1 for tests, and test
//! images pushed to it with skopeo from OCI layouts built here (no Docker engine).

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Basic-auth credentials, when the registry requires them.
    pub creds: Option<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A registry that requires HTTP basic auth (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(creds: Option<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut r = Self {
            addr: format!("127.0.0.1:{port}"),
            creds,
            dir,
            child: None,
        };
        r.restart(false);
        r
    }

    /// Restarts with another password for its user: clients holding the old one are
    /// refused (401) until it is set back.
    pub fn set_password(&mut self, password: &str) {
        if let Some((_, p)) = &mut self.creds {
            *p = password.to_string();
        }
        self.restart(false);
    }

    /// Restarts on the same storage, optionally read-only (pushes refused).
    pub fn restart(&mut self, read_only: bool) {
        self.stop();
        let d = self.dir.path();
        let mut auth = String::new();
        if let Some((u, p)) = &self.creds {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils)");
            std::fs::write(d.join("htpasswd"), out.stdout).expect("write htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: keyward-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    readonly:\n      enabled: {read_only}\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {}\n{auth}",
            d.join("data").display(),
            self.addr
        );
        std::fs::write(d.join("config.yml"), config).expect("write config");
        let log = std::fs::File::create(d.join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (package docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the registry.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A Docker config directory holding this registry's credentials.
    pub fn docker_config(&self) -> PathBuf {
        use base64::Engine;
        let dir = self.dir.path().join("docker");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let auths = match &self.creds {
            Some((u, p)) => {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                serde_json::json!({ &self.addr: {"auth": auth} })
            }
            None => serde_json::json!({}),
        };
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({ "auths": auths }).to_string(),
        )
        .expect("write docker config");
        dir
    }

    fn skopeo_copy(&self, layout: &Path, tag: &str, dest: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr));
        let out = cmd.output().expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pushes a single-platform image with content made from `seed` to `repo:tag`;
    /// returns its manifest digest.
    pub fn push_image(&self, repo_tag: &str, seed: &str) -> String {
        let layout = tempfile::tempdir().expect("tempdir");
        let m = write_image(layout.path(), seed, "amd64");
        write_index(layout.path(), &[m], "t", false);
        self.skopeo_copy(layout.path(), "t", repo_tag, false);
        self.pushed_digest(repo_tag, "application/vnd.oci.image.manifest.v1+json")
            .0
    }

    /// Digest and bytes of what the registry holds under `repo:tag` (skopeo may
    /// rewrite a manifest while pushing, e.g. to compress layers).
    fn pushed_digest(&self, repo_tag: &str, accept: &str) -> (String, Vec<u8>) {
        let (repo, tag) = repo_tag.rsplit_once(':').expect("repo:tag");
        let bytes = self.curl(&[
            "-H",
            &format!("Accept: {accept}"),
            &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
        ]);
        (format!("sha256:{}", sha256(&bytes)), bytes)
    }

    /// Pushes an index of one image per architecture; returns (index digest, platform
    /// manifest digests).
    pub fn push_index(&self, repo_tag: &str, seed: &str, arches: &[&str]) -> (String, Vec<String>) {
        let layout = tempfile::tempdir().expect("tempdir");
        let images: Vec<_> = arches
            .iter()
            .map(|a| write_image(layout.path(), &format!("{seed}-{a}"), a))
            .collect();
        write_index(layout.path(), &images, "t", true);
        self.skopeo_copy(layout.path(), "t", repo_tag, true);
        let (digest, bytes) =
            self.pushed_digest(repo_tag, "application/vnd.oci.image.index.v1+json");
        let index: serde_json::Value = serde_json::from_slice(&bytes).expect("index JSON");
        let platforms = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["digest"].as_str().expect("digest").to_string())
            .collect();
        (digest, platforms)
    }

    /// `curl` against the registry API with the registry's credentials.
    pub fn curl(&self, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSf"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg("-u").arg(format!("{u}:{p}"));
        }
        let out = cmd.args(args).output().expect("curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The HTTP status the registry answers a GET of `path` (`/v2/...`) with.
    pub fn curl_status(&self, path: &str) -> u16 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}{path}", self.addr))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// A manifest's bytes.
    pub fn manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        self.curl(&[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/{reference}", self.addr),
        ])
    }

    /// The layers of the cosign signature manifest (`sha256-<hex>.sig`) of `digest`.
    pub fn sig_layers(&self, repo: &str, digest: &str) -> Vec<serde_json::Value> {
        let tag = format!("{}.sig", digest.replace(':', "-"));
        let m: serde_json::Value =
            serde_json::from_slice(&self.manifest(repo, &tag)).expect("signature manifest");
        m["layers"].as_array().cloned().unwrap_or_default()
    }

    /// A blob's bytes.
    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        self.curl(&[
            "-L",
            &format!("http://{}/v2/{repo}/blobs/{digest}", self.addr),
        ])
    }

    /// Uploads a blob (POST for an upload session, then one PUT); returns its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256(data));
        let headers = String::from_utf8(self.curl(&[
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{}/v2/{repo}/blobs/uploads/", self.addr),
        ]))
        .expect("headers");
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("Location: ")
                    .or_else(|| l.strip_prefix("location: "))
            })
            .expect("upload location")
            .trim()
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.addr)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let f = self.dir.path().join("upload.bin");
        std::fs::write(&f, data).expect("write");
        self.curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("{url}{sep}digest={digest}"),
        ]);
        digest
    }

    /// Pushes `n` small images to one repository (`repo:t0` ...), sharing their blobs:
    /// each is one manifest. Returns (reference, digest) per image.
    pub fn push_many(&self, repo: &str, n: usize) -> Vec<(String, String)> {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cd = self.put_blob(repo, config);
        (0..n)
            .map(|i| {
                let m = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
                    "layers": [],
                    "annotations": {"n": i.to_string()}
                })
                .to_string();
                let tag = format!("t{i}");
                self.put_manifest(repo, &tag, m.as_bytes());
                (
                    format!("{}/{repo}:{tag}", self.addr),
                    format!("sha256:{}", sha256(m.as_bytes())),
                )
            })
            .collect()
    }

    /// Deletes a manifest by digest (the image is gone; its tags with it).
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        self.curl(&[
            "-X",
            "DELETE",
            &format!("http://{}/v2/{repo}/manifests/{digest}", self.addr),
        ]);
    }

    /// Tears one manifest in the registry's storage, as a crash mid-upload can: its
    /// revision link no longer holds a digest, and the registry answers 500 for it
    /// (every other object stays served).
    pub fn tear_manifest(&self, repo: &str, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        let link = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/revisions/sha256")
            .join(hex)
            .join("link");
        assert!(link.exists(), "no revision link at {}", link.display());
        std::fs::write(&link, b"torn").expect("write link");
    }

    /// Uploads an OCI image manifest under a tag.
    pub fn put_manifest(&self, repo: &str, tag: &str, data: &[u8]) {
        let f = self.dir.path().join("manifest.json");
        std::fs::write(&f, data).expect("write");
        self.curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
        ]);
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn put_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let d = sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(&d), data).expect("write blob");
    (format!("sha256:{d}"), data.len())
}

/// Writes config and layer blobs and the manifest; returns (manifest bytes, arch).
fn write_image(layout: &Path, seed: &str, arch: &str) -> (Vec<u8>, String) {
    let layer = format!("layer for {seed}").into_bytes();
    let (ld, ls) = put_blob(layout, &layer);
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ld]},
        "config": {}
    })
    .to_string()
    .into_bytes();
    let (cd, cs) = put_blob(layout, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]
    })
    .to_string()
    .into_bytes();
    put_blob(layout, &manifest);
    (manifest, arch.to_string())
}

/// Writes index.json (and for a multi-platform image an index blob tagged `tag`).
fn write_index(layout: &Path, images: &[(Vec<u8>, String)], tag: &str, multi: bool) {
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write");
    let descs: Vec<_> = images
        .iter()
        .map(|(m, arch)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", sha256(m)),
                "size": m.len(),
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    let top = if multi {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs
        })
        .to_string()
        .into_bytes();
        let (d, s) = put_blob(layout, &index);
        let outer = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s,
                           "annotations": {"org.opencontainers.image.ref.name": tag}}]
        });
        std::fs::write(layout.join("index.json"), outer.to_string()).expect("write");
        return;
    } else {
        let mut d = descs[0].clone();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        serde_json::json!({"schemaVersion": 2, "manifests": [d]})
    };
    std::fs::write(layout.join("index.json"), top.to_string()).expect("write");
}
