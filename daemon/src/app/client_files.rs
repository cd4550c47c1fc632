//! A principal's identity files and its `client.toml`.

use super::{StartError, io};
use crate::pki::TlsIdentity;
use std::path::{Path, PathBuf};

/// Writes a file atomically with the given mode (see [`crate::files::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StartError> {
    crate::files::write_atomic(path, data, mode).map_err(StartError::from)
}

/// A principal's client identity, ready to be written as files.
pub struct ClientIdentity {
    /// The principal's name (certificate CN).
    pub name: String,
    /// Key and certificate.
    pub tls: TlsIdentity,
    /// The Keyward CA certificate, PEM.
    pub ca_pem: String,
}

impl ClientIdentity {
    /// Writes `NAME.crt`, `NAME.key` (0600), `ca.pem` and, given an endpoint, a
    /// `client.toml` pointing at it into `dir`; returns the client.toml path.
    pub fn write(&self, dir: &Path, endpoint: Option<&str>) -> Result<PathBuf, StartError> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let cert = dir.join(format!("{}.crt", self.name));
        let key = dir.join(format!("{}.key", self.name));
        let ca = dir.join("ca.pem");
        write_atomic(&cert, self.tls.certificate_pem.as_bytes(), 0o644)?;
        write_atomic(&key, self.tls.key_pem.as_bytes(), 0o600)?;
        write_atomic(&ca, self.ca_pem.as_bytes(), 0o644)?;
        let path = dir.join("client.toml");
        if let Some(endpoint) = endpoint {
            write_client_config(&path, endpoint, &ca, &cert, &key)?;
        }
        Ok(path)
    }
}

/// Writes a client configuration for the `keyward` CLI (the client's own type, so
/// daemon, CLI and tests read and write one schema).
pub fn write_client_config(
    path: &Path,
    endpoint: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(), StartError> {
    let config = keyward_client::ClientConfig {
        endpoint: endpoint.to_string(),
        server_name: Some("localhost".into()),
        ca_cert: ca.to_path_buf(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let name = cert
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    write_atomic(path, config.to_toml(&name).as_bytes(), 0o600)
}
