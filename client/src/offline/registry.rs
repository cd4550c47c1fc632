//! Pulling from an OCI registry without the daemon, for offline verification:
//! manifests and blobs, anonymously or with an anonymous bearer token (what public
//! registries hand out), over https, or http on loopback only.

use super::Failure;
use sha2::Digest;

/// Largest manifest or blob read.
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// A registry repository to pull from.
pub struct Repo {
    http: reqwest::Client,
    base: String,
    /// `registry/repository`, for messages.
    pub name: String,
    repository: String,
    token: tokio::sync::Mutex<Option<String>>,
}

fn loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h == "localhost" || h == "[::1]" || h.starts_with("127.")
}

/// Splits `registry/repository[:tag][@digest]`.
pub fn split(reference: &str) -> Result<(String, String, String), String> {
    let bad = || format!("{reference:?} is not registry/repository[:tag][@sha256:...]");
    let (registry, rest) = reference.split_once('/').ok_or_else(bad)?;
    if let Some((repo, digest)) = rest.split_once('@') {
        let repo = repo.rsplit_once(':').map_or(repo, |(r, _)| r);
        return Ok((registry.into(), repo.into(), digest.into()));
    }
    match rest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => Ok((registry.into(), repo.into(), tag.into())),
        _ => Ok((registry.into(), rest.into(), "latest".into())),
    }
}

impl Repo {
    /// The repository `repository` on `registry`.
    pub fn new(registry: &str, repository: &str) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scheme = if loopback(registry) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: format!("{scheme}://{registry}"),
            name: format!("{registry}/{repository}"),
            repository: repository.to_string(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn get(&self, path: &str, accept: &str) -> Result<Option<(Vec<u8>, String)>, Failure> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        for attempt in 0..2 {
            let mut req = self.http.get(&url).header(reqwest::header::ACCEPT, accept);
            if let Some(t) = self.token.lock().await.as_ref() {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| {
                Failure::Unreachable(format!("registry {} is unreachable: {e}", self.name))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                *self.token.lock().await = Some(self.anonymous_token(&challenge).await?);
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status.is_server_error() {
                return Err(Failure::Unreachable(format!(
                    "registry {} answered {status} for {path}",
                    self.name
                )));
            }
            if !status.is_success() {
                return Err(format!("registry {} answered {status} for {path}", self.name).into());
            }
            let media = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = resp
                .bytes()
                .await
                .map_err(|e| Failure::Unreachable(format!("registry {}: {e}", self.name)))?;
            if body.len() > MAX_BYTES {
                return Err(
                    format!("registry {} sent more than 4 MiB for {path}", self.name).into(),
                );
            }
            return Ok(Some((body.to_vec(), media)));
        }
        Err(format!(
            "registry {} refused an anonymous pull; offline verification reads public repositories",
            self.name
        )
        .into())
    }

    async fn anonymous_token(&self, challenge: &str) -> Result<String, Failure> {
        let field = |name: &str| {
            challenge
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_string)
        };
        let realm = field("realm").ok_or_else(|| {
            format!(
                "registry {} requires credentials; offline verification pulls anonymously",
                self.name
            )
        })?;
        let scope = field("scope").unwrap_or(format!("repository:{}:pull", self.repository));
        let mut req = self.http.get(&realm).query(&[("scope", scope)]);
        if let Some(s) = field("service") {
            req = req.query(&[("service", s)]);
        }
        let v: serde_json::Value = req
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                Failure::Unreachable(format!("registry {}: no anonymous token: {e}", self.name))
            })?
            .json()
            .await
            .map_err(|e| format!("registry {}: bad token answer: {e}", self.name))?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("registry {}: the token answer has no token", self.name).into())
    }

    /// A manifest by tag or digest, with its digest (checked when asked by digest).
    pub async fn manifest(&self, reference: &str) -> Result<Option<(Vec<u8>, String)>, Failure> {
        let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
        let Some((bytes, _)) = self.get(&format!("manifests/{reference}"), accept).await? else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(format!(
                "registry {} returned a manifest that does not match {reference}",
                self.name
            )
            .into());
        }
        Ok(Some((bytes, digest)))
    }

    /// A blob, checked against its digest.
    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, Failure> {
        let (bytes, _) = self
            .get(&format!("blobs/{digest}"), "*/*")
            .await?
            .ok_or_else(|| Failure::from(format!("registry {} has no blob {digest}", self.name)))?;
        let got = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if got != digest {
            return Err(format!(
                "registry {} returned a blob that does not match {digest}",
                self.name
            )
            .into());
        }
        Ok(bytes)
    }
}
