//! OCI distribution client: resolve references, pull and push manifests and blobs, with
//! anonymous, basic (daemon config or Docker `config.json`) and bearer-token auth.
//!
//! Loopback registries (127.0.0.0/8, localhost, ::1) speak plain HTTP, as Docker treats
//! them; any other host needs TLS unless configured as insecure. Every manifest fetched
//! is checked against its digest.

pub mod credentials;

pub use credentials::{DockerConfig, RegistrySettings};

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Media types of manifests and indexes Keyward resolves.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Registry failures, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference cannot be parsed.
    #[error("malformed image reference {reference:?}: {detail}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The repository, tag, manifest or blob does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The registry refused our credentials (401/403).
    #[error("registry {registry} refused authentication: {detail}")]
    Auth {
        /// Registry host.
        registry: String,
        /// The registry's answer.
        detail: String,
    },
    /// The registry could not be reached.
    #[error("registry {registry} is unreachable: {detail}")]
    Unavailable {
        /// Registry host.
        registry: String,
        /// Why.
        detail: String,
    },
    /// What the registry returned does not match its digest.
    #[error("registry {registry} returned content that does not match its digest: {detail}")]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// Expected and actual digests.
        detail: String,
    },
    /// Any other protocol failure.
    #[error("registry {registry}: {detail}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What happened.
        detail: String,
    },
}

/// A parsed image reference.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// As the user wrote it (used as the signature's docker-reference).
    pub original: String,
    /// Parsed form.
    pub parsed: Reference,
}

impl ImageRef {
    /// Parses `registry/repository[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let bad = |detail: String| RegistryError::InvalidReference {
            reference: s.to_string(),
            detail,
        };
        if s.trim() != s || s.is_empty() {
            return Err(bad("empty or surrounded by spaces".into()));
        }
        let parsed: Reference = s
            .parse()
            .map_err(|e: oci_client::ParseError| bad(e.to_string()))?;
        Ok(Self {
            original: s.to_string(),
            parsed,
        })
    }

    /// `registry/repository`, the name scope policies match.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.parsed.registry(), self.parsed.repository())
    }

    /// The reference without digest: `registry/repository[:tag]`, as cosign and
    /// containers-policy expect in `docker-reference`.
    pub fn identity(&self) -> String {
        match self.parsed.tag() {
            Some(t) => format!("{}:{t}", self.repository()),
            None => self.repository(),
        }
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.parsed.registry().to_string(),
            self.parsed.repository().to_string(),
            tag.to_string(),
        )
    }

    /// The same repository at a digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.parsed.registry().to_string(),
            self.parsed.repository().to_string(),
            digest.to_string(),
        )
    }
}

/// Whether a registry host is on the loopback interface.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// sha256 digest string of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A manifest as fetched: bytes, digest, media type.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Raw bytes (what the digest covers).
    pub bytes: Vec<u8>,
    /// `sha256:...` of `bytes`, checked.
    pub digest: String,
    /// Its `mediaType`.
    pub media_type: String,
}

/// How long an authorisation (bearer token or the knowledge that none is needed) is
/// reused before the registry is asked again. Registry tokens usually live 60 s or more;
/// a request refused before then re-authorises once.
const AUTH_REUSE: std::time::Duration = std::time::Duration::from_secs(45);

/// Clients per registry, with credentials.
pub struct Registries {
    settings: RegistrySettings,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// (registry, repository, push?) -> when it was last authorised.
    authorised: Mutex<HashMap<(String, String, bool), std::time::Instant>>,
    /// Blobs known to exist, per repository (shared config blobs are pushed once).
    known_blobs: Mutex<std::collections::HashSet<(String, String, String)>>,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries").finish_non_exhaustive()
    }
}

impl Registries {
    /// Registries configured with these settings.
    pub fn new(settings: RegistrySettings) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
            authorised: Mutex::new(HashMap::new()),
            known_blobs: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Authorises for an operation on a repository unless that was done recently
    /// (`force` asks again, after the registry refused a request).
    async fn authorise(
        &self,
        client: &Client,
        image: &Reference,
        push: bool,
        force: bool,
    ) -> Result<(), RegistryError> {
        let registry = image.resolve_registry().to_string();
        let key = (registry.clone(), image.repository().to_string(), push);
        if !force {
            let recent = self
                .authorised
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .is_some_and(|t| t.elapsed() < AUTH_REUSE);
            if recent {
                return Ok(());
            }
        }
        let op = if push {
            oci_client::RegistryOperation::Push
        } else {
            oci_client::RegistryOperation::Pull
        };
        client
            .auth(image, &self.auth(&registry), op)
            .await
            .map_err(|e| Self::map(&registry, "authentication", e))?;
        self.authorised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, std::time::Instant::now());
        Ok(())
    }

    fn client(&self, registry: &str) -> Result<Arc<Client>, RegistryError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let mut config = oci_client::client::ClientConfig::default();
        let plain = is_loopback(registry) || self.settings.insecure(registry);
        config.protocol = if plain {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        };
        config.extra_root_certificates =
            self.settings
                .ca_bundle(registry)
                .map_err(|detail| RegistryError::Protocol {
                    registry: registry.to_string(),
                    detail,
                })?;
        config.connect_timeout = Some(std::time::Duration::from_secs(5));
        config.read_timeout = Some(std::time::Duration::from_secs(60));
        config.use_monolithic_push = true;
        let client = Arc::new(Client::new(config));
        clients.insert(registry.to_string(), client.clone());
        Ok(client)
    }

    fn auth(&self, registry: &str) -> RegistryAuth {
        match self.settings.credentials(registry) {
            Some((user, password)) => RegistryAuth::Basic(user, password.to_string()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn map(registry: &str, what: &str, e: OciDistributionError) -> RegistryError {
        let registry = registry.to_string();
        match e {
            OciDistributionError::ImageManifestNotFoundError(_) => {
                RegistryError::NotFound(what.to_string())
            }
            OciDistributionError::RegistryError { ref envelope, .. } => {
                let code = envelope.errors.first().map(|e| &e.code);
                match code {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown,
                    ) => RegistryError::NotFound(what.to_string()),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        RegistryError::Auth {
                            registry,
                            detail: e.to_string(),
                        }
                    }
                    _ => RegistryError::Protocol {
                        registry,
                        detail: e.to_string(),
                    },
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => {
                RegistryError::NotFound(what.to_string())
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            }
            | OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RegistryError::Auth {
                registry,
                detail: e.to_string(),
            },
            OciDistributionError::DigestError(d) => RegistryError::DigestMismatch {
                registry,
                detail: d.to_string(),
            },
            OciDistributionError::RequestError(r) => {
                let mut detail = r.to_string();
                let mut src = std::error::Error::source(&r);
                while let Some(s) = src {
                    detail = format!("{detail}: {s}");
                    src = s.source();
                }
                RegistryError::Unavailable { registry, detail }
            }
            other => RegistryError::Protocol {
                registry,
                detail: other.to_string(),
            },
        }
    }

    /// Fetches a manifest (by tag or digest) and checks its digest: against the
    /// requested digest, and against the registry's `Docker-Content-Digest`.
    pub async fn manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        let registry = reference.resolve_registry().to_string();
        let client = self.client(&registry)?;
        let what = format!("manifest {}", reference.whole());
        let mut retried = false;
        let (bytes, digest) = loop {
            self.authorise(&client, reference, false, retried).await?;
            match client
                .pull_manifest_raw(reference, &self.auth(&registry), &MANIFEST_TYPES)
                .await
                .map_err(|e| Self::map(&registry, &what, e))
            {
                Err(RegistryError::Auth { .. }) if !retried => retried = true,
                r => break r?,
            }
        };
        let actual = sha256_digest(&bytes);
        let expected = reference.digest().unwrap_or(&digest);
        if expected != actual || digest != actual {
            return Err(RegistryError::DigestMismatch {
                registry,
                detail: format!("expected {expected}, got {actual}"),
            });
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Manifest {
            bytes: bytes.to_vec(),
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

    /// Downloads a blob and checks its digest.
    pub async fn blob(&self, image: &Reference, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let registry = image.resolve_registry().to_string();
        let client = self.client(&registry)?;
        client
            .auth(
                image,
                &self.auth(&registry),
                oci_client::RegistryOperation::Pull,
            )
            .await
            .map_err(|e| Self::map(&registry, "authentication", e))?;
        let mut out = Vec::new();
        client
            .pull_blob(image, digest, &mut out)
            .await
            .map_err(|e| Self::map(&registry, &format!("blob {digest}"), e))?;
        let actual = sha256_digest(&out);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry,
                detail: format!("blob expected {digest}, got {actual}"),
            });
        }
        Ok(out)
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
        let client = self.client(&registry)?;
        let digest = sha256_digest(&data);
        let known_key = (
            registry.clone(),
            image.repository().to_string(),
            digest.clone(),
        );
        if shared
            && self
                .known_blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&known_key)
        {
            return Ok(digest);
        }
        let what = format!("blob {digest}");
        let mut retried = false;
        loop {
            self.authorise(&client, image, true, retried).await?;
            let result = async {
                if shared
                    && client
                        .blob_exists(image, &digest)
                        .await
                        .map_err(|e| Self::map(&registry, &what, e))?
                {
                    return Ok(());
                }
                client
                    .push_blob(image, data.clone(), &digest)
                    .await
                    .map(|_| ())
                    .map_err(|e| Self::map(&registry, &what, e))
            }
            .await;
            match result {
                Err(RegistryError::Auth { .. }) if !retried => retried = true,
                r => {
                    r?;
                    break;
                }
            }
        }
        if shared {
            self.known_blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(known_key);
        }
        Ok(digest)
    }

    /// Uploads a manifest under `reference` (a tag); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let registry = reference.resolve_registry().to_string();
        let client = self.client(&registry)?;
        let digest = sha256_digest(&bytes);
        let content_type = media_type.parse().map_err(|_| RegistryError::Protocol {
            registry: registry.clone(),
            detail: format!("bad media type {media_type}"),
        })?;
        client
            .auth(
                reference,
                &self.auth(&registry),
                oci_client::RegistryOperation::Push,
            )
            .await
            .map_err(|e| Self::map(&registry, "authentication", e))?;
        client
            .push_manifest_raw(reference, bytes, content_type)
            .await
            .map_err(|e| Self::map(&registry, &format!("manifest {}", reference.whole()), e))?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn identity_keeps_the_tag_and_drops_the_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(r.identity(), "127.0.0.1:5000/app:v1");
        assert_eq!(r.repository(), "127.0.0.1:5000/app");
        let d = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        assert_eq!(
            ImageRef::parse(&d).unwrap().identity(),
            "127.0.0.1:5000/app"
        );
        assert!(ImageRef::parse("has space/app:v1").is_err());
        assert!(ImageRef::parse("app:").is_err());
    }
}
