//! The `[[backend]]` entries of keywardd.toml: one per HSM (a PKCS#11 module and token,
//! or a YubiHSM), and where each one's PIN or password comes from.

use crate::hsm::pkcs11::{PinSource, Pkcs11Settings};
use serde::Deserialize;
use std::path::PathBuf;

/// One HSM.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// Any PKCS#11 module (SoftHSM2, network HSMs, YubiHSM's PKCS#11 module, ...).
    Pkcs11 {
        /// Name used in requests.
        name: String,
        /// Path of the module.
        module: PathBuf,
        /// Label of the token.
        token_label: String,
        /// File holding the user PIN.
        pin_file: Option<PathBuf>,
        /// Environment variable holding the user PIN.
        pin_env: Option<String>,
    },
    /// A YubiHSM2.
    Yubihsm {
        /// Name used in requests.
        name: String,
        /// How to reach the device.
        connector: YubiConnector,
        /// Authentication key id (1 is the factory default).
        #[serde(default = "default_auth_key")]
        auth_key_id: u16,
        /// File holding the authentication key's password.
        password_file: Option<PathBuf>,
        /// Environment variable holding the password.
        password_env: Option<String>,
    },
}

fn default_auth_key() -> u16 {
    1
}

/// How to reach a YubiHSM2.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum YubiConnector {
    /// Through `yubihsm-connector`.
    Http {
        /// Connector address.
        #[serde(default = "default_yubi_addr")]
        addr: String,
        /// Connector port.
        #[serde(default = "default_yubi_port")]
        port: u16,
    },
    /// Directly over USB (needs keywardd built with the `usb` feature).
    Usb {
        /// Serial number of the device; the first one found if unset.
        serial: Option<String>,
    },
}

fn default_yubi_addr() -> String {
    "127.0.0.1".into()
}
fn default_yubi_port() -> u16 {
    12345
}

impl BackendConfig {
    /// The backend's name.
    pub fn name(&self) -> &str {
        match self {
            BackendConfig::Pkcs11 { name, .. } | BackendConfig::Yubihsm { name, .. } => name,
        }
    }
}

/// Exactly one of a file or a variable must name a secret.
pub fn secret_source(
    what: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<PinSource, String> {
    match (file, env) {
        (Some(f), None) => Ok(PinSource::File(f.clone())),
        (None, Some(v)) => Ok(PinSource::Env(v.clone())),
        (None, None) => Err(format!(
            "{what}: set pin_file/password_file or pin_env/password_env"
        )),
        (Some(_), Some(_)) => Err(format!(
            "{what}: set either the file or the variable, not both"
        )),
    }
}

/// PKCS#11 settings of a `pkcs11` backend entry.
pub fn pkcs11_settings(b: &BackendConfig) -> Option<Result<Pkcs11Settings, String>> {
    let BackendConfig::Pkcs11 {
        name,
        module,
        token_label,
        pin_file,
        pin_env,
    } = b
    else {
        return None;
    };
    Some(
        secret_source(&format!("backend {name}"), pin_file, pin_env).map(|pin| Pkcs11Settings {
            name: name.clone(),
            module: module.clone(),
            token_label: token_label.clone(),
            pin,
        }),
    )
}
