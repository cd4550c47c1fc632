//! Registry credentials and TLS settings: `[[registry]]` entries of the daemon
//! configuration first, then a Docker `config.json`.

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// One `[[registry]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Registry host (`registry.example.com`, `host:port`).
    pub host: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// File holding the password or token.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password or token.
    pub password_env: Option<String>,
    /// Speak plain HTTP to this non-loopback host.
    #[serde(default)]
    pub insecure: bool,
    /// PEM bundle of CAs to trust for this registry.
    pub ca_bundle: Option<PathBuf>,
    /// Other hosts (`host[:port]`) whose bearer-token service this registry may name
    /// as its realm (e.g. `auth.docker.io` for Docker Hub). Its own host is always
    /// allowed.
    #[serde(default)]
    pub token_hosts: Vec<String>,
}

/// A Docker `config.json` (only `auths` is read).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl DockerConfig {
    /// Reads `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("invalid Docker config {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read Docker config {}: {e}", path.display())),
        }
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            return PathBuf::from(d).join("config.json");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".docker/config.json")
    }

    fn credentials(&self, registry: &str) -> Option<(String, Zeroizing<String>)> {
        let entry = self.auths.iter().find_map(|(k, v)| {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(k);
            (host == registry).then_some(v)
        })?;
        if let Some(auth) = &entry.auth {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .ok()?,
            );
            let text = std::str::from_utf8(&decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            return Some((u.to_string(), Zeroizing::new(p.to_string())));
        }
        Some((
            entry.username.clone()?,
            Zeroizing::new(entry.password.clone()?),
        ))
    }
}

/// Everything the daemon knows about registries.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Configured entries.
    pub entries: Vec<RegistryEntry>,
    /// Docker credentials.
    pub docker: DockerConfig,
    /// Size and time limits.
    pub limits: super::fetch::OciLimits,
}

impl RegistrySettings {
    fn entry(&self, registry: &str) -> Option<&RegistryEntry> {
        self.entries.iter().find(|e| e.host == registry)
    }

    /// Whether a non-loopback host is configured for plain HTTP.
    pub fn insecure(&self, registry: &str) -> bool {
        self.entry(registry).is_some_and(|e| e.insecure)
    }

    /// Extra CA certificates for a registry.
    pub fn ca_bundle(&self, registry: &str) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(path) = self.entry(registry).and_then(|e| e.ca_bundle.as_ref()) else {
            return Ok(Vec::new());
        };
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
        reqwest::Certificate::from_pem_bundle(&data)
            .map_err(|e| format!("CA bundle {} is not PEM: {e}", path.display()))
    }

    /// Hosts besides the registry's own that may serve its bearer tokens.
    pub fn token_hosts<'a>(&'a self, registry: &str) -> impl Iterator<Item = String> + 'a {
        self.entry(registry)
            .into_iter()
            .flat_map(|e| e.token_hosts.iter().map(|h| h.to_ascii_lowercase()))
    }

    /// User and password for a registry: the daemon config, else Docker's.
    pub fn credentials(&self, registry: &str) -> Option<(String, Zeroizing<String>)> {
        if let Some(e) = self.entry(registry)
            && let Some(user) = &e.username
        {
            let secret = crate::config::secret_source(
                &format!("registry {registry}"),
                &e.password_file,
                &e.password_env,
            )
            .ok()?
            .read()
            .ok()?;
            return Some((user.clone(), secret));
        }
        self.docker.credentials(registry)
    }
}
