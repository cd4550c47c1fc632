//! Opens an HSM backend from its configuration (add a backend kind here).

use super::StartError;
use crate::config::{BackendConfig, YubiConnector, pkcs11_settings, secret_source};
use crate::hsm::Backend;
use crate::hsm::pkcs11::Pkcs11Backend;
use crate::hsm::yubihsm::YubiHsmBackend;
use std::sync::Arc;

pub fn open_backend(b: &BackendConfig) -> Result<Arc<dyn Backend>, StartError> {
    let hsm = |source| StartError::Hsm {
        backend: b.name().to_string(),
        source,
    };
    match b {
        BackendConfig::Pkcs11 { .. } => {
            let settings = pkcs11_settings(b)
                .ok_or_else(|| StartError::Config("not a pkcs11 backend".into()))?
                .map_err(StartError::Config)?;
            Ok(Arc::new(Pkcs11Backend::open(settings).map_err(hsm)?))
        }
        BackendConfig::Yubihsm {
            name,
            connector,
            auth_key_id,
            password_file,
            password_env,
        } => {
            let password = secret_source(&format!("backend {name}"), password_file, password_env)
                .map_err(StartError::Config)?
                .read()
                .map_err(hsm)?;
            let credentials =
                yubihsm::Credentials::from_password(*auth_key_id, password.as_bytes());
            let connector = match connector {
                YubiConnector::Http { addr, port } => {
                    yubihsm::Connector::http(&yubihsm::HttpConfig {
                        addr: addr.clone(),
                        port: *port,
                        timeout_ms: 5000,
                    })
                }
                #[cfg(feature = "usb")]
                YubiConnector::Usb { serial } => {
                    let serial =
                        serial.as_deref().map(str::parse).transpose().map_err(|_| {
                            StartError::Config(format!("backend {name}: bad serial"))
                        })?;
                    yubihsm::Connector::usb(&yubihsm::UsbConfig {
                        serial,
                        timeout_ms: 5000,
                    })
                }
                #[cfg(not(feature = "usb"))]
                YubiConnector::Usb { .. } => {
                    return Err(StartError::Config(format!(
                        "backend {name}: this keywardd was built without USB support; use the http connector (yubihsm-connector) or build with --features usb"
                    )));
                }
            };
            Ok(Arc::new(
                YubiHsmBackend::open(name, connector, credentials).map_err(hsm)?,
            ))
        }
    }
}
