//! `client.toml`: where the daemon is and which identity to present. keywardd writes it
//! (`keywardd init`, `keywardd dev`), the CLI and the tests read it: one type for all.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `client.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://host:port` of the daemon's gRPC listener.
    pub endpoint: String,
    /// Name to expect in the server certificate (default: the endpoint's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The Keyward CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This principal's client certificate (PEM).
    pub cert: PathBuf,
    /// This principal's private key (PEM).
    pub key: PathBuf,
}

impl ClientConfig {
    /// Reads a configuration file; relative paths are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read client configuration {}: {e} (set KEYWARD_CONFIG or pass --config)",
                path.display()
            ))
        })?;
        let mut cfg: ClientConfig = toml::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "invalid client configuration {}: {e}",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.ca_cert, &mut cfg.cert, &mut cfg.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// The file's text, with a comment naming whose configuration it is.
    pub fn to_toml(&self, principal: &str) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# keyward client configuration for principal {principal}\n{body}")
    }

    /// `KEYWARD_CONFIG`, else `~/.config/keyward/client.toml`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("KEYWARD_CONFIG") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".config/keyward/client.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClientConfig {
            endpoint: "https://127.0.0.1:8443".into(),
            server_name: Some("localhost".into()),
            ca_cert: dir.path().join("ca.pem"),
            cert: dir.path().join("a b.crt"),
            key: dir.path().join("a\"b.key"),
        };
        let path = dir.path().join("client.toml");
        std::fs::write(&path, cfg.to_toml("admin")).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), cfg);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            "endpoint = \"https://h:1\"\nca_cert = \"ca.pem\"\ncert = \"c\"\nkey = \"k\"\n",
        )
        .unwrap();
        assert_eq!(
            ClientConfig::load(&path).unwrap().cert,
            dir.path().join("c")
        );
        std::fs::write(&path, "endpoint = \"x\"\nca = \"y\"\n").unwrap();
        let e = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
