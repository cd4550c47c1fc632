//! `keyward incident revoke`: a leaked key version handled in one command.

use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;

#[derive(Subcommand, Clone)]
pub enum IncidentCommand {
    /// Stop the version signing, list what it signed before and after the compromise,
    /// rotate first if it is the active version, re-sign what it signed before the
    /// compromise with the active version (a job), publish the revocation list, and
    /// report. Needs the revoker role (and --otp where MFA is enforced). Re-running it
    /// finishes what a partial run left.
    #[command(
        after_help = "Examples:\n  keyward incident revoke --key release --version 1 --compromised-since 2026-12-01T00:00:00Z --dry-run\n  keyward incident revoke --key release --version 1 --compromised-since 2026-12-01T00:00:00Z --remove-signatures"
    )]
    Revoke {
        /// Key name.
        #[arg(long)]
        key: String,
        /// The compromised version.
        #[arg(long)]
        version: u32,
        /// From when the key must be taken to be in other hands (RFC 3339).
        #[arg(long)]
        compromised_since: String,
        /// Print the plan and the counts; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the version's signature layers from the images it signed from
        /// the compromise on.
        #[arg(long)]
        remove_signatures: bool,
    },
}

impl Show for proto::IncidentReport {
    fn text(&self) {
        if self.pending {
            let id = &self.approval_id;
            println!(
                "incident: {} v{}: the key's policy makes revocations wait for {} by other revokers; nothing ran yet, and the whole incident runs on the last approval: keyward approvals show {id}; keyward approve {id}",
                self.key,
                self.version,
                super::count(self.approvals_needed, "approval")
            );
            return;
        }
        println!(
            "incident: {} v{} compromised since {}{}",
            self.key,
            self.version,
            self.compromised_since,
            if self.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
        println!(
            "  1. stop signing: v{} {}",
            self.version,
            if self.dry_run {
                "would be revoked (key-compromise)"
            } else if self.already_revoked {
                "was revoked so already: nothing new revoked, earlier jobs named"
            } else {
                "revoked (key-compromise)"
            }
        );
        println!(
            "  2. it signed {} before the compromise and {} from it on",
            super::count(self.signed_before, "image"),
            self.signed_after
        );
        for i in &self.after_compromise {
            println!("       signed after: {i}");
        }
        if self.derived_condemned > 0 {
            println!(
                "     {} re-made from those (rotation campaigns) share their fate{}",
                super::count(self.derived_condemned, "signature"),
                match (self.dry_run, self.derived_job_id.as_str()) {
                    (true, _) => " and would be revoked".to_string(),
                    (false, "") => String::new(),
                    (false, job) => format!(": revoked by job {job}"),
                }
            );
            for d in &self.derived {
                println!("       re-made: {d}");
            }
        }
        match (self.needs_rotation, self.rotated_to) {
            (true, 0) if self.dry_run => {
                println!("  3. it is the active version: a new version would be made first")
            }
            (_, 0) => println!("  3. no rotation needed: another version is active"),
            (_, v) => println!("  3. rotated first: v{v} is active"),
        }
        if self.dry_run {
            println!(
                "     the {} signed before the compromise would be re-signed with the active version",
                super::count(self.signed_before, "image")
            );
        } else if self.resign_job_id.is_empty() {
            println!("     nothing signed before the compromise to re-sign");
        } else {
            println!(
                "     re-signing the {} signed before the compromise: job {} (keyward jobs watch {})",
                super::count(self.signed_before, "image"),
                self.resign_job_id,
                self.resign_job_id
            );
        }
        if !self.dry_run {
            println!("  4. revocation list {} issued", self.list_sequence);
            for r in &self.registries_behind {
                println!(
                    "     not yet held by {r} (delivered when it answers: keyward revocations status)"
                );
            }
        }
        if !self.remove_job_id.is_empty() {
            println!(
                "  5. removing v{}'s layers from the {} signed after the compromise: job {}",
                self.version,
                super::count(self.signed_after, "image"),
                self.remove_job_id
            );
        }
        if self.audit_seq > 0 {
            println!(
                "  6. this report is audit record {} (signed by the next checkpoint: keyward audit export; keyward audit verify)",
                self.audit_seq
            );
        }
    }
}

impl IncidentCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let IncidentCommand::Revoke {
            key,
            version,
            compromised_since,
            dry_run,
            remove_signatures,
        } = self;
        let r = ctx
            .client
            .incident_revoke(proto::IncidentRevokeRequest {
                name: key,
                version,
                compromised_since,
                dry_run,
                remove_signatures,
            })
            .await?;
        ctx.show(&r);
        if r.pending {
            return Err(super::exit::Failure::Pending(r.approval_id).into());
        }
        Ok(())
    }
}
