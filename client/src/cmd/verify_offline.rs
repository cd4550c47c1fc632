//! `keyward verify --offline`: an image's signatures checked without the daemon,
//! against the key's CA-signed history and a revocation list.

use super::exit::Failure;
use super::{Output, Show};
use anyhow::Context;
use clap::Args;
use keyward_client::offline::{OfflineResult, by_identity};
use keyward_client::revocation as r;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct OfflineArgs {
    /// Verify without the daemon: needs --ca, --key-history and --revocations.
    #[arg(long, requires_all = ["ca", "key_history", "revocations"])]
    pub offline: bool,
    /// Verify without the daemon by the CA and this identity (`keyward://keys/NAME`,
    /// the URI SAN of every version's certificate) instead of a key history, as
    /// `cosign verify --certificate-identity` does: needs --ca and --revocations.
    #[arg(long, requires_all = ["ca", "revocations"], conflicts_with_all = ["key", "key_history", "offline"])]
    pub identity: Option<String>,
    /// The issuer the certificates must carry (default: the one the instance derives
    /// from the CA's key, `keyward://ca/...`).
    #[arg(long, requires = "identity")]
    issuer: Option<String>,
    /// The TSA's chain (`keyward trust export`): each signature's time-stamp is checked
    /// and its certificate must have been valid at the stamp's time, so signatures
    /// made before their certificate expired keep verifying.
    #[arg(long, requires = "identity")]
    tsa_chain: Option<PathBuf>,
    /// The Keyward CA certificate (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The key's history, as `keyward key history NAME --output json` prints it.
    #[arg(long)]
    key_history: Option<PathBuf>,
    /// The revocation list: a file (`keyward revocations show --output json`) or the
    /// registry/repository it is published to.
    #[arg(long)]
    revocations: Option<String>,
    /// Where the highest list sequence seen per CA is kept (rollback protection).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Refuse a list issued longer ago than this (12h), tighter than next_update.
    #[arg(long, value_parser = keyward_client::duration::parse)]
    max_staleness: Option<u64>,
}

/// What offline verification prints: the same fields as online (`valid[].version`,
/// `rejected[].reason`), with the revocation list's sequence.
#[derive(serde::Serialize)]
struct Shown {
    key: String,
    digest: String,
    valid: Vec<Valid>,
    rejected: Vec<super::sign::Rejected>,
    revocation_sequence: u64,
}

#[derive(serde::Serialize)]
struct Valid {
    version: u32,
}

impl Shown {
    fn new(key: String, r: OfflineResult) -> Self {
        Self {
            key,
            digest: r.digest,
            valid: r
                .valid
                .into_iter()
                .map(|version| Valid { version })
                .collect(),
            rejected: r
                .rejected
                .into_iter()
                .map(|reason| super::sign::Rejected { reason })
                .collect(),
            revocation_sequence: r.revocation_sequence,
        }
    }
}

impl Show for Shown {
    fn text(&self) {
        println!(
            "{} (revocation list {})",
            self.digest, self.revocation_sequence
        );
        for v in &self.valid {
            println!("  valid: signed by {} v{}", self.key, v.version);
        }
        for r in &self.rejected {
            println!("  rejected: {}", r.reason);
        }
    }
}

impl OfflineArgs {
    /// Verifies `image` for `key` offline.
    pub async fn run(self, key: String, image: String, out: Output) -> anyhow::Result<()> {
        let read = |p: &Option<PathBuf>| {
            let p = p.as_ref().context("missing path")?;
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let ca = String::from_utf8(read(&self.ca)?).context("the CA file is not text")?;
        let state = self.state.clone().unwrap_or_else(r::default_state_path);
        let mut seen = r::load_state(&state).map_err(anyhow::Error::msg)?;
        let max = self
            .max_staleness
            .map(|s| time::Duration::seconds(s as i64));
        let revocations = self.revocations.clone().unwrap_or_default();
        if let Some(identity) = &self.identity {
            let chain = match &self.tsa_chain {
                Some(_) => Some(
                    String::from_utf8(read(&self.tsa_chain)?)
                        .context("the TSA chain is not text")?,
                ),
                None => None,
            };
            let who = by_identity::TrustedIdentity {
                ca_pem: &ca,
                identity,
                issuer: self.issuer.as_deref(),
                tsa_chain_pem: chain.as_deref(),
            };
            let result = by_identity::verify(&image, &who, &revocations, &mut seen, max).await?;
            r::save_state(&state, &seen).map_err(anyhow::Error::msg)?;
            return show(Shown::new(identity.clone(), result), out, &image);
        }
        let history = read(&self.key_history)?;
        let named: serde_json::Value = serde_json::from_slice(&history).unwrap_or_default();
        if named["key"] != key.as_str() {
            return Err(Failure::Usage(format!(
                "the key history is of key {}, not {key:?}",
                named["key"]
            ))
            .into());
        }
        let result =
            keyward_client::offline::verify(&image, &ca, &history, &revocations, &mut seen, max)
                .await?;
        r::save_state(&state, &seen).map_err(anyhow::Error::msg)?;
        show(Shown::new(key, result), out, &image)
    }
}

/// Prints what was found; an error when no signature counts.
fn show(shown: Shown, out: Output, image: &str) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", super::json(&shown)),
        Output::Text => shown.text(),
    }
    if shown.valid.is_empty() {
        return Err(Failure::NotVerified(format!(
            "no valid signature by {:?} on {image} ({})",
            shown.key, shown.digest
        ))
        .into());
    }
    Ok(())
}
