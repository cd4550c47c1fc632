//! `keyward key policy set|show`: who may sign with a key and what, how it rotates,
//! and how many approvals a revocation of it waits for.

use super::rotation::rotation_text;
use super::{Ctx, Show, or_any};
use clap::Subcommand;
use keyward_client::proto;
use serde::Serialize;

#[derive(Subcommand, Clone)]
pub enum PolicyCommand {
    /// Set who may sign with a key and which repositories it may sign.
    Set {
        /// Key name.
        name: String,
        /// Principals who may sign (comma separated); "" allows every signer.
        #[arg(long, value_delimiter = ',')]
        signers: Option<Vec<String>>,
        /// registry/repository globs (repeatable, or comma separated); "" allows any.
        #[arg(long, value_delimiter = ',')]
        scope: Option<Vec<String>>,
        /// Whether signing with this key needs a one-time code.
        #[arg(long)]
        require_mfa: Option<bool>,
        /// Principals who may approve requests (comma separated); "" allows every approver.
        #[arg(long, value_delimiter = ',')]
        approvers: Option<Vec<String>>,
        /// Distinct approvals a signing request needs (0: none).
        #[arg(long)]
        approvals: Option<u32>,
        /// What the key signs: image or blob.
        #[arg(long, value_parser = ["image", "blob"])]
        purpose: Option<String>,
        /// Rotate when the active version is this old (90d, 12h); "never": on demand only.
        #[arg(long)]
        rotate_every: Option<String>,
        /// How long the old version's signatures stay next to the new ones (30d).
        #[arg(long, value_parser = keyward_client::duration::parse)]
        overlap: Option<u64>,
        /// Re-sign, with the new version, what the old one signed.
        #[arg(long)]
        resign_on_rotate: Option<bool>,
        /// Remove the old version's signature layers once the overlap is over.
        #[arg(long)]
        prune_after_overlap: Option<bool>,
        /// Approvals by other revokers a revocation (key revoke, incident revoke) of
        /// this key waits for (0, the default: it applies at once). Raising it applies
        /// at once; lowering it waits for a second key-admin.
        #[arg(long)]
        revoke_approvals: Option<u32>,
    },
    /// Show a key's policy.
    Show {
        /// Key name.
        name: String,
    },
}

/// A key's policy, as `key policy show` prints it.
#[derive(Serialize)]
pub(super) struct Policy<'a> {
    name: &'a str,
    purpose: &'a str,
    signers: &'a [String],
    scope: &'a [String],
    require_mfa: bool,
    approvers: &'a [String],
    approvals: u32,
    rotation: Option<&'a proto::RotationPolicy>,
    revoke_approvals: u32,
}

impl<'a> Policy<'a> {
    pub(super) fn of(k: &'a proto::Key) -> Self {
        Self {
            name: &k.name,
            purpose: &k.purpose,
            signers: &k.signers,
            scope: &k.scope,
            require_mfa: k.require_mfa,
            approvers: &k.approvers,
            approvals: k.approvals,
            rotation: k.rotation.as_ref(),
            revoke_approvals: k.revoke_approvals,
        }
    }
}

impl Show for Policy<'_> {
    fn text(&self) {
        println!("{}", self.name);
        println!(
            "  signers: {}",
            or_any(self.signers, "any principal with the signer role")
        );
        println!("  scope:   {}", or_any(self.scope, "any repository"));
        println!(
            "  MFA:     {}",
            if self.require_mfa {
                "required to sign"
            } else {
                "not required to sign"
            }
        );
        if self.approvals > 0 {
            println!(
                "  approvals: {} from {}",
                self.approvals,
                or_any(self.approvers, "any approver")
            );
        }
        if let Some(r) = self.rotation {
            println!("  rotation: {}", rotation_text(r));
        }
        match self.revoke_approvals {
            0 => println!("  revoking: at once (no approvals)"),
            n => println!(
                "  revoking: waits for {} by other revokers",
                super::count(n, "approval")
            ),
        }
    }
}

/// What a policy change prints (`key policy set`: the policy; `key scope`: the key),
/// one shape either way: applied, or waiting for a second key-admin because it weakens
/// the policy (`pending`, `approval_id`, what it `weakens`; the policy or key `null`).
#[derive(Serialize)]
struct Changed<'a> {
    pending: bool,
    approval_id: &'a str,
    weakens: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Option<Policy<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Option<&'a proto::Key>>,
}

impl Show for Changed<'_> {
    fn text(&self) {
        if self.pending {
            let id = self.approval_id;
            return println!(
                "this change weakens the policy ({}); it waits for a second key-admin or admin: keyward approvals show {id}; keyward approve {id}",
                self.weakens.join("; ")
            );
        }
        if let Some(Some(p)) = &self.policy {
            p.text();
        }
        if let Some(Some(k)) = &self.key {
            k.text();
        }
    }
}

/// Prints a policy change's result: the key, or the approval it waits for.
pub(super) fn changed(
    ctx: &Ctx,
    r: proto::PolicyChangeResponse,
    policy_only: bool,
) -> anyhow::Result<()> {
    let applied = r.key.as_ref().filter(|_| !r.pending);
    ctx.show(&Changed {
        pending: r.pending,
        approval_id: &r.approval_id,
        weakens: &r.weakens,
        policy: policy_only.then(|| applied.map(Policy::of)),
        key: (!policy_only).then_some(applied),
    });
    if r.pending {
        return Err(super::exit::Failure::Pending(r.approval_id).into());
    }
    Ok(())
}

/// Empty strings (`--signers ""`) mean "nobody listed", i.e. anyone.
fn clean(v: Option<Vec<String>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().filter(|s| !s.is_empty()).collect())
}

impl PolicyCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        match self {
            PolicyCommand::Set {
                name,
                signers,
                scope,
                require_mfa,
                approvers,
                approvals,
                purpose,
                rotate_every,
                overlap,
                resign_on_rotate,
                prune_after_overlap,
                revoke_approvals,
            } => {
                let (signers, scope, approvers) = (clean(signers), clean(scope), clean(approvers));
                anyhow::ensure!(
                    signers.is_some()
                        || scope.is_some()
                        || require_mfa.is_some()
                        || approvers.is_some()
                        || approvals.is_some()
                        || purpose.is_some()
                        || rotate_every.is_some()
                        || overlap.is_some()
                        || resign_on_rotate.is_some()
                        || prune_after_overlap.is_some()
                        || revoke_approvals.is_some(),
                    "nothing to set: give --signers, --scope, --require-mfa, --approvers, --approvals, --purpose, --rotate-every, --overlap, --resign-on-rotate, --prune-after-overlap or --revoke-approvals"
                );
                let clear_rotate_every = rotate_every.as_deref() == Some("never");
                let rotate_every_seconds = match rotate_every.as_deref() {
                    None | Some("never") => None,
                    Some(d) => {
                        Some(keyward_client::duration::parse(d).map_err(anyhow::Error::msg)?)
                    }
                };
                let req = proto::SetKeyPolicyRequest {
                    name,
                    set_signers: signers.is_some(),
                    signers: signers.unwrap_or_default(),
                    set_scope: scope.is_some(),
                    scope: scope.unwrap_or_default(),
                    set_require_mfa: require_mfa.is_some(),
                    require_mfa: require_mfa.unwrap_or(false),
                    set_approvers: approvers.is_some(),
                    approvers: approvers.unwrap_or_default(),
                    set_approvals: approvals.is_some(),
                    approvals: approvals.unwrap_or(0),
                    set_purpose: purpose.is_some(),
                    purpose: purpose.unwrap_or_default(),
                    rotate_every_seconds,
                    overlap_seconds: overlap,
                    resign_on_rotate,
                    prune_after_overlap,
                    clear_rotate_every,
                    revoke_approvals,
                };
                changed(ctx, c.set_key_policy(req).await?, true)?;
            }
            PolicyCommand::Show { name } => {
                let k = c.get_key(proto::GetKeyRequest { name }).await?;
                ctx.show(&Policy::of(&k));
            }
        }
        Ok(())
    }
}
