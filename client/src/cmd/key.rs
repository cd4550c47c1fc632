//! `keyward key ...` and `keyward backends`.

use super::rotation::{Rotated, rotation_text};
use super::{Ctx, Show, or_any};
use clap::Subcommand;
use keyward_client::proto;
use keyward_proto::names::{revocation_reason_name, version_state_name};
use serde::Serialize;

#[derive(Subcommand, Clone)]
pub enum KeyCommand {
    /// Create a key inside an HSM.
    Create {
        /// Key name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// ecdsa-p256 (default), ecdsa-p384, ed25519 or rsa-pss-3072.
        #[arg(long, default_value = "ecdsa-p256")]
        algorithm: String,
        /// Backend (default: the daemon's default backend).
        #[arg(long, default_value = "")]
        backend: String,
        /// registry/repository globs the key may sign (comma separated); default any.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// image: signs container images and attestations (keyward sign, attest);
        /// blob: signs files (keyward sign-blob).
        #[arg(long, default_value = "image", value_parser = ["image", "blob"])]
        purpose: String,
    },
    /// A key's policy: signers and scope.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Set the repositories (globs) a key may sign; no pattern means any.
    Scope {
        /// Key name.
        name: String,
        /// registry/repository globs, e.g. registry.example.com/prod/*
        patterns: Vec<String>,
    },
    /// List keys.
    List,
    /// Show a key and its versions.
    Show {
        /// Key name.
        name: String,
    },
    /// Make a new version active. The old one verifies, never signs: `retiring`
    /// while a campaign re-signs its images with the new version (rotation policy
    /// `--resign-on-rotate`, on by default), then `retired`.
    Rotate {
        /// Key name.
        name: String,
        /// Follow the re-signing campaign to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Every version with fingerprint, state, time in service and certificate; with
    /// --output json the document signed by the Keyward CA.
    History(super::history::History),
    /// Revoke a version: it never signs again and its signatures stop verifying, from
    /// the moment this returns (needs the revoker role, and --otp where MFA is
    /// enforced). Irreversible.
    Revoke(super::revoke::Revoke),
    /// Print a version's public key (PEM).
    Public {
        /// Key name.
        name: String,
        /// Version (default: the active one).
        #[arg(long)]
        version: Option<u32>,
        /// Print the version's X.509 certificate instead.
        #[arg(long)]
        certificate: bool,
    },
}

#[derive(Subcommand, Clone)]
pub enum PolicyCommand {
    /// Set who may sign with a key and which repositories it may sign.
    Set {
        /// Key name.
        name: String,
        /// Principals who may sign (comma separated); "" allows every signer.
        #[arg(long, value_delimiter = ',')]
        signers: Option<Vec<String>>,
        /// registry/repository globs (comma separated); "" allows any.
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
    },
    /// Show a key's policy.
    Show {
        /// Key name.
        name: String,
    },
}

impl Show for proto::Key {
    fn text(&self) {
        println!(
            "{}  {}  purpose={}  backend={}  active=v{}",
            self.name, self.algorithm, self.purpose, self.backend, self.active_version
        );
        for v in &self.versions {
            println!(
                "  v{:<3} {:<9} {}  created {}",
                v.version,
                version_state_name(v.state),
                v.fingerprint,
                v.created_at
            );
            if !v.revoked_at.is_empty() {
                println!(
                    "        revoked at {} by {} ({}){}",
                    v.revoked_at,
                    v.revoked_by,
                    revocation_reason_name(v.revocation_reason),
                    match v.compromised_since.as_str() {
                        "" => String::new(),
                        t => format!(", compromised since {t}"),
                    }
                );
            }
            if v.images_signed > 0 && v.version != self.active_version {
                println!(
                    "        signed {} images; v{} has co-signed {} of them",
                    v.images_signed, self.active_version, v.co_signed
                );
            } else if v.images_signed > 0 {
                println!("        signed {} images", v.images_signed);
            }
        }
    }
}

impl Show for Vec<proto::Key> {
    fn text(&self) {
        for k in self {
            println!(
                "{}\t{}\t{}\tv{}",
                k.name, k.algorithm, k.backend, k.active_version
            );
        }
    }
}

/// A key's policy, as `key policy show` prints it.
#[derive(Serialize)]
struct Policy<'a> {
    name: &'a str,
    purpose: &'a str,
    signers: &'a [String],
    scope: &'a [String],
    require_mfa: bool,
    approvers: &'a [String],
    approvals: u32,
    rotation: Option<&'a proto::RotationPolicy>,
}

impl<'a> Policy<'a> {
    fn of(k: &'a proto::Key) -> Self {
        Self {
            name: &k.name,
            purpose: &k.purpose,
            signers: &k.signers,
            scope: &k.scope,
            require_mfa: k.require_mfa,
            approvers: &k.approvers,
            approvals: k.approvals,
            rotation: k.rotation.as_ref(),
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
    }
}

/// A policy change that weakens the key's policy waits for a second key-admin.
#[derive(Serialize)]
struct PolicyPending<'a> {
    pending: bool,
    approval_id: &'a str,
    weakens: &'a [String],
}

impl Show for PolicyPending<'_> {
    fn text(&self) {
        let id = self.approval_id;
        println!(
            "this change weakens the policy ({}); it waits for a second key-admin or admin: keyward approvals show {id}; keyward approve {id}",
            self.weakens.join("; ")
        );
    }
}

/// A version's public key or certificate.
#[derive(Serialize)]
struct Public {
    #[serde(flatten)]
    key: proto::PublicKey,
    #[serde(skip)]
    certificate: bool,
}

impl Show for Public {
    fn text(&self) {
        if self.certificate {
            print!("{}", self.key.certificate_pem);
        } else {
            print!("{}", self.key.public_key_pem);
        }
    }
}

impl Show for Vec<proto::Backend> {
    fn text(&self) {
        for b in self {
            let default = if b.is_default { "\t(default)" } else { "" };
            println!(
                "{}\t{}\t{}{default}",
                b.name,
                b.kind,
                b.algorithms.join(",")
            );
        }
    }
}

/// Prints a policy change's result: the key, or the approval it waits for.
fn changed(ctx: &Ctx, r: proto::PolicyChangeResponse, policy_only: bool) {
    if r.pending {
        return ctx.show(&PolicyPending {
            pending: true,
            approval_id: &r.approval_id,
            weakens: &r.weakens,
        });
    }
    let k = r.key.unwrap_or_default();
    if policy_only {
        ctx.show(&Policy::of(&k));
    } else {
        ctx.show(&k);
    }
}

/// Empty strings (`--signers ""`) mean "nobody listed", i.e. anyone.
fn clean(v: Option<Vec<String>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().filter(|s| !s.is_empty()).collect())
}

impl KeyCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        match self {
            KeyCommand::Create {
                name,
                algorithm,
                backend,
                scope,
                purpose,
            } => {
                let req = proto::CreateKeyRequest {
                    name,
                    algorithm,
                    backend,
                    scope,
                    purpose,
                };
                ctx.show(&c.create_key(req).await?);
            }
            KeyCommand::Scope { name, patterns } => {
                let req = proto::SetKeyScopeRequest {
                    name,
                    scope: patterns,
                };
                changed(ctx, c.set_key_scope(req).await?, false);
            }
            KeyCommand::Policy(PolicyCommand::Set {
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
            }) => {
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
                        || prune_after_overlap.is_some(),
                    "nothing to set: give --signers, --scope, --require-mfa, --approvers, --approvals, --purpose, --rotate-every, --overlap, --resign-on-rotate or --prune-after-overlap"
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
                };
                changed(ctx, c.set_key_policy(req).await?, true);
            }
            KeyCommand::Policy(PolicyCommand::Show { name }) => {
                let k = c.get_key(proto::GetKeyRequest { name }).await?;
                ctx.show(&Policy::of(&k));
            }
            KeyCommand::List => {
                let keys = c.list_keys_all(proto::ListKeysRequest::default()).await?;
                ctx.show(&keys);
            }
            KeyCommand::Show { name } => ctx.show(&c.get_key(proto::GetKeyRequest { name }).await?),
            KeyCommand::Rotate { name, wait } => {
                let r = c.rotate_key(proto::RotateKeyRequest { name }).await?;
                let key = r.key.unwrap_or_default();
                ctx.show(&Rotated {
                    key: &key,
                    job_id: &r.job_id,
                });
                if wait && !r.job_id.is_empty() {
                    super::jobs::watch(ctx, &r.job_id).await?;
                }
            }
            KeyCommand::History(h) => h.run(ctx).await?,
            KeyCommand::Revoke(r) => r.run(ctx).await?,
            KeyCommand::Public {
                name,
                version,
                certificate,
            } => {
                let key = c
                    .get_public_key(proto::GetPublicKeyRequest { name, version })
                    .await?;
                ctx.show(&Public { key, certificate });
            }
        }
        Ok(())
    }
}

/// `keyward backends`.
pub async fn backends(ctx: &Ctx) -> anyhow::Result<()> {
    let b = ctx
        .client
        .list_backends(proto::ListBackendsRequest {})
        .await?;
    ctx.show(&b.backends);
    Ok(())
}
