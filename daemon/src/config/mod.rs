//! The daemon's configuration file (`keywardd.toml`). Unknown fields are errors.

mod backends;
mod sections;

pub use backends::{BackendConfig, YubiConnector, pkcs11_settings, secret_source};
pub use sections::{
    ApprovalSettings, AuditConfig, MfaConfig, SigningSettings, StoreSettings, TsaSettings,
};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown field, missing field).
    #[error("invalid configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and field.
        message: String,
    },
}

/// `keywardd.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store, CA certificate and TLS identity live.
    pub data_dir: PathBuf,
    /// Listening addresses.
    #[serde(default)]
    pub listen: Listen,
    /// TLS settings.
    #[serde(default)]
    pub tls: Tls,
    /// The Keyward CA.
    #[serde(default)]
    pub ca: CaConfig,
    /// Backend used when a request names none; the first configured one by default.
    pub default_backend: Option<String>,
    /// HSM worker threads (one session each) per backend.
    #[serde(default = "default_threads")]
    pub hsm_threads: usize,
    /// The HSMs.
    #[serde(rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// Registry credentials and TLS settings.
    #[serde(default, rename = "registry")]
    pub registries: Vec<crate::oci::credentials::RegistryEntry>,
    /// Docker `config.json` to read registry credentials from (default:
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The TOTP second factor.
    #[serde(default)]
    pub mfa: MfaConfig,
    /// Size and time limits for registry traffic.
    #[serde(default)]
    pub oci: crate::oci::OciLimits,
    /// How jobs (re-signing campaigns) run.
    #[serde(default)]
    pub jobs: crate::jobs::JobSettings,
    /// The signed revocation list.
    #[serde(default)]
    pub revocation: crate::revocation::RevocationSettings,
    /// What signature layers carry.
    #[serde(default)]
    pub signing: SigningSettings,
    /// The time-stamping authority's HTTP endpoint.
    #[serde(default)]
    pub tsa: TsaSettings,
    /// The store's engine.
    #[serde(default)]
    pub store: StoreSettings,
    /// How long finished approvals stay current.
    #[serde(default)]
    pub approvals: ApprovalSettings,
}

fn default_threads() -> usize {
    2
}

/// Listening addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// gRPC over mutually authenticated TLS.
    #[serde(default = "default_grpc")]
    pub grpc: SocketAddr,
    /// Plain HTTP for `/healthz` and `/metrics`.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            grpc: default_grpc(),
            http: default_http(),
        }
    }
}

/// TLS settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Names and IP addresses in the server certificate.
    #[serde(default = "default_names")]
    pub server_names: Vec<String>,
}

fn default_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            server_names: default_names(),
        }
    }
}

/// The Keyward CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Backend holding the CA key; the default backend if unset.
    pub backend: Option<String>,
    /// Common name of the CA certificate.
    #[serde(default = "default_cn")]
    pub common_name: String,
    /// Key versions' certificates name their key as a URI SAN: this prefix and the
    /// key's name (`keyward://keys/release-prod`), the same for every version.
    #[serde(default = "default_identity_prefix")]
    pub identity_prefix: String,
    /// The issuer verifiers match (`cosign --certificate-oidc-issuer`); default
    /// `keyward://ca/` and the first 16 hex digits of the CA key's fingerprint.
    pub issuer: Option<String>,
    /// Days a key version's certificate lasts when its key has no rotation schedule
    /// (with one, it lasts to the planned retirement plus the overlap). Renewed before
    /// it ends while the version is active.
    #[serde(default = "default_certificate_days")]
    pub certificate_days: u32,
    /// The algorithm of the instance's own keys (CA, audit, time-stamping), fixed when
    /// the instance is initialised: `ecdsa-p256`, `rsa-pkcs1-3072` or
    /// `rsa-pkcs1-4096`; default the first of these the CA's backend offers.
    pub algorithm: Option<crate::hsm::Algorithm>,
}

fn default_certificate_days() -> u32 {
    365
}

fn default_identity_prefix() -> String {
    "keyward://keys/".into()
}

impl CaConfig {
    /// The issuer key versions' certificates name, for the CA with this key
    /// fingerprint.
    pub fn issuer_for(&self, ca_fingerprint: &str) -> String {
        self.issuer.clone().unwrap_or_else(|| {
            format!(
                "keyward://ca/{}",
                ca_fingerprint.get(..16).unwrap_or(ca_fingerprint)
            )
        })
    }
}

fn default_cn() -> String {
    "Keyward CA".into()
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            backend: None,
            common_name: default_cn(),
            identity_prefix: default_identity_prefix(),
            issuer: None,
            certificate_days: default_certificate_days(),
            algorithm: None,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file. Relative paths are taken relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.data_dir);
        for b in &mut cfg.backends {
            match b {
                BackendConfig::Pkcs11 {
                    module, pin_file, ..
                } => {
                    abs(module);
                    if let Some(f) = pin_file {
                        abs(f);
                    }
                }
                BackendConfig::Yubihsm { password_file, .. } => {
                    if let Some(f) = password_file {
                        abs(f);
                    }
                }
            }
        }
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("no [[backend]] is configured".into());
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            if !names.insert(b.name()) {
                return Err(format!("backend name {:?} is used twice", b.name()));
            }
            match b {
                BackendConfig::Pkcs11 {
                    name,
                    pin_file,
                    pin_env,
                    ..
                } => {
                    secret_source(&format!("backend {name}"), pin_file, pin_env)?;
                }
                BackendConfig::Yubihsm {
                    name,
                    password_file,
                    password_env,
                    ..
                } => {
                    secret_source(&format!("backend {name}"), password_file, password_env)?;
                }
            }
        }
        for (what, n) in [
            ("default_backend", &self.default_backend),
            ("ca.backend", &self.ca.backend),
        ] {
            if let Some(n) = n
                && !names.contains(n.as_str())
            {
                return Err(format!(
                    "{what} names backend {n:?}, which is not configured"
                ));
            }
        }
        if let Some(a) = self.ca.algorithm {
            crate::pki::instance_key::check_configured(a)?;
        }
        if self.ca.certificate_days == 0 {
            return Err("ca.certificate_days is 0: key certificates would end as they are issued; give at least 1 (default 365)".into());
        }
        Ok(())
    }

    /// The default backend's name.
    pub fn default_backend(&self) -> &str {
        self.default_backend
            .as_deref()
            .unwrap_or_else(|| self.backends[0].name())
    }

    /// The backend holding the CA key.
    pub fn ca_backend(&self) -> &str {
        self.ca.backend.as_deref().unwrap_or(self.default_backend())
    }

    /// The store's directory under the data directory.
    pub fn store_dir(&self) -> std::path::PathBuf {
        self.data_dir.join("store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "data"
[[backend]]
type = "pkcs11"
name = "softhsm"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "keyward"
pin_file = "pin"
"#;

    #[test]
    fn relative_paths_follow_the_file() {
        let c = Config::parse(GOOD, Path::new("/etc/keyward")).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/keyward/data"));
        assert_eq!(c.default_backend(), "softhsm");
    }

    #[test]
    fn unknown_field_is_named() {
        let bad = GOOD.replace("token_label", "token_lable");
        let err = Config::parse(&bad, Path::new("/")).unwrap_err();
        assert!(err.contains("token_lable"), "{err}");
        let bad = format!("{GOOD}\nlisten_addr = \"x\"\n");
        let err = Config::parse(&bad, Path::new("/")).unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn pin_source_must_be_given_once() {
        let bad = GOOD.replace("pin_file = \"pin\"", "");
        let err = Config::parse(&bad, Path::new("/")).unwrap_err();
        assert!(err.contains("pin_env"), "{err}");
    }
}
