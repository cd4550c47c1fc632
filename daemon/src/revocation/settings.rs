//! `[revocation]` in keywardd.toml: how long a list is valid, where it is published,
//! and the URL certificates give for the CRL.

use super::publish;
use serde::Deserialize;

/// `[revocation]` in keywardd.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationSettings {
    /// How long a list is valid (`24h`); a new one is issued at half of it.
    pub validity: String,
    /// Registry repositories that receive every list.
    pub publish: Vec<publish::PublishTarget>,
    /// The base URL at which verifiers reach the HTTP listener (default: `http://` and
    /// the `[listen] http` address); certificates name `{public_url}/v1/crl.der`.
    pub public_url: Option<String>,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            validity: "24h".into(),
            publish: Vec::new(),
            public_url: None,
        }
    }
}

impl RevocationSettings {
    /// The validity in seconds, or what is wrong with it.
    pub fn validity_seconds(&self) -> Result<u64, String> {
        let s = keyward_client::duration::parse(&self.validity)
            .map_err(|e| format!("[revocation] validity: {e}"))?;
        if s < 60 {
            return Err(format!(
                "[revocation] validity {:?} is under a minute: verifiers would refuse most lists as stale",
                self.validity
            ));
        }
        Ok(s)
    }

    /// The CRL's URL for certificates, given the HTTP listener's address.
    pub fn crl_url(&self, http: std::net::SocketAddr) -> Result<String, String> {
        let base = match &self.public_url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                u.trim_end_matches('/').to_string()
            }
            Some(u) => {
                return Err(format!(
                    "[revocation] public_url {u:?} must start with http:// or https://"
                ));
            }
            None => format!("http://{http}"),
        };
        Ok(format!("{base}/v1/crl.der"))
    }

    /// The publishing targets, checked.
    pub fn targets(&self) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.publish {
            publish::check_target(&t.repository)?;
            if !out.contains(&t.repository) {
                out.push(t.repository.clone());
            }
        }
        Ok(out)
    }
}
