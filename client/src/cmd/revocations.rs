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
    /// Per registry repository the lists are published to: the sequence it holds,
    /// against the current one, and the last error.
    Status,
}

impl Show for proto::PublishStatus {
    fn text(&self) {
        println!("current list: sequence {}", self.current_sequence);
        if self.targets.is_empty() {
            println!("  not published to any registry ([[revocation.publish]] in keywardd.toml)");
        }
        for t in &self.targets {
            let state = if t.published_sequence >= self.current_sequence {
                "up to date".to_string()
            } else {
                format!(
                    "behind ({} to go)",
                    self.current_sequence - t.published_sequence
                )
            };
            println!(
                "  {}  holds {}  {state}{}",
                t.repository,
                t.published_sequence,
                match t.last_error.as_str() {
                    "" => String::new(),
                    e => format!("\n    last error ({}): {e}", t.last_attempt),
                }
            );
        }
    }
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
            "revocation list {} by {} (CA key {}), issued {}, next update {}",
            l["sequence"],
            l["issuer"].as_str().unwrap_or("?"),
            l["issuer_fingerprint"].as_str().unwrap_or("?"),
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
            RevocationsCommand::Status => {
                let s = ctx
                    .client
                    .get_publish_status(proto::GetPublishStatusRequest {})
                    .await?;
                ctx.show(&s);
            }
        }
        Ok(())
    }
}
