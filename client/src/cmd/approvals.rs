//! `keyward approvals ...`, `keyward approve`, `keyward deny`, and waiting for a
//! request to be decided.

use super::exit::Failure;
use super::{Ctx, Show};
use clap::{Args, Subcommand};
use keyward_client::proto::{ApprovalKind, ApprovalState};
use keyward_client::{Client, proto};
use keyward_proto::names::{approval_kind_name, approval_state_name, revocation_reason_name};

#[derive(Subcommand, Clone)]
pub enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        /// Only those still waiting.
        #[arg(long, conflicts_with = "archived")]
        pending: bool,
        /// The archive: finished approvals older than `[approvals] keep` (30 days).
        #[arg(long)]
        archived: bool,
    },
    /// Show what a request would sign, who asked, who approved, and the result.
    Show {
        /// Approval id.
        id: String,
    },
}

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward approvals list --pending\n  keyward approvals show 396c93c200962aa5 && keyward approve 396c93c200962aa5 --otp 123456"
)]
pub struct Approve {
    /// Approval id.
    id: String,
}

#[derive(Args, Clone)]
pub struct Deny {
    /// Approval id.
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

impl Show for proto::Approval {
    fn text(&self) {
        let a = self;
        println!("approval {}  {}", a.id, approval_state_name(a.status));
        println!("  key:        {}", a.key);
        println!("  requester:  {}", a.requester);
        match a.kind() {
            ApprovalKind::Image => {
                println!("  image:      {}", a.reference);
                for d in &a.digests {
                    println!("  digest:     {d}");
                }
                for (k, v) in &a.annotations {
                    println!("  annotation: {k}={v}");
                }
            }
            ApprovalKind::Policy => {
                for c in &a.policy_changes {
                    println!("  weakens:    {c}");
                }
            }
            ApprovalKind::Revocation => {
                let since = match a.compromised_since.as_str() {
                    "" => String::new(),
                    t => format!(", compromised since {t}"),
                };
                println!(
                    "  revokes:    v{} ({}{since})",
                    a.revoke_version,
                    revocation_reason_name(a.revoke_reason)
                );
                if a.incident {
                    println!(
                        "  incident:   on approval the whole incident runs (rotate if needed, re-sign what came before the compromise, publish{})",
                        if a.remove_signatures {
                            ", remove the signatures made since"
                        } else {
                            ""
                        }
                    );
                }
            }
            ApprovalKind::Attestation => {
                println!("  image:      {}", a.reference);
                for d in &a.digests {
                    println!("  digest:     {d}");
                }
                println!(
                    "  predicate:  {} sha256:{}",
                    a.predicate_type, a.predicate_digest
                );
            }
            _ => {
                println!(
                    "  file:       {} ({} bytes, as the requester says)",
                    a.file_name, a.size
                );
                let what = a.digests.first().map(String::as_str).unwrap_or("");
                match &a.digest_algorithm {
                    Some(d) => println!("  blob:       {d} {what}"),
                    None => println!("  message:    {what} (base64; signed whole)"),
                }
            }
        }
        println!(
            "  approvals:  {}/{} {}",
            a.approved_by.len(),
            a.approvals_needed,
            a.approved_by.join(", ")
        );
        println!("  expires:    {}", a.expires_at);
        if !a.denied_by.is_empty() {
            println!("  denied by:  {} ({})", a.denied_by, a.deny_reason);
        }
        if !a.error.is_empty() {
            println!("  error:      {}", a.error);
        }
        if !a.outcome.is_empty() {
            println!("  outcome:    {}", a.outcome);
        }
    }
}

impl Show for Vec<proto::Approval> {
    fn text(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|a| {
                let what = if a.reference.is_empty() {
                    a.digests.first().cloned().unwrap_or_default()
                } else {
                    a.reference.clone()
                };
                vec![
                    a.id.clone(),
                    approval_state_name(a.status),
                    approval_kind_name(a.kind),
                    a.key.clone(),
                    a.requester.clone(),
                    format!("{}/{}", a.approved_by.len(), a.approvals_needed),
                    what,
                ]
            })
            .collect();
        super::table(
            &[
                "ID",
                "STATUS",
                "KIND",
                "KEY",
                "REQUESTER",
                "APPROVALS",
                "WHAT",
            ],
            &rows,
            "no approvals",
        );
    }
}

/// Polls an approval until it is signed, denied, expired or refused.
pub async fn wait_for(client: &Client, id: &str) -> anyhow::Result<proto::Approval> {
    eprintln!("waiting for approval of request {id} ...");
    loop {
        let a = client
            .get_approval(proto::GetApprovalRequest { id: id.to_string() })
            .await?;
        match a.status() {
            ApprovalState::Signed => return Ok(a),
            ApprovalState::Denied => {
                return Err(Failure::Refused(format!(
                    "request {id} was denied by {}: {}",
                    a.denied_by, a.deny_reason
                ))
                .into());
            }
            ApprovalState::Expired => {
                return Err(Failure::Refused(format!(
                    "request {id} expired at {} without enough approvals",
                    a.expires_at
                ))
                .into());
            }
            ApprovalState::Refused => {
                return Err(Failure::Refused(format!(
                    "request {id} was approved but not signed: {}",
                    a.error
                ))
                .into());
            }
            _ => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

impl ApprovalsCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            ApprovalsCommand::List { pending, archived } => {
                let req = proto::ListApprovalsRequest {
                    pending_only: pending,
                    archived,
                    ..Default::default()
                };
                ctx.show(&ctx.client.list_approvals_all(req).await?);
            }
            ApprovalsCommand::Show { id } => ctx.show(
                &ctx.client
                    .get_approval(proto::GetApprovalRequest { id })
                    .await?,
            ),
        }
        Ok(())
    }
}

impl Approve {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let req = proto::ApproveRequest { id: self.id };
        ctx.show(&ctx.client.approve(req).await?);
        Ok(())
    }
}

impl Deny {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let req = proto::DenyRequest {
            id: self.id,
            reason: self.reason,
        };
        ctx.show(&ctx.client.deny(req).await?);
        Ok(())
    }
}
