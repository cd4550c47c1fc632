//! `keyward verify --offline`: an image's signatures checked without the daemon,
//! against the key's CA-signed history and a revocation list.

use super::{Output, Show};
use anyhow::Context;
use clap::Args;
use keyward_client::offline::OfflineResult;
use keyward_client::revocation as r;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct OfflineArgs {
    /// Verify without the daemon: needs --ca, --key-history and --revocations.
    #[arg(long, requires_all = ["ca", "key_history", "revocations"])]
    pub offline: bool,
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

#[derive(serde::Serialize)]
struct Shown {
    key: String,
    #[serde(flatten)]
    result: OfflineResult,
}

impl Show for Shown {
    fn text(&self) {
        println!(
            "{} (revocation list {})",
            self.result.digest, self.result.revocation_sequence
        );
        for v in &self.result.valid {
            println!("  valid: signed by {} v{v}", self.key);
        }
        for r in &self.result.rejected {
            println!("  rejected: {r}");
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
        let history = read(&self.key_history)?;
        let named: serde_json::Value = serde_json::from_slice(&history).unwrap_or_default();
        anyhow::ensure!(
            named["key"] == key.as_str(),
            "the key history is of key {}, not {key:?}",
            named["key"]
        );
        let state = self.state.unwrap_or_else(r::default_state_path);
        let mut seen = r::load_state(&state).map_err(anyhow::Error::msg)?;
        let max = self
            .max_staleness
            .map(|s| time::Duration::seconds(s as i64));
        let revocations = self.revocations.unwrap_or_default();
        let result =
            keyward_client::offline::verify(&image, &ca, &history, &revocations, &mut seen, max)
                .await
                .map_err(anyhow::Error::msg)?;
        r::save_state(&state, &seen).map_err(anyhow::Error::msg)?;
        let shown = Shown { key, result };
        match out {
            Output::Json => println!("{}", serde_json::to_string(&shown)?),
            Output::Text => shown.text(),
        }
        anyhow::ensure!(
            !shown.result.valid.is_empty(),
            "no valid signature by key {:?} on {image} ({})",
            shown.key,
            shown.result.digest
        );
        Ok(())
    }
}
