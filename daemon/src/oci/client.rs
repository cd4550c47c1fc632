//! The registry client: every request Keyward makes to a registry, with its
//! authorisation, size limits and deadline.

use super::credentials::RegistrySettings;
use super::fetch::{self, Auth, upload_url};
use super::{MANIFEST_TYPES, Manifest, RegistryError, is_loopback, sha256_digest};
use oci_client::Reference;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long an authorisation (bearer token or the knowledge that none is needed) is
/// reused before the registry is asked again. Registry tokens usually live 60 s or more;
/// a request refused before then re-authorises once.
const AUTH_REUSE: std::time::Duration = std::time::Duration::from_secs(45);

/// Most registries and authorisations remembered at once; past that the
/// oldest (or all) are forgotten, so that requests naming ever new hosts cannot grow
/// memory without bound.
const MAX_HOSTS: usize = 256;
const MAX_AUTHORISED: usize = 4096;

/// (registry, repository, push?).
type AuthScope = (String, String, bool);

/// One registry's HTTP client and base URL.
struct Conn {
    http: reqwest::Client,
    base: String,
}

/// Clients per registry, with credentials and limits.
pub struct Registries {
    settings: RegistrySettings,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// (registry, repository, push?) -> when it was authorised, and how.
    authorised: Mutex<HashMap<AuthScope, (std::time::Instant, Auth)>>,
    /// Blobs known to exist, per repository (shared config blobs are pushed once).
    known_blobs: super::known_blobs::KnownBlobs,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registries {
    /// Registries configured with these settings.
    pub fn new(settings: RegistrySettings) -> Self {
        Self {
            settings,
            conns: Mutex::new(HashMap::new()),
            authorised: Mutex::new(HashMap::new()),
            known_blobs: Default::default(),
        }
    }

    fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.limits.operation_timeout_seconds.max(1))
    }

    /// Runs one registry operation within the configured deadline.
    async fn timed<T>(
        &self,
        registry: &str,
        op: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        tokio::time::timeout(self.deadline(), op)
            .await
            .unwrap_or_else(|_| {
                Err(RegistryError::Timeout {
                    registry: registry.to_string(),
                    seconds: self.deadline().as_secs(),
                })
            })
    }

    fn conn(&self, registry: &str) -> Result<Arc<Conn>, RegistryError> {
        let mut conns = lock(&self.conns);
        if let Some(c) = conns.get(registry) {
            return Ok(c.clone());
        }
        let plain = is_loopback(registry) || self.settings.insecure(registry);
        let certs =
            self.settings
                .ca_bundle(registry)
                .map_err(|detail| RegistryError::Protocol {
                    registry: registry.to_string(),
                    detail,
                })?;
        let http = reqwest::Client::builder()
            .tls_certs_merge(certs)
            .https_only(!plain)
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("keywardd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fetch::unreachable_err(registry, e))?;
        let conn = Arc::new(Conn {
            http,
            base: format!("{}://{registry}", if plain { "http" } else { "https" }),
        });
        if conns.len() >= MAX_HOSTS {
            conns.clear();
        }
        conns.insert(registry.to_string(), conn.clone());
        Ok(conn)
    }

    fn credentials(&self, registry: &str) -> Option<(String, zeroize::Zeroizing<String>)> {
        self.settings.credentials(registry)
    }

    /// How to authenticate for an operation on a repository: reused if decided
    /// recently (`force` asks again, after the registry refused a request).
    async fn authorise(
        &self,
        image: &Reference,
        push: bool,
        force: bool,
    ) -> Result<Auth, RegistryError> {
        let registry = image.resolve_registry().to_string();
        let key = (registry.clone(), image.repository().to_string(), push);
        if !force
            && let Some((t, auth)) = lock(&self.authorised).get(&key)
            && t.elapsed() < AUTH_REUSE
        {
            return Ok(auth.clone());
        }
        let conn = self.conn(&registry)?;
        let auth = match fetch::challenge(&conn.http, &conn.base, &registry).await? {
            fetch::Challenge::None => Auth::Anonymous,
            fetch::Challenge::Basic => match self.credentials(&registry) {
                Some((u, p)) => Auth::Basic(u, p),
                None => Auth::Anonymous,
            },
            fetch::Challenge::Bearer { realm, service } => {
                let url =
                    fetch::check_realm(&self.settings, &registry, &realm).map_err(|detail| {
                        RegistryError::Auth {
                            registry: registry.clone(),
                            detail,
                        }
                    })?;
                let scope = format!(
                    "repository:{}:{}",
                    image.repository(),
                    if push { "pull,push" } else { "pull" }
                );
                let creds = self.credentials(&registry);
                let token = fetch::token(
                    &conn.http,
                    url,
                    service.as_deref(),
                    &scope,
                    creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                    &registry,
                )
                .await?;
                Auth::Bearer(token)
            }
        };
        let mut authorised = lock(&self.authorised);
        if authorised.len() >= MAX_AUTHORISED {
            authorised.retain(|_, (t, _)| t.elapsed() < AUTH_REUSE);
            if authorised.len() >= MAX_AUTHORISED {
                authorised.clear();
            }
        }
        authorised.insert(key, (std::time::Instant::now(), auth.clone()));
        Ok(auth)
    }

    /// Sends a request built for `image`'s registry with its authorisation; a request
    /// the registry refuses (401) is authorised again and sent once more.
    async fn send(
        &self,
        image: &Reference,
        push: bool,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let registry = image.resolve_registry();
        let conn = self.conn(registry)?;
        let mut retried = false;
        loop {
            let auth = self.authorise(image, push, retried).await?;
            let resp = auth
                .apply(build(&conn.http, &conn.base))
                .send()
                .await
                .map_err(|e| fetch::unreachable_err(registry, e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The error for an unsuccessful answer: status and OCI error code, never the body.
    async fn refusal(registry: &str, what: &str, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        let body = fetch::read_limited(resp, 16 * 1024, registry, "error answer")
            .await
            .unwrap_or_default();
        let summary = fetch::summarise(status, &body);
        let registry = registry.to_string();
        match status.as_u16() {
            404 => RegistryError::NotFound(what.to_string()),
            401 | 403 => RegistryError::Auth {
                registry,
                detail: summary,
            },
            // A gateway answering for a registry behind it that is down or overloaded.
            502..=504 => RegistryError::Unavailable {
                registry,
                detail: format!("{what}: {summary}"),
            },
            _ => RegistryError::Protocol {
                registry,
                detail: format!("{what}: {summary}"),
            },
        }
    }

    /// Fetches a manifest (by tag or digest) and checks its digest: against the
    /// requested digest, and against the registry's `Docker-Content-Digest`.
    pub async fn manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        let registry = reference.resolve_registry().to_string();
        self.timed(&registry, self.fetch_manifest(reference)).await
    }

    async fn fetch_manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        let registry = reference.resolve_registry();
        let what = format!("manifest {}", reference.whole());
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let repo = reference.repository().to_string();
        let resp = self
            .send(reference, false, |http, base| {
                http.get(format!("{base}/v2/{repo}/manifests/{target}"))
                    .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refusal(registry, &what, resp).await);
        }
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = fetch::read_limited(
            resp,
            self.settings.limits.max_manifest_bytes,
            registry,
            "manifest",
        )
        .await?;
        let actual = sha256_digest(&bytes);
        let expected = reference.digest().map(str::to_string);
        for claimed in [expected, header].into_iter().flatten() {
            if claimed != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.to_string(),
                    detail: format!("expected {claimed}, got {actual}"),
                });
            }
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Manifest {
            bytes,
            digest: actual,
            media_type,
        })
    }

    /// Like [`Registries::manifest`], but `None` when it does not exist.
    pub async fn manifest_if_exists(
        &self,
        reference: &Reference,
    ) -> Result<Option<Manifest>, RegistryError> {
        match self.manifest(reference).await {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads a signature payload or attestation envelope (at most
    /// `[oci] max_payload_bytes`) and checks its digest.
    pub async fn blob(&self, image: &Reference, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let registry = image.resolve_registry().to_string();
        self.timed(&registry, async {
            let what = format!("blob {digest}");
            let repo = image.repository().to_string();
            let resp = self
                .send(image, false, |http, base| {
                    http.get(format!("{base}/v2/{repo}/blobs/{digest}"))
                })
                .await?;
            if !resp.status().is_success() {
                return Err(Self::refusal(&registry, &what, resp).await);
            }
            let out = fetch::read_limited(
                resp,
                self.settings.limits.max_payload_bytes,
                &registry,
                "signature payload",
            )
            .await?;
            let actual = sha256_digest(&out);
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.clone(),
                    detail: format!("blob expected {digest}, got {actual}"),
                });
            }
            Ok(out)
        })
        .await
    }

    /// Uploads a blob; returns its digest. With `shared`, the blob is one that many
    /// pushes reuse: it is uploaded only if the registry lacks it, and remembered.
    pub async fn push_blob(
        &self,
        image: &Reference,
        data: Vec<u8>,
        shared: bool,
    ) -> Result<String, RegistryError> {
        let registry = image.resolve_registry().to_string();
        let digest = sha256_digest(&data);
        let known_key = (
            registry.clone(),
            image.repository().to_string(),
            digest.clone(),
        );
        if shared {
            self.known_blobs
                .once(
                    known_key,
                    self.timed(&registry, self.upload(image, data, &digest, shared)),
                )
                .await?;
        } else {
            self.timed(&registry, self.upload(image, data, &digest, shared))
                .await?;
        }
        Ok(digest)
    }

    /// POST for an upload session, then one PUT with the whole blob.
    async fn upload(
        &self,
        image: &Reference,
        data: Vec<u8>,
        digest: &str,
        shared: bool,
    ) -> Result<(), RegistryError> {
        let registry = image.resolve_registry();
        let repo = image.repository().to_string();
        let what = format!("blob {digest}");
        if shared {
            let resp = self
                .send(image, true, |http, base| {
                    http.head(format!("{base}/v2/{repo}/blobs/{digest}"))
                })
                .await?;
            if resp.status().is_success() {
                return Ok(());
            }
        }
        let resp = self
            .send(image, true, |http, base| {
                http.post(format!("{base}/v2/{repo}/blobs/uploads/"))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refusal(registry, &what, resp).await);
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Protocol {
                registry: registry.to_string(),
                detail: "the upload answer has no Location".into(),
            })?;
        let conn = self.conn(registry)?;
        let url = upload_url(&conn.base, &location, registry)?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let data = bytes::Bytes::from(data);
        let resp = self
            .send(image, true, |http, _| {
                http.put(format!("{url}{sep}digest={digest}"))
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refusal(registry, &what, resp).await);
        }
        Ok(())
    }

    /// Uploads a manifest under `reference` (a tag); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let registry = reference.resolve_registry().to_string();
        let digest = sha256_digest(&bytes);
        let what = format!("manifest {}", reference.whole());
        let repo = reference.repository().to_string();
        let tag = reference.tag().unwrap_or("latest").to_string();
        let body = bytes::Bytes::from(bytes);
        self.timed(&registry, async {
            let resp = self
                .send(reference, true, |http, base| {
                    http.put(format!("{base}/v2/{repo}/manifests/{tag}"))
                        .header(reqwest::header::CONTENT_TYPE, media_type)
                        .body(body.clone())
                })
                .await?;
            if !resp.status().is_success() {
                return Err(Self::refusal(&registry, &what, resp).await);
            }
            Ok(())
        })
        .await?;
        Ok(digest)
    }
}
