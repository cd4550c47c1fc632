//! `keyward key ...` and `keyward backends`.

use super::policy::{PolicyCommand, changed};
use super::rotation::Rotated;
use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;
use keyward_proto::names::{revocation_reason_name, version_state_name};
use serde::Serialize;

#[derive(Subcommand, Clone)]
pub enum KeyCommand {
    /// Create a key inside an HSM.
    #[command(
        after_help = "Examples:\n  keyward key create release --scope \"registry.example.com/team/*\"\n  keyward key create files --purpose blob --algorithm ecdsa-p384"
    )]
    Create {
        /// Key name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// ecdsa-p256, ecdsa-p384, ed25519, rsa-pss-3072, rsa-pkcs1-3072 or
        /// rsa-pkcs1-4096 (RSA PKCS#1 v1.5: what cosign verifies for RSA images).
        /// Default: ecdsa-p256, or on a backend without it the first it offers that
        /// suits the key's purpose (`keyward backends` lists them).
        #[arg(long, default_value = "")]
        algorithm: String,
        /// Backend (default: the daemon's default backend).
        #[arg(long, default_value = "")]
        backend: String,
        /// registry/repository globs the key may sign (repeatable, or comma separated);
        /// default any.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// image: signs container images and attestations (keyward sign, attest);
        /// blob: signs files (keyward sign-blob).
        #[arg(long, default_value = "image", value_parser = ["image", "blob"])]
        purpose: String,
    },
    /// A key's policy: signers, scope, approvals, rotation, revocation approvals.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Set the repositories (globs) a key may sign; no pattern means any.
    Scope {
        /// Key name.
        name: String,
        /// registry/repository globs, e.g. registry.example.com/prod/* (several as
        /// separate arguments or comma separated, as --scope takes them).
        #[arg(value_delimiter = ',')]
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
    /// enforced). Irreversible. On a key whose policy has --revoke-approvals N, it
    /// waits for N other revokers and applies on the last approval.
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
            if !v.certificate_not_after.is_empty() && v.version == self.active_version {
                println!(
                    "        certificate valid until {}",
                    v.certificate_not_after
                );
            }
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
                    "        signed {}; v{} has co-signed {} of them",
                    super::count(v.images_signed, "image"),
                    self.active_version,
                    v.co_signed
                );
            } else if v.images_signed > 0 {
                println!("        signed {}", super::count(v.images_signed, "image"));
            }
        }
        if self.purpose == "blob" {
            println!(
                "  verify a file's signature (the base64 that sign-blob printed, decoded into SIG):\n    {}",
                blob_verify_command(&self.algorithm, &self.name)
            );
        } else if !self.certificate_identity.is_empty() {
            println!(
                "  identity: {}  issuer: {}",
                self.certificate_identity, self.certificate_oidc_issuer
            );
            println!(
                "  verify any version's signature (ca.pem, tsa-chain.pem: `keyward trust export DIR`):\n    cosign verify --ca-roots ca.pem --certificate-identity {} --certificate-oidc-issuer {} --timestamp-certificate-chain tsa-chain.pem --insecure-ignore-sct --insecure-ignore-tlog IMAGE",
                self.certificate_identity, self.certificate_oidc_issuer
            );
        }
    }
}

impl Show for Vec<proto::Key> {
    fn text(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|k| {
                let active = match k.active_version {
                    0 => "none".to_string(),
                    v => format!("v{v}"),
                };
                vec![
                    k.name.clone(),
                    k.purpose.clone(),
                    k.algorithm.clone(),
                    k.backend.clone(),
                    active,
                ]
            })
            .collect();
        super::table(
            &["NAME", "PURPOSE", "ALGORITHM", "BACKEND", "ACTIVE"],
            &rows,
            "no keys",
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
            if !b.features.is_empty() {
                println!("  also: {}", b.features.join(", "));
            }
            for m in &b.missing {
                println!("  cannot: {m}");
            }
        }
    }
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
                changed(ctx, c.set_key_scope(req).await?, false)?;
            }
            KeyCommand::Policy(p) => p.run(ctx).await?,
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
                    super::jobs::watch(ctx, &r.job_id, false).await?;
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

/// How openssl verifies a blob signature of key `name` (its public key from `keyward
/// key public`), for the key's algorithm.
pub fn blob_verify_command(algorithm: &str, name: &str) -> String {
    let public = format!("keyward key public {name} > {name}.pem &&");
    let check = match algorithm {
        "ed25519" => {
            format!("openssl pkeyutl -verify -pubin -rawin -inkey {name}.pem -in FILE -sigfile SIG")
        }
        "rsa-pss-3072" => format!(
            "openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify {name}.pem -signature SIG FILE"
        ),
        "ecdsa-p384" => format!("openssl dgst -sha384 -verify {name}.pem -signature SIG FILE"),
        _ => format!("openssl dgst -sha256 -verify {name}.pem -signature SIG FILE"),
    };
    format!("{public} {check}")
}
