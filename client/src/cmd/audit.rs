//! `keyward audit ...`: export, tail, the public key, and offline verification.

use super::exit::Failure;
use super::{Ctx, Output, Show};
use anyhow::Context;
use clap::{Args, Subcommand};
use keyward_client::audit::Line;
use keyward_client::proto;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand, Clone)]
pub enum AuditCommand {
    /// Print the last records; with -f keep printing new ones.
    Tail {
        /// Follow: poll for new records every second.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Only records with this decision (repeatable), e.g. --decision denied.
        #[arg(long = "decision", value_enum)]
        decisions: Vec<DecisionArg>,
    },
    /// Print records and checkpoints as JSON lines (redirect to a file to keep them).
    /// The daemon signs the chain head first, so the export ends with a checkpoint.
    #[command(
        after_help = "Examples:\n  keyward audit export > audit.jsonl && keyward audit public-key > audit.pem\n  keyward audit verify audit.jsonl --key audit.pem"
    )]
    Export {
        /// Only lines at or after this RFC 3339 time; the first line then names the
        /// record the export follows (verify with --from).
        #[arg(long)]
        since: Option<String>,
    },
    /// Print the audit key's public half (PEM).
    PublicKey,
    /// Print the chain's head (its last durable record) signed by the audit key; keep
    /// it to verify a later export against it (`audit verify --head`).
    Head,
    /// Verify an export offline: the hash chain and the HSM-signed checkpoints.
    Verify(VerifyExport),
}

/// A decision to filter on.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    /// Admitted requests that change state or sign (their outcome follows).
    Intent,
    /// Allowed or succeeded.
    Allowed,
    /// Refused.
    Denied,
    /// Admitted but failed.
    Failed,
}

impl From<DecisionArg> for proto::AuditDecision {
    fn from(d: DecisionArg) -> Self {
        match d {
            DecisionArg::Intent => Self::Intent,
            DecisionArg::Allowed => Self::Allowed,
            DecisionArg::Denied => Self::Denied,
            DecisionArg::Failed => Self::Failed,
        }
    }
}

#[derive(Args, Clone)]
pub struct VerifyExport {
    /// The exported JSON lines.
    file: PathBuf,
    /// The audit public key (PEM) from `keyward audit public-key`.
    #[arg(long)]
    key: PathBuf,
    /// The export starts at this record (made with `audit export --since`); without it
    /// the export must start at record 1.
    #[arg(long)]
    from: Option<u64>,
    /// Accept records that no checkpoint signature covers (they are reported).
    #[arg(long)]
    allow_unsigned_tail: bool,
    /// A head the audit key signed (`keyward audit head -o json`): the export must reach
    /// it, so an export cut short is refused.
    #[arg(long)]
    head: Option<PathBuf>,
}

/// What verification found.
#[derive(Serialize)]
struct Verified {
    records: u64,
    checkpoints: u64,
    covered_up_to: u64,
    last_seq: u64,
    first_seq: u64,
}

impl Show for Verified {
    fn text(&self) {
        println!(
            "OK: {} records, hash chain intact; {} checkpoint signatures verified, covering records up to {}",
            self.records, self.checkpoints, self.covered_up_to
        );
        if self.covered_up_to < self.last_seq {
            println!(
                "note: records {}..={} are not yet covered by a checkpoint",
                self.covered_up_to + 1,
                self.last_seq
            );
        }
    }
}

impl VerifyExport {
    /// Runs without a daemon.
    pub fn run(self, out: Output) -> anyhow::Result<()> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let (text, pem) = (read(&self.file)?, read(&self.key)?);
        let head = match &self.head {
            Some(p) => Some(serde_json::from_str(&read(p)?).with_context(|| {
                format!(
                    "{} is not a signed audit head ({{\"head\": {{\"seq\", \"hash\", \"time\"}}, \"signature\"}}, what `keyward audit head -o json` prints)",
                    p.display()
                )
            })?),
            None => None,
        };
        let opts = keyward_client::audit::Options {
            from: self.from,
            allow_unsigned_tail: self.allow_unsigned_tail,
            head,
        };
        let v = keyward_client::audit::verify(&text, &pem, &opts)
            .map_err(|e| Failure::NotVerified(format!("audit log verification failed: {e}")))?;
        let v = Verified {
            records: v.records,
            checkpoints: v.checkpoints,
            covered_up_to: v.covered_up_to,
            last_seq: v.last_seq,
            first_seq: v.first_seq,
        };
        match out {
            Output::Json => println!("{}", super::json(&v)),
            Output::Text => v.text(),
        }
        Ok(())
    }
}

fn print_line(line: &str, output: Output) {
    if output == Output::Json {
        println!("{line}");
        return;
    }
    match serde_json::from_str::<Line>(line) {
        Ok(Line::Record(r)) => {
            let reason = if r.reason.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.reason)
            };
            println!(
                "{}  #{:<6} {:<8} {:<14} {:<16} {}{reason}",
                r.time,
                r.seq,
                r.decision.as_str(),
                r.principal,
                r.action,
                r.target
            );
        }
        Ok(Line::Checkpoint(c)) => {
            println!(
                "{}  #{:<6} checkpoint signed by the audit key",
                c.time, c.seq
            );
        }
        Ok(Line::Anchor(a)) => println!("export follows record #{}", a.seq),
        Err(e) => println!("(unreadable line: {e}) {line}"),
    }
}

impl Show for proto::SignedAuditHead {
    fn text(&self) {
        let h = self.head.clone().unwrap_or_default();
        println!(
            "audit head: record {} ({}), signed by the audit key at {}",
            h.seq, h.hash, h.time
        );
    }
}

impl AuditCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        let export = |from_seq, since, checkpoint| {
            c.export_audit(proto::ExportAuditRequest {
                from_seq,
                since,
                checkpoint,
            })
        };
        match self {
            AuditCommand::Verify(v) => v.run(ctx.out)?,
            AuditCommand::Head => {
                let h = c.get_audit_head(proto::GetAuditHeadRequest {}).await?;
                ctx.show_signed(&h);
            }
            AuditCommand::PublicKey => {
                let k = c.audit_public_key(proto::AuditPublicKeyRequest {}).await?;
                print!("{}", k.public_key_pem);
            }
            AuditCommand::Export { since } => {
                for l in export(0, since.unwrap_or_default(), true).await? {
                    println!("{}", l.line);
                }
            }
            AuditCommand::Tail {
                follow,
                lines,
                decisions,
            } => {
                let wanted: Vec<proto::AuditDecision> =
                    decisions.into_iter().map(Into::into).collect();
                let shown =
                    |l: &proto::AuditLine| wanted.is_empty() || wanted.contains(&l.decision());
                let all = export(0, String::new(), false).await?;
                let mut next = all.last().map(|l| l.seq + 1).unwrap_or(1);
                let picked: Vec<_> = all.iter().filter(|l| shown(l)).collect();
                for l in picked.iter().skip(picked.len().saturating_sub(lines)) {
                    print_line(&l.line, ctx.out);
                }
                if !follow {
                    return Ok(());
                }
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let fresh = export(next, String::new(), false).await?;
                    for l in fresh.iter().filter(|l| l.seq >= next && shown(l)) {
                        print_line(&l.line, ctx.out);
                    }
                    if let Some(l) = fresh.last() {
                        next = next.max(l.seq + 1);
                    }
                }
            }
        }
        Ok(())
    }
}
