//! OCI distribution client: resolve references, pull and push manifests and blobs, with
//! anonymous, basic (daemon config or Docker `config.json`) and bearer-token auth.
//!
//! Loopback registries (127.0.0.0/8, localhost, ::1) speak plain HTTP, as Docker treats
//! them; any other host needs TLS unless configured as insecure. Every manifest fetched
//! is checked against its digest and size; every operation has a deadline; bearer
//! realms are checked before a token is asked for (`fetch.rs`).

mod client;
pub mod credentials;
pub mod fetch;
mod known_blobs;
mod reference;

pub use client::Registries;
pub use credentials::{DockerConfig, RegistrySettings};
pub use fetch::OciLimits;

use oci_client::Reference;
use sha2::Digest;

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
    /// An answer was larger than Keyward accepts.
    #[error(
        "registry {registry} sent a {what} larger than {limit} bytes; it was refused (raise [oci] limits in keywardd.toml if it is genuine)"
    )]
    TooLarge {
        /// Registry host.
        registry: String,
        /// What was too large.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// An operation did not finish in time.
    #[error(
        "registry {registry} did not finish within {seconds} s ([oci] operation_timeout_seconds); nothing was changed by this request"
    )]
    Timeout {
        /// Registry host.
        registry: String,
        /// The deadline.
        seconds: u64,
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
        let parsed = reference::parse(s).map_err(bad)?;
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
