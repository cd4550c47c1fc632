//! `keyward revocations show`: the current revocation list, signed by the Keyward CA.

use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;
use serde::Serialize;

#[derive(Subcommand, Clone)]
pub enum RevocationsCommand {
    /// The current list: every revoked key version with its reason and times. With
    /// --output json, {"list": {...}, "signature": "..."}: the list's canonical JSON
    /// is what the CA signed (base64 DER ECDSA P-256 over its SHA-256).
    Show,
}

/// The list with its signature, as `--output json` prints it.
#[derive(Serialize)]
struct Signed {
    list: serde_json::Value,
    signature: String,
}

impl Show for Signed {
    fn text(&self) {
        let l = &self.list;
        println!(
            "revocation list {} by {} (sequence {}), issued {}, next update {}",
            l["issuer_fingerprint"].as_str().unwrap_or("?"),
            l["issuer"].as_str().unwrap_or("?"),
            l["sequence"],
            l["issued_at"].as_str().unwrap_or("?"),
            l["next_update"].as_str().unwrap_or("?"),
        );
        let entries = l["entries"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            println!("  no revoked versions");
        }
        for e in entries {
            let since = match e["compromised_since"].as_str() {
                Some(t) => format!(", compromised since {t}"),
                None => String::new(),
            };
            println!(
                "  {} v{} {} revoked {} ({}{since})",
                e["key"].as_str().unwrap_or("?"),
                e["version"],
                e["fingerprint"].as_str().unwrap_or("?"),
                e["revoked_at"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("?"),
            );
        }
    }
}

impl RevocationsCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            RevocationsCommand::Show => {
                let l = ctx
                    .client
                    .get_revocation_list(proto::GetRevocationListRequest {})
                    .await?;
                ctx.show(&Signed {
                    list: serde_json::from_str(&l.document)?,
                    signature: l.signature,
                });
            }
        }
        Ok(())
    }
}
