//! `keyward revocations show`: the current revocation list, signed by the Keyward CA.

use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand, Clone)]
pub enum RevocationsCommand {
    /// The current list: every revoked key version with its reason and times. With
    /// --output json, {"list": {...}, "signature": "..."}: the list's canonical JSON
    /// is what the CA signed (base64 DER ECDSA P-256 over its SHA-256).
    Show,
    /// Per registry repository the lists are published to: the sequence it holds,
    /// against the current one, and the last error.
    Status,
    /// Check a list offline, as a verifier does (no daemon): the CA's signature, a
    /// sequence not lower than one seen before, not past next_update, not older than
    /// --max-staleness, at most 1 MiB. Exit 1 with the reason when it is refused.
    Verify(VerifyList),
}

#[derive(clap::Args, Clone)]
pub struct VerifyList {
    /// The list, as `keyward revocations show --output json` prints it.
    file: PathBuf,
    /// The Keyward CA certificate (PEM) that signs lists.
    #[arg(long)]
    ca: PathBuf,
    /// Where the highest sequence seen per CA is kept (rollback protection).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Refuse a list issued longer ago than this (12h, 30m), tighter than next_update.
    #[arg(long, value_parser = keyward_client::duration::parse)]
    max_staleness: Option<u64>,
}

/// What `revocations verify` prints.
#[derive(Serialize)]
struct ListChecked {
    sequence: u64,
    issuer: String,
    next_update: String,
    revoked: usize,
}

impl Show for ListChecked {
    fn text(&self) {
        println!(
            "revocation list {} by {} verified: {} revoked versions; valid until {}",
            self.sequence, self.issuer, self.revoked, self.next_update
        );
    }
}

impl VerifyList {
    /// Runs without a daemon.
    pub fn run(self, out: super::Output) -> anyhow::Result<()> {
        use anyhow::Context;
        use keyward_client::revocation as r;
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let ca = std::fs::read_to_string(&self.ca)
            .with_context(|| format!("cannot read {}", self.ca.display()))?;
        let state = self.state.unwrap_or_else(r::default_state_path);
        let mut seen = r::load_state(&state).map_err(anyhow::Error::msg)?;
        let max = self
            .max_staleness
            .map(|s| time::Duration::seconds(s as i64));
        let checked = r::check(&bytes, &ca, &mut seen, time::OffsetDateTime::now_utc(), max)
            .map_err(super::exit::Failure::NotVerified)?;
        r::save_state(&state, &seen).map_err(anyhow::Error::msg)?;
        let shown = ListChecked {
            sequence: checked.sequence,
            issuer: checked.list["issuer"].as_str().unwrap_or("?").to_string(),
            next_update: checked.list["next_update"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
            revoked: checked.list["entries"].as_array().map_or(0, Vec::len),
        };
        match out {
            super::Output::Json => println!("{}", super::json(&shown)),
            super::Output::Text => shown.text(),
        }
        Ok(())
    }
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
                ctx.show_signed(&Signed {
                    list: serde_json::from_str(&l.document)?,
                    signature: l.signature,
                });
            }
            RevocationsCommand::Verify(v) => v.run(ctx.out)?,
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
