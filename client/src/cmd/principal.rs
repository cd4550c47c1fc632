//! `keyward principal ...` and `keyward whoami`.

use super::{Ctx, Show};
use anyhow::Context;
use clap::Subcommand;
use keyward_client::{ClientConfig, proto};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Clone)]
pub enum PrincipalCommand {
    /// Register a principal: its TLS key is generated here, the daemon certifies it, and
    /// FILE becomes a ready client.toml (key, certificate and CA beside it).
    #[command(
        after_help = "Examples:\n  keyward principal add ci-bot --role signer --out ci-bot/client.toml\n  KEYWARD_CONFIG=ci-bot/client.toml keyward whoami"
    )]
    Add {
        /// Principal name (certificate common name).
        name: String,
        /// signer, approver, key-admin, revoker, auditor, admin (repeatable or comma separated).
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
        /// Where to write the new principal's client.toml.
        #[arg(long)]
        out: PathBuf,
    },
    /// List principals.
    List,
    /// Show a principal.
    Show {
        /// Principal name.
        name: String,
    },
    /// Remove a principal; its certificate is refused from the next request on.
    Remove {
        /// Principal name.
        name: String,
    },
    /// Lift a principal's MFA lockout (after too many wrong codes) before it ends.
    Unlock {
        /// Principal name.
        name: String,
    },
}

impl Show for proto::Principal {
    fn text(&self) {
        let state = if self.removed { "removed" } else { "active" };
        println!("{}  roles={}  {state}", self.name, self.roles.join(","));
        println!("  added {} by {}", self.created_at, self.created_by);
        if self.removed {
            println!("  removed {}", self.removed_at);
        }
        println!("  certificate sha256 {}", self.certificate_fingerprint);
    }
}

impl Show for Vec<proto::Principal> {
    fn text(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|p| {
                let state = if p.removed { "removed" } else { "active" };
                vec![
                    p.name.clone(),
                    p.roles.join(","),
                    state.to_string(),
                    p.created_at.clone(),
                ]
            })
            .collect();
        super::table(
            &["NAME", "ROLES", "STATE", "CREATED"],
            &rows,
            "no principals",
        );
    }
}

/// A principal just added, and where its client configuration went.
#[derive(Serialize)]
struct Added {
    principal: proto::Principal,
    client_config: PathBuf,
}

impl Show for Added {
    fn text(&self) {
        println!(
            "principal {} added with roles {}; client configuration: {}",
            self.principal.name,
            self.principal.roles.join(", "),
            self.client_config.display()
        );
    }
}

/// A principal just removed.
#[derive(Serialize)]
#[serde(transparent)]
struct Removed(proto::Principal);

impl Show for Removed {
    fn text(&self) {
        println!(
            "principal {} removed; its certificate is refused from now on",
            self.0.name
        );
    }
}

/// Writes a file readable by its owner only (see [`keyward_client::files::write_atomic`]).
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    keyward_client::files::write_atomic(path, data, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Generates the principal's TLS key here, has the daemon certify it, and writes a
/// ready client.toml with key, certificate and CA beside it.
async fn add(ctx: &Ctx, name: String, roles: Vec<String>, file: PathBuf) -> anyhow::Result<()> {
    let pair = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
    let r = ctx
        .client
        .add_principal(proto::AddPrincipalRequest {
            name: name.clone(),
            roles,
            public_key: rcgen::PublicKeyData::subject_public_key_info(&pair),
        })
        .await?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let config = ClientConfig {
        endpoint: ctx.config.endpoint.clone(),
        server_name: Some(
            ctx.config
                .server_name
                .clone()
                .unwrap_or_else(|| "localhost".into()),
        ),
        ca_cert: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    write_private(&config.key, pair.serialize_pem().as_bytes())?;
    for (path, pem) in [
        (&config.cert, &r.certificate_pem),
        (&config.ca_cert, &r.ca_certificate_pem),
    ] {
        std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    }
    write_private(&file, config.to_toml(&name).as_bytes())?;
    ctx.show(&Added {
        principal: r.principal.unwrap_or_default(),
        client_config: file,
    });
    Ok(())
}

impl PrincipalCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        match self {
            PrincipalCommand::Add { name, roles, out } => return add(ctx, name, roles, out).await,
            PrincipalCommand::List => {
                let all = c.list_principals_all(Default::default()).await?;
                ctx.show(&all);
            }
            PrincipalCommand::Show { name } => {
                ctx.show(&c.get_principal(proto::GetPrincipalRequest { name }).await?)
            }
            PrincipalCommand::Remove { name } => {
                let p = c
                    .remove_principal(proto::RemovePrincipalRequest { name })
                    .await?;
                ctx.show(&Removed(p));
            }
            PrincipalCommand::Unlock { name } => {
                let p = c
                    .unlock_principal(proto::UnlockPrincipalRequest { name })
                    .await?;
                if ctx.out == super::Output::Text {
                    println!("{}: MFA lockout lifted; wrong codes forgotten", p.name);
                } else {
                    ctx.show(&p);
                }
            }
        }
        Ok(())
    }
}

/// `keyward whoami`.
pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.show(&ctx.client.who_am_i(proto::WhoAmIRequest {}).await?);
    Ok(())
}
