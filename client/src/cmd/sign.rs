//! `keyward sign`, `attest` and `verify`.

use super::approvals::wait_for;
use super::exit::Failure;
use super::outcome::Outcome;
use super::{Ctx, Show};
use anyhow::Context;
use clap::Args;
use keyward_client::proto;
use keyward_proto::names::version_state_name;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward sign --key release registry.example.com/team/app:v1.2\n  keyward sign --key release --recursive -a build=42 registry.example.com/team/app@sha256:...\n  keyward sign --key release --wait registry.example.com/team/app:v1.2 && deploy   # waits for approvers"
)]
pub struct Sign {
    /// Key to sign with.
    #[arg(long)]
    key: String,
    /// Extra payload annotation (repeatable), like cosign -a.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// For an index, also sign every platform manifest.
    #[arg(long)]
    recursive: bool,
    /// If the key needs approvals, wait for them and then print the result.
    #[arg(long)]
    wait: bool,
    /// registry/repository[:tag][@digest]
    image: String,
}

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward attest --key release --type slsaprovenance --predicate prov.json registry.example.com/team/app:v1.2"
)]
pub struct Attest {
    /// Key to sign with.
    #[arg(long)]
    key: String,
    /// JSON file with the predicate.
    #[arg(long)]
    predicate: PathBuf,
    /// slsaprovenance, slsaprovenance1, spdx, spdxjson, cyclonedx, vuln, custom, or a URI.
    #[arg(long = "type", default_value = "custom")]
    predicate_type: String,
    /// If the key needs approvals, wait for them.
    #[arg(long)]
    wait: bool,
    /// registry/repository[:tag][@digest]
    image: String,
}

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward verify --key release registry.example.com/team/app:v1.2\n  keyward verify --identity keyward://keys/release --ca ca.pem --revocations registry.example.com/org/keyward-revocations IMAGE\n  keyward verify ... ; echo $?   # 0 valid, 1 no valid signature, 5 registry unreachable"
)]
pub struct Verify {
    /// Key whose versions to check (or, offline, --identity).
    #[arg(long, required_unless_present = "identity")]
    key: Option<String>,
    /// registry/repository[:tag][@digest]
    image: String,
    #[command(flatten)]
    pub offline: super::verify_offline::OfflineArgs,
}

impl Verify {
    /// Verifies without the daemon (`--offline`).
    pub async fn run_offline(self, out: super::Output) -> anyhow::Result<()> {
        self.offline
            .run(self.key.unwrap_or_default(), self.image, out)
            .await
    }
}

impl Show for Vec<proto::SignedArtifact> {
    fn text(&self) {
        for s in self {
            let what = if s.already_signed {
                "already signed by"
            } else {
                "signed with"
            };
            println!("{} {what} v{}: {}", s.digest, s.version, s.pushed_to);
        }
    }
}

impl Sign {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut annotations = std::collections::HashMap::new();
        for a in self.annotations {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| Failure::Usage(format!("annotation {a:?} is not KEY=VALUE")))?;
            annotations.insert(k.to_string(), v.to_string());
        }
        let req = proto::SignImageRequest {
            key: self.key,
            reference: self.image,
            annotations,
            recursive: self.recursive,
        };
        let r = ctx.client.sign_image(req).await?;
        if !r.pending {
            ctx.show(&Outcome::signed(r.signed));
            return Ok(());
        }
        let a = approved(ctx, &r.approval_id, self.wait, |id| {
            ctx.show(&Outcome::<proto::SignedArtifact>::waiting(id))
        })
        .await?;
        let signed = made_after(&a);
        ctx.show(&Outcome::approved(&a.id, a.approved_by, signed));
        Ok(())
    }
}

/// Waits for the decision on request `id` (`--wait`), or prints the note through
/// `note` and ends with exit status 3.
async fn approved(
    ctx: &Ctx,
    id: &str,
    wait: bool,
    note: impl FnOnce(&str),
) -> anyhow::Result<proto::Approval> {
    if !wait {
        note(id);
        return Err(Failure::Pending(id.to_string()).into());
    }
    wait_for(&ctx.client, id).await
}

/// What an approved image request pushed, one artifact per digest.
fn made_after(a: &proto::Approval) -> Vec<proto::SignedArtifact> {
    a.digests
        .iter()
        .zip(&a.pushed_to)
        .map(|(d, p)| proto::SignedArtifact {
            reference: a.reference.clone(),
            digest: d.clone(),
            pushed_to: p.clone(),
            version: a.version.unwrap_or_default(),
            already_signed: false,
        })
        .collect()
}

/// What `attest` prints: the signing outcome and the predicate type.
#[derive(Serialize)]
struct Attested {
    #[serde(flatten)]
    outcome: Outcome<proto::SignedArtifact>,
    predicate_type: String,
}

impl Show for Attested {
    fn text(&self) {
        if self.outcome.pending {
            return self.outcome.text();
        }
        let by = match self.outcome.approved_by.as_slice() {
            [] => String::new(),
            who => format!(" after approval by {}", who.join(", ")),
        };
        for a in &self.outcome.signatures {
            println!(
                "{} attested ({}) with v{}{by}: {}",
                a.digest, self.predicate_type, a.version, a.pushed_to
            );
        }
    }
}

impl Attest {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let p = &self.predicate;
        let predicate =
            std::fs::read(p).with_context(|| format!("cannot read predicate {}", p.display()))?;
        let predicate_type = self.predicate_type.clone();
        let req = proto::AttestImageRequest {
            key: self.key,
            reference: self.image,
            predicate_type: self.predicate_type,
            predicate,
        };
        let r = ctx.client.attest_image(req).await?;
        if !r.pending {
            ctx.show(&Attested {
                outcome: Outcome::signed(r.attestation.into_iter().collect()),
                predicate_type: r.predicate_type,
            });
            return Ok(());
        }
        let a = approved(ctx, &r.approval_id, self.wait, |id| {
            ctx.show(&Attested {
                outcome: Outcome::waiting(id),
                predicate_type: predicate_type.clone(),
            })
        })
        .await?;
        let signed = made_after(&a);
        ctx.show(&Attested {
            outcome: Outcome::approved(&a.id, a.approved_by.clone(), signed),
            predicate_type: a.predicate_type,
        });
        Ok(())
    }
}

/// What `verify` found.
#[derive(Serialize)]
struct Verified {
    #[serde(skip)]
    key: String,
    digest: String,
    valid: Vec<proto::VerifiedSignature>,
    rejected: Vec<Rejected>,
}

/// A signature layer that does not count, and why.
#[derive(Serialize)]
pub struct Rejected {
    /// Why, in words.
    pub reason: String,
}

impl Show for Verified {
    fn text(&self) {
        for v in &self.valid {
            println!(
                "valid: {} signed by {} v{} ({}) as {}",
                self.digest,
                self.key,
                v.version,
                version_state_name(v.state),
                v.docker_reference
            );
            match v.valid_when_signed {
                Some(true) => println!(
                    "  signed {}, while v{} was in service",
                    v.signed_at, v.version
                ),
                Some(false) => println!(
                    "  signed {}, when v{} was NOT in service (before activation or after retirement)",
                    v.signed_at, v.version
                ),
                None => println!("  the ledger has no record of this signature"),
            }
        }
        for x in &self.rejected {
            println!("rejected: {}", x.reason);
        }
    }
}

impl Verify {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let key = self.key.unwrap_or_default();
        let req = proto::VerifyImageRequest {
            key: key.clone(),
            reference: self.image.clone(),
        };
        let r = ctx.client.verify_image(req).await?;
        let v = Verified {
            key,
            digest: r.digest,
            valid: r.valid,
            rejected: r
                .rejected
                .into_iter()
                .map(|reason| Rejected { reason })
                .collect(),
        };
        ctx.show(&v);
        if v.valid.is_empty() {
            return Err(Failure::NotVerified(format!(
                "no valid signature by key {:?} on {} ({})",
                v.key, self.image, v.digest
            ))
            .into());
        }
        Ok(())
    }
}
