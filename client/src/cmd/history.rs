//! `keyward key history NAME [--pem-dir DIR]`: what a verifier should trust.

use super::{Ctx, Output};
use base64::Engine;
use clap::Args;
use keyward_client::proto;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct History {
    /// Key name.
    name: String,
    /// Write one public-key PEM file per version a verifier should trust
    /// (`NAME-vN.pem`: pending, active, retiring and retired versions), for cosign's
    /// --key and the keyPaths of containers-policy.json.
    #[arg(long)]
    pem_dir: Option<PathBuf>,
}

/// States whose signatures a verifier accepts (pending: ahead of its first use).
const TRUSTED: &[&str] = &["pending", "active", "retiring", "retired"];

impl History {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        let h = c
            .get_key_history(proto::GetKeyHistoryRequest {
                name: self.name.clone(),
            })
            .await?;
        let mut doc: serde_json::Value = serde_json::from_str(&h.document)?;
        let versions = doc["versions"].as_array().cloned().unwrap_or_default();
        if let Some(dir) = &self.pem_dir {
            std::fs::create_dir_all(dir)?;
            for v in &versions {
                let state = v["state"].as_str().unwrap_or_default();
                if !TRUSTED.contains(&state) {
                    continue;
                }
                let n = v["version"].as_u64().unwrap_or(0) as u32;
                let pk = c
                    .get_public_key(proto::GetPublicKeyRequest {
                        name: self.name.clone(),
                        version: Some(n),
                    })
                    .await?;
                let path = dir.join(format!("{}-v{n}.pem", self.name));
                keyward_client::files::write_atomic(&path, pk.public_key_pem.as_bytes(), 0o644)?;
                if ctx.out == Output::Text {
                    eprintln!("wrote {} ({state})", path.display());
                }
            }
        }
        match ctx.out {
            Output::Json => {
                doc["signature"] = base64::engine::general_purpose::STANDARD
                    .encode(&h.signature)
                    .into();
                println!("{doc}");
            }
            Output::Text => {
                for v in &versions {
                    println!(
                        "v{}  {}  {}  valid from {} until {}",
                        v["version"],
                        v["state"].as_str().unwrap_or_default(),
                        v["fingerprint"].as_str().unwrap_or_default(),
                        v["valid_from"].as_str().unwrap_or("-"),
                        v["valid_until"].as_str().unwrap_or("-"),
                    );
                    print!("{}", v["certificate"].as_str().unwrap_or_default());
                }
            }
        }
        Ok(())
    }
}
